//! The store conformance suite: one set of cases, run identically against a SQLite file and a real
//! PostgreSQL server (`sqlite::<case>` and `postgres::<case>`).

use std::collections::HashSet;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

use dth_model::Role;
use dth_model::{ItemKind, ItemState, RunStatus, TaskStatus, Trigger};
use dth_store::{
    Ack, Error, EventItem, Item, MasterKey, NewEvent, NewItem, NewTask, NewToken, NewUser,
    OidcPending, Retry, Run, Session, Store, Task, UserChange, now_ms,
};
use dth_testkit::PgServer;
use serde_json::json;
use tempfile::TempDir;

const LEASE: Duration = Duration::from_secs(60);

/// One backend under test: its store, and how to open it again (another "process").
struct Ctx {
    store: Arc<dyn Store>,
    url: String,
    sqlite_file: Option<PathBuf>,
    _temp: Option<TempDir>,
    _pg: Option<PgServer>,
}

impl Ctx {
    async fn sqlite() -> Ctx {
        let temp = tempfile::tempdir().unwrap();
        // A directory that does not exist yet: open creates it.
        let file = temp.path().join("data").join("dth.db");
        let url = format!("sqlite://{}", file.display());
        let store = dth_store::open(&url, key()).await.unwrap();
        assert_eq!(store.backend(), "sqlite");
        Ctx {
            store,
            url,
            sqlite_file: Some(file),
            _temp: Some(temp),
            _pg: None,
        }
    }

    async fn postgres() -> Ctx {
        static N: AtomicU32 = AtomicU32::new(0);
        let pg = tokio::task::spawn_blocking(PgServer::start).await.unwrap();
        let name = format!(
            "conf_{}_{}",
            std::process::id(),
            N.fetch_add(1, Ordering::SeqCst)
        );
        let url = pg.create_database(&name);
        let store = dth_store::open(&url, key()).await.unwrap();
        assert_eq!(store.backend(), "postgres");
        Ctx {
            store,
            url,
            sqlite_file: None,
            _temp: None,
            _pg: Some(pg),
        }
    }

    /// The same database opened again, as another process would.
    async fn reopen(&self, key: MasterKey) -> Arc<dyn Store> {
        dth_store::open(&self.url, key).await.unwrap()
    }
}

/// Every case opens its stores with this key (so reopen can use it too).
fn key() -> MasterKey {
    MasterKey::from_bytes([42; 32])
}

fn obj(key: &str, size: u64) -> NewItem {
    NewItem {
        kind: ItemKind::Object,
        key: key.to_string(),
        size,
        etag: Some(format!("etag-{key}")),
        part_number: None,
        payload: json!({"k": key}),
    }
}

fn part(key: &str, n: u32, size: u64) -> NewItem {
    NewItem {
        kind: ItemKind::Part,
        key: key.to_string(),
        size,
        etag: None,
        part_number: Some(n),
        payload: json!({"part": n}),
    }
}

fn done(id: i64) -> Ack {
    Ack {
        id,
        state: ItemState::Done,
        dst_etag: Some(format!("dst-{id}")),
        verification: Some("md5".into()),
        payload: None,
    }
}

fn retry(id: i64, delay: Duration, permanent: bool) -> Retry {
    Retry {
        id,
        error: format!("failed {id}"),
        delay,
        permanent,
    }
}

async fn task(s: &dyn Store, name: &str) -> Task {
    s.create_task(NewTask {
        name: name.into(),
        kind: "s3".into(),
        spec: json!({"name": name, "n": 1}),
        next_run_at: None,
        run_requested_by: None,
    })
    .await
    .unwrap()
}

/// A task with a run in TRANSFERRING and `n` object items `k000…`.
async fn run_with(s: &dyn Store, n: usize, max_attempts: u32) -> (Task, Run) {
    let t = task(s, "t").await;
    let r = s
        .create_run(&t.id, Trigger::User, None, max_attempts)
        .await
        .unwrap();
    let items: Vec<NewItem> = (0..n)
        .map(|i| obj(&format!("k{i:03}"), 10 + i as u64))
        .collect();
    assert_eq!(s.insert_items(r.id, &items).await.unwrap(), n as u64);
    s.set_run_status(r.id, RunStatus::Transferring, None)
        .await
        .unwrap();
    (t, r)
}

fn ids(items: &[Item]) -> Vec<i64> {
    items.iter().map(|i| i.id).collect()
}

// ---------------------------------------------------------------- tasks

async fn tasks_crud(c: &Ctx) {
    let s = &*c.store;
    let a = task(s, "a").await;
    assert_eq!(a.status, TaskStatus::Starting);
    assert_eq!(a.spec, json!({"name": "a", "n": 1}));
    assert_eq!(a.id.len(), 36);
    tokio::time::sleep(Duration::from_millis(3)).await;
    let b = task(s, "b").await;
    assert_eq!(s.get_task(&a.id).await.unwrap().unwrap(), a);
    assert!(s.get_task("nope").await.unwrap().is_none());
    let names: Vec<String> = s
        .list_tasks()
        .await
        .unwrap()
        .into_iter()
        .map(|t| t.name)
        .collect();
    assert_eq!(names, ["b", "a"], "newest first");

    s.set_task_status(
        &a.id,
        TaskStatus::Error,
        Some(("E_SRC".into(), "no bucket".into())),
    )
    .await
    .unwrap();
    let got = s.get_task(&a.id).await.unwrap().unwrap();
    assert_eq!(got.status, TaskStatus::Error);
    assert_eq!(got.error_code.as_deref(), Some("E_SRC"));
    assert_eq!(got.error.as_deref(), Some("no bucket"));
    s.set_task_status(&a.id, TaskStatus::InProgress, None)
        .await
        .unwrap();
    let got = s.get_task(&a.id).await.unwrap().unwrap();
    assert_eq!(
        (got.status, got.error_code, got.error),
        (TaskStatus::InProgress, None, None)
    );
    assert!(matches!(
        s.set_task_status("nope", TaskStatus::Done, None).await,
        Err(Error::NotFound { what: "task", .. })
    ));

    // Schedules: due tasks are STARTING / IN_PROGRESS with next_run_at <= now.
    s.set_next_run(&a.id, Some(1000)).await.unwrap();
    s.set_next_run(&b.id, Some(5000)).await.unwrap();
    let due: Vec<String> = s
        .due_tasks(2000)
        .await
        .unwrap()
        .into_iter()
        .map(|t| t.id)
        .collect();
    assert_eq!(due, std::slice::from_ref(&a.id));
    assert_eq!(s.due_tasks(6000).await.unwrap().len(), 2);
    s.set_task_status(&b.id, TaskStatus::Stopped, None)
        .await
        .unwrap();
    assert_eq!(
        s.due_tasks(6000).await.unwrap().len(),
        1,
        "stopped tasks are not due"
    );
    assert!(s.advance_schedule(&a.id, 1000, Some(3000)).await.unwrap());
    assert!(
        !s.advance_schedule(&a.id, 1000, Some(4000)).await.unwrap(),
        "stale expectation"
    );
    assert_eq!(
        s.get_task(&a.id).await.unwrap().unwrap().next_run_at,
        Some(3000)
    );
    assert!(s.advance_schedule(&a.id, 3000, None).await.unwrap());
    assert!(s.due_tasks(i64::MAX).await.unwrap().is_empty());
    assert!(matches!(
        s.set_next_run("nope", None).await,
        Err(Error::NotFound { .. })
    ));
}

async fn advance_schedule_race(c: &Ctx) {
    let s = c.store.clone();
    let t = task(&*s, "sched").await;
    for round in 0..5i64 {
        let expected = 1000 + round;
        s.set_next_run(&t.id, Some(expected)).await.unwrap();
        let racers: Vec<_> = (0..2)
            .map(|i| {
                let s = s.clone();
                let id = t.id.clone();
                tokio::spawn(async move {
                    s.advance_schedule(&id, expected, Some(2000 + i))
                        .await
                        .unwrap()
                })
            })
            .collect();
        let mut wins = 0;
        for r in racers {
            wins += usize::from(r.await.unwrap());
        }
        assert_eq!(wins, 1, "round {round}: exactly one scheduler fires");
    }
}

async fn delete_task_cascades(c: &Ctx) {
    let s = &*c.store;
    let (t, r) = run_with(s, 3, 5).await;
    let other = task(s, "other").await;
    let ev = |task: &str| NewEvent {
        task_id: Some(task.to_string()),
        run_id: None,
        kind: "task.created".into(),
        actor: "test".into(),
        message: "m".into(),
        target: None,
        client: None,
    };
    s.add_event(ev(&t.id)).await.unwrap();
    s.add_event(ev(&other.id)).await.unwrap();
    let claimed = s.claim("w", 1, LEASE).await.unwrap();
    s.split_item("w", claimed[0].id, &json!({}), &[part("k000", 1, 5)])
        .await
        .unwrap();
    let item = s.list_items(r.id, None, 0, 100).await.unwrap()[0].clone();

    assert!(s.delete_task(&t.id).await.unwrap());
    assert!(s.get_task(&t.id).await.unwrap().is_none());
    assert!(s.get_run(r.id).await.unwrap().is_none());
    assert!(s.get_item(item.id).await.unwrap().is_none());
    assert!(s.list_items(r.id, None, 0, 100).await.unwrap().is_empty());
    assert!(s.list_events(Some(&t.id), 10).await.unwrap().is_empty());
    assert_eq!(
        s.list_events(None, 10).await.unwrap().len(),
        1,
        "other task's event stays"
    );
    assert!(s.get_task(&other.id).await.unwrap().is_some());
    assert!(!s.delete_task(&t.id).await.unwrap());
}

// ---------------------------------------------------------------- runs

async fn runs_lifecycle(c: &Ctx) {
    let s = &*c.store;
    let t = task(s, "t").await;
    let r1 = s
        .create_run(&t.id, Trigger::Schedule, None, 3)
        .await
        .unwrap();
    assert_eq!(
        (r1.status, r1.trigger, r1.max_attempts),
        (RunStatus::Finding, Trigger::Schedule, 3)
    );
    assert!(r1.found_at.is_none() && r1.ended_at.is_none());
    assert_eq!(s.get_run(r1.id).await.unwrap().unwrap(), r1);
    assert!(s.get_run(r1.id + 1000).await.unwrap().is_none());
    assert!(matches!(
        s.create_run("nope", Trigger::User, None, 3).await,
        Err(Error::NotFound { what: "task", .. })
    ));

    s.add_up_to_date(r1.id, 3, 300).await.unwrap();
    s.add_up_to_date(r1.id, 1, 1).await.unwrap();
    let got = s.get_run(r1.id).await.unwrap().unwrap();
    assert_eq!((got.up_to_date, got.up_to_date_bytes), (4, 301));
    s.reset_up_to_date(r1.id).await.unwrap();
    let got = s.get_run(r1.id).await.unwrap().unwrap();
    assert_eq!((got.up_to_date, got.up_to_date_bytes), (0, 0));

    s.set_run_status(r1.id, RunStatus::Transferring, None)
        .await
        .unwrap();
    let got = s.get_run(r1.id).await.unwrap().unwrap();
    assert_eq!(got.status, RunStatus::Transferring);
    assert!(got.found_at.is_some() && got.ended_at.is_none());
    let r2 = s.create_run(&t.id, Trigger::User, None, 3).await.unwrap();
    let active: Vec<i64> = s
        .active_runs()
        .await
        .unwrap()
        .iter()
        .map(|r| r.id)
        .collect();
    assert_eq!(active, [r1.id, r2.id], "oldest first");
    s.set_run_status(
        r1.id,
        RunStatus::Failed,
        Some("finder: access denied".into()),
    )
    .await
    .unwrap();
    let got = s.get_run(r1.id).await.unwrap().unwrap();
    assert_eq!(got.error.as_deref(), Some("finder: access denied"));
    assert!(got.ended_at.is_some());
    let listed: Vec<i64> = s
        .list_runs(&t.id, 10)
        .await
        .unwrap()
        .iter()
        .map(|r| r.id)
        .collect();
    assert_eq!(listed, [r2.id, r1.id], "newest first");
    assert_eq!(s.list_runs(&t.id, 1).await.unwrap().len(), 1);
    assert_eq!(s.active_runs().await.unwrap().len(), 1);
    assert!(matches!(
        s.set_run_status(r1.id + 1000, RunStatus::Done, None).await,
        Err(Error::NotFound { what: "run", .. })
    ));
}

async fn create_run_conflict_while_finding(c: &Ctx) {
    let s = c.store.clone();
    let t = task(&*s, "t").await;
    let r = s
        .create_run(&t.id, Trigger::Schedule, None, 5)
        .await
        .unwrap();
    s.request_run(&t.id, "ann@example.com").await.unwrap();
    match s.create_run(&t.id, Trigger::User, None, 5).await {
        Err(Error::Conflict(m)) => assert!(m.contains("finding"), "{m}"),
        other => panic!("expected a conflict, got {other:?}"),
    }
    // The refused start is no longer pending.
    let t = s.get_task(&t.id).await.unwrap().unwrap();
    assert_eq!(t.run_requested_by, None);
    s.set_run_status(r.id, RunStatus::Transferring, None)
        .await
        .unwrap();
    s.set_run_status(r.id, RunStatus::Done, None).await.unwrap();

    // Racing starters: exactly one run is created.
    let racers: Vec<_> = (0..4)
        .map(|_| {
            let s = s.clone();
            let id = t.id.clone();
            tokio::spawn(async move { s.create_run(&id, Trigger::Schedule, None, 5).await })
        })
        .collect();
    let mut ok = 0;
    for r in racers {
        match r.await.unwrap() {
            Ok(_) => ok += 1,
            Err(Error::Conflict(_)) => {}
            Err(e) => panic!("unexpected error {e}"),
        }
    }
    assert_eq!(ok, 1);
    let finding = s.list_runs(&t.id, 10).await.unwrap();
    assert_eq!(
        finding
            .iter()
            .filter(|r| r.status == RunStatus::Finding)
            .count(),
        1
    );
}

// ---------------------------------------------------------------- items

async fn insert_and_list_items(c: &Ctx) {
    let s = &*c.store;
    let (t, r) = run_with(s, 0, 5).await;
    let mut items: Vec<NewItem> = (0..2500).map(|i| obj(&format!("key/{i:05}"), i)).collect();
    items.push(NewItem {
        kind: ItemKind::Delete,
        ..obj("gone", 0)
    });
    assert_eq!(s.insert_items(r.id, &items).await.unwrap(), 2501);
    // Again, plus one new one: only the new one is added.
    items.push(obj("new", 1));
    assert_eq!(s.insert_items(r.id, &items).await.unwrap(), 1);
    assert_eq!(s.insert_items(r.id, &[]).await.unwrap(), 0);
    assert!(matches!(
        s.insert_items(r.id + 99, &items[..1]).await,
        Err(Error::NotFound { .. })
    ));

    let keys: Vec<String> = ["key/00001", "nope", "gone", "new", "key/02499"]
        .iter()
        .map(|k| k.to_string())
        .collect();
    let found = s.existing_keys(r.id, &keys).await.unwrap();
    let want: HashSet<String> = ["key/00001", "gone", "new", "key/02499"]
        .iter()
        .map(|k| k.to_string())
        .collect();
    assert_eq!(found, want);
    let many: Vec<String> = (0..2500).map(|i| format!("key/{i:05}")).collect();
    assert_eq!(s.existing_keys(r.id, &many).await.unwrap().len(), 2500);

    // Pagination by id, in order, each item as queued.
    let mut all = Vec::new();
    let mut after = 0;
    loop {
        let page = s.list_items(r.id, None, after, 1000).await.unwrap();
        if page.is_empty() {
            break;
        }
        after = page.last().unwrap().id;
        all.extend(page);
    }
    assert_eq!(all.len(), 2502);
    assert!(all.windows(2).all(|w| w[0].id < w[1].id));
    let first = &all[0];
    assert_eq!(
        (first.run_id, first.task_id.as_str()),
        (r.id, t.id.as_str())
    );
    assert_eq!(
        (first.kind, first.key.as_str(), first.size),
        (ItemKind::Object, "key/00000", 0)
    );
    assert_eq!(first.etag.as_deref(), Some("etag-key/00000"));
    assert_eq!(
        (first.state, first.attempts, first.part_number),
        (ItemState::Queued, 0, None)
    );
    assert_eq!(first.payload, json!({"k": "key/00000"}));
    assert!(first.lease_owner.is_none() && first.parent_id.is_none());
    assert_eq!(s.get_item(first.id).await.unwrap().unwrap(), *first);
    assert!(s.get_item(-1).await.unwrap().is_none());
    let deletes: Vec<&Item> = all.iter().filter(|i| i.kind == ItemKind::Delete).collect();
    assert_eq!(deletes.len(), 1);

    let claimed = s.claim("w", 3, LEASE).await.unwrap();
    let leased = s
        .list_items(r.id, Some(ItemState::Leased), 0, 100)
        .await
        .unwrap();
    assert_eq!(ids(&leased), ids(&claimed));
    assert_eq!(
        s.list_items(r.id, Some(ItemState::Queued), 0, 10_000)
            .await
            .unwrap()
            .len(),
        2499
    );
}

async fn claim_order_and_lease(c: &Ctx) {
    let s = &*c.store;
    let (_t, _r) = run_with(s, 5, 5).await;
    // A run that is not active: its items are never claimed.
    let t2 = task(s, "stopped").await;
    let r2 = s.create_run(&t2.id, Trigger::User, None, 5).await.unwrap();
    s.insert_items(r2.id, &[obj("x", 1)]).await.unwrap();
    s.set_run_status(r2.id, RunStatus::Failed, None)
        .await
        .unwrap();

    let before = now_ms();
    let first = s.claim("w1", 2, LEASE).await.unwrap();
    assert_eq!(first.len(), 2);
    assert_eq!(first[0].key, "k000");
    assert_eq!(first[1].key, "k001");
    for i in &first {
        assert_eq!(i.state, ItemState::Leased);
        assert_eq!(i.attempts, 1);
        assert_eq!(i.lease_owner.as_deref(), Some("w1"));
        let exp = i.lease_expires_at.unwrap();
        assert!(exp >= before + 59_000 && exp <= now_ms() + 60_000, "{exp}");
    }
    // Giant object k002 split into parts: parts come before objects, by id.
    let g = s.claim("w1", 1, LEASE).await.unwrap();
    assert_eq!(g[0].key, "k002");
    assert!(
        s.split_item(
            "w1",
            g[0].id,
            &json!({"upload": "u"}),
            &[part("k002", 1, 5), part("k002", 2, 5)]
        )
        .await
        .unwrap()
    );
    let next = s.claim("w2", 3, LEASE).await.unwrap();
    let got: Vec<(ItemKind, &str, Option<u32>)> = next
        .iter()
        .map(|i| (i.kind, i.key.as_str(), i.part_number))
        .collect();
    assert_eq!(
        got,
        [
            (ItemKind::Part, "k002", Some(1)),
            (ItemKind::Part, "k002", Some(2)),
            (ItemKind::Object, "k003", None)
        ]
    );
    let rest = s.claim("w2", 10, LEASE).await.unwrap();
    assert_eq!(
        rest.iter().map(|i| i.key.as_str()).collect::<Vec<_>>(),
        ["k004"]
    );
    assert!(
        s.claim("w3", 10, LEASE).await.unwrap().is_empty(),
        "nothing left, x is not active"
    );
    assert!(s.claim("w3", 0, LEASE).await.unwrap().is_empty());
    // claim_item only takes claimable items.
    assert!(
        s.claim_item("w3", first[0].id, LEASE)
            .await
            .unwrap()
            .is_none()
    );
}

async fn concurrent_claimers_never_share(c: &Ctx) {
    let s = c.store.clone();
    let (_t, r) = run_with(&*s, 600, 5).await;
    let workers: Vec<_> = (0..8)
        .map(|w| {
            let s = s.clone();
            tokio::spawn(async move {
                let name = format!("w{w}");
                let mut got = Vec::new();
                loop {
                    let batch = s.claim(&name, 7, LEASE).await.unwrap();
                    if batch.is_empty() {
                        break;
                    }
                    for i in &batch {
                        assert_eq!(i.lease_owner.as_deref(), Some(name.as_str()));
                        assert_eq!(i.attempts, 1, "claimed once only");
                    }
                    // Ack half of them as we go, so claims and acks interleave.
                    let acks: Vec<Ack> = batch.iter().step_by(2).map(|i| done(i.id)).collect();
                    let acked = s.ack(&name, &acks).await.unwrap();
                    assert!(acked.iter().all(|a| a.accepted));
                    got.extend(batch.into_iter().map(|i| i.id));
                }
                got
            })
        })
        .collect();
    let mut all = Vec::new();
    for w in workers {
        all.extend(w.await.unwrap());
    }
    let unique: HashSet<i64> = all.iter().copied().collect();
    assert_eq!(all.len(), 600, "every item claimed exactly once");
    assert_eq!(unique.len(), 600);
    let counters = s.run_counters(r.id).await.unwrap();
    assert_eq!(counters.pending + counters.copied, 600);
}

async fn lease_expiry_and_lost_lease(c: &Ctx) {
    let s = &*c.store;
    let (_t, r) = run_with(s, 1, 5).await;
    let short = Duration::from_millis(150);
    let a = s.claim("old", 1, short).await.unwrap();
    assert_eq!(a.len(), 1);
    assert!(
        s.claim("new", 1, LEASE).await.unwrap().is_empty(),
        "lease still valid"
    );
    // Heartbeat keeps it.
    assert_eq!(
        s.heartbeat("old", &[a[0].id], Duration::from_millis(400))
            .await
            .unwrap(),
        [a[0].id]
    );
    tokio::time::sleep(Duration::from_millis(250)).await;
    assert!(
        s.claim("new", 1, LEASE).await.unwrap().is_empty(),
        "heartbeat extended it"
    );
    assert!(
        s.heartbeat("other", &[a[0].id], LEASE)
            .await
            .unwrap()
            .is_empty(),
        "not its lease"
    );
    tokio::time::sleep(Duration::from_millis(250)).await;

    let b = s.claim("new", 5, LEASE).await.unwrap();
    assert_eq!(ids(&b), ids(&a), "expired lease reclaimed");
    assert_eq!(b[0].attempts, 2);
    assert_eq!(b[0].lease_owner.as_deref(), Some("new"));
    // The old holder lost it: nothing it does changes the item.
    assert!(
        s.heartbeat("old", &[a[0].id], LEASE)
            .await
            .unwrap()
            .is_empty()
    );
    let acked = s.ack("old", &[done(a[0].id)]).await.unwrap();
    assert!(!acked[0].accepted);
    let retried = s
        .retry_later("old", &[retry(a[0].id, Duration::ZERO, true)])
        .await
        .unwrap();
    assert!(!retried[0].accepted && !retried[0].dead);
    assert!(
        !s.set_payload("old", a[0].id, &json!({"x": 1}))
            .await
            .unwrap()
    );
    assert!(
        !s.split_item("old", a[0].id, &json!({}), &[part("k000", 1, 1)])
            .await
            .unwrap()
    );
    assert_eq!(s.release("old", &[a[0].id]).await.unwrap(), 0);
    let item = s.get_item(a[0].id).await.unwrap().unwrap();
    assert_eq!(
        (item.state, item.lease_owner.as_deref()),
        (ItemState::Leased, Some("new"))
    );
    assert!(s.parts(a[0].id).await.unwrap().is_empty());
    // The new holder's ack is taken.
    let acked = s.ack("new", &[done(a[0].id)]).await.unwrap();
    assert!(acked[0].accepted);
    let item = s.get_item(a[0].id).await.unwrap().unwrap();
    assert_eq!(item.state, ItemState::Done);
    assert_eq!(item.bytes_done, item.size);
    assert_eq!(
        item.dst_etag.as_deref(),
        Some(format!("dst-{}", item.id).as_str())
    );
    assert_eq!(item.verification.as_deref(), Some("md5"));
    assert!(item.lease_owner.is_none() && item.lease_expires_at.is_none());
    assert_eq!(s.run_counters(r.id).await.unwrap().copied, 1);
}

async fn retry_later_backoff_then_dead(c: &Ctx) {
    let s = &*c.store;
    let (_t, r) = run_with(s, 1, 2).await;
    let a = s.claim("w", 1, LEASE).await.unwrap();
    let id = a[0].id;
    let out = s
        .retry_later("w", &[retry(id, Duration::from_millis(400), false)])
        .await
        .unwrap();
    assert_eq!((out[0].accepted, out[0].dead), (true, false));
    let item = s.get_item(id).await.unwrap().unwrap();
    assert_eq!(item.state, ItemState::Queued);
    assert_eq!(
        item.last_error.as_deref(),
        Some(format!("failed {id}").as_str())
    );
    assert!(item.not_before >= now_ms() + 200);
    assert!(item.lease_owner.is_none());
    let counters = s.run_counters(r.id).await.unwrap();
    assert_eq!((counters.pending, counters.retrying), (1, 1));
    assert!(
        s.claim("w", 1, LEASE).await.unwrap().is_empty(),
        "not before its delay"
    );
    assert!(s.claim_item("w", id, LEASE).await.unwrap().is_none());
    tokio::time::sleep(Duration::from_millis(450)).await;
    let b = s.claim("w", 1, LEASE).await.unwrap();
    assert_eq!(b[0].attempts, 2);
    // Second failure with max_attempts 2: dead.
    let out = s
        .retry_later("w", &[retry(id, Duration::from_millis(1), false)])
        .await
        .unwrap();
    assert_eq!((out[0].accepted, out[0].dead), (true, true));
    let item = s.get_item(id).await.unwrap().unwrap();
    assert_eq!(item.state, ItemState::Dead);
    tokio::time::sleep(Duration::from_millis(5)).await;
    assert!(
        s.claim("w", 1, LEASE).await.unwrap().is_empty(),
        "dead items are never claimed"
    );
    let counters = s.run_counters(r.id).await.unwrap();
    assert_eq!(
        (counters.dead, counters.pending, counters.retrying),
        (1, 0, 0)
    );
    assert_eq!(
        s.finish_run_if_drained(r.id).await.unwrap(),
        Some(RunStatus::Failed)
    );
}

async fn permanent_failure_is_dead_at_once(c: &Ctx) {
    let s = &*c.store;
    let (_t, _r) = run_with(s, 2, 5).await;
    let a = s.claim("w", 2, LEASE).await.unwrap();
    // One batch, in any order: one permanent, one transient.
    let out = s
        .retry_later(
            "w",
            &[
                retry(a[1].id, Duration::ZERO, false),
                retry(a[0].id, Duration::ZERO, true),
            ],
        )
        .await
        .unwrap();
    assert_eq!(
        (out[0].id, out[0].accepted, out[0].dead),
        (a[1].id, true, false)
    );
    assert_eq!(
        (out[1].id, out[1].accepted, out[1].dead),
        (a[0].id, true, true)
    );
    assert_eq!(
        s.get_item(a[0].id).await.unwrap().unwrap().state,
        ItemState::Dead
    );
    assert_eq!(
        s.get_item(a[1].id).await.unwrap().unwrap().state,
        ItemState::Queued
    );
}

async fn release_does_not_count_an_attempt(c: &Ctx) {
    let s = &*c.store;
    let (_t, _r) = run_with(s, 3, 5).await;
    let a = s.claim("w", 3, LEASE).await.unwrap();
    assert_eq!(s.release("w", &ids(&a[..2])).await.unwrap(), 2);
    assert_eq!(s.release("other", &[a[2].id]).await.unwrap(), 0);
    for i in &a[..2] {
        let item = s.get_item(i.id).await.unwrap().unwrap();
        assert_eq!((item.state, item.attempts), (ItemState::Queued, 0));
        assert!(item.lease_owner.is_none() && item.last_error.is_none());
    }
    let b = s.claim("w2", 5, LEASE).await.unwrap();
    assert_eq!(
        ids(&b),
        ids(&a[..2]),
        "released items are claimable at once"
    );
    assert!(b.iter().all(|i| i.attempts == 1));
}

async fn payload_progress_and_ack_payload(c: &Ctx) {
    let s = &*c.store;
    let (_t, r) = run_with(s, 1, 5).await;
    let a = s.claim("w", 1, LEASE).await.unwrap();
    let id = a[0].id;
    assert!(
        s.set_payload("w", id, &json!({"upload_id": "abc"}))
            .await
            .unwrap()
    );
    assert_eq!(
        s.get_item(id).await.unwrap().unwrap().payload,
        json!({"upload_id": "abc"})
    );
    s.add_progress(id, 4).await.unwrap();
    s.add_progress(id, 3).await.unwrap();
    assert_eq!(s.get_item(id).await.unwrap().unwrap().bytes_done, 7);
    assert_eq!(s.run_counters(r.id).await.unwrap().bytes_in_flight, 7);
    let ack = Ack {
        payload: Some(json!({"md5": "x"})),
        state: ItemState::Skipped,
        verification: Some("archived".into()),
        ..done(id)
    };
    assert!(s.ack("w", &[ack]).await.unwrap()[0].accepted);
    let item = s.get_item(id).await.unwrap().unwrap();
    assert_eq!(item.state, ItemState::Skipped);
    assert_eq!(item.payload, json!({"md5": "x"}));
    assert_eq!(item.verification.as_deref(), Some("archived"));
    let counters = s.run_counters(r.id).await.unwrap();
    assert_eq!(
        (counters.skipped, counters.copied, counters.bytes_in_flight),
        (1, 0, 0)
    );
    // Only done or skipped are acks.
    let bad = Ack {
        state: ItemState::Dead,
        ..done(id)
    };
    assert!(matches!(s.ack("w", &[bad]).await, Err(Error::Conflict(_))));
}

async fn ack_batches(c: &Ctx) {
    let s = &*c.store;
    let (_t, r) = run_with(s, 4, 5).await;
    let a = s.claim("w", 4, LEASE).await.unwrap();
    // Out of order, one repeated, one not held: results follow the input order.
    let mut foreign = done(a[3].id);
    foreign.id = -5;
    let out = s
        .ack("w", &[done(a[2].id), done(a[0].id), done(a[2].id), foreign])
        .await
        .unwrap();
    let got: Vec<(i64, bool)> = out.iter().map(|x| (x.id, x.accepted)).collect();
    assert_eq!(
        got,
        [
            (a[2].id, true),
            (a[0].id, true),
            (a[2].id, false),
            (-5, false)
        ]
    );
    assert!(s.ack("w", &[]).await.unwrap().is_empty());
    let counters = s.run_counters(r.id).await.unwrap();
    assert_eq!((counters.copied, counters.pending), (2, 2));
    assert_eq!(
        s.get_item(a[1].id).await.unwrap().unwrap().state,
        ItemState::Leased
    );
}

async fn split_parts_and_parent_ready(c: &Ctx) {
    let s = &*c.store;
    let (_t, r) = run_with(s, 2, 5).await;
    let a = s.claim("w", 1, LEASE).await.unwrap();
    let parent = a[0].id;
    let parts: Vec<NewItem> = (1..=3).map(|n| part("k000", n, 100)).collect();
    assert!(
        s.split_item("w", parent, &json!({"upload_id": "U"}), &parts)
            .await
            .unwrap()
    );
    let p = s.get_item(parent).await.unwrap().unwrap();
    assert_eq!(
        (p.state, p.payload.clone()),
        (ItemState::Waiting, json!({"upload_id": "U"}))
    );
    assert!(p.lease_owner.is_none());
    let stored = s.parts(parent).await.unwrap();
    assert_eq!(
        stored.iter().map(|i| i.part_number).collect::<Vec<_>>(),
        [Some(1), Some(2), Some(3)]
    );
    assert!(
        stored
            .iter()
            .all(|i| i.kind == ItemKind::Part && i.parent_id == Some(parent))
    );

    let got = s.claim("w1", 2, LEASE).await.unwrap();
    assert_eq!(
        got.iter().map(|i| i.part_number).collect::<Vec<_>>(),
        [Some(1), Some(2)]
    );
    let last = s.claim("w2", 1, LEASE).await.unwrap();
    assert_eq!(last[0].part_number, Some(3));
    s.add_progress(got[0].id, 100).await.unwrap();
    let acked = s.ack("w1", &[done(got[0].id)]).await.unwrap();
    assert_eq!(acked[0].parent_ready, None);
    let counters = s.run_counters(r.id).await.unwrap();
    assert_eq!(counters.found, 2, "parts are not counted");
    assert_eq!(counters.pending, 2);
    assert_eq!(
        counters.bytes_in_flight, 100,
        "a done part of an unfinished object is in flight"
    );
    let acked = s.ack("w1", &[done(got[1].id)]).await.unwrap();
    assert_eq!(acked[0].parent_ready, None);
    let acked = s.ack("w2", &[done(last[0].id)]).await.unwrap();
    assert_eq!(
        acked[0].parent_ready,
        Some(parent),
        "the last part readies its object"
    );
    assert_eq!(
        s.get_item(parent).await.unwrap().unwrap().state,
        ItemState::Queued
    );
    let again = s.claim_item("w2", parent, LEASE).await.unwrap().unwrap();
    assert_eq!(
        (again.state, again.lease_owner.as_deref()),
        (ItemState::Leased, Some("w2"))
    );
    assert!(
        s.claim_item("w3", parent, LEASE).await.unwrap().is_none(),
        "held"
    );
    assert!(s.ack("w2", &[done(parent)]).await.unwrap()[0].accepted);
    let counters = s.run_counters(r.id).await.unwrap();
    assert_eq!(
        (
            counters.copied,
            counters.copied_bytes,
            counters.bytes_in_flight
        ),
        (1, 10, 0)
    );

    // delete_parts clears parts and payload.
    let b = s.claim("w", 1, LEASE).await.unwrap();
    assert!(
        s.split_item("w", b[0].id, &json!({"upload_id": "V"}), &parts)
            .await
            .unwrap()
    );
    s.delete_parts(b[0].id).await.unwrap();
    assert!(s.parts(b[0].id).await.unwrap().is_empty());
    assert_eq!(
        s.get_item(b[0].id).await.unwrap().unwrap().payload,
        serde_json::Value::Null
    );
}

async fn last_parts_acked_concurrently(c: &Ctx) {
    let s = c.store.clone();
    let (_t, _r) = run_with(&*s, 6, 5).await;
    // Six giant objects of two parts; each object's two parts are acked at once by two workers.
    let objects = s.claim("splitter", 6, LEASE).await.unwrap();
    for o in &objects {
        let parts = [part(&o.key, 1, 1), part(&o.key, 2, 1)];
        assert!(
            s.split_item("splitter", o.id, &json!({}), &parts)
                .await
                .unwrap()
        );
    }
    // Part 1 of every object to worker a, part 2 to worker b.
    let mut held = vec![Vec::new(), Vec::new()];
    for o in &objects {
        for (n, p) in s.parts(o.id).await.unwrap().into_iter().enumerate() {
            let w = ["a", "b"][n];
            held[n].push(s.claim_item(w, p.id, LEASE).await.unwrap().unwrap());
        }
    }
    let tasks: Vec<_> = held
        .into_iter()
        .zip(["a", "b"])
        .map(|(items, w)| {
            let s = s.clone();
            tokio::spawn(async move {
                let mut ready = Vec::new();
                for i in items {
                    let out = s.ack(w, &[done(i.id)]).await.unwrap();
                    assert!(out[0].accepted);
                    ready.extend(out[0].parent_ready);
                }
                ready
            })
        })
        .collect();
    let mut ready = Vec::new();
    for t in tasks {
        ready.extend(t.await.unwrap());
    }
    ready.sort_unstable();
    assert_eq!(ready, ids(&objects), "each object readied exactly once");
}

async fn kill_parent_cancels_parts(c: &Ctx) {
    let s = &*c.store;
    let (_t, r) = run_with(s, 1, 5).await;
    let a = s.claim("w", 1, LEASE).await.unwrap();
    let parent = a[0].id;
    let parts: Vec<NewItem> = (1..=3).map(|n| part("k000", n, 100)).collect();
    s.split_item("w", parent, &json!({}), &parts).await.unwrap();
    let p = s.claim("w", 2, LEASE).await.unwrap();
    s.ack("w", &[done(p[0].id)]).await.unwrap();
    let dead = s
        .retry_later("w", &[retry(p[1].id, Duration::ZERO, true)])
        .await
        .unwrap();
    assert!(dead[0].dead);
    s.kill_parent(parent, "part 2 failed: 403").await.unwrap();
    let item = s.get_item(parent).await.unwrap().unwrap();
    assert_eq!(item.state, ItemState::Dead);
    assert_eq!(item.last_error.as_deref(), Some("part 2 failed: 403"));
    let states: Vec<ItemState> = s
        .parts(parent)
        .await
        .unwrap()
        .iter()
        .map(|i| i.state)
        .collect();
    assert_eq!(
        states,
        [ItemState::Done, ItemState::Dead, ItemState::Cancelled]
    );
    assert!(s.claim("w", 5, LEASE).await.unwrap().is_empty());
    let counters = s.run_counters(r.id).await.unwrap();
    assert_eq!(
        (counters.dead, counters.pending, counters.cancelled),
        (1, 0, 0)
    );
    assert_eq!(
        s.finish_run_if_drained(r.id).await.unwrap(),
        Some(RunStatus::Failed)
    );
}

async fn counters_exact(c: &Ctx) {
    let s = &*c.store;
    let t = task(s, "t").await;
    let r = s.create_run(&t.id, Trigger::User, None, 5).await.unwrap();
    let mut items: Vec<NewItem> = (0..6).map(|i| obj(&format!("o{i}"), 100)).collect();
    items.push(NewItem {
        kind: ItemKind::Delete,
        ..obj("d0", 0)
    });
    s.insert_items(r.id, &items).await.unwrap();
    s.add_up_to_date(r.id, 4, 40).await.unwrap();
    s.set_run_status(r.id, RunStatus::Transferring, None)
        .await
        .unwrap();
    let all = s.claim("w", 10, LEASE).await.unwrap();
    let by_key = |k: &str| all.iter().find(|i| i.key == k).unwrap().id;
    s.ack(
        "w",
        &[done(by_key("o0")), done(by_key("o1")), done(by_key("d0"))],
    )
    .await
    .unwrap();
    let skip = Ack {
        state: ItemState::Skipped,
        ..done(by_key("o2"))
    };
    s.ack("w", &[skip]).await.unwrap();
    s.retry_later("w", &[retry(by_key("o3"), Duration::ZERO, true)])
        .await
        .unwrap();
    s.retry_later("w", &[retry(by_key("o4"), Duration::from_secs(60), false)])
        .await
        .unwrap();
    // Acking twice changes nothing: copied stays ≤ found.
    let twice = s.ack("w", &[done(by_key("o0"))]).await.unwrap();
    assert!(!twice[0].accepted);
    let counters = s.run_counters(r.id).await.unwrap();
    assert_eq!(
        counters,
        dth_model::RunCounters {
            found: 6 + 4,
            found_bytes: 600 + 40,
            skipped: 4 + 1,
            copied: 2,
            copied_bytes: 200,
            deleted: 1,
            pending: 2,
            retrying: 1,
            dead: 1,
            cancelled: 0,
            bytes_in_flight: 0,
        }
    );
    assert!(counters.copied <= counters.found);
    assert_eq!(
        s.finish_run_if_drained(r.id).await.unwrap(),
        None,
        "o4 and o5 are pending"
    );
    let stopped = s.stop_run(r.id).await.unwrap();
    assert_eq!(
        stopped, 1,
        "o4 (queued) cancelled; o5 stays with its worker"
    );
    let counters = s.run_counters(r.id).await.unwrap();
    assert_eq!(
        (counters.cancelled, counters.pending, counters.retrying),
        (1, 1, 0)
    );
    assert!(matches!(
        s.run_counters(r.id + 99).await,
        Err(Error::NotFound { .. })
    ));
}

async fn stop_run_cancels(c: &Ctx) {
    let s = &*c.store;
    let (_t, r) = run_with(s, 4, 5).await;
    let held = s.claim("w", 1, LEASE).await.unwrap();
    let g = s.claim("w", 1, LEASE).await.unwrap();
    s.split_item("w", g[0].id, &json!({}), &[part(&g[0].key, 1, 1)])
        .await
        .unwrap();
    // Queued: 2 objects + 1 part; waiting: 1 object.
    assert_eq!(s.stop_run(r.id).await.unwrap(), 4);
    let run = s.get_run(r.id).await.unwrap().unwrap();
    assert_eq!(run.status, RunStatus::Stopped);
    assert!(run.ended_at.is_some());
    assert!(s.claim("w2", 10, LEASE).await.unwrap().is_empty());
    // The leased item's worker can still ack.
    assert!(s.ack("w", &[done(held[0].id)]).await.unwrap()[0].accepted);
    let counters = s.run_counters(r.id).await.unwrap();
    assert_eq!(
        (counters.copied, counters.cancelled, counters.pending),
        (1, 3, 0)
    );
    assert_eq!(
        s.finish_run_if_drained(r.id).await.unwrap(),
        None,
        "stopped runs stay stopped"
    );
    assert!(matches!(
        s.stop_run(r.id + 99).await,
        Err(Error::NotFound { .. })
    ));
}

async fn finish_run_if_drained(c: &Ctx) {
    let s = &*c.store;
    let t = task(s, "t").await;
    let r = s.create_run(&t.id, Trigger::User, None, 5).await.unwrap();
    s.insert_items(r.id, &[obj("a", 1)]).await.unwrap();
    assert_eq!(
        s.finish_run_if_drained(r.id).await.unwrap(),
        None,
        "still finding"
    );
    s.set_run_status(r.id, RunStatus::Transferring, None)
        .await
        .unwrap();
    assert_eq!(
        s.finish_run_if_drained(r.id).await.unwrap(),
        None,
        "an item is queued"
    );
    let a = s.claim("w", 1, LEASE).await.unwrap();
    assert_eq!(
        s.finish_run_if_drained(r.id).await.unwrap(),
        None,
        "an item is leased"
    );
    s.ack("w", &a.iter().map(|i| done(i.id)).collect::<Vec<_>>())
        .await
        .unwrap();
    assert_eq!(
        s.finish_run_if_drained(r.id).await.unwrap(),
        Some(RunStatus::Done)
    );
    let run = s.get_run(r.id).await.unwrap().unwrap();
    assert_eq!(run.status, RunStatus::Done);
    assert!(run.ended_at.is_some());
    assert_eq!(
        s.finish_run_if_drained(r.id).await.unwrap(),
        None,
        "only once"
    );
}

async fn retry_dead_items(c: &Ctx) {
    let s = &*c.store;
    let (_t, r) = run_with(s, 3, 1).await;
    let a = s.claim("w", 3, LEASE).await.unwrap();
    let fails: Vec<Retry> = a
        .iter()
        .map(|i| retry(i.id, Duration::ZERO, false))
        .collect();
    assert!(
        s.retry_later("w", &fails)
            .await
            .unwrap()
            .iter()
            .all(|r| r.dead),
        "max_attempts 1"
    );
    assert_eq!(
        s.finish_run_if_drained(r.id).await.unwrap(),
        Some(RunStatus::Failed)
    );
    // The counters an ended run keeps, then the ones of the retry.
    let ended = s.run_counters(r.id).await.unwrap();
    assert_eq!((ended.dead, ended.pending), (3, 0));
    assert_eq!(s.run_counters(r.id).await.unwrap(), ended);

    assert_eq!(s.retry_dead(r.id, Some(&[a[0].id])).await.unwrap(), 1);
    let retried = s.run_counters(r.id).await.unwrap();
    assert_eq!((retried.dead, retried.pending), (2, 1));
    let run = s.get_run(r.id).await.unwrap().unwrap();
    assert_eq!((run.status, run.ended_at), (RunStatus::Transferring, None));
    let item = s.get_item(a[0].id).await.unwrap().unwrap();
    assert_eq!((item.state, item.attempts), (ItemState::Queued, 0));
    assert_eq!(s.retry_dead(r.id, None).await.unwrap(), 2);
    assert_eq!(s.retry_dead(r.id, None).await.unwrap(), 0);
    let again = s.claim("w", 5, LEASE).await.unwrap();
    assert_eq!(again.len(), 3);
    assert!(again.iter().all(|i| i.attempts == 1));
    s.ack("w", &again.iter().map(|i| done(i.id)).collect::<Vec<_>>())
        .await
        .unwrap();
    assert_eq!(
        s.finish_run_if_drained(r.id).await.unwrap(),
        Some(RunStatus::Done)
    );
    let done = s.run_counters(r.id).await.unwrap();
    assert_eq!((done.copied, done.dead, done.pending), (3, 0, 0));
    assert!(matches!(
        s.retry_dead(r.id + 99, None).await,
        Err(Error::NotFound { .. })
    ));
}

// ---------------------------------------------------------------- secrets, tokens, events

async fn secrets(c: &Ctx) {
    let s = &*c.store;
    const VALUE: &[u8] = b"AKIA-very-secret-value-0123456789";
    s.put_secret("minio", VALUE).await.unwrap();
    s.put_secret("other", b"x").await.unwrap();
    assert_eq!(s.secret("minio").await.unwrap().unwrap().0, VALUE);
    assert_eq!(
        format!("{:?}", s.secret("minio").await.unwrap().unwrap()),
        "[REDACTED]"
    );
    assert!(s.secret("nope").await.unwrap().is_none());
    let first = s.list_secrets().await.unwrap();
    assert_eq!(
        first.iter().map(|i| i.name.as_str()).collect::<Vec<_>>(),
        ["minio", "other"]
    );
    tokio::time::sleep(Duration::from_millis(3)).await;
    s.put_secret("minio", b"replaced").await.unwrap();
    assert_eq!(s.secret("minio").await.unwrap().unwrap().0, b"replaced");
    let again = s.list_secrets().await.unwrap();
    assert_eq!(again[0].created_at, first[0].created_at);
    assert!(again[0].updated_at > first[0].updated_at);
    s.put_secret("minio", VALUE).await.unwrap();

    // Another process with the wrong master key cannot open it, and says why.
    let wrong = c.reopen(MasterKey::generate()).await;
    match wrong.secret("minio").await {
        Err(Error::Crypto(m)) => {
            assert!(
                m.contains("cannot open secret minio: wrong master key?"),
                "{m}"
            );
        }
        other => panic!("expected a crypto error, got {other:?}"),
    }
    let right = c.reopen(key()).await;
    assert_eq!(right.secret("minio").await.unwrap().unwrap().0, VALUE);

    // The value is nowhere in clear: not in the stored column, not in the SQLite files.
    let raw = raw_sealed(c, "minio").await;
    assert!(raw.len() > VALUE.len());
    assert!(!contains(&raw, VALUE));
    if let Some(file) = &c.sqlite_file {
        for suffix in ["", "-wal"] {
            let path = PathBuf::from(format!("{}{suffix}", file.display()));
            if let Ok(bytes) = std::fs::read(&path) {
                assert!(
                    !contains(&bytes, VALUE),
                    "{} holds the secret in clear",
                    path.display()
                );
                assert!(!contains(&bytes, b"replaced"));
            }
        }
    }
    assert!(s.delete_secret("minio").await.unwrap());
    assert!(!s.delete_secret("minio").await.unwrap());
    assert!(s.secret("minio").await.unwrap().is_none());
}

async fn raw_sealed(c: &Ctx, name: &str) -> Vec<u8> {
    use sqlx::Row;
    let q = "SELECT sealed FROM secrets WHERE name = $1";
    if c.sqlite_file.is_some() {
        let pool = sqlx::SqlitePool::connect(&c.url).await.unwrap();
        sqlx::query(q)
            .bind(name)
            .fetch_one(&pool)
            .await
            .unwrap()
            .get(0)
    } else {
        let pool = sqlx::PgPool::connect(&c.url).await.unwrap();
        sqlx::query(q)
            .bind(name)
            .fetch_one(&pool)
            .await
            .unwrap()
            .get(0)
    }
}

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    haystack.windows(needle.len()).any(|w| w == needle)
}

async fn tokens(c: &Ctx) {
    let s = &*c.store;
    let user = s
        .create_user(new_user("ci@example.com", Role::Operator))
        .await
        .unwrap();
    let admin = s
        .add_token(
            &NewToken {
                name: "admin".into(),
                user_id: None,
                role: Role::Admin,
                expires_at: None,
            },
            "tok-123",
        )
        .await
        .unwrap();
    let ci = s
        .add_token(
            &NewToken {
                name: "ci".into(),
                user_id: Some(user.id.clone()),
                role: Role::Viewer,
                expires_at: Some(now_ms() + 1000),
            },
            "tok-456",
        )
        .await
        .unwrap();
    assert_eq!(
        s.check_token("tok-123").await.unwrap().unwrap().name,
        "admin"
    );
    let found = s.check_token("tok-456").await.unwrap().unwrap();
    assert_eq!(
        (found.id.as_str(), found.role, found.user_id.as_deref()),
        (ci.id.as_str(), Role::Viewer, Some(user.id.as_str()))
    );
    assert_eq!(found.expires_at, ci.expires_at);
    assert_eq!(s.check_token("tok-12").await.unwrap(), None);
    assert_eq!(s.check_token("").await.unwrap(), None);
    assert_eq!(s.list_tokens(Some(&user.id)).await.unwrap().len(), 1);
    assert_eq!(s.list_tokens(None).await.unwrap().len(), 2);
    s.touch_token(&ci.id, 42).await.unwrap();
    assert_eq!(
        s.get_token(&ci.id).await.unwrap().unwrap().last_used_at,
        Some(42)
    );
    assert!(s.revoke_token(&ci.id).await.unwrap());
    assert!(!s.revoke_token(&ci.id).await.unwrap());
    assert_eq!(s.check_token("tok-456").await.unwrap(), None);
    assert_eq!(s.list_tokens(None).await.unwrap(), vec![admin]);
    // Stored hashed: the clear token is not in the table.
    use sqlx::Row;
    let q = "SELECT hash, name FROM api_tokens";
    let hashes: Vec<String> = if c.sqlite_file.is_some() {
        let pool = sqlx::SqlitePool::connect(&c.url).await.unwrap();
        sqlx::query(q)
            .fetch_all(&pool)
            .await
            .unwrap()
            .iter()
            .map(|r| r.get(0))
            .collect()
    } else {
        let pool = sqlx::PgPool::connect(&c.url).await.unwrap();
        sqlx::query(q)
            .fetch_all(&pool)
            .await
            .unwrap()
            .iter()
            .map(|r| r.get(0))
            .collect()
    };
    assert_eq!(hashes.len(), 2);
    assert!(hashes.iter().all(|h| h.len() == 64 && !h.contains("tok-")));
}

fn new_user(email: &str, role: Role) -> NewUser {
    NewUser {
        email: email.into(),
        name: "N".into(),
        role,
        password_hash: Some("$argon2id$fake".into()),
        must_change_password: true,
        oidc_subject: None,
    }
}

async fn users_and_sessions(c: &Ctx) {
    let s = &*c.store;
    assert_eq!(s.count_users().await.unwrap(), 0);
    let u = s
        .create_user(new_user("Alice@Example.com", Role::Admin))
        .await
        .unwrap();
    assert_eq!(u.email, "alice@example.com");
    assert!(u.must_change_password && u.has_password && !u.disabled && !u.locked);
    let dup = s
        .create_user(new_user("ALICE@example.com", Role::Viewer))
        .await;
    assert!(matches!(dup, Err(Error::Conflict(_))), "{dup:?}");
    assert_eq!(
        s.user_by_email(" alice@EXAMPLE.com")
            .await
            .unwrap()
            .unwrap()
            .id,
        u.id
    );
    assert_eq!(
        s.password_hash(&u.id).await.unwrap().as_deref(),
        Some("$argon2id$fake")
    );
    s.set_password(&u.id, "$argon2id$new", false).await.unwrap();
    assert!(
        !s.get_user(&u.id)
            .await
            .unwrap()
            .unwrap()
            .must_change_password
    );
    let changed = s
        .update_user(
            &u.id,
            &UserChange {
                role: Some(Role::Operator),
                disabled: Some(true),
                language: Some(Some("zh-CN".into())),
                ..Default::default()
            },
        )
        .await
        .unwrap();
    assert_eq!(
        (changed.role, changed.disabled, changed.language.as_deref()),
        (Role::Operator, true, Some("zh-CN"))
    );
    assert!(matches!(
        s.update_user("nope", &UserChange::default()).await,
        Err(Error::NotFound { .. })
    ));
    // Throttling counters: per account and per client; a success clears both.
    assert_eq!(
        s.record_signin_failure(Some(&u.id), "10.0.0.1")
            .await
            .unwrap(),
        (1, 1)
    );
    assert_eq!(
        s.record_signin_failure(None, "10.0.0.1").await.unwrap(),
        (0, 2)
    );
    assert_eq!(s.client_failures("10.0.0.1").await.unwrap().unwrap().0, 2);
    let locked = s
        .update_user(
            &u.id,
            &UserChange {
                locked: Some(true),
                ..Default::default()
            },
        )
        .await
        .unwrap();
    assert!(locked.locked && locked.failed_signins == 1);
    let unlocked = s
        .update_user(
            &u.id,
            &UserChange {
                locked: Some(false),
                ..Default::default()
            },
        )
        .await
        .unwrap();
    assert!(!unlocked.locked && unlocked.failed_signins == 0);
    s.record_signin_failure(Some(&u.id), "10.0.0.1")
        .await
        .unwrap();
    s.record_signin(&u.id, "10.0.0.1").await.unwrap();
    assert_eq!(s.client_failures("10.0.0.1").await.unwrap(), None);
    let after = s.get_user(&u.id).await.unwrap().unwrap();
    assert_eq!(after.failed_signins, 0);
    assert!(after.last_signin_at.is_some());
    // Sessions, stored by hash.
    let session = Session {
        user_id: u.id.clone(),
        csrf_token: "csrf".into(),
        method: "password".into(),
        subject: None,
        client: "10.0.0.1".into(),
        created_at: now_ms(),
        last_seen_at: now_ms(),
        expires_at: now_ms() + 60_000,
    };
    s.create_session("sess-1", &session).await.unwrap();
    s.create_session("sess-2", &session).await.unwrap();
    assert_eq!(s.session("sess-1").await.unwrap(), Some(session.clone()));
    assert_eq!(s.session("sess-3").await.unwrap(), None);
    s.touch_session("sess-1", 7).await.unwrap();
    assert_eq!(s.session("sess-1").await.unwrap().unwrap().last_seen_at, 7);
    assert!(s.delete_session("sess-1").await.unwrap());
    assert_eq!(s.session("sess-1").await.unwrap(), None);
    assert_eq!(s.delete_user_sessions(&u.id).await.unwrap(), 1);
    // OIDC: subject links, pending sign-ins taken once.
    s.set_oidc_subject(&u.id, "sub-1").await.unwrap();
    assert_eq!(s.user_by_subject("sub-1").await.unwrap().unwrap().id, u.id);
    let other = s
        .create_user(new_user("bob@example.com", Role::Viewer))
        .await
        .unwrap();
    assert!(matches!(
        s.set_oidc_subject(&other.id, "sub-1").await,
        Err(Error::Conflict(_))
    ));
    let pending = OidcPending {
        nonce: "n".into(),
        pkce_verifier: "v".into(),
        expires_at: now_ms() + 60_000,
    };
    s.put_oidc_pending("state-1", &pending).await.unwrap();
    assert_eq!(s.take_oidc_pending("state-1").await.unwrap(), Some(pending));
    assert_eq!(s.take_oidc_pending("state-1").await.unwrap(), None);
    // Deleting a user takes their sessions and tokens.
    s.create_session("sess-4", &session).await.unwrap();
    s.add_token(
        &NewToken {
            name: "t".into(),
            user_id: Some(u.id.clone()),
            role: Role::Viewer,
            expires_at: None,
        },
        "tok-u",
    )
    .await
    .unwrap();
    assert!(s.delete_user(&u.id).await.unwrap());
    assert!(!s.delete_user(&u.id).await.unwrap());
    assert_eq!(s.session("sess-4").await.unwrap(), None);
    assert_eq!(s.check_token("tok-u").await.unwrap(), None);
    assert_eq!(s.list_users().await.unwrap().len(), 1);
}

async fn events(c: &Ctx) {
    let s = &*c.store;
    let t = task(s, "t").await;
    let r = s.create_run(&t.id, Trigger::User, None, 5).await.unwrap();
    for (i, kind) in ["task.created", "run.started", "item.dead"]
        .iter()
        .enumerate()
    {
        s.add_event(NewEvent {
            task_id: Some(t.id.clone()),
            run_id: (i > 0).then_some(r.id),
            kind: kind.to_string(),
            actor: "api:admin".into(),
            message: format!("m{i}"),
            target: None,
            client: None,
        })
        .await
        .unwrap();
    }
    s.add_event(NewEvent {
        task_id: None,
        run_id: None,
        kind: "hub.started".into(),
        actor: "scheduler".into(),
        message: String::new(),
        target: Some("hub".into()),
        client: Some("127.0.0.1".into()),
    })
    .await
    .unwrap();
    let mine = s.list_events(Some(&t.id), 10).await.unwrap();
    assert_eq!(
        mine.iter().map(|e| e.kind.as_str()).collect::<Vec<_>>(),
        ["item.dead", "run.started", "task.created"]
    );
    assert_eq!(mine[0].run_id, Some(r.id));
    assert_eq!(mine[2].run_id, None);
    assert_eq!(mine[0].actor, "api:admin");
    assert_eq!(mine[0].message, "m2");
    assert!(mine[0].at >= mine[2].at && mine[0].id > mine[2].id);
    let all = s.list_events(None, 2).await.unwrap();
    assert_eq!(
        all.iter().map(|e| e.kind.as_str()).collect::<Vec<_>>(),
        ["hub.started", "item.dead"]
    );
    // Audit queries: by kind prefix, actor substring, target (or task), pages by id.
    let audit = |kind: Option<&str>, actor: Option<&str>, target: Option<&str>, before| {
        let f = dth_store::AuditFilter {
            kind_prefix: kind.map(str::to_string),
            actor: actor.map(str::to_string),
            target: target.map(str::to_string),
            before_id: before,
            limit: 10,
            ..dth_store::AuditFilter::default()
        };
        async move { s.audit(&f).await.unwrap() }
    };
    let kinds = |v: Vec<dth_store::Event>| v.into_iter().map(|e| e.kind).collect::<Vec<_>>();
    assert_eq!(
        kinds(audit(Some("run."), None, None, None).await),
        ["run.started"]
    );
    assert_eq!(
        kinds(audit(Some("%"), None, None, None).await),
        Vec::<String>::new()
    );
    assert_eq!(
        kinds(audit(None, Some("sched"), None, None).await),
        ["hub.started"]
    );
    assert_eq!(
        kinds(audit(None, None, Some(&t.id), None).await),
        ["item.dead", "run.started", "task.created"]
    );
    let hub = audit(None, None, Some("hub"), None).await;
    assert_eq!(hub[0].client.as_deref(), Some("127.0.0.1"));
    let older = audit(None, None, None, Some(hub[0].id)).await;
    assert_eq!(kinds(older), ["item.dead", "run.started", "task.created"]);
    // A time window: at or after `since`, before `until`.
    let within = |since, until| {
        let f = dth_store::AuditFilter {
            target: Some(t.id.clone()),
            since,
            until,
            limit: 10,
            ..dth_store::AuditFilter::default()
        };
        async move { s.audit(&f).await.unwrap() }
    };
    let all = within(None, None).await;
    let (newest, oldest) = (all[0].at, all[all.len() - 1].at);
    assert_eq!(
        within(Some(oldest), Some(newest + 1)).await.len(),
        all.len()
    );
    assert!(within(Some(newest + 1), None).await.is_empty());
    assert!(within(None, Some(oldest)).await.is_empty());
}

// ---------------------------------------------------------------- leadership, reopening

async fn leadership(c: &Ctx) {
    let a = c.store.clone();
    let b = c.reopen(key()).await;
    let lead = a.try_lead("hub-a").await.unwrap().expect("first one leads");
    assert!(lead.is_held());
    assert!(
        b.try_lead("hub-b").await.unwrap().is_none(),
        "another process does not"
    );
    assert!(
        a.try_lead("hub-a2").await.unwrap().is_none(),
        "nor a second attempt of the first"
    );
    drop(lead);
    let deadline = Instant::now() + Duration::from_secs(10);
    let taken = loop {
        if let Some(l) = b.try_lead("hub-b").await.unwrap() {
            break l;
        }
        assert!(
            Instant::now() < deadline,
            "leadership was not given up after the drop"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    assert!(taken.is_held());
    assert!(a.try_lead("hub-a").await.unwrap().is_none());
}

async fn reopen_keeps_data(c: &Ctx) {
    let s = &*c.store;
    let (t, r) = run_with(s, 2, 5).await;
    // Opening again (migrations already applied) sees the same rows.
    let again = c.reopen(key()).await;
    assert_eq!(again.get_task(&t.id).await.unwrap().unwrap().id, t.id);
    assert_eq!(again.list_items(r.id, None, 0, 10).await.unwrap().len(), 2);
    assert_eq!(again.backend(), s.backend());
}

async fn edits_and_run_requests(c: &Ctx) {
    let s = &*c.store;
    let t = task(s, "t").await;
    assert_eq!(t.run_requested_by, None);
    let edited = s
        .update_task(&t.id, "renamed", &json!({"name": "renamed", "n": 2}))
        .await
        .unwrap();
    assert_eq!(edited.name, "renamed");
    assert_eq!(edited.spec["n"], 2);
    assert_eq!(edited.created_at, t.created_at);
    assert!(matches!(
        s.update_task("nope", "x", &json!({})).await,
        Err(Error::NotFound { .. })
    ));
    // A user's start: due now, remembered until the scheduler takes it.
    s.request_run(&t.id, "ann@example.com").await.unwrap();
    let due = s.get_task(&t.id).await.unwrap().unwrap();
    assert_eq!(due.run_requested_by.as_deref(), Some("ann@example.com"));
    let at = due.next_run_at.unwrap();
    // The request stays pending until its run exists (one transaction), so a watcher never sees
    // a start that is neither pending nor running.
    assert!(s.advance_schedule(&t.id, at, None).await.unwrap());
    assert_eq!(
        s.get_task(&t.id)
            .await
            .unwrap()
            .unwrap()
            .run_requested_by
            .as_deref(),
        Some("ann@example.com")
    );
    let r = s
        .create_run(&t.id, Trigger::User, Some("ann@example.com"), 3)
        .await
        .unwrap();
    assert_eq!(
        s.get_task(&t.id).await.unwrap().unwrap().run_requested_by,
        None
    );
    assert_eq!(r.started_by.as_deref(), Some("ann@example.com"));
    assert_eq!(
        s.get_run(r.id)
            .await
            .unwrap()
            .unwrap()
            .started_by
            .as_deref(),
        Some("ann@example.com")
    );
}

async fn run_samples(c: &Ctx) {
    let s = &*c.store;
    let (_, r) = run_with(s, 1, 5).await;
    let sample = |at, b| dth_store::RunSample {
        at,
        bytes_done: b,
        items_done: b / 10,
        items_failed: 0,
    };
    s.add_sample(r.id, sample(2_000, 20)).await.unwrap();
    s.add_sample(r.id, sample(1_000, 10)).await.unwrap();
    // The same time again replaces.
    s.add_sample(r.id, sample(2_000, 30)).await.unwrap();
    let all = s.samples(r.id, 0).await.unwrap();
    assert_eq!(all, vec![sample(1_000, 10), sample(2_000, 30)]);
    assert_eq!(
        s.samples(r.id, 1_500).await.unwrap(),
        vec![sample(2_000, 30)]
    );
    assert!(s.samples(r.id + 1000, 0).await.unwrap().is_empty());
    // What runs moved since a time: the newest sample less the last one before it.
    assert_eq!(s.moved_since(0).await.unwrap(), (30, 3));
    assert_eq!(s.moved_since(1_500).await.unwrap(), (20, 2));
    assert_eq!(s.moved_since(2_500).await.unwrap(), (0, 0));
    let (_, r2) = run_with(s, 1, 5).await;
    s.add_sample(r2.id, sample(1_800, 100)).await.unwrap();
    assert_eq!(s.moved_since(1_500).await.unwrap(), (120, 12));
    // The newest run of each task: a second run of r's task replaces r.
    s.set_run_status(r.id, RunStatus::Done, None).await.unwrap();
    let r3 = s
        .create_run(&r.task_id, Trigger::User, None, 5)
        .await
        .unwrap();
    let latest: Vec<i64> = s
        .latest_runs()
        .await
        .unwrap()
        .iter()
        .map(|x| x.id)
        .collect();
    assert_eq!(latest, [r2.id, r3.id]);
}

async fn settings(c: &Ctx) {
    let s = &*c.store;
    assert_eq!(s.setting("prices").await.unwrap(), None);
    s.put_setting("prices", &json!({"a": 1}), "admin")
        .await
        .unwrap();
    s.put_setting("prices", &json!({"a": 2, "k": "ü"}), "bob")
        .await
        .unwrap();
    let got = s.setting("prices").await.unwrap().unwrap();
    assert_eq!(got.value, json!({"a": 2, "k": "ü"}));
    assert_eq!(got.updated_by, "bob");
}

async fn search_items_by_prefix_and_state(c: &Ctx) {
    let s = &*c.store;
    let t = task(s, "t").await;
    let r = s.create_run(&t.id, Trigger::User, None, 5).await.unwrap();
    let keys = ["a/1", "a/2", "a%/3", "a_/4", "b/1", "é/5", "A/6"];
    let items: Vec<NewItem> = keys.iter().map(|k| obj(k, 1)).collect();
    s.insert_items(r.id, &items).await.unwrap();
    let q = |prefix: Option<&str>, state: Option<ItemState>| dth_store::ItemQuery {
        state,
        key_prefix: prefix.map(String::from),
        after_id: 0,
        limit: 100,
    };
    let found = |v: Vec<Item>| v.into_iter().map(|i| i.key).collect::<Vec<_>>();
    let hits = found(s.search_items(r.id, &q(Some("a/"), None)).await.unwrap());
    assert_eq!(hits, ["a/1", "a/2"]);
    // LIKE wildcards are plain characters; case matters.
    assert_eq!(
        found(s.search_items(r.id, &q(Some("a%"), None)).await.unwrap()),
        ["a%/3"]
    );
    assert_eq!(
        found(s.search_items(r.id, &q(Some("a_"), None)).await.unwrap()),
        ["a_/4"]
    );
    assert_eq!(
        found(s.search_items(r.id, &q(Some("é"), None)).await.unwrap()),
        ["é/5"]
    );
    assert_eq!(
        s.search_items(r.id, &q(Some(""), None))
            .await
            .unwrap()
            .len(),
        keys.len()
    );
    assert!(
        s.search_items(r.id, &q(Some("a/"), Some(ItemState::Dead)))
            .await
            .unwrap()
            .is_empty()
    );
    let queued = s
        .search_items(r.id, &q(Some("a/"), Some(ItemState::Queued)))
        .await
        .unwrap();
    assert_eq!(queued.len(), 2);
    let mut page = q(Some("a"), None);
    page.limit = 2;
    let first = s.search_items(r.id, &page).await.unwrap();
    page.after_id = first.last().unwrap().id;
    let second = s.search_items(r.id, &page).await.unwrap();
    assert_eq!(found(first), ["a/1", "a/2"]);
    assert_eq!(found(second), ["a%/3", "a_/4"]);
}

async fn item_counts_of_active_runs(c: &Ctx) {
    let s = &*c.store;
    assert!(s.item_counts().await.unwrap().is_empty());
    let (t, r) = run_with(s, 5, 5).await;
    // A finished run of another task is history: never counted.
    let old = task(s, "old").await;
    let old_run = s.create_run(&old.id, Trigger::User, None, 5).await.unwrap();
    s.insert_items(old_run.id, &[obj("x", 1), obj("y", 2)])
        .await
        .unwrap();
    s.set_run_status(old_run.id, RunStatus::Done, None)
        .await
        .unwrap();
    let two = s.claim("w", 2, LEASE).await.unwrap();
    assert!(s.ack("w", &[done(two[0].id)]).await.unwrap()[0].accepted);
    // Queued again, but not claimable for an hour.
    let r1 = retry(two[1].id, Duration::from_secs(3600), false);
    assert!(!s.retry_later("w", &[r1]).await.unwrap()[0].dead);
    // One live lease, one expired.
    s.claim("w", 1, LEASE).await.unwrap();
    s.claim("w", 1, Duration::from_millis(1)).await.unwrap();
    tokio::time::sleep(Duration::from_millis(20)).await;
    let count = |state: ItemState, items: u64, claimable: u64| dth_store::ItemCount {
        task_id: t.id.clone(),
        state,
        items,
        claimable,
    };
    let mut got = s.item_counts().await.unwrap();
    got.sort_by_key(|c| c.state.name());
    assert_eq!(
        got,
        vec![
            count(ItemState::Done, 1, 0),
            count(ItemState::Leased, 2, 1),
            count(ItemState::Queued, 2, 1),
        ]
    );
    // Parts count too; the run's end takes all of it out.
    let g = s.claim("w", 1, LEASE).await.unwrap();
    s.split_item(
        "w",
        g[0].id,
        &json!({}),
        &[part(&g[0].key, 1, 1), part(&g[0].key, 2, 1)],
    )
    .await
    .unwrap();
    let got = s.item_counts().await.unwrap();
    let waiting = got.iter().find(|c| c.state == ItemState::Waiting).unwrap();
    assert_eq!((waiting.items, waiting.claimable), (1, 0));
    // The claim took the expired lease or the last queued object; either way the parts are
    // queued and claimable, and the retried object is not.
    let queued = got.iter().find(|c| c.state == ItemState::Queued).unwrap();
    assert!(queued.items >= 3, "{got:?}");
    assert_eq!(queued.claimable, queued.items - 1, "{got:?}");
    s.stop_run(r.id).await.unwrap();
    assert!(s.item_counts().await.unwrap().is_empty());
}

// ---------------------------------------------------------------- retention

async fn purge_finished_items(c: &Ctx) {
    let s = &*c.store;
    // A: FAILED, with a giant object's parts, kept counters.
    let (t, a) = run_with(s, 5, 1).await;
    let claimed = s.claim("w", 5, LEASE).await.unwrap();
    let giant = claimed[0].id;
    let parts: Vec<NewItem> = (1..=2).map(|n| part(&claimed[0].key, n, 5)).collect();
    assert!(
        s.split_item("w", giant, &json!({"upload_id": "U"}), &parts)
            .await
            .unwrap()
    );
    let got = s.claim("w", 2, LEASE).await.unwrap();
    s.ack("w", &got.iter().map(|i| done(i.id)).collect::<Vec<_>>())
        .await
        .unwrap();
    let again = s.claim_item("w", giant, LEASE).await.unwrap().unwrap();
    let mut acks = vec![done(again.id)];
    acks.extend(claimed[1..4].iter().map(|i| done(i.id)));
    s.ack("w", &acks).await.unwrap();
    s.retry_later("w", &[retry(claimed[4].id, Duration::ZERO, true)])
        .await
        .unwrap();
    assert_eq!(
        s.finish_run_if_drained(a.id).await.unwrap(),
        Some(RunStatus::Failed)
    );
    let a_counters = s.run_counters(a.id).await.unwrap();
    assert_eq!((a_counters.copied, a_counters.dead), (4, 1));

    // B: STOPPED, no kept counters: one done, two cancelled.
    let b = s.create_run(&t.id, Trigger::User, None, 5).await.unwrap();
    s.insert_items(b.id, &[obj("b0", 1), obj("b1", 2), obj("b2", 3)])
        .await
        .unwrap();
    s.set_run_status(b.id, RunStatus::Transferring, None)
        .await
        .unwrap();
    let one = s.claim("w", 1, LEASE).await.unwrap();
    s.ack("w", &[done(one[0].id)]).await.unwrap();
    assert_eq!(s.stop_run(b.id).await.unwrap(), 2);
    let b_counters = s.run_counters(b.id).await.unwrap();
    assert_eq!((b_counters.copied, b_counters.cancelled), (1, 2));

    // C: still TRANSFERRING, with a dead item and queued ones.
    let t2 = task(s, "t2").await;
    let c_run = s.create_run(&t2.id, Trigger::User, None, 5).await.unwrap();
    s.insert_items(c_run.id, &[obj("c0", 1), obj("c1", 1), obj("c2", 1)])
        .await
        .unwrap();
    s.set_run_status(c_run.id, RunStatus::Transferring, None)
        .await
        .unwrap();
    let first = s.claim("w", 1, LEASE).await.unwrap();
    s.retry_later("w", &[retry(first[0].id, Duration::ZERO, true)])
        .await
        .unwrap();
    let c_counters = s.run_counters(c_run.id).await.unwrap();
    assert_eq!((c_counters.dead, c_counters.pending), (1, 2));

    // Nothing ended before A did.
    let a_ended = s.get_run(a.id).await.unwrap().unwrap().ended_at.unwrap();
    assert_eq!(
        s.purge_finished_items(a_ended, 2).await.unwrap(),
        dth_store::Purged::default()
    );
    assert_eq!(s.list_items(a.id, None, 0, 100).await.unwrap().len(), 7);

    // Batches of 2: A's 7 rows (parts included) and B's 3, counted exactly.
    let purged = s.purge_finished_items(now_ms() + 1000, 2).await.unwrap();
    assert_eq!(purged, dth_store::Purged { runs: 2, items: 10 });
    for r in [a.id, b.id] {
        assert!(s.list_items(r, None, 0, 100).await.unwrap().is_empty());
    }
    assert_eq!(s.run_counters(a.id).await.unwrap(), a_counters);
    assert_eq!(s.run_counters(b.id).await.unwrap(), b_counters);
    let run_a = s.get_run(a.id).await.unwrap().unwrap();
    assert_eq!(
        (run_a.status, run_a.ended_at),
        (RunStatus::Failed, Some(a_ended))
    );
    assert_eq!(
        s.get_run(b.id).await.unwrap().unwrap().status,
        RunStatus::Stopped
    );
    // The active run and its dead item are untouched.
    assert_eq!(s.list_items(c_run.id, None, 0, 100).await.unwrap().len(), 3);
    assert_eq!(s.run_counters(c_run.id).await.unwrap(), c_counters);
    assert_eq!(
        s.get_item(first[0].id).await.unwrap().unwrap().state,
        ItemState::Dead
    );
    // Purged runs are not looked at again; a retry of a purged run has nothing to retry.
    assert_eq!(
        s.purge_finished_items(now_ms() + 1000, 2).await.unwrap(),
        dth_store::Purged::default()
    );
    assert_eq!(s.retry_dead(a.id, None).await.unwrap(), 0);
    assert_eq!(
        s.get_run(a.id).await.unwrap().unwrap().status,
        RunStatus::Failed
    );

    // A batch that empties a run exactly still ends it: C finishes with 3 items, batch 3.
    let rest = s.claim("w", 2, LEASE).await.unwrap();
    s.ack("w", &rest.iter().map(|i| done(i.id)).collect::<Vec<_>>())
        .await
        .unwrap();
    assert_eq!(
        s.finish_run_if_drained(c_run.id).await.unwrap(),
        Some(RunStatus::Failed)
    );
    let c_final = s.run_counters(c_run.id).await.unwrap();
    let purged = s.purge_finished_items(now_ms() + 1000, 3).await.unwrap();
    assert_eq!(purged, dth_store::Purged { runs: 1, items: 3 });
    assert_eq!(s.run_counters(c_run.id).await.unwrap(), c_final);
}

// ---------------------------------------------------------------- event runs

fn ev(kind: ItemKind, key: &str, size: u64, seq: Option<&str>) -> EventItem {
    EventItem {
        item: NewItem {
            kind,
            key: key.into(),
            size,
            etag: None,
            part_number: None,
            payload: json!({}),
        },
        sequencer: seq.map(str::to_string),
    }
}

async fn event_runs_keep_the_newest_event_per_key(c: &Ctx) {
    let s = c.store.as_ref();
    let t = task(s, "events").await;
    let first = s
        .ingest_events(
            &t.id,
            4,
            &[
                ev(ItemKind::Object, "a", 1, Some("0010")),
                ev(ItemKind::Object, "b", 2, Some("0010")),
                // A duplicate delivery in the same batch.
                ev(ItemKind::Object, "a", 1, Some("0010")),
            ],
        )
        .await
        .unwrap();
    assert_eq!((first.added, first.updated, first.stale), (2, 0, 1));
    let run = s.get_run(first.run_id).await.unwrap().unwrap();
    assert_eq!(run.trigger, Trigger::Event);
    assert_eq!(run.status, RunStatus::Transferring);
    assert_eq!(run.max_attempts, 4);
    // A later delete of `a` supersedes its queued copy; an older event of `b` is dropped.
    let second = s
        .ingest_events(
            &t.id,
            4,
            &[
                ev(ItemKind::Delete, "a", 0, Some("0011")),
                ev(ItemKind::Object, "b", 2, Some("000F")),
            ],
        )
        .await
        .unwrap();
    assert_eq!(second.run_id, first.run_id);
    assert_eq!((second.added, second.updated, second.stale), (1, 0, 1));
    let items = s.list_items(run.id, None, 0, 100).await.unwrap();
    let state = |kind: ItemKind, key: &str| {
        items
            .iter()
            .find(|i| i.kind == kind && i.key == key)
            .map(|i| i.state)
    };
    assert_eq!(state(ItemKind::Object, "a"), Some(ItemState::Cancelled));
    assert_eq!(state(ItemKind::Delete, "a"), Some(ItemState::Queued));
    assert_eq!(state(ItemKind::Object, "b"), Some(ItemState::Queued));
    // A worker holds `b`: a newer write of `b` waits for that lease, and takes over the item.
    let claimed = s.claim("w1", 10, LEASE).await.unwrap();
    assert_eq!(claimed.len(), 2);
    let b = claimed.iter().find(|i| i.key == "b").unwrap();
    let third = s
        .ingest_events(&t.id, 4, &[ev(ItemKind::Object, "b", 3, Some("0012"))])
        .await
        .unwrap();
    assert_eq!((third.added, third.updated), (0, 1));
    let b_now = s.get_item(b.id).await.unwrap().unwrap();
    assert_eq!(b_now.state, ItemState::Queued);
    assert_eq!(b_now.size, 3);
    assert!(b_now.not_before >= b.lease_expires_at.unwrap());
    // The old holder's ack is refused: the newer event's copy is still to do.
    let acked = s
        .ack(
            "w1",
            &[Ack {
                id: b.id,
                state: ItemState::Done,
                dst_etag: None,
                verification: None,
                payload: None,
            }],
        )
        .await
        .unwrap();
    assert!(!acked[0].accepted);
    // Once everything ended the run finishes; the next event opens a new run.
    let a = claimed.iter().find(|i| i.key == "a").unwrap();
    let acks = [Ack {
        id: a.id,
        state: ItemState::Done,
        dst_etag: None,
        verification: Some("deleted".into()),
        payload: None,
    }];
    assert!(s.ack("w1", &acks).await.unwrap()[0].accepted);
    s.stop_run(run.id).await.unwrap();
    let fourth = s
        .ingest_events(&t.id, 4, &[ev(ItemKind::Object, "c", 1, None)])
        .await
        .unwrap();
    assert_ne!(fourth.run_id, run.id);
    // A delivery again of an event of the ended run is still recognised.
    let again = s
        .ingest_events(&t.id, 4, &[ev(ItemKind::Delete, "a", 0, Some("0011"))])
        .await
        .unwrap();
    assert_eq!((again.added, again.stale), (0, 1));
    // Without sequencers a repeated event queues the key again (the worker decides by the source).
    let fifth = s
        .ingest_events(&t.id, 4, &[ev(ItemKind::Object, "c", 1, None)])
        .await
        .unwrap();
    assert_eq!((fifth.added, fifth.updated, fifth.stale), (0, 1, 0));
    let err = s
        .ingest_events("no-such-task", 4, &[ev(ItemKind::Object, "c", 1, None)])
        .await
        .unwrap_err();
    assert!(matches!(err, Error::NotFound { .. }), "{err}");
}

macro_rules! conformance {
    ($($case:ident),* $(,)?) => {
        mod sqlite {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $case() {
                    let ctx = super::Ctx::sqlite().await;
                    super::$case(&ctx).await;
                }
            )*
        }
        mod postgres {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $case() {
                    let ctx = super::Ctx::postgres().await;
                    super::$case(&ctx).await;
                }
            )*
        }
    };
}

conformance!(
    tasks_crud,
    event_runs_keep_the_newest_event_per_key,
    advance_schedule_race,
    delete_task_cascades,
    runs_lifecycle,
    create_run_conflict_while_finding,
    insert_and_list_items,
    claim_order_and_lease,
    concurrent_claimers_never_share,
    lease_expiry_and_lost_lease,
    retry_later_backoff_then_dead,
    permanent_failure_is_dead_at_once,
    release_does_not_count_an_attempt,
    payload_progress_and_ack_payload,
    ack_batches,
    split_parts_and_parent_ready,
    last_parts_acked_concurrently,
    kill_parent_cancels_parts,
    counters_exact,
    stop_run_cancels,
    item_counts_of_active_runs,
    finish_run_if_drained,
    retry_dead_items,
    secrets,
    tokens,
    users_and_sessions,
    events,
    leadership,
    reopen_keeps_data,
    edits_and_run_requests,
    run_samples,
    settings,
    search_items_by_prefix_and_state,
    purge_finished_items,
);
