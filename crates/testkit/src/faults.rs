//! A write load for fault tests of server engines: writers upsert and delete while the test
//! kills connections or a server. Every call must succeed or fail with `Unavailable`; any
//! other error fails the test.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use crate::Item;
use stowage_core::{Collection, ErrorKind, Put};

/// Four writers upserting and deleting 50 ids each until stopped, counting calls that
/// succeeded and calls that were `Unavailable`.
#[derive(Debug)]
pub struct WriteLoad {
    stop: Arc<AtomicBool>,
    ok: Arc<AtomicU64>,
    unavailable: Arc<AtomicU64>,
    writers: Vec<tokio::task::JoinHandle<()>>,
}

impl WriteLoad {
    /// Starts the writers on `items`.
    pub fn start(items: &Collection<Item>) -> Self {
        let stop = Arc::new(AtomicBool::new(false));
        let (ok, unavailable) = (Arc::new(AtomicU64::new(0)), Arc::new(AtomicU64::new(0)));
        let writers = (0..4)
            .map(|w| {
                let (items, stop, ok, unavailable) =
                    (items.clone(), stop.clone(), ok.clone(), unavailable.clone());
                tokio::spawn(async move {
                    let mut i = 0i64;
                    while !stop.load(Ordering::Relaxed) {
                        let id = format!("w{w}-{}", i % 50);
                        let r = if i % 3 != 0 {
                            items
                                .put(&id, &Item::new(&id, i), Put::upsert())
                                .await
                                .map(drop)
                        } else {
                            items.delete(&id).await.map(drop)
                        };
                        match r {
                            Ok(()) => ok.fetch_add(1, Ordering::Relaxed),
                            Err(e) if e.kind() == ErrorKind::Unavailable => {
                                // Down: do not spin.
                                tokio::time::sleep(Duration::from_millis(5)).await;
                                unavailable.fetch_add(1, Ordering::Relaxed)
                            }
                            Err(e) => panic!("a lost server must give Unavailable: {e}"),
                        };
                        i += 1;
                    }
                })
            })
            .collect();
        WriteLoad {
            stop,
            ok,
            unavailable,
            writers,
        }
    }

    /// Calls that succeeded so far.
    pub fn succeeded(&self) -> u64 {
        self.ok.load(Ordering::Relaxed)
    }

    /// Stops the writers: (calls that succeeded, calls that were `Unavailable`). A writer
    /// that panicked fails the test here.
    pub async fn finish(self) -> (u64, u64) {
        self.stop.store(true, Ordering::Relaxed);
        for w in self.writers {
            if let Err(e) = w.await {
                std::panic::resume_unwind(e.into_panic());
            }
        }
        (
            self.ok.load(Ordering::Relaxed),
            self.unavailable.load(Ordering::Relaxed),
        )
    }
}
