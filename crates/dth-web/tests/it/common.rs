//! What the hub's HTTP tests share: a store in a fresh SQLite file, and the quick timings of a
//! hub whose scheduler and workers run inside the test.

use std::sync::Arc;
use std::time::Duration;

use dth_runtime::Config;
use dth_store::{MasterKey, Store};
use tempfile::TempDir;

/// A store in a new SQLite file with a new master key; the directory holds it while it lives.
pub(crate) async fn sqlite_store() -> (Arc<dyn Store>, TempDir) {
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}", dir.path().join("dth.db").display());
    let store = dth_store::open(&url, MasterKey::generate()).await.unwrap();
    (store, dir)
}

/// A hub configuration with short leases, polls and retries, accepting `token` as an admin API
/// token, for tests that run whole transfers.
pub(crate) fn quick_config(worker_id: &str, token: &str) -> Config {
    let mut config = Config {
        worker_id: worker_id.into(),
        concurrency: 8,
        lease: Duration::from_secs(6),
        poll: Duration::from_millis(100),
        retry_base: Duration::from_millis(200),
        shutdown_grace: Duration::from_secs(2),
        sample_every: Duration::from_millis(300),
        ..Config::default()
    };
    config.access.env_token = Some(token.into());
    config
}
