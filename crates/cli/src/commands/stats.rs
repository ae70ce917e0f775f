//! `stowage stats`: records and bytes per collection, and the records each index holds.

use clap::Args;
use serde_json::json;
use stowage::Result;

use crate::progress::human_bytes;
use crate::store::{open_url, CodecArgs, Create};
use crate::DEFAULT_URL;

#[derive(Debug, Args)]
pub(crate) struct StatsArgs {
    /// The store's URL.
    #[arg(env = "STOWAGE_URL", default_value = DEFAULT_URL)]
    url: String,
    #[command(flatten)]
    codec: CodecArgs,
    /// Print JSON instead of a table.
    #[arg(long)]
    json: bool,
}

impl StatsArgs {
    pub(crate) async fn run(self) -> Result<()> {
        let StatsArgs { url, codec, json } = self;
        stats(&url, &codec, json).await
    }
}

pub(crate) async fn stats(url: &str, codec: &CodecArgs, as_json: bool) -> Result<()> {
    let store = open_url(url, codec, Create::No).await?;
    let mut rows = Vec::new();
    for ns in store.namespaces().await? {
        let s = store.namespace(&ns)?;
        let specs = s.collections().await?;
        for c in s.stats().await? {
            let spec = specs
                .iter()
                .find(|(n, _)| *n == c.collection)
                .map(|(_, s)| s.clone())
                .unwrap_or_default();
            let coll = s
                .existing_collection::<serde_json::Value>(&c.collection)
                .await?;
            let mut indexes = Vec::new();
            for ix in &spec.indexes {
                indexes.push(json!({"name": ix.name, "records": coll.indexed(&ix.name).await?}));
            }
            rows.push(json!({
                "namespace": ns, "collection": c.collection, "records": c.records,
                "bytes": c.bytes, "indexes": indexes,
            }));
        }
    }
    if as_json {
        println!(
            "{}",
            serde_json::to_string_pretty(&rows).unwrap_or_default()
        );
        return Ok(());
    }
    println!(
        "{:<20} {:<24} {:>12} {:>12}  indexes (records held)",
        "namespace", "collection", "records", "bytes"
    );
    for r in &rows {
        let indexes: Vec<String> = r["indexes"]
            .as_array()
            .map(|a| {
                a.iter()
                    .map(|i| format!("{} {}", i["name"].as_str().unwrap_or(""), i["records"]))
                    .collect()
            })
            .unwrap_or_default();
        println!(
            "{:<20} {:<24} {:>12} {:>12}  {}",
            r["namespace"].as_str().unwrap_or(""),
            r["collection"].as_str().unwrap_or(""),
            r["records"],
            human_bytes(r["bytes"].as_u64().unwrap_or(0)),
            indexes.join(", ")
        );
    }
    Ok(())
}
