//! Fills a hub's store for the portal benchmark (`bench/portal.sh`): N tasks, each with one small
//! finished run, and one run of M items (mostly done, one in a thousand dead with an error), so the
//! task list and the items page can be timed at that size.
//!
//! Usage: `cargo run --release -p dth-store --example portal_seed -- STORE_URL TASKS ITEMS`
//! (the store of a stopped `dth serve`, e.g. `sqlite://dth-data/dth.db`). Prints the big run's
//! task id and run id as `task=… run=…`.

use dth_model::{ItemKind, RunStatus, TaskStatus, Trigger};
use dth_store::{MasterKey, NewItem, NewTask, Store};
use serde_json::json;

/// Items inserted per call.
const BATCH: usize = 5_000;

fn spec(i: usize) -> serde_json::Value {
    json!({
        "name": format!("bench task {i:04}"),
        "kind": "s3",
        "source": {"provider": "minio", "region": null, "endpoint_url": "http://127.0.0.1:9",
                   "bucket": format!("bench-src-{i}"), "prefix": "", "credentials": {"kind": "anonymous"}},
        "destination": {"provider": "minio", "region": null, "endpoint_url": "http://127.0.0.1:9",
                        "bucket": format!("bench-dst-{i}"), "prefix": "", "credentials": {"kind": "anonymous"}},
        "schedule": {"cron": "0 0 1 1 *"},
    })
}

fn items(from: usize, n: usize) -> Vec<NewItem> {
    (from..from + n)
        .map(|k| NewItem {
            kind: ItemKind::Object,
            key: format!("photos/{:03}/{k:08}.jpg", k % 1000),
            size: 16_384 + (k as u64 % 1_000_000),
            etag: Some(format!("\"{k:032x}\"")),
            part_number: None,
            payload: serde_json::Value::Null,
        })
        .collect()
}

async fn finished_run(store: &dyn Store, task: &str, n: usize) -> i64 {
    let run = store
        .create_run(task, Trigger::Schedule, None, 5)
        .await
        .expect("create run");
    for from in (0..n).step_by(BATCH) {
        store
            .insert_items(run.id, &items(from, BATCH.min(n - from)))
            .await
            .expect("insert items");
    }
    run.id
}

#[tokio::main]
async fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let [url, tasks, items_n] = args.as_slice() else {
        eprintln!("usage: portal_seed STORE_URL TASKS ITEMS");
        std::process::exit(2);
    };
    let tasks: usize = tasks.parse().expect("TASKS is a number");
    let items_n: usize = items_n.parse().expect("ITEMS is a number");
    let store = dth_store::open(url, MasterKey::generate())
        .await
        .expect("open the store");
    let mut big = None;
    for i in 0..tasks {
        let spec = spec(i);
        let task = store
            .create_task(NewTask {
                name: spec["name"].as_str().unwrap_or_default().to_string(),
                kind: "s3".into(),
                spec,
                next_run_at: None,
                run_requested_by: None,
            })
            .await
            .expect("create task");
        let n = if i == 0 { items_n } else { 10 };
        let run = finished_run(&*store, &task.id, n).await;
        store
            .set_run_status(run, RunStatus::Transferring, None)
            .await
            .expect("run status");
        if i == 0 {
            big = Some((task.id.clone(), run));
        }
    }
    // States as a finished run has them: done, one in a thousand dead with an error.
    let path = url.strip_prefix("sqlite://").unwrap_or(url);
    let pool = sqlx::SqlitePool::connect(&format!("sqlite://{path}"))
        .await
        .expect("open the SQLite file");
    sqlx::query(
        "UPDATE items SET state = CASE WHEN id % 1000 = 0 THEN 'dead' ELSE 'done' END, \
         attempts = CASE WHEN id % 1000 = 0 THEN 5 ELSE 1 END, \
         last_error = CASE WHEN id % 1000 = 0 THEN 'AccessDenied: Access Denied' END, \
         bytes_done = CASE WHEN id % 1000 = 0 THEN 0 ELSE size END",
    )
    .execute(&pool)
    .await
    .expect("set item states");
    pool.close().await;
    // Each run ends as a worker's last ack ends it (DONE, or FAILED with dead items), which keeps
    // its counters.
    for task in store.list_tasks().await.expect("list tasks") {
        for run in store.list_runs(&task.id, 1).await.expect("list runs") {
            store
                .finish_run_if_drained(run.id)
                .await
                .expect("end the run");
        }
        store
            .set_task_status(&task.id, TaskStatus::Done, None)
            .await
            .expect("task status");
    }
    let (task, run) = big.expect("at least one task");
    println!("task={task} run={run}");
}
