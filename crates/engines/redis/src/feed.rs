//! The change feed: a stream per namespace (`…:feed`) appended by the same script as the
//! write, so the feed is atomic with the data.
//!
//! A namespace is logged from the moment someone first watches it (the scripts append only
//! when `…:feedseq` exists, and a watcher creates it). Each event's stream id is
//! `<token>-1`, the token taken from `INCR …:feedseq` inside the script, so tokens are
//! consecutive and in commit order. The stream keeps about `change_log` entries
//! (`XADD … MAXLEN ~`); a watcher resuming from an older token gets a gap. Watchers read
//! with `XREAD BLOCK` on a connection of their own, so a blocked read never holds up the
//! store's other calls.

use std::collections::VecDeque;

use futures_util::stream::{self, StreamExt};
use redis::streams::{StreamRangeReply, StreamReadOptions, StreamReadReply};
use redis::AsyncCommands;
use stowage_core::{
    ChangeEvent, ChangeOp, ChangeStream, ChangeToken, Error, Result, Timestamp, Version,
};

use crate::error::redis_error;
use crate::open::{Conn, RedisBackend};

/// How long one blocked read waits before it asks again.
const BLOCK_MS: usize = 1000;

/// How many events one read takes.
const READ_BATCH: usize = 512;

/// The token of a stream id `<token>-1`.
fn token_of(id: &str) -> Option<ChangeToken> {
    id.split('-').next()?.parse().ok()
}

fn event_of(id: &redis::streams::StreamId) -> Option<ChangeEvent> {
    let text = |name: &str| id.get::<String>(name);
    let number = |name: &str| text(name).and_then(|t| t.parse::<i64>().ok());
    Some(ChangeEvent {
        token: token_of(&id.id)?,
        op: ChangeOp::from_name(&text("op")?),
        collection: text("collection"),
        id: text("id"),
        version: number("version").map(|v| v as Version),
        count: number("count").map(|c| c as u64),
        at: Timestamp::from_micros(number("at").unwrap_or(0)),
    })
}

impl RedisBackend {
    /// The changes of `ns` after `after` (`None`: from now on).
    pub(crate) async fn watch_changes(
        &self,
        ns: &str,
        after: Option<ChangeToken>,
        now: Timestamp,
    ) -> Result<ChangeStream> {
        if self.inner.config.change_log == 0 {
            return Err(Error::unsupported("redis", "a change feed (change_log=0)"));
        }
        let keys = self.keys(ns);
        let target = self.inner.target.clone();
        let failed = |e| redis_error(e, "starting a change feed", &target);
        let mut conn = self.conn();
        // From now on, every write of the namespace is logged.
        let (last,): (Option<u64>,) = redis::pipe()
            .cmd("SET")
            .arg(keys.feed_seq())
            .arg(0)
            .arg("NX")
            .ignore()
            .get(keys.feed_seq())
            .query_async(&mut conn)
            .await
            .map_err(failed)?;
        let last = last.unwrap_or(0);
        let mut backlog = VecDeque::new();
        let seen = match after {
            None => last,
            Some(after) => {
                let first: StreamRangeReply = conn
                    .xrange_count(keys.feed(), "-", "+", 1)
                    .await
                    .map_err(failed)?;
                let first_kept = first
                    .ids
                    .first()
                    .and_then(|i| token_of(&i.id))
                    .unwrap_or(last + 1);
                if after + 1 < first_kept && after < last {
                    backlog.push_back(ChangeEvent::gap(after, now));
                    first_kept - 1
                } else {
                    after
                }
            }
        };
        let reader = self.dedicated().await?;
        let state = WatchState {
            reader,
            feed: keys.feed(),
            target,
            seen,
            backlog,
        };
        Ok(stream::unfold(state, |mut s| async move {
            loop {
                if let Some(e) = s.backlog.pop_front() {
                    return Some((Ok(e), s));
                }
                let options = StreamReadOptions::default()
                    .count(READ_BATCH)
                    .block(BLOCK_MS);
                let from = format!("{}-1", s.seen);
                let read: redis::RedisResult<Option<StreamReadReply>> =
                    s.reader.xread_options(&[&s.feed], &[&from], &options).await;
                match read {
                    Ok(Some(reply)) => {
                        for key in reply.keys {
                            for id in &key.ids {
                                if let Some(e) = event_of(id) {
                                    s.seen = e.token;
                                    s.backlog.push_back(e);
                                }
                            }
                        }
                    }
                    Ok(None) => {}
                    Err(e) => return Some((Err(redis_error(e, "reading changes", &s.target)), s)),
                }
            }
        })
        .boxed())
    }
}

struct WatchState {
    /// A connection of this watcher's own: its blocked reads hold up nothing else.
    reader: Conn,
    feed: String,
    target: String,
    seen: ChangeToken,
    backlog: VecDeque<ChangeEvent>,
}
