//! The layout as PostgreSQL holds it: a collection's DDL applied on a fresh database and read
//! back with plain SQL, the way a person would with psql.

// A test is one scenario, read top to bottom: its length is its story.
#![allow(clippy::too_many_lines)]
#![allow(clippy::unwrap_used)]

mod support;

use stowage_core::{CollectionSpec, IndexSpec};
use stowage_postgres::schema::{collection_ddl, quote, schema_name};
use support::FreshDatabase;

#[tokio::test]
async fn a_collection_is_a_table_with_typed_index_columns_and_side_tables() {
    let db = FreshDatabase::new().await;
    let client = db.connect().await;
    let spec = CollectionSpec::new()
        .index(IndexSpec::string("fingerprint", "/fingerprint").unique())
        .index(IndexSpec::integer("score", "/score"))
        .index(IndexSpec::string("tags", "/tags").multi());
    client
        .batch_execute(&format!("CREATE SCHEMA {}", quote(&schema_name("app"))))
        .await
        .unwrap();
    for sql in collection_ddl("app", "incidents", &spec).unwrap() {
        client
            .batch_execute(&sql)
            .await
            .unwrap_or_else(|e| panic!("{sql}: {e}"));
    }
    let columns: Vec<(String, String)> = client
        .query(
            "SELECT column_name::text, data_type::text FROM information_schema.columns \
             WHERE table_schema = 'app' AND table_name = 'incidents' ORDER BY ordinal_position",
            &[],
        )
        .await
        .unwrap()
        .iter()
        .map(|r| (r.get(0), r.get(1)))
        .collect();
    let names: Vec<&str> = columns.iter().map(|(n, _)| n.as_str()).collect();
    assert_eq!(
        names,
        [
            "id",
            "version",
            "body",
            "blob",
            "created_at",
            "updated_at",
            "expires_at",
            "ix_fingerprint",
            "ix_score"
        ]
    );
    assert_eq!(columns[8].1, "bigint");
    // A row written by hand, as Stowage will: the side table follows its record.
    client
        .batch_execute(
            "INSERT INTO app.incidents (id, version, body, created_at, updated_at, ix_fingerprint, ix_score) \
             VALUES ('i-1', 1, '{\"b\":1,\"a\":2}', now(), now(), 'f1', 7); \
             INSERT INTO app.incidents__tags (value, id) VALUES ('db', 'i-1'), ('p0', 'i-1');",
        )
        .await
        .unwrap();
    let body: String = client
        .query_one("SELECT body FROM app.incidents WHERE ix_score = 7", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(
        body, "{\"b\":1,\"a\":2}",
        "the body as written, key order kept"
    );
    let dup = client
        .batch_execute(
            "INSERT INTO app.incidents (id, version, body, created_at, updated_at, ix_fingerprint) \
             VALUES ('i-2', 1, '{}', now(), now(), 'f1')",
        )
        .await
        .unwrap_err();
    assert_eq!(
        dup.code(),
        Some(&tokio_postgres::error::SqlState::UNIQUE_VIOLATION)
    );
    let neither = client
        .batch_execute(
            "INSERT INTO app.incidents (id, version, created_at, updated_at) VALUES ('i-3', 1, now(), now())",
        )
        .await
        .unwrap_err();
    assert_eq!(
        neither.code(),
        Some(&tokio_postgres::error::SqlState::CHECK_VIOLATION)
    );
    client
        .batch_execute("DELETE FROM app.incidents WHERE id = 'i-1'")
        .await
        .unwrap();
    let left: i64 = client
        .query_one("SELECT count(*) FROM app.incidents__tags", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(left, 0, "side-table rows go with their record");
    // Ids and string values sort by bytes, as on every engine.
    client
        .batch_execute(
            "INSERT INTO app.incidents (id, version, body, created_at, updated_at) VALUES \
             ('b', 1, '{}', now(), now()), ('B', 1, '{}', now(), now()), ('a', 1, '{}', now(), now())",
        )
        .await
        .unwrap();
    let ids: Vec<String> = client
        .query("SELECT id FROM app.incidents ORDER BY id", &[])
        .await
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect();
    assert_eq!(ids, ["B", "a", "b"]);
}

#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
struct Incident {
    id: String,
    title: String,
    severity: String,
    tags: Vec<String>,
}

impl stowage_core::Record for Incident {
    const COLLECTION: &'static str = "incidents";
    fn spec() -> CollectionSpec {
        CollectionSpec::new()
            .index(IndexSpec::string("severity", "/severity"))
            .index(IndexSpec::string("tags", "/tags").multi())
    }
    fn id(&self) -> String {
        self.id.clone()
    }
}

/// What Stowage writes is what psql shows: the body on its column exactly as sent, index
/// values in their typed columns and side tables, the change in the migrations table.
#[tokio::test]
async fn rows_written_through_stowage_read_back_with_plain_sql() {
    let db = FreshDatabase::new().await;
    let config = stowage_postgres::PostgresConfig::from_url_parts(&db.location(), &[]).unwrap();
    let backend = stowage_postgres::PostgresBackend::connect(config)
        .await
        .unwrap();
    let store = stowage_core::Store::new(backend).namespace("app").unwrap();
    let incidents = store.collection::<Incident>().await.unwrap();
    for (i, sev) in ["P0", "P2", "P0"].iter().enumerate() {
        incidents
            .insert(&Incident {
                id: format!("i-{i}"),
                title: format!("incident {i}"),
                severity: sev.to_string(),
                tags: vec!["db".into(), format!("t{i}")],
            })
            .await
            .unwrap();
    }
    // A JSON body with keys in an unusual order is stored as written (jsonb would sort them).
    let raw = r#"{"zeta":1,"alpha":{"y":2,"x":[3,"b","a"]},"mid":null}"#;
    let notes = store
        .collection_with_spec::<serde_json::Value>("notes", CollectionSpec::new())
        .await
        .unwrap();
    notes
        .put(
            "n-1",
            &serde_json::from_str(raw).unwrap(),
            stowage_core::Put::insert(),
        )
        .await
        .unwrap();

    let client = db.connect().await;
    let p0: Vec<(String, String, i64)> = client
        .query(
            "SELECT id, body::jsonb->>'title', version FROM app.incidents \
             WHERE ix_severity = 'P0' ORDER BY id",
            &[],
        )
        .await
        .unwrap()
        .iter()
        .map(|r| (r.get(0), r.get(1), r.get(2)))
        .collect();
    assert_eq!(
        p0,
        [
            ("i-0".to_owned(), "incident 0".to_owned(), 1),
            ("i-2".to_owned(), "incident 2".to_owned(), 1)
        ]
    );
    let body: String = client
        .query_one("SELECT body FROM app.notes WHERE id = 'n-1'", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(body, raw);
    let tagged: Vec<String> = client
        .query(
            "SELECT id FROM app.incidents__tags WHERE value = 'db' ORDER BY id",
            &[],
        )
        .await
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect();
    assert_eq!(tagged, ["i-0", "i-1", "i-2"]);
    let change: String = client
        .query_one(
            "SELECT change FROM app.__migrations WHERE collection = 'incidents'",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    assert!(change.contains("create collection incidents"), "{change}");
}
