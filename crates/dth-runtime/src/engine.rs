//! Per-task engines: a task's spec with its secrets resolved, both endpoints connected once, and the
//! copier every item of the task shares. Cached per process; stopping a task cancels its token, which
//! aborts its copies in flight (multipart uploads included) and drops the engine.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use dth_model::{Credentials, EndpointSpec, ImageSync, Job, RegistryCredentials, S3Job, TaskSpec};
use dth_oci::open::OpenedSync;
use dth_s3::{Copier, Endpoint, Side, Stats};
use dth_store::Store;
use serde::Deserialize;
use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;

use crate::Error;

/// What a task needs to copy its items.
pub(crate) enum TaskEngine {
    /// An object task.
    S3(Box<S3Engine>),
    /// An image task.
    Image(Box<ImageEngine>),
}

/// An object task's engine.
pub(crate) struct S3Engine {
    /// Its object job.
    pub job: S3Job,
    /// Shared by all its items in this process.
    pub copier: Arc<Copier>,
    /// Cancelled when the task is stopped or deleted.
    pub cancel: CancellationToken,
}

/// An image task's engine.
pub(crate) struct ImageEngine {
    /// Both registries connected.
    pub sync: OpenedSync,
    /// The copier of the latest run seen here: blobs are deduplicated across a run's images in
    /// this process, and a new run starts with no memory of what the last one made present.
    copier: Mutex<Option<(i64, Arc<dth_oci::copy::Copier>)>>,
    /// The task's `concurrency`: images checked or copied at once in this process.
    pub concurrency: usize,
    /// Permits for `concurrency` copies.
    pub slots: Semaphore,
    /// Cancelled when the task is stopped or deleted.
    pub cancel: CancellationToken,
}

impl ImageEngine {
    /// The copier for the images of run `run_id`.
    pub fn copier(&self, run_id: i64) -> Arc<dth_oci::copy::Copier> {
        let mut current = self.copier.lock().unwrap_or_else(|p| p.into_inner());
        match &*current {
            Some((run, c)) if *run >= run_id => Arc::clone(c),
            _ => {
                let c = self.sync.copier();
                *current = Some((run_id, Arc::clone(&c)));
                c
            }
        }
    }
}

impl TaskEngine {
    fn cancel(&self) {
        match self {
            TaskEngine::S3(e) => e.cancel.cancel(),
            TaskEngine::Image(e) => e.cancel.cancel(),
        }
    }
}

/// Engines of the tasks this process works on.
#[derive(Default)]
pub(crate) struct Engines {
    map: Mutex<HashMap<String, Arc<TaskEngine>>>,
}

/// The JSON form of an access key kept as a hub secret.
#[derive(Deserialize)]
struct AccessKey {
    access_key_id: String,
    secret_access_key: String,
    #[serde(default)]
    session_token: Option<String>,
}

impl Engines {
    /// The engine of a task, connecting it on first use.
    pub async fn get(&self, store: &dyn Store, task_id: &str) -> Result<Arc<TaskEngine>, Error> {
        if let Some(e) = self.lock().get(task_id) {
            return Ok(Arc::clone(e));
        }
        let task = store
            .get_task(task_id)
            .await?
            .ok_or_else(|| Error::NotFound(format!("task {task_id}")))?;
        let spec: TaskSpec = serde_json::from_value(task.spec).map_err(|e| {
            Error::BadRequest(format!("task {task_id} has a spec we cannot read: {e}"))
        })?;
        let engine = Arc::new(match spec.job {
            Job::S3(job) => {
                let (src, dst) = connect(store, &job).await?;
                let cancel = CancellationToken::new();
                let copier = Arc::new(
                    Copier::new(src, dst, job.options.clone(), Arc::new(Stats::default()))
                        .with_cancel(cancel.clone()),
                );
                TaskEngine::S3(Box::new(S3Engine {
                    job,
                    copier,
                    cancel,
                }))
            }
            Job::Image(job) => {
                let sync = open_images(store, &job).await?;
                TaskEngine::Image(Box::new(ImageEngine {
                    cancel: CancellationToken::new(),
                    copier: Mutex::new(None),
                    concurrency: job.concurrency.max(1),
                    slots: Semaphore::new(job.concurrency.max(1)),
                    sync,
                }))
            }
        });
        Ok(Arc::clone(
            self.lock().entry(task_id.to_string()).or_insert(engine),
        ))
    }

    /// Cancels a task's work in this process and forgets its engine.
    pub fn cancel(&self, task_id: &str) {
        if let Some(e) = self.lock().remove(task_id) {
            e.cancel();
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, Arc<TaskEngine>>> {
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

/// The JSON form of registry credentials kept as a hub secret.
#[derive(Deserialize)]
struct RegistryLogin {
    username: String,
    password: String,
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
            let login: RegistryLogin = serde_json::from_slice(&value.0).map_err(|_| {
                Error::BadRequest(format!(
                    "secret {name:?} is not a registry login (JSON with username and password)"
                ))
            })?;
            Some(dth_oci::registry::Credentials::new(
                login.username,
                login.password,
            ))
        }
    })
}

/// Replaces a reference to a hub secret by the access key it holds.
pub(crate) async fn resolve(store: &dyn Store, spec: &EndpointSpec) -> Result<EndpointSpec, Error> {
    let Credentials::Secret { name } = &spec.credentials else {
        return Ok(spec.clone());
    };
    let value = store.secret(name).await?.ok_or_else(|| {
        Error::BadRequest(format!("secret {name:?} does not exist; create it first"))
    })?;
    let key: AccessKey = serde_json::from_slice(&value.0).map_err(|_| {
        Error::BadRequest(format!(
            "secret {name:?} is not an access key (JSON with access_key_id and secret_access_key)"
        ))
    })?;
    let mut spec = spec.clone();
    spec.credentials = Credentials::Static {
        access_key_id: key.access_key_id,
        secret_access_key: key.secret_access_key,
        session_token: key.session_token,
    };
    Ok(spec)
}
