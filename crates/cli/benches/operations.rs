//! Operations benchmark: copy redb -> PostgreSQL and redb -> Redis against each engine's
//! own bulk load of the same records (PostgreSQL `COPY`, a Redis pipeline), backup and
//! restore rates, and the archive's size against the redb file and `pg_dump | zstd`.
//!
//! `cargo bench -p stowage-cli --bench operations` (`STOWAGE_BENCH_N`, default 100,000
//! records of `docs/benchmarks.md`, indexed on score and tags). PostgreSQL is a scratch
//! database on the machine's server; Redis a private `redis-server` on a free port.

// A benchmark is one scenario, read top to bottom: its length is its story.
#![allow(clippy::too_many_lines)]
#![allow(clippy::unwrap_used)]

use std::io::Cursor;
use std::time::Instant;

use futures_util::SinkExt;
use stowage::archive::{backup_store, restore_store};
use stowage::ops::{copy_store, Overwrite, Selection};
use stowage::Store;
use stowage_postgres::testkit::ScratchDatabase;
use stowage_redis::testkit::PrivateRedis;
use stowage_testkit::workload::{bench_n, id_of, print_table, rate, workload, Row, User};

fn main() {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap()
        .block_on(run());
}

async fn run() {
    let n = bench_n();
    let users = workload(n as u64, 7);
    let bodies: Vec<(String, String)> = users
        .iter()
        .map(|u| (id_of(u.id), serde_json::to_string(u).unwrap()))
        .collect();
    let dir = tempfile::tempdir().unwrap();
    let redb_path = dir.path().join("source.redb");
    let src = Store::open(&format!("redb://{}", redb_path.display()))
        .await
        .unwrap();
    let coll = src.collection::<User>().await.unwrap();
    for chunk in users.chunks(1000) {
        let mut b = src.batch();
        for u in chunk {
            b.insert(&coll, u);
        }
        b.commit().await.unwrap();
    }
    let all = Selection::all();
    let mut rows = Vec::new();

    // redb -> PostgreSQL, against COPY of the same ids and bodies.
    let pg_db = ScratchDatabase::create("stowage_bench_ops").unwrap();
    let pg = Store::open(&format!("postgres://{}", pg_db.location()))
        .await
        .unwrap();
    let start = Instant::now();
    copy_store(&src, &pg, &all, Overwrite::Always, None, |_| {})
        .await
        .unwrap();
    let copy_pg = rate(n, start.elapsed());
    let raw_pg = pg_copy(&pg_db, &bodies).await;
    rows.push(Row {
        name: "copy redb -> PostgreSQL (vs COPY)",
        n,
        stowage: copy_pg,
        raw: Some(raw_pg),
    });

    // redb -> Redis, against a pipeline of HSETs (Stowage keeps a hash per record).
    let redis = tokio::task::spawn_blocking(PrivateRedis::start)
        .await
        .unwrap()
        .unwrap();
    let rd = Store::open(&format!("redis://{}/?prefix=bench", redis.address()))
        .await
        .unwrap();
    let start = Instant::now();
    copy_store(&src, &rd, &all, Overwrite::Always, None, |_| {})
        .await
        .unwrap();
    let copy_redis = rate(n, start.elapsed());
    let raw_redis = redis_pipeline(&redis.address(), &bodies).await;
    rows.push(Row {
        name: "copy redb -> Redis (vs pipeline of 1,000 HSET)",
        n,
        stowage: copy_redis,
        raw: Some(raw_redis),
    });

    // Backup, and restore into redb and PostgreSQL.
    let start = Instant::now();
    let mut archive = Vec::new();
    backup_store(&src, &all, &mut archive, |_| {})
        .await
        .unwrap();
    rows.push(Row {
        name: "backup redb -> archive",
        n,
        stowage: rate(n, start.elapsed()),
        raw: None,
    });
    let into = Store::open(&format!(
        "redb://{}",
        dir.path().join("restored.redb").display()
    ))
    .await
    .unwrap();
    let start = Instant::now();
    restore_store(&into, Cursor::new(&archive), |_| {})
        .await
        .unwrap();
    rows.push(Row {
        name: "restore archive -> redb",
        n,
        stowage: rate(n, start.elapsed()),
        raw: None,
    });
    let pg_restore_db = ScratchDatabase::create("stowage_bench_restore").unwrap();
    let into = Store::open(&format!("postgres://{}", pg_restore_db.location()))
        .await
        .unwrap();
    let start = Instant::now();
    restore_store(&into, Cursor::new(&archive), |_| {})
        .await
        .unwrap();
    rows.push(Row {
        name: "restore archive -> PostgreSQL",
        n,
        stowage: rate(n, start.elapsed()),
        raw: None,
    });
    drop(into);
    print_table(&rows);

    drop(src);
    let redb_bytes = std::fs::metadata(&redb_path).unwrap().len();
    let dump = std::process::Command::new("sh")
        .arg("-c")
        .arg(format!(
            "pg_dump -h 127.0.0.1 -U postgres {} | zstd -3 -c | wc -c",
            pg_db.name()
        ))
        .output()
        .unwrap();
    let dump_bytes: u64 = String::from_utf8_lossy(&dump.stdout)
        .trim()
        .parse()
        .unwrap_or(0);
    let body_bytes: usize = bodies.iter().map(|(id, b)| id.len() + b.len()).sum();
    println!();
    println!(
        "| size of {n} records ({} MiB of ids and bodies) | bytes | archive / it |",
        body_bytes >> 20
    );
    println!("|---|---|---|");
    println!(
        "| archive (zstd frames, level 3) | {} | 1.00 |",
        archive.len()
    );
    println!(
        "| redb file | {redb_bytes} | {:.2} |",
        archive.len() as f64 / redb_bytes as f64
    );
    println!(
        "| pg_dump of the copy, zstd -3 | {dump_bytes} | {:.2} |",
        archive.len() as f64 / dump_bytes.max(1) as f64
    );
    println!();
    println!("Command: cargo bench -p stowage-cli --bench operations (STOWAGE_BENCH_N={n}); durability: each engine's default (redb and PostgreSQL fsync, Redis without persistence).");
}

/// COPY of the same ids and bodies into a plain table: PostgreSQL's own bulk load.
async fn pg_copy(db: &ScratchDatabase, bodies: &[(String, String)]) -> f64 {
    let (client, conn) = tokio_postgres::connect(
        &format!(
            "host=127.0.0.1 port=5432 user=postgres dbname={}",
            db.name()
        ),
        tokio_postgres::NoTls,
    )
    .await
    .unwrap();
    tokio::spawn(conn);
    client
        .batch_execute(
            "CREATE TABLE raw_copy (id text COLLATE \"C\" PRIMARY KEY, body text NOT NULL)",
        )
        .await
        .unwrap();
    let start = Instant::now();
    let sink = client
        .copy_in(
            "COPY raw_copy (id, body) FROM STDIN WITH (FORMAT csv, QUOTE '\x01', DELIMITER '\x02')",
        )
        .await
        .unwrap();
    let mut sink = std::pin::pin!(sink);
    for chunk in bodies.chunks(1000) {
        let mut buf = String::with_capacity(chunk.len() * 240);
        for (id, body) in chunk {
            buf.push_str(id);
            buf.push('\x02');
            buf.push_str(body);
            buf.push('\n');
        }
        sink.send(bytes::Bytes::from(buf)).await.unwrap();
    }
    sink.as_mut().finish().await.unwrap();
    rate(bodies.len(), start.elapsed())
}

/// HSETs of the same ids and bodies, pipelined 1,000 at a time: Redis's own bulk load.
async fn redis_pipeline(address: &str, bodies: &[(String, String)]) -> f64 {
    let client = redis::Client::open(format!("redis://{address}/")).unwrap();
    let mut conn = client.get_multiplexed_async_connection().await.unwrap();
    let start = Instant::now();
    for chunk in bodies.chunks(1000) {
        let mut pipe = redis::pipe();
        for (id, body) in chunk {
            pipe.hset(format!("raw:{id}"), "body", body).ignore();
        }
        let () = pipe.query_async(&mut conn).await.unwrap();
    }
    rate(bodies.len(), start.elapsed())
}
