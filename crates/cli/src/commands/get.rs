//! `stowage get`: one record as JSON.

use clap::Args;
use serde_json::Value;
use stowage::Result;

use crate::store::{open, print, Create, StoreArgs};

#[derive(Debug, Args)]
pub(crate) struct GetArgs {
    #[command(flatten)]
    store: StoreArgs,
    /// The collection.
    collection: String,
    /// The record id.
    id: String,
}

impl GetArgs {
    pub(crate) async fn run(self) -> Result<()> {
        let GetArgs {
            store,
            collection,
            id,
        } = self;
        let store = open(&store, Create::No).await?;
        let c = store.existing_collection::<Value>(&collection).await?;
        let r = c
            .get(&id)
            .await?
            .ok_or_else(|| stowage::Error::not_found(&collection, &id))?;
        print(
            &serde_json::json!({"id": r.id, "version": r.version, "expires_at": r.expires_at.map(stowage::Timestamp::to_rfc3339), "body": r.value}),
        );
        Ok(())
    }
}
