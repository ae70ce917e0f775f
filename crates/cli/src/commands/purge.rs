//! `stowage purge`: expired records and records past retention, purged once.

use clap::Args;
use stowage::Result;

use crate::store::{open_url, CodecArgs, Create};
use crate::DEFAULT_URL;

#[derive(Debug, Args)]
pub(crate) struct PurgeArgs {
    /// The store's URL.
    #[arg(env = "STOWAGE_URL", default_value = DEFAULT_URL)]
    url: String,
    #[command(flatten)]
    codec: CodecArgs,
}

impl PurgeArgs {
    pub(crate) async fn run(self) -> Result<()> {
        let PurgeArgs { url, codec } = self;
        purge(&url, &codec).await
    }
}

pub(crate) async fn purge(url: &str, codec: &CodecArgs) -> Result<()> {
    let store = open_url(url, codec, Create::No).await?;
    for ns in store.namespaces().await? {
        let s = store.namespace(&ns)?;
        let expired = s.purge_expired().await?;
        let kept = stowage::ops::purge_retention(&s).await?;
        let held = if kept.skipped {
            " (retention skipped: another instance is purging)"
        } else {
            ""
        };
        println!(
            "{ns}: {expired} expired and {} past retention purged{held}",
            kept.purged
        );
    }
    Ok(())
}
