//! `stowage collections`: every collection of a store with its spec.

use clap::Args;
use serde_json::json;
use stowage::Result;

use crate::store::{open_url, CodecArgs, Create};
use crate::DEFAULT_URL;

#[derive(Debug, Args)]
pub(crate) struct CollectionsArgs {
    /// The store's URL.
    #[arg(env = "STOWAGE_URL", default_value = DEFAULT_URL)]
    url: String,
    #[command(flatten)]
    codec: CodecArgs,
    /// Print JSON.
    #[arg(long)]
    json: bool,
}

impl CollectionsArgs {
    pub(crate) async fn run(self) -> Result<()> {
        let CollectionsArgs { url, codec, json } = self;
        collections(&url, &codec, json).await
    }
}

pub(crate) async fn collections(url: &str, codec: &CodecArgs, as_json: bool) -> Result<()> {
    let store = open_url(url, codec, Create::No).await?;
    let mut rows = Vec::new();
    for ns in store.namespaces().await? {
        for (name, spec) in store.namespace(&ns)?.collections().await? {
            rows.push(json!({"namespace": ns, "collection": name, "spec": spec}));
        }
    }
    if as_json {
        println!(
            "{}",
            serde_json::to_string_pretty(&rows).unwrap_or_default()
        );
    } else {
        for r in &rows {
            println!(
                "{}/{}\t{}",
                r["namespace"].as_str().unwrap_or(""),
                r["collection"].as_str().unwrap_or(""),
                r["spec"]
            );
        }
    }
    Ok(())
}
