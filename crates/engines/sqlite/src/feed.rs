//! The change feed: a log table written in each write's transaction (`stowage_log`,
//! numbered per namespace in commit order), delivered live through the process's
//! [`ChangeHub`](stowage_core::backend::ChangeHub) after each commit, and read back from the table
//! when a watcher resumes from a token.

use futures_util::StreamExt;
use stowage_core::{ChangeOp, ChangeStream, ChangeToken, Result, Timestamp};

use crate::open::SqliteBackend;
use crate::query::changes_after;

impl SqliteBackend {
    /// The changes of `ns` after `after` (`None`: from now on).
    pub(crate) async fn watch_changes(
        &self,
        ns: &str,
        after: Option<ChangeToken>,
        now: Timestamp,
    ) -> Result<ChangeStream> {
        // The namespace's changes are logged from now on (and stay logged across restarts).
        let owned = ns.to_owned();
        self.inner.writer.run(move |t| t.start_log(&owned)).await?;
        // Subscribe first, then read the log: nothing committed in between is lost, and
        // what both give is delivered once.
        let live = self
            .inner
            .changes
            .watch_with(ns, after, |_| Ok(Vec::new()))?;
        let Some(after) = after else {
            return Ok(live);
        };
        let owned = ns.to_owned();
        let backlog = self
            .read(move |conn, target| changes_after(conn, target, &owned, after, now))
            .await?;
        let seen = backlog
            .iter()
            .filter(|e| e.op != ChangeOp::Gap)
            .map(|e| e.token)
            .max()
            .unwrap_or(after);
        let live = live.filter(move |e| {
            let keep = match e {
                Ok(e) => e.op == ChangeOp::Gap || e.token > seen,
                Err(_) => true,
            };
            std::future::ready(keep)
        });
        Ok(futures_util::stream::iter(backlog.into_iter().map(Ok))
            .chain(live)
            .boxed())
    }
}
