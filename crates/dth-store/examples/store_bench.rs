//! Item state changes per second through the store's queue protocol, on SQLite (a file on disk) and
//! PostgreSQL (a `dth-testkit` server): N items are queued in batches, then K simulated workers claim
//! batches and ack them in batches until the queue is empty. Each item is two state changes
//! (queued → leased → done). It also measures what the items cost in space and write-ahead log:
//! on PostgreSQL the `items` table's bytes per row (`pg_total_relation_size`, `pg_relation_size`,
//! `pg_indexes_size`) after the enqueue and after the drain, and WAL bytes per item
//! (`pg_current_wal_lsn()` before and after each phase); on SQLite the database's bytes per item
//! (`page_count × page_size`). Last, the run's items are purged as retention does (batches of
//! 10,000) and timed. Run by `bench/store.sh`:
//!
//! ```text
//! cargo run --release -p dth-store --example store_bench -- [--items N] [--workers K] [--batch B]
//!     [--backends sqlite,postgres] [--dir DIR]
//! ```
//!
//! Prints one table, `ROW`, `SIZE` and `PURGE` lines for the script, and a last line
//! `RESULT sqlite_changes_per_s=… postgres_changes_per_s=…`.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use dth_model::{ItemKind, ItemState, RunStatus, Trigger};
use dth_store::{Ack, MasterKey, NewItem, NewTask, Store};

struct Args {
    items: usize,
    workers: usize,
    batch: usize,
    backends: Vec<String>,
    dir: Option<PathBuf>,
}

fn args() -> Args {
    let mut a = Args {
        items: 20_000,
        workers: 4,
        batch: 100,
        backends: vec!["sqlite".into(), "postgres".into()],
        dir: None,
    };
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        let value = it.next().unwrap_or_else(|| panic!("{flag} needs a value"));
        match flag.as_str() {
            "--items" => a.items = value.parse().expect("--items N"),
            "--workers" => a.workers = value.parse().expect("--workers K"),
            "--batch" => a.batch = value.parse().expect("--batch B"),
            "--backends" => a.backends = value.split(',').map(str::to_string).collect(),
            "--dir" => a.dir = Some(PathBuf::from(value)),
            other => panic!("unknown flag {other}"),
        }
    }
    a
}

/// A second connection to the store's database, to read its sizes.
enum Probe {
    Sqlite(sqlx::SqlitePool),
    Postgres(sqlx::PgPool),
}

/// Sizes at one moment: (items total, heap, indexes, WAL position) on PostgreSQL; (database
/// bytes, 0, 0, 0) on SQLite.
#[derive(Debug, Clone, Copy, Default)]
struct Sizes {
    total: i64,
    heap: i64,
    indexes: i64,
    wal_lsn: i64,
}

impl Probe {
    async fn sizes(&self) -> Sizes {
        match self {
            Probe::Sqlite(pool) => {
                let (bytes,): (i64,) = sqlx::query_as(
                    "SELECT page_count * page_size FROM pragma_page_count(), pragma_page_size()",
                )
                .fetch_one(pool)
                .await
                .expect("sqlite size");
                Sizes {
                    total: bytes,
                    ..Sizes::default()
                }
            }
            Probe::Postgres(pool) => {
                let (total, heap, indexes, wal_lsn): (i64, i64, i64, i64) = sqlx::query_as(
                    "SELECT pg_total_relation_size('items'), pg_relation_size('items'), \
                     pg_indexes_size('items'), \
                     CAST(pg_wal_lsn_diff(pg_current_wal_lsn(), '0/0') AS BIGINT)",
                )
                .fetch_one(pool)
                .await
                .expect("postgres sizes");
                Sizes {
                    total,
                    heap,
                    indexes,
                    wal_lsn,
                }
            }
        }
    }
}

/// Bytes per item of a difference.
fn per(bytes: i64, items: usize) -> f64 {
    bytes as f64 / items.max(1) as f64
}

struct Row {
    backend: &'static str,
    /// Bytes per item after the enqueue (total, heap, indexes) and after the drain (total).
    enqueued: (f64, f64, f64),
    drained_total: f64,
    /// WAL bytes per item of the enqueue, the drain and the purge (PostgreSQL; 0 on SQLite).
    wal: (f64, f64, f64),
    purge_s: f64,
    insert_per_s: f64,
    drain_s: f64,
    changes_per_s: f64,
    claim_ms: f64,
    ack_ms: f64,
}

async fn bench(store: Arc<dyn Store>, probe: Probe, a: &Args) -> Row {
    let backend = store.backend();
    let task = store
        .create_task(NewTask {
            name: "bench".into(),
            kind: "s3".into(),
            spec: serde_json::json!({}),
            next_run_at: None,
            run_requested_by: None,
        })
        .await
        .expect("create task");
    let run = store
        .create_run(&task.id, Trigger::User, None, 5)
        .await
        .expect("create run");
    // Shaped like the finder's items: a 47-byte key, a quoted MD5 ETag, the listing's
    // last-modified time and storage class as the payload.
    let items: Vec<NewItem> = (0..a.items)
        .map(|i| NewItem {
            kind: ItemKind::Object,
            key: format!(
                "logs/2026/05/{:02}/host-{:03}/part-{i:08}.json.gz",
                i % 28 + 1,
                i % 100
            ),
            size: 16 * 1024,
            etag: Some(format!("\"{i:032x}\"")),
            part_number: None,
            payload: serde_json::json!({"last_modified_ms": 1_780_000_000_000_i64 + i as i64,
                "storage_class": "STANDARD"}),
        })
        .collect();
    let empty = probe.sizes().await;
    let t0 = Instant::now();
    for chunk in items.chunks(1000) {
        store
            .insert_items(run.id, chunk)
            .await
            .expect("insert items");
    }
    let insert_s = t0.elapsed().as_secs_f64();
    if let Probe::Postgres(pool) = &probe {
        // Sizes as the planner and a steady queue see them, not mid-way through a background one.
        sqlx::query("ANALYZE items")
            .execute(pool)
            .await
            .expect("analyze");
    }
    let enqueued = probe.sizes().await;
    store
        .set_run_status(run.id, RunStatus::Transferring, None)
        .await
        .expect("set run status");

    let t0 = Instant::now();
    let workers: Vec<_> = (0..a.workers)
        .map(|w| {
            let store = store.clone();
            let batch = a.batch;
            tokio::spawn(async move {
                let name = format!("bench-worker-{w}");
                let (mut claim_t, mut ack_t, mut calls) = (Duration::ZERO, Duration::ZERO, 0u32);
                loop {
                    let t = Instant::now();
                    let got = store
                        .claim(&name, batch, Duration::from_secs(300))
                        .await
                        .expect("claim");
                    claim_t += t.elapsed();
                    if got.is_empty() {
                        break;
                    }
                    let acks: Vec<Ack> = got
                        .iter()
                        .map(|i| Ack {
                            id: i.id,
                            state: ItemState::Done,
                            dst_etag: i.etag.clone(),
                            verification: Some("md5".into()),
                            payload: None,
                        })
                        .collect();
                    let t = Instant::now();
                    let acked = store.ack(&name, &acks).await.expect("ack");
                    ack_t += t.elapsed();
                    calls += 1;
                    assert!(acked.iter().all(|x| x.accepted), "an ack was refused");
                }
                (claim_t, ack_t, calls.max(1))
            })
        })
        .collect();
    let (mut claim_ms, mut ack_ms) = (0.0, 0.0);
    for w in workers {
        let (c, k, n) = w.await.expect("worker");
        claim_ms += c.as_secs_f64() * 1000.0 / f64::from(n) / a.workers as f64;
        ack_ms += k.as_secs_f64() * 1000.0 / f64::from(n) / a.workers as f64;
    }
    let drain_s = t0.elapsed().as_secs_f64();
    let drained = probe.sizes().await;
    let counters = store.run_counters(run.id).await.expect("counters");
    assert_eq!(
        counters.copied, a.items as u64,
        "every item done exactly once"
    );
    assert_eq!(counters.pending, 0);
    assert_eq!(
        store.finish_run_if_drained(run.id).await.expect("finish"),
        Some(RunStatus::Done)
    );
    let before_purge = probe.sizes().await;
    let t0 = Instant::now();
    let purged = store
        .purge_finished_items(dth_store::now_ms() + 1, 10_000)
        .await
        .expect("purge");
    let purge_s = t0.elapsed().as_secs_f64();
    let after_purge = probe.sizes().await;
    assert_eq!(
        (purged.runs, purged.items),
        (1, a.items as u64),
        "every item purged once"
    );
    assert_eq!(
        store.run_counters(run.id).await.expect("counters").copied,
        a.items as u64,
        "the purged run keeps its counters"
    );
    let n = a.items;
    Row {
        backend,
        enqueued: (
            per(enqueued.total - empty.total, n),
            per(enqueued.heap - empty.heap, n),
            per(enqueued.indexes - empty.indexes, n),
        ),
        drained_total: per(drained.total - empty.total, n),
        wal: (
            per(enqueued.wal_lsn - empty.wal_lsn, n),
            per(drained.wal_lsn - enqueued.wal_lsn, n),
            per(after_purge.wal_lsn - before_purge.wal_lsn, n),
        ),
        purge_s,
        insert_per_s: a.items as f64 / insert_s,
        drain_s,
        changes_per_s: 2.0 * a.items as f64 / drain_s,
        claim_ms,
        ack_ms,
    }
}

#[tokio::main]
async fn main() {
    let a = args();
    let mut rows = Vec::new();
    for backend in &a.backends {
        match backend.as_str() {
            "sqlite" => {
                let temp = match &a.dir {
                    Some(d) => tempfile::tempdir_in(d),
                    None => tempfile::tempdir(),
                }
                .expect("temp dir");
                let file = temp.path().join("bench.db");
                eprintln!("sqlite: {}", file.display());
                let store = dth_store::open(&file.display().to_string(), MasterKey::generate())
                    .await
                    .expect("open sqlite store");
                let probe = sqlx::SqlitePool::connect(&format!("sqlite://{}", file.display()))
                    .await
                    .expect("open a second sqlite connection");
                rows.push(bench(store, Probe::Sqlite(probe), &a).await);
            }
            "postgres" => {
                let pg = tokio::task::spawn_blocking(dth_testkit::PgServer::start)
                    .await
                    .expect("start postgres");
                let url = pg.create_database("bench");
                eprintln!("postgres: {url}");
                let store = dth_store::open(&url, MasterKey::generate())
                    .await
                    .expect("open postgres store");
                let probe = sqlx::PgPool::connect(&url)
                    .await
                    .expect("open a second postgres connection");
                rows.push(bench(store, Probe::Postgres(probe), &a).await);
            }
            other => panic!("unknown backend {other} (sqlite, postgres)"),
        }
    }

    println!(
        "\nitems={} workers={} batch={} (each item: claim + ack = 2 state changes)\n",
        a.items, a.workers, a.batch
    );
    println!(
        "{:<9} | {:>14} | {:>8} | {:>17} | {:>13} | {:>11}",
        "backend", "insert items/s", "drain s", "state changes/s", "claim ms/call", "ack ms/call"
    );
    println!("{}", "-".repeat(87));
    for r in &rows {
        println!(
            "{:<9} | {:>14.0} | {:>8.2} | {:>17.0} | {:>13.2} | {:>11.2}",
            r.backend, r.insert_per_s, r.drain_s, r.changes_per_s, r.claim_ms, r.ack_ms
        );
    }
    println!(
        "\n{:<9} | {:>15} | {:>14} | {:>15} | {:>13} | {:>14} | {:>13} | {:>13} | {:>9}",
        "backend",
        "B/item enqueued",
        "heap B/item",
        "indexes B/item",
        "B/item done",
        "WAL B enqueue",
        "WAL B drain",
        "WAL B purge",
        "purge s"
    );
    println!("{}", "-".repeat(140));
    for r in &rows {
        println!(
            "{:<9} | {:>15.0} | {:>14.0} | {:>15.0} | {:>13.0} | {:>14.0} | {:>13.0} | {:>13.0} | {:>9.2}",
            r.backend,
            r.enqueued.0,
            r.enqueued.1,
            r.enqueued.2,
            r.drained_total,
            r.wal.0,
            r.wal.1,
            r.wal.2,
            r.purge_s
        );
    }
    println!(
        "(SQLite: the whole database file per item, WAL not measured; PostgreSQL: the items \
         table with its TOAST and indexes)"
    );
    for r in &rows {
        // Machine-readable, for bench/store.sh.
        println!(
            "ROW {} {:.0} {:.2} {:.0} {:.2} {:.2}",
            r.backend, r.insert_per_s, r.drain_s, r.changes_per_s, r.claim_ms, r.ack_ms
        );
        println!(
            "SIZE {} {:.0} {:.0} {:.0} {:.0} {:.0} {:.0} {:.0}",
            r.backend,
            r.enqueued.0,
            r.enqueued.1,
            r.enqueued.2,
            r.drained_total,
            r.wal.0,
            r.wal.1,
            r.wal.2
        );
        println!(
            "PURGE {} {:.3} {:.0}",
            r.backend,
            r.purge_s,
            a.items as f64 / r.purge_s.max(1e-9)
        );
    }
    let value = |b: &str| {
        rows.iter()
            .find(|r| r.backend == b)
            .map_or("NA".to_string(), |r| format!("{:.0}", r.changes_per_s))
    };
    println!(
        "RESULT sqlite_changes_per_s={} postgres_changes_per_s={}",
        value("sqlite"),
        value("postgres")
    );
}
