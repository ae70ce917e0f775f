//! What the codec layer costs, on redb and on PostgreSQL, in one run: batch inserts (100
//! per atomic batch) and typed point gets of the workload of `docs/benchmarks.md`
//! through compression, encryption and both, each against the same store without the
//! layer (the ratio is the cost); then how much compression saves, as stored bytes
//! (the engine's own count of ids and bodies) on that workload and on a log-like one (the
//! CloudZero agent's metric batches: 50 points of one pod per record, ~6 KB of JSON).
//!
//! `cargo bench -p stowage-integration --bench codec` (`STOWAGE_BENCH_N` records, default 20,000: every
//! configuration loads them anew on each engine).

// Benchmark code: a panic is how a run fails.
#![allow(clippy::unwrap_used)]

use std::sync::Arc;
use std::time::Instant;

use serde_json::{json, Value};
use stowage_codec::{CodecConfig, CodecLayer, KeyRing};
use stowage_core::backend::Backend;
use stowage_core::{CollectionSpec, Put, Store};
use stowage_testkit::workload::{
    batches, gets, id_of, print_table, rate, workload, Plain, Rng, Row, User,
};

/// The configurations compared, by name (`None`: no codec layer).
fn configs(ring: &KeyRing) -> Vec<(&'static str, Option<CodecConfig>)> {
    vec![
        ("plain", None),
        ("compression", Some(CodecConfig::new().compress_from(64))),
        (
            "encryption",
            Some(CodecConfig::new().no_compression().encrypt(ring.clone())),
        ),
        (
            "both",
            Some(CodecConfig::new().compress_from(64).encrypt(ring.clone())),
        ),
    ]
}

fn layered(engine: &Arc<dyn Backend>, config: Option<CodecConfig>, ns: &str) -> Store {
    let backend: Arc<dyn Backend> = match config {
        Some(c) => Arc::new(CodecLayer::new(engine.clone(), c).unwrap()),
        None => engine.clone(),
    };
    Store::from_backend(backend).namespace(ns).unwrap()
}

const METRICS: [&str; 3] = [
    "container_cpu_usage_seconds_total",
    "container_memory_working_set_bytes",
    "container_network_receive_bytes_total",
];

/// A metric batch as the CloudZero agent writes it: 50 points of one pod.
fn metric_batch(n: u64, rng: &mut Rng) -> Value {
    let pod = format!("api-{:04}-{:05x}", n % 40, rng.next_u64() % 0xfffff);
    let points: Vec<Value> = (0..50)
        .map(|i| {
            json!({
                "cluster": "prod-eu-west-1",
                "namespace": "payments",
                "pod": pod,
                "container": "server",
                "metric": METRICS[i % 3],
                "value": (rng.next_u64() % 1_000_000) as f64 / 100.0,
                "timestamp": 1_710_000_000_000u64 + n * 60_000 + i as u64 * 1_000,
                "labels": {"node": format!("ip-10-0-{}-{}", n % 16, i % 200), "zone": "eu-west-1a"},
            })
        })
        .collect();
    json!({"pod": pod, "points": points})
}

/// The engine's count of stored bytes (ids and bodies) of `store`'s namespace.
async fn stored_bytes(store: &Store) -> u64 {
    store.stats().await.unwrap().iter().map(|s| s.bytes).sum()
}

/// Every row for one engine; `new_engine` opens a fresh store of it.
async fn engine_rows(
    engine_name: &str,
    engine: Arc<dyn Backend>,
    users: &[User],
    ids: &Arc<Vec<String>>,
    rows: &mut Vec<Row>,
    sizes: &mut Vec<String>,
) {
    let ring = KeyRing::generate();
    let items: Vec<Plain> = users.iter().cloned().map(Plain).collect();
    let (mut plain_put, mut plain_get) = (0.0, 0.0);
    for (i, (name, config)) in configs(&ring).into_iter().enumerate() {
        let store = layered(&engine, config.clone(), &format!("c{i}"));
        let (put_rate, coll) = batches(&store, &items).await;
        let get_rate = rate(ids.len(), gets(&coll, ids, 1).await);
        if config.is_none() {
            (plain_put, plain_get) = (put_rate, get_rate);
            continue;
        }
        let label = |what: &str| -> &'static str {
            Box::leak(format!("{engine_name}: {what}, {name} (raw: no codec)").into_boxed_str())
        };
        rows.push(Row {
            name: label("batch of 100"),
            n: users.len(),
            stowage: put_rate,
            raw: Some(plain_put),
        });
        rows.push(Row {
            name: label("point get"),
            n: ids.len(),
            stowage: get_rate,
            raw: Some(plain_get),
        });
    }
    // Stored sizes: the workload, and metric batches, plain and compressed (default and
    // from 64 bytes).
    let mut rng = Rng(5);
    let batches_json: Vec<Value> = (0..2_000).map(|n| metric_batch(n, &mut rng)).collect();
    for (what, bodies) in [
        (
            "workload (~200 B JSON)",
            users
                .iter()
                .map(|u| serde_json::to_value(u).unwrap())
                .collect::<Vec<_>>(),
        ),
        ("metric batches (~6 KB JSON)", batches_json),
    ] {
        let mut line = format!("| {engine_name} | {what} |");
        let mut plain_bytes = 0;
        for (i, config) in [
            None,
            Some(CodecConfig::new()),
            Some(CodecConfig::new().compress_from(64)),
        ]
        .into_iter()
        .enumerate()
        {
            let ns = format!("size{}{i}", what.len());
            let store = layered(&engine, config, &ns);
            let c = store
                .collection_with_spec::<Value>("docs", CollectionSpec::new())
                .await
                .unwrap();
            for chunk in bodies.chunks(100).enumerate() {
                let mut b = store.batch();
                for (j, body) in chunk.1.iter().enumerate() {
                    b.put(&c, &id_of((chunk.0 * 100 + j) as u64), body, Put::insert());
                }
                b.commit().await.unwrap();
            }
            let bytes = stored_bytes(&store).await;
            if i == 0 {
                plain_bytes = bytes;
                line.push_str(&format!(" {bytes} |"));
            } else {
                line.push_str(&format!(
                    " {bytes} ({:.0} % saved) |",
                    100.0 * (1.0 - bytes as f64 / plain_bytes as f64)
                ));
            }
        }
        sizes.push(line);
    }
}

fn main() {
    let n: usize = std::env::var("STOWAGE_BENCH_N")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(20_000);
    let users = workload(n as u64, 7);
    let mut ids: Vec<String> = users.iter().map(|u| id_of(u.id)).collect();
    Rng(11).shuffle(&mut ids);
    let ids = Arc::new(ids);
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    let (mut rows, mut sizes) = (Vec::new(), Vec::new());
    let started = Instant::now();

    let dir = tempfile::tempdir().unwrap();
    let redb: Arc<dyn Backend> = Arc::new(
        stowage_redb::RedbBackend::open(stowage_redb::RedbConfig::new(
            dir.path().join("codec.redb").to_str().unwrap(),
        ))
        .unwrap(),
    );
    rt.block_on(engine_rows(
        "redb", redb, &users, &ids, &mut rows, &mut sizes,
    ));

    let db = stowage_postgres::testkit::ScratchDatabase::create("stowage_bench_codec").unwrap();
    let config = stowage_postgres::PostgresConfig::from_url_parts(
        &db.location(),
        &[("sslmode".into(), "disable".into())],
    )
    .unwrap();
    rt.block_on(async {
        let pg: Arc<dyn Backend> = Arc::new(
            stowage_postgres::PostgresBackend::connect(config)
                .await
                .unwrap(),
        );
        engine_rows("postgres", pg, &users, &ids, &mut rows, &mut sizes).await;
    });
    drop(db);

    println!("\nThe codec layer's cost: each row against the same engine without the layer (durable commits on both sides; compression from 64 bytes)\n");
    print_table(&rows);
    println!("\nStored bytes (ids and bodies, as the engine counts them)\n");
    println!(
        "| engine | records | plain | compressed from 256 B (default) | compressed from 64 B |"
    );
    println!("|---|---|---|---|---|");
    for line in sizes {
        println!("{line}");
    }
    println!(
        "\ncommand: cargo bench -p stowage-integration --bench codec   (STOWAGE_BENCH_N={n}; {:.0} s)",
        started.elapsed().as_secs_f64()
    );
}
