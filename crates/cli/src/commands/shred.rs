//! `stowage shred`: a namespace's data keys destroyed, then its collections dropped.

use clap::Args;
use stowage::Result;

use crate::store::{builder, Create};
use crate::DEFAULT_URL;

#[derive(Debug, Args)]
pub(crate) struct ShredArgs {
    /// The store's URL.
    #[arg(long, env = "STOWAGE_URL", default_value = DEFAULT_URL)]
    url: String,
    /// The namespace.
    namespace: String,
    /// Keep the (unreadable) records instead of dropping the collections.
    #[arg(long)]
    keep_records: bool,
}

impl ShredArgs {
    pub(crate) async fn run(self) -> Result<()> {
        let ShredArgs {
            url,
            namespace,
            keep_records,
        } = self;
        shred(&url, &namespace, keep_records).await
    }
}

async fn shred(url: &str, ns: &str, keep_records: bool) -> Result<()> {
    // The engine itself: shredding needs no key ring.
    let engine = builder(url, Create::No).open().await?.backend().clone();
    if !stowage::codec::shred(&engine, ns).await? {
        return Err(stowage::Error::new(
            stowage::ErrorKind::NotFound,
            format!("namespace {ns:?} has no data keys (never encrypted, or already shredded)"),
        ));
    }
    println!("namespace {ns} shredded: its data keys are destroyed");
    if !keep_records {
        let specs = engine.list_specs(ns).await?;
        for (collection, _) in &specs {
            engine.drop_collection(ns, collection).await?;
        }
        println!("{} collections of {ns} dropped", specs.len());
    }
    Ok(())
}
