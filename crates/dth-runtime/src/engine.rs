//! Per-task engines: a task's spec with its secrets resolved, both endpoints connected, and the
//! copier every item of a run shares. Cached per process and made again for each new run, so a
//! rotated secret is picked up by the next run. Stopping a task cancels the token of all its
//! engines, which aborts their copies in flight (multipart uploads included) and drops them.
//!
//! Each engine also holds the task's *turns*: one permit per item of the task worked on at once in
//! this process, an object task's `options.transfers` or an image task's `concurrency` (one
//! definition for both, `items_at_once`). Workers take a turn before they start an item.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use dth_model::{
    Credentials, EndpointSpec, ImageSync, Job, RegistryCredentials, S3Job, SecretValue, TaskSpec,
};
use dth_oci::open::OpenedSync;
use dth_s3::{Copier, Endpoint, Side, Stats};
use dth_store::Store;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio_util::sync::CancellationToken;

use crate::Error;

/// What a task needs to copy its items.
pub(crate) enum TaskEngine {
    /// An object task.
    S3(Box<S3Engine>),
    /// An image task.
    Image(Box<ImageEngine>),
}

impl TaskEngine {
    /// Takes a turn for one item if the task has one free in this process.
    pub fn try_turn(&self) -> Option<OwnedSemaphorePermit> {
        Arc::clone(self.turns()).try_acquire_owned().ok()
    }

    /// Waits for a turn; `None` when the task is stopped first.
    pub async fn turn(&self) -> Option<OwnedSemaphorePermit> {
        tokio::select! {
            t = Arc::clone(self.turns()).acquire_owned() => t.ok(),
            _ = self.cancel().cancelled() => None,
        }
    }

    fn turns(&self) -> &Arc<Semaphore> {
        match self {
            TaskEngine::S3(e) => &e.turns,
            TaskEngine::Image(e) => &e.turns,
        }
    }

    fn cancel(&self) -> &CancellationToken {
        match self {
            TaskEngine::S3(e) => &e.cancel,
            TaskEngine::Image(e) => &e.cancel,
        }
    }
}

/// Items of a task worked on at once in one process: an object task's `options.transfers`, an
/// image task's `concurrency` (at least 1).
fn items_at_once(job: &Job) -> usize {
    match job {
        Job::S3(j) => j.options.transfers,
        Job::Image(j) => j.concurrency,
    }
    .max(1)
}

/// An object task's engine.
pub(crate) struct S3Engine {
    /// Its object job.
    pub job: S3Job,
    /// Shared by all its items in this process.
    pub copier: Arc<Copier>,
    /// One permit per item (object, part, delete) worked on at once: `options.transfers`.
    turns: Arc<Semaphore>,
    /// Cancelled when the task is stopped or deleted.
    pub cancel: CancellationToken,
}

/// An image task's engine.
pub(crate) struct ImageEngine {
    /// Both registries connected.
    pub sync: OpenedSync,
    /// Shared by the run's images in this process: each blob is sent once, then mounted.
    pub copier: Arc<dth_oci::copy::Copier>,
    /// The task's `concurrency`: images checked (by the finder) or copied at once in this process.
    pub concurrency: usize,
    /// One permit per image copied at once: `concurrency`.
    turns: Arc<Semaphore>,
    /// Cancelled when the task is stopped or deleted.
    pub cancel: CancellationToken,
}

/// Engines of the tasks this process works on: the newest per task, with the run it was made for.
#[derive(Default)]
pub(crate) struct Engines {
    map: Mutex<HashMap<String, (i64, Arc<TaskEngine>)>>,
    /// Per task, the parent of every engine's cancellation token.
    tokens: Mutex<HashMap<String, CancellationToken>>,
}

impl Engines {
    /// The engine of a task for run `run_id`: the cached one unless it was made for an older
    /// run (then the task's spec and secrets are read again and both sides connected anew).
    pub async fn get(
        &self,
        store: &dyn Store,
        task_id: &str,
        run_id: i64,
    ) -> Result<Arc<TaskEngine>, Error> {
        if let Some(e) = self.cached(task_id, run_id) {
            return Ok(e);
        }
        let cancel = self
            .tokens
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .entry(task_id.to_string())
            .or_default()
            .child_token();
        let task = store
            .get_task(task_id)
            .await?
            .ok_or_else(|| Error::NotFound(format!("task {task_id}")))?;
        let spec: TaskSpec = serde_json::from_value(task.spec).map_err(|e| {
            Error::BadRequest(format!("task {task_id} has a spec we cannot read: {e}"))
        })?;
        let turns = Arc::new(Semaphore::new(items_at_once(&spec.job)));
        let engine = Arc::new(match spec.job {
            Job::S3(job) => {
                let (src, dst) = connect(store, &job).await?;
                let copier = Arc::new(
                    Copier::new(src, dst, job.options.clone(), Arc::new(Stats::default()))
                        .with_cancel(cancel.clone()),
                );
                TaskEngine::S3(Box::new(S3Engine {
                    job,
                    copier,
                    turns,
                    cancel,
                }))
            }
            Job::Image(job) => {
                let sync = open_images(store, &job).await?;
                TaskEngine::Image(Box::new(ImageEngine {
                    cancel,
                    copier: sync.copier(),
                    concurrency: job.concurrency.max(1),
                    turns,
                    sync,
                }))
            }
        });
        let mut map = self.lock();
        let slot = map
            .entry(task_id.to_string())
            .or_insert_with(|| (run_id, Arc::clone(&engine)));
        if slot.0 < run_id {
            // Items of the older run still in flight keep the engine they hold.
            *slot = (run_id, engine);
        }
        Ok(Arc::clone(&slot.1))
    }

    /// The engine cached for a task if it serves run `run_id` (made for that run or a newer one);
    /// never connects.
    pub fn cached(&self, task_id: &str, run_id: i64) -> Option<Arc<TaskEngine>> {
        self.lock()
            .get(task_id)
            .filter(|(run, _)| *run >= run_id)
            .map(|(_, e)| Arc::clone(e))
    }

    /// Forgets a task's cached engine without cancelling its work in flight: the task's next
    /// item connects again, its spec and secrets read anew (a retry after a secret was fixed).
    pub fn forget(&self, task_id: &str) {
        self.lock().remove(task_id);
    }

    /// Cancels a task's work in this process (every engine made for it) and forgets its engine.
    pub fn cancel(&self, task_id: &str) {
        self.lock().remove(task_id);
        if let Some(t) = self
            .tokens
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(task_id)
        {
            t.cancel();
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, (i64, Arc<TaskEngine>)>> {
        self.map.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// Connects both endpoints of a job, secrets resolved.
pub(crate) async fn connect(store: &dyn Store, job: &S3Job) -> Result<(Endpoint, Endpoint), Error> {
    let retries = job.options.retries;
    let src = resolve(store, &job.source).await?;
    let dst = resolve(store, &job.destination).await?;
    Ok((
        Endpoint::connect(Side::Source, &src, retries).await?,
        Endpoint::connect(Side::Destination, &dst, retries).await?,
    ))
}

/// Connects both registries of an image job, secrets resolved (the same credentials for every
/// host of a side; ECR uses the process's AWS credentials).
pub(crate) async fn open_images(store: &dyn Store, job: &ImageSync) -> Result<OpenedSync, Error> {
    let src = registry_login(store, &job.source.credentials).await?;
    let dst = registry_login(store, &job.destination.credentials).await?;
    let src = move |_: &str| Ok(src.clone());
    let dst = move |_: &str| Ok(dst.clone());
    Ok(dth_oci::open::open(job, &src, &dst, false).await?)
}

async fn registry_login(
    store: &dyn Store,
    creds: &RegistryCredentials,
) -> Result<Option<dth_oci::registry::Credentials>, Error> {
    Ok(match creds {
        RegistryCredentials::Anonymous => None,
        RegistryCredentials::Basic { username, password } => Some(
            dth_oci::registry::Credentials::new(username.clone(), password.clone()),
        ),
        RegistryCredentials::Secret { name } => {
            let value = store.secret(name).await?.ok_or_else(|| {
                Error::BadRequest(format!("secret {name:?} does not exist; create it first"))
            })?;
            let Some(SecretValue::RegistryLogin(login)) = SecretValue::from_bytes(&value.0) else {
                return Err(Error::BadRequest(format!(
                    "secret {name:?} is not a registry login (username and password)"
                )));
            };
            Some(dth_oci::registry::Credentials::new(
                login.username,
                login.password,
            ))
        }
    })
}

/// Replaces a reference to a hub secret by the access key it holds.
pub(crate) async fn resolve(store: &dyn Store, spec: &EndpointSpec) -> Result<EndpointSpec, Error> {
    let mut spec = spec.clone();
    spec.credentials = resolve_credentials(store, &spec.credentials).await?;
    Ok(spec)
}

/// The access key a hub secret holds, for credentials naming one; other credentials as they are.
pub(crate) async fn resolve_credentials(
    store: &dyn Store,
    credentials: &Credentials,
) -> Result<Credentials, Error> {
    let Credentials::Secret { name } = credentials else {
        return Ok(credentials.clone());
    };
    let value = store.secret(name).await?.ok_or_else(|| {
        Error::BadRequest(format!("secret {name:?} does not exist; create it first"))
    })?;
    let Some(SecretValue::AccessKey(key)) = SecretValue::from_bytes(&value.0) else {
        return Err(Error::BadRequest(format!(
            "secret {name:?} is not an access key (access_key_id and secret_access_key)"
        )));
    };
    Ok(Credentials::Static {
        access_key_id: key.access_key_id,
        secret_access_key: key.secret_access_key,
        session_token: key.session_token,
    })
}
