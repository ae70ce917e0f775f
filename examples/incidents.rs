//! The incident store an on-call team wrote by hand for an LLM incident manager (its
//! `IncidentStore` trait), rebuilt on Stowage.
//!
//! The original needed a trait, a sled store, a Redis store with hand-maintained index sets,
//! a factory and a shared test suite. Here the same operations are one record declaration
//! and thin methods over `Collection<Incident>`; the backend is the URL on the command line:
//!
//! ```text
//! cargo run -p stowage --example incidents                          # redb://./stowage-data/incidents.redb
//! cargo run -p stowage --example incidents -- memory://
//! cargo run -p stowage --features backend-sled --example incidents -- sled://./stowage-data/incidents.sled
//! ```

use serde::{Deserialize, Serialize};
use stowage::{Collection, CollectionSpec, Filter, IndexSpec, Put, Query, Record, Result, Store};

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct Incident {
    id: String,
    title: String,
    severity: String, // P0..P4
    state: String,    // Open, Active, Resolved, Closed
    source: String,
    fingerprint: String,
    created_at: String, // RFC 3339
}

impl Record for Incident {
    const COLLECTION: &'static str = "incidents";
    fn spec() -> CollectionSpec {
        CollectionSpec::new()
            .index(IndexSpec::string("severity", "/severity"))
            .index(IndexSpec::string("state", "/state"))
            .index(IndexSpec::string("source", "/source"))
            .index(IndexSpec::string("fingerprint", "/fingerprint"))
            .index(IndexSpec::timestamp("created_at", "/created_at"))
    }
    fn id(&self) -> String {
        self.id.clone()
    }
}

/// The original's `IncidentFilter`: any of the listed values, per field; empty means any.
#[derive(Debug, Default)]
struct IncidentFilter {
    severities: Vec<&'static str>,
    states: Vec<&'static str>,
    sources: Vec<&'static str>,
}

impl IncidentFilter {
    fn to_filter(&self) -> Filter {
        let mut f = Filter::new();
        for (index, values) in [
            ("severity", &self.severities),
            ("state", &self.states),
            ("source", &self.sources),
        ] {
            if !values.is_empty() {
                f = f.any_of(index, values.iter().copied());
            }
        }
        f
    }
}

/// The original's `IncidentStore` trait, as methods over one collection.
struct IncidentStore {
    incidents: Collection<Incident>,
}

impl IncidentStore {
    async fn open(url: &str) -> Result<Self> {
        let store = Store::open(url).await?;
        Ok(IncidentStore {
            incidents: store.collection::<Incident>().await?,
        })
    }
    async fn save_incident(&self, i: &Incident) -> Result<()> {
        self.incidents.upsert(i).await.map(drop)
    }
    async fn get_incident(&self, id: &str) -> Result<Option<Incident>> {
        Ok(self.incidents.get(id).await?.map(|r| r.value))
    }
    async fn update_incident(&self, i: &Incident) -> Result<()> {
        self.incidents.put(&i.id, i, Put::replace()).await.map(drop)
    }
    async fn delete_incident(&self, id: &str) -> Result<bool> {
        self.incidents.delete(id).await
    }
    async fn list_incidents(
        &self,
        f: &IncidentFilter,
        page: u64,
        page_size: usize,
    ) -> Result<Vec<Incident>> {
        let q = Query::filter(f.to_filter())
            .order_by("created_at")
            .descending()
            .page(page, page_size);
        Ok(self
            .incidents
            .query(&q)
            .await?
            .items
            .into_iter()
            .map(|r| r.value)
            .collect())
    }
    async fn count_incidents(&self, f: &IncidentFilter) -> Result<u64> {
        self.incidents.count(&f.to_filter()).await
    }
    async fn find_by_fingerprint(&self, fp: &str) -> Result<Vec<Incident>> {
        let page = self
            .incidents
            .query(&Query::new().eq("fingerprint", fp))
            .await?;
        Ok(page.items.into_iter().map(|r| r.value).collect())
    }
}

fn incident(n: usize) -> Incident {
    const SEVERITIES: [&str; 5] = ["P0", "P1", "P2", "P3", "P4"];
    const STATES: [&str; 4] = ["Open", "Active", "Resolved", "Closed"];
    const SOURCES: [&str; 3] = ["llm-gateway", "llm-router", "billing"];
    Incident {
        id: format!("inc-{n:04}"),
        title: format!("incident number {n}"),
        severity: SEVERITIES[n % 5].into(),
        state: STATES[n % 4].into(),
        source: SOURCES[n % 3].into(),
        fingerprint: format!("fp-{}", n % 7),
        created_at: format!("2024-03-{:02}T12:{:02}:00Z", 1 + n % 28, n % 60),
    }
}

#[tokio::main]
async fn main() -> Result<()> {
    // The embedded default: one redb file, created on first run.
    let url = std::env::args()
        .nth(1)
        .unwrap_or_else(|| "redb://./stowage-data/incidents.redb".to_owned());
    let store = IncidentStore::open(&url).await?;
    println!(
        "opened {} incidents store",
        url.split(':').next().unwrap_or("?")
    );

    // A second run finds what the first wrote (39: one is deleted below).
    println!(
        "found {} incidents from an earlier run",
        store.count_incidents(&IncidentFilter::default()).await?
    );
    for n in 0..40 {
        store.save_incident(&incident(n)).await?;
    }
    println!("saved 40 incidents");

    let mut first = store.get_incident("inc-0001").await?.expect("just saved");
    println!(
        "get inc-0001: {} {} {}",
        first.severity, first.state, first.title
    );

    first.state = "Resolved".into();
    store.update_incident(&first).await?;
    println!(
        "updated inc-0001 to {}",
        store
            .get_incident("inc-0001")
            .await?
            .map(|i| i.state)
            .unwrap_or_default()
    );

    println!(
        "deleted inc-0039: {}",
        store.delete_incident("inc-0039").await?
    );

    let urgent = IncidentFilter {
        severities: vec!["P0", "P1"],
        states: vec!["Open", "Active"],
        ..Default::default()
    };
    println!(
        "P0/P1 open or active: {}",
        store.count_incidents(&urgent).await?
    );
    for page in 1..=2 {
        let items = store.list_incidents(&urgent, page, 3).await?;
        let ids: Vec<_> = items
            .iter()
            .map(|i| format!("{} ({}, {})", i.id, i.severity, i.created_at))
            .collect();
        println!("  page {page}: {}", ids.join(", "));
    }
    let llm = IncidentFilter {
        sources: vec!["llm-gateway"],
        ..Default::default()
    };
    println!("from llm-gateway: {}", store.count_incidents(&llm).await?);
    let dupes = store.find_by_fingerprint("fp-3").await?;
    println!(
        "fingerprint fp-3: {}",
        dupes
            .iter()
            .map(|i| i.id.as_str())
            .collect::<Vec<_>>()
            .join(", ")
    );
    Ok(())
}
