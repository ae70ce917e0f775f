//! The change feed's in-process fan-out: numbering, a replay window, live delivery and
//! gaps. Engines publish what committed; watchers get it in order, or a gap.

use std::collections::{HashMap, VecDeque};
use std::sync::Arc;

use futures_util::stream::{self, BoxStream, StreamExt};
use parking_lot::Mutex;
use serde::{Deserialize, Serialize};
use tokio::sync::broadcast;

use crate::error::Result;
use crate::record::{Timestamp, Version};

/// A resume token: changes are numbered from 1 per namespace, in commit order.
pub type ChangeToken = u64;

/// What a change did.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum ChangeOp {
    /// A record was written (insert, update, upsert, restore).
    Put,
    /// A record was deleted.
    Delete,
    /// Records whose id starts with `id` were deleted (`count` of them).
    DeletePrefix,
    /// Records matching a query were deleted (`count` of them).
    DeleteWhere,
    /// Expired records were purged (`count` of them, across the namespace).
    Purge,
    /// The collection was dropped.
    Drop,
    /// The collection's spec changed.
    Spec,
    /// Continuity was lost: changes between the previous event and this one may be
    /// missing. Read the state again.
    Gap,
}

impl ChangeOp {
    /// Every op, for [`ChangeOp::from_name`].
    const ALL: [ChangeOp; 8] = [
        ChangeOp::Put,
        ChangeOp::Delete,
        ChangeOp::DeletePrefix,
        ChangeOp::DeleteWhere,
        ChangeOp::Purge,
        ChangeOp::Drop,
        ChangeOp::Spec,
        ChangeOp::Gap,
    ];

    /// The stable snake_case name (`put`, `delete_prefix`, …), as on the wire and in the
    /// engines' change logs.
    pub fn name(self) -> &'static str {
        match self {
            ChangeOp::Put => "put",
            ChangeOp::Delete => "delete",
            ChangeOp::DeletePrefix => "delete_prefix",
            ChangeOp::DeleteWhere => "delete_where",
            ChangeOp::Purge => "purge",
            ChangeOp::Drop => "drop",
            ChangeOp::Spec => "spec",
            ChangeOp::Gap => "gap",
        }
    }

    /// The op a name stands for; an unknown name (a log written by a newer build) is a gap,
    /// so the reader resynchronizes rather than misreads.
    pub fn from_name(name: &str) -> ChangeOp {
        ChangeOp::ALL
            .into_iter()
            .find(|op| op.name() == name)
            .unwrap_or(ChangeOp::Gap)
    }
}

/// One change, as watchers receive it. Bodies are not in events: read the record when the
/// body matters.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ChangeEvent {
    /// The resume token: watch again after it to get what followed.
    pub token: ChangeToken,
    /// What happened.
    pub op: ChangeOp,
    /// The collection (none for purges and gaps, which span the namespace).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub collection: Option<String>,
    /// The record id (the prefix for `delete_prefix`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub id: Option<String>,
    /// The new version of a put, the removed version of a delete.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub version: Option<Version>,
    /// When it happened (the write's `updated_at`).
    pub at: Timestamp,
    /// How many records a bulk change touched.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub count: Option<u64>,
}

impl ChangeEvent {
    /// A change still to be numbered by [`ChangeHub::publish`].
    pub fn new(op: ChangeOp, collection: Option<&str>, at: Timestamp) -> Self {
        ChangeEvent {
            token: 0,
            op,
            collection: collection.map(str::to_owned),
            id: None,
            version: None,
            at,
            count: None,
        }
    }

    /// With a record id.
    pub fn id(mut self, id: &str) -> Self {
        self.id = Some(id.to_owned());
        self
    }

    /// With a version.
    pub fn version(mut self, v: Version) -> Self {
        self.version = Some(v);
        self
    }

    /// With a count.
    pub fn count(mut self, n: u64) -> Self {
        self.count = Some(n);
        self
    }

    /// A gap: continuity lost after token `after`.
    pub fn gap(after: ChangeToken, at: Timestamp) -> Self {
        ChangeEvent {
            token: after,
            ..ChangeEvent::new(ChangeOp::Gap, None, at)
        }
    }
}

/// A stream of changes.
pub type ChangeStream = BoxStream<'static, Result<ChangeEvent>>;

/// How many recent changes a namespace keeps for watchers that resume or fall behind.
pub const REPLAY_WINDOW: usize = 10_000;

/// Numbers, keeps and fans out the changes of every namespace of one backend.
#[derive(Debug, Default)]
pub struct ChangeHub {
    namespaces: Mutex<HashMap<String, Arc<Mutex<Feed>>>>,
}

#[derive(Debug)]
struct Feed {
    last: ChangeToken,
    recent: VecDeque<ChangeEvent>,
    live: broadcast::Sender<ChangeEvent>,
}

impl ChangeHub {
    fn feed(&self, ns: &str) -> Arc<Mutex<Feed>> {
        self.namespaces
            .lock()
            .entry(ns.to_owned())
            .or_insert_with(|| {
                Arc::new(Mutex::new(Feed {
                    last: 0,
                    recent: VecDeque::new(),
                    live: broadcast::channel(1024).0,
                }))
            })
            .clone()
    }

    /// Numbers `events` in order and delivers them. Call it in commit order (under the
    /// engine's write lock, or right after its commit) and only for what committed.
    pub fn publish(&self, ns: &str, events: Vec<ChangeEvent>) {
        let feed = self.feed(ns);
        let mut feed = feed.lock();
        for mut e in events {
            e.token = feed.last + 1;
            feed.push(e);
        }
    }

    /// Delivers changes an engine numbered itself, in token order. The engine keeps them
    /// in its own log and serves resumes with [`ChangeHub::watch_with`], so the hub keeps
    /// no replay window for them.
    pub fn publish_numbered(&self, ns: &str, events: Vec<ChangeEvent>) {
        let feed = self.feed(ns);
        let mut feed = feed.lock();
        for e in events {
            feed.last = feed.last.max(e.token);
            // No receiver is not an error: nobody watches.
            let _ = feed.live.send(e);
        }
    }

    /// The changes of `ns` after `after` (`None`: from now on), from this hub's replay
    /// window, then live ones. A change older than the window becomes one gap event, and so
    /// do the changes a watcher misses by falling more than the live buffer behind.
    pub fn watch(&self, ns: &str, after: Option<ChangeToken>, now: Timestamp) -> ChangeStream {
        let feed = self.feed(ns);
        let backlog = |after: ChangeToken| {
            let feed = feed.lock();
            let oldest = feed.recent.front().map_or(feed.last + 1, |e| e.token);
            let mut backlog = Vec::new();
            if after + 1 < oldest {
                backlog.push(ChangeEvent::gap(after, now));
            }
            backlog.extend(feed.recent.iter().filter(|e| e.token > after).cloned());
            Ok(backlog)
        };
        match self.watch_with(ns, after, backlog) {
            Ok(stream) => stream,
            Err(e) => stream::once(async move { Err(e) }).boxed(),
        }
    }

    /// [`ChangeHub::watch`] with the backlog read by `read_backlog(after)` — from an
    /// engine's own log, say: the changes after `after`, with a gap event first when the
    /// log no longer holds them all. It subscribes before reading, so nothing committed in
    /// between is lost, and a change both read and delivered live is given once.
    pub fn watch_with(
        &self,
        ns: &str,
        after: Option<ChangeToken>,
        read_backlog: impl FnOnce(ChangeToken) -> Result<Vec<ChangeEvent>>,
    ) -> Result<ChangeStream> {
        let (live, last) = {
            let feed = self.feed(ns);
            let feed = feed.lock();
            (feed.live.subscribe(), feed.last)
        };
        let backlog = match after {
            Some(after) => read_backlog(after)?,
            None => Vec::new(),
        };
        // Live changes up to `seen` were delivered from the backlog (or came before the
        // watch began).
        let seen = backlog
            .iter()
            .filter(|e| e.op != ChangeOp::Gap)
            .map(|e| e.token)
            .max()
            .or(after)
            .unwrap_or(last);
        let live = stream::unfold((live, seen), |(mut live, mut seen)| async move {
            loop {
                match live.recv().await {
                    Ok(e) if e.token <= seen => continue,
                    Ok(e) => {
                        seen = e.token;
                        return Some((Ok(e), (live, seen)));
                    }
                    Err(broadcast::error::RecvError::Lagged(_)) => {
                        let gap = ChangeEvent::gap(seen, Timestamp::now());
                        return Some((Ok(gap), (live, seen)));
                    }
                    Err(broadcast::error::RecvError::Closed) => return None,
                }
            }
        });
        Ok(stream::iter(backlog.into_iter().map(Ok))
            .chain(live)
            .boxed())
    }
}

impl Feed {
    fn push(&mut self, e: ChangeEvent) {
        self.last = e.token;
        if self.recent.len() == REPLAY_WINDOW {
            self.recent.pop_front();
        }
        self.recent.push_back(e.clone());
        // No receiver is not an error: nobody watches.
        let _ = self.live.send(e);
    }
}

#[cfg(test)]
mod op_names {
    use super::*;

    #[test]
    fn names_round_trip_and_match_serde() {
        for op in ChangeOp::ALL {
            assert_eq!(ChangeOp::from_name(op.name()), op);
            assert_eq!(
                serde_json::to_value(op).ok(),
                Some(serde_json::Value::from(op.name()))
            );
        }
        assert_eq!(ChangeOp::from_name("renamed_later"), ChangeOp::Gap);
    }
}
