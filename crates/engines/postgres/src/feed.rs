//! The change feed: a log table written in each write's own transaction, and LISTEN/NOTIFY
//! to wake watchers.
//!
//! A namespace is logged from the moment someone first watches it (a row in
//! `stowage.feeds`). Every write then appends its events to `stowage.changes` in the
//! statement that also bumps the namespace's `last_token`: that row lock is held until
//! commit, so tokens are consecutive and in commit order, and a watcher reading
//! `token > seen` never skips a change that commits later with a smaller token. The same
//! statement calls `pg_notify('stowage_changes', namespace)`, which PostgreSQL delivers at
//! commit (the payload is the namespace name, far below NOTIFY's 8,000-byte limit; the
//! events themselves stay in the table). Writes to namespaces nobody watches pay one index
//! probe of `stowage.feeds` (in the write function's catalog read) and log nothing.
//!
//! Watchers share one listening connection per backend, outside the pool. They read the
//! log when woken, and once a second anyway, so a lost connection or a missed notification
//! delays a change but never loses it. The log keeps the last `change_log` changes of each
//! namespace (trimmed by the purge); a watcher resuming from an older token gets a gap.

use std::collections::VecDeque;
use std::sync::{Arc, Weak};
use std::time::Duration;

use futures_util::stream::{self, StreamExt};
use stowage_core::{
    ChangeEvent, ChangeOp, ChangeStream, ChangeToken, Error, Result, Timestamp, Version,
};
use tokio::sync::broadcast;
use tokio_postgres::AsyncMessage;

use crate::error::pg_error;
use crate::open::{Inner, PostgresBackend};
use crate::pool::Conn;
use crate::schema::{now_sql, Params};

/// The NOTIFY channel.
pub(crate) const CHANNEL: &str = "stowage_changes";

/// How often a watcher reads the log when no notification woke it.
const POLL: Duration = Duration::from_secs(1);

/// How many changes a watcher reads per statement.
const READ_BATCH: i64 = 512;

/// An event to append, numbered by the append statement.
#[derive(Debug, Clone)]
pub(crate) struct Pending {
    pub op: ChangeOp,
    pub collection: Option<String>,
    pub id: Option<String>,
    pub version: Option<Version>,
    pub count: Option<u64>,
}

impl Pending {
    pub(crate) fn new(op: ChangeOp, collection: &str) -> Self {
        Pending {
            op,
            collection: Some(collection.to_owned()),
            id: None,
            version: None,
            count: None,
        }
    }
}

/// The statement that appends `events` to the log of `ns` if it is watched, numbered in
/// commit order, and wakes watchers at commit. `now` is the caller's clock (`None`: the
/// database's). Run it last in the transaction: it holds the namespace's log row until
/// commit.
pub(crate) fn append(
    ns: &str,
    events: &[Pending],
    now: Option<std::time::SystemTime>,
) -> Option<(String, Params)> {
    if events.is_empty() {
        return None;
    }
    let mut p = Params::default();
    let ns_p = p.push(ns.to_owned());
    let n = p.push(events.len() as i64);
    let ops = p.push(
        events
            .iter()
            .map(|e| e.op.name().to_owned())
            .collect::<Vec<_>>(),
    );
    let colls = p.push(
        events
            .iter()
            .map(|e| e.collection.clone())
            .collect::<Vec<_>>(),
    );
    let ids = p.push(events.iter().map(|e| e.id.clone()).collect::<Vec<_>>());
    let versions = p.push(
        events
            .iter()
            .map(|e| e.version.map(|v| v as i64))
            .collect::<Vec<_>>(),
    );
    let counts = p.push(
        events
            .iter()
            .map(|e| e.count.map(|c| c as i64))
            .collect::<Vec<_>>(),
    );
    let now_p = p.push(now);
    let sql = format!(
        "WITH f AS (UPDATE stowage.feeds SET last_token = last_token + {n}::bigint \
         WHERE namespace = {ns_p} RETURNING last_token), \
         woken AS (SELECT pg_notify('{CHANNEL}', {ns_p}) FROM f) \
         INSERT INTO stowage.changes (namespace, token, op, collection, id, version, count, at) \
         SELECT {ns_p}, f.last_token - {n}::bigint + e.n, e.op, e.collection, e.id, e.version, \
         e.count, {now} FROM f, woken, unnest({ops}::text[], {colls}::text[], {ids}::text[], \
         {versions}::bigint[], {counts}::bigint[]) WITH ORDINALITY AS e(op, collection, id, \
         version, count, n)",
        now = now_sql(&now_p),
    );
    Some((sql, p))
}

impl PostgresBackend {
    /// The changes of `ns` after `after` (`None`: from now on).
    pub(crate) async fn watch_changes(
        &self,
        ns: &str,
        after: Option<ChangeToken>,
        now: Timestamp,
    ) -> Result<ChangeStream> {
        if self.inner.change_log == 0 {
            return Err(Error::unsupported(
                "postgres",
                "a change feed (change_log=0)",
            ));
        }
        let target = self.inner.pool.target().to_owned();
        // Subscribe before reading, so nothing committed in between is missed.
        let woken = self.listener();
        let client = self.inner.pool.client("watching").await?;
        let conn = Conn::Client(&client);
        let row = conn
            .query(
                "WITH made AS (INSERT INTO stowage.feeds (namespace, last_token) VALUES ($1, 0) \
                 ON CONFLICT (namespace) DO NOTHING RETURNING last_token) \
                 SELECT last_token FROM made UNION ALL \
                 SELECT last_token FROM stowage.feeds WHERE namespace = $1",
                &[&ns],
            )
            .await
            .map_err(|e| pg_error(e, "starting a change feed", &target))?;
        let last: i64 = row.first().map_or(0, |r| r.get(0));
        let mut backlog = VecDeque::new();
        let seen = match after {
            None => last as ChangeToken,
            Some(after) => {
                let oldest: Option<i64> = conn
                    .query(
                        "SELECT min(token) FROM stowage.changes WHERE namespace = $1",
                        &[&ns],
                    )
                    .await
                    .map_err(|e| pg_error(e, "starting a change feed", &target))?
                    .first()
                    .and_then(|r| r.get(0));
                let first_kept = oldest.unwrap_or(last + 1) as ChangeToken;
                if after + 1 < first_kept && after < last as ChangeToken {
                    backlog.push_back(ChangeEvent::gap(after, now));
                    first_kept - 1
                } else {
                    after
                }
            }
        };
        drop(client);
        let state = WatchState {
            backend: self.clone(),
            ns: ns.to_owned(),
            seen,
            backlog,
            woken,
        };
        Ok(stream::unfold(state, |mut s| async move {
            loop {
                if let Some(e) = s.backlog.pop_front() {
                    return Some((Ok(e), s));
                }
                match s.backend.read_changes(&s.ns, s.seen).await {
                    Ok(events) if !events.is_empty() => {
                        s.seen = events.last().map_or(s.seen, |e| e.token);
                        s.backlog.extend(events);
                    }
                    Ok(_) => s.wait().await,
                    Err(e) => return Some((Err(e), s)),
                }
            }
        })
        .boxed())
    }

    /// Logged changes of `ns` after `seen`, oldest first.
    async fn read_changes(&self, ns: &str, seen: ChangeToken) -> Result<Vec<ChangeEvent>> {
        let target = self.inner.pool.target();
        let client = self.inner.pool.client("reading changes").await?;
        let rows = Conn::Client(&client)
            .query(
                "SELECT token, op, collection, id, version, count, at FROM stowage.changes \
                 WHERE namespace = $1 AND token > $2 ORDER BY token LIMIT $3",
                &[&ns, &(seen as i64), &READ_BATCH],
            )
            .await
            .map_err(|e| pg_error(e, "reading changes", target))?;
        Ok(rows
            .iter()
            .map(|r| ChangeEvent {
                token: r.get::<_, i64>(0) as ChangeToken,
                op: ChangeOp::from_name(r.get(1)),
                collection: r.get(2),
                id: r.get(3),
                version: r.get::<_, Option<i64>>(4).map(|v| v as Version),
                count: r.get::<_, Option<i64>>(5).map(|c| c as u64),
                at: Timestamp::from(r.get::<_, std::time::SystemTime>(6)),
            })
            .collect())
    }

    /// Drops what the log of `ns` keeps beyond the last `change_log` changes.
    pub(crate) async fn trim_changes(&self, ns: &str) -> Result<()> {
        let target = self.inner.pool.target();
        let client = self.inner.pool.client("trimming changes").await?;
        Conn::Client(&client)
            .execute(
                "DELETE FROM stowage.changes c USING stowage.feeds f \
                 WHERE f.namespace = $1 AND c.namespace = $1 AND c.token <= f.last_token - $2",
                &[&ns, &(self.inner.change_log as i64)],
            )
            .await
            .map_err(|e| pg_error(e, "trimming changes", target))?;
        Ok(())
    }

    /// A receiver of the namespaces NOTIFY names, starting the listening connection on
    /// first use.
    fn listener(&self) -> broadcast::Receiver<String> {
        let mut slot = self.inner.notified.lock();
        if let Some(tx) = slot.as_ref() {
            return tx.subscribe();
        }
        let (tx, rx) = broadcast::channel(1024);
        *slot = Some(tx.clone());
        tokio::spawn(listen(Arc::downgrade(&self.inner), tx));
        rx
    }
}

struct WatchState {
    backend: PostgresBackend,
    ns: String,
    seen: ChangeToken,
    backlog: VecDeque<ChangeEvent>,
    woken: broadcast::Receiver<String>,
}

impl WatchState {
    /// Until a NOTIFY names this namespace (or may have: the receiver lagged), or a poll
    /// interval passes.
    async fn wait(&mut self) {
        let ns = self.ns.clone();
        let _ = tokio::time::timeout(POLL, async {
            loop {
                match self.woken.recv().await {
                    // An empty name wakes everyone (the listener reconnected).
                    Ok(name) if !name.is_empty() && name != ns => continue,
                    Err(broadcast::error::RecvError::Closed) => {
                        // The listener stopped: poll on.
                        tokio::time::sleep(POLL).await;
                        return;
                    }
                    _ => return,
                }
            }
        })
        .await;
    }
}

/// The listening connection: LISTEN, forward each notification's namespace, reconnect
/// after a failure; stops once the backend is gone.
async fn listen(inner: Weak<Inner>, tx: broadcast::Sender<String>) {
    loop {
        let Some((config, tls)) = inner.upgrade().map(|i| (i.pg.clone(), i.pool.tls.clone()))
        else {
            return;
        };
        if let Ok((client, mut connection)) = config.connect(tls).await {
            let (msgs_tx, mut msgs) = tokio::sync::mpsc::unbounded_channel();
            let pump = tokio::spawn(async move {
                let mut messages = stream::poll_fn(move |cx| connection.poll_message(cx));
                while let Some(m) = messages.next().await {
                    match m {
                        Ok(AsyncMessage::Notification(n)) => {
                            if msgs_tx.send(n.payload().to_owned()).is_err() {
                                return;
                            }
                        }
                        Ok(_) => {}
                        Err(_) => return,
                    }
                }
            });
            if client
                .batch_execute(&format!("LISTEN {CHANNEL}"))
                .await
                .is_ok()
            {
                // Whatever committed while no one listened is found by the next poll.
                let _ = tx.send(String::new());
                loop {
                    match tokio::time::timeout(POLL, msgs.recv()).await {
                        Ok(Some(ns)) => {
                            let _ = tx.send(ns);
                        }
                        Ok(None) => break,
                        Err(_) => {
                            if inner.strong_count() == 0 {
                                pump.abort();
                                return;
                            }
                        }
                    }
                }
            }
            pump.abort();
        }
        if inner.strong_count() == 0 {
            return;
        }
        tokio::time::sleep(POLL).await;
    }
}
