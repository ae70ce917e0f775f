//! `stowage query`: a query as POST /query takes it, and its page printed.

use clap::Args;
use serde_json::Value;
use stowage::{Query, Result};

use crate::store::{json, open, print, Create, StoreArgs};

#[derive(Debug, Args)]
pub(crate) struct QueryArgs {
    #[command(flatten)]
    store: StoreArgs,
    /// The collection.
    collection: String,
    /// The query, e.g. '{"where":{"severity":{"eq":"P0"}},"limit":10}'.
    query: String,
}

impl QueryArgs {
    pub(crate) async fn run(self) -> Result<()> {
        let QueryArgs {
            store,
            collection,
            query,
        } = self;
        let store = open(&store, Create::No).await?;
        let q: Query = serde_json::from_value(json(&query, "the query")?)
            .map_err(|e| stowage::Error::invalid(format!("the query is not valid: {e}")))?;
        let c = store.existing_collection::<Value>(&collection).await?;
        let page = c.query(&q).await?;
        let items: Vec<Value> = page
            .items
            .into_iter()
            .map(|r| serde_json::json!({"id": r.id, "version": r.version, "body": r.value}))
            .collect();
        print(&serde_json::json!({"items": items, "next_cursor": page.next_cursor}));
        Ok(())
    }
}
