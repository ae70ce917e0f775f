//! `stowage put`: one record written, its new version printed.

use std::time::Duration;

use clap::Args;
use serde_json::Value;
use stowage::{Put, Result};

use crate::store::{json, open, Create, StoreArgs};

#[derive(Debug, Args)]
pub(crate) struct PutArgs {
    #[command(flatten)]
    store: StoreArgs,
    /// The collection.
    collection: String,
    /// The record id.
    id: String,
    /// The body, as JSON.
    body: String,
    /// Expire the record after this many seconds.
    #[arg(long)]
    ttl: Option<u64>,
}

impl PutArgs {
    pub(crate) async fn run(self) -> Result<()> {
        let PutArgs {
            store,
            collection,
            id,
            body,
            ttl,
        } = self;
        let store = open(&store, Create::IfMissing).await?;
        let body = json(&body, "the body")?;
        let c = match store.existing_collection::<Value>(&collection).await {
            Ok(c) => c,
            Err(e) if e.kind() == stowage::ErrorKind::NotFound => {
                store
                    .collection_with_spec::<Value>(&collection, stowage::CollectionSpec::new())
                    .await?
            }
            Err(e) => return Err(e),
        };
        let mut put = Put::upsert();
        if let Some(t) = ttl {
            put = put.ttl(Duration::from_secs(t));
        }
        println!("version {}", c.put(&id, &body, put).await?.version);
        Ok(())
    }
}
