/*!
The hub's runtime: turns stored tasks into runs and runs into verified copies. It is the only crate that
joins the store ([`dth_store`]) with the object engine ([`dth_s3`]) and the image engine
([`dth_oci`]).

- [`Hub`] is the control surface the API and CLI call: create, start, stop, delete tasks, retry dead
  items. Each call validates first and changes nothing on bad input.
- The **scheduler** ([`Hub::run_scheduler`]) fires due runs (cron, fixed rate, once); with several hub
  processes on one PostgreSQL only the leader fires, and each firing is a compare-and-set on the task's
  `next_run_at`, so a schedule fires once. On taking the lead it resumes finders of unfinished runs.
- The **finder** of a run lists and diffs both sides with [`dth_s3::Finder`] and streams what must be
  copied into the store as items, in batches.
- **Workers** ([`Hub::run_workers`]) claim items under a lease, copy and verify them with
  [`dth_s3::Copier`], heartbeat while working, and ack, retry later, or dead-letter. Objects above the
  task's giant threshold become one item per part, so every worker shares them; the worker that acks the
  last part completes the upload. A worker process works on at most its `concurrency` items at once, and
  on at most a task's `options.transfers` of that task's items (objects, parts, deletes); items of a task
  at its limit are given back at claim time for other workers rather than held waiting.
- **Image tasks** plan their images with [`dth_oci::open`] (listing, tag filters, names), count the
  tags whose destination digest already matches (HEADs only), and queue one item per other image; a
  worker copies it with the task's shared [`dth_oci::copy::Copier`] (blobs deduplicated across the
  task's images in that process), at most the task's `concurrency` images at once per worker process
  (the same per-task limit as an object task's `transfers`).
- **Retention** ([`Hub::purge_expired_items`]): the leader deletes the items of runs that ended more
  than the retention setting's days ago (default 30, 0: forever), in bounded batches, every hour;
  the runs keep their counters.
- **Alarms** go to a task's webhooks and email addresses when items are dead-lettered or the task fails.
- **Metrics** ([`metrics`]): every metric name, defined once; the workers count acks, copies,
  retries and dead items, runs their duration, [`metrics::timed`] the store calls; the store's
  gauges are read at scrape time ([`Hub::metrics_text`]). [`emf`] prints the queue depth as
  CloudWatch Embedded Metric Format lines for scaling on AWS.

Run counters are never kept here: they come from item states in the store.
*/

pub mod access;
mod ack_batch;
mod alarm;
mod edit;
pub mod emf;
mod engine;
pub mod events;
mod finder;
mod hub;
pub mod metrics;
mod payload;
mod plan;
mod progress;
mod retention;
mod scheduler;
mod settings;
mod upload_log;
mod worker;

pub use alarm::SmtpConfig;
pub use events::EventsTaken;
pub use events::webhook::WebhookAuth;
pub use hub::{Config, Hub, SecretEntry, SecretKind};
pub use progress::Progress;
pub use retention::{DEFAULT_PURGE_AFTER_DAYS, MAX_PURGE_AFTER_DAYS, PURGE_BATCH, Retention};

/// What a runtime call can fail with; the API maps the kinds to HTTP statuses.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The request is malformed or refers to something unusable; nothing was changed.
    #[error("{0}")]
    BadRequest(String),
    /// No such task, run or item.
    #[error("{0} not found")]
    NotFound(String),
    /// The caller is not who they claim (wrong password, unknown token).
    #[error("{0}")]
    Unauthorized(String),
    /// The caller may not do this (a disabled or locked account, a role too low).
    #[error("{0}")]
    Forbidden(String),
    /// The caller's role is too low, or a temporary password must be changed first.
    #[error(transparent)]
    Denied(#[from] dth_model::Denied),
    /// Too many failed sign-ins: try again after this many seconds.
    #[error("too many failed sign-ins; try again in {retry_after} s")]
    Throttled {
        /// Seconds to wait.
        retry_after: u64,
    },
    /// The request conflicts with the current state.
    #[error("{0}")]
    Conflict(String),
    /// The store failed.
    #[error(transparent)]
    Store(dth_store::Error),
    /// The object engine failed.
    #[error(transparent)]
    Engine(#[from] dth_s3::Error),
    /// The image engine failed.
    #[error(transparent)]
    Image(#[from] dth_oci::Error),
}

impl Error {
    /// Whether trying again later may help (a network error, a busy registry, the store).
    pub fn is_retryable(&self) -> bool {
        match self {
            Error::Store(_) => true,
            Error::Engine(e) => e.is_retryable(),
            Error::Image(e) => e.is_retryable(),
            _ => false,
        }
    }
}

impl From<dth_store::Error> for Error {
    fn from(e: dth_store::Error) -> Self {
        match e {
            dth_store::Error::NotFound { what, id } => Error::NotFound(format!("{what} {id}")),
            dth_store::Error::Conflict(m) => Error::Conflict(m),
            e => Error::Store(e),
        }
    }
}

impl From<dth_model::ParseError> for Error {
    fn from(e: dth_model::ParseError) -> Self {
        Error::BadRequest(e.to_string())
    }
}
