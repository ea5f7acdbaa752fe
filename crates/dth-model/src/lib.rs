/*!
Plain data shared by every Data Transfer Hub crate: where objects live ([`EndpointSpec`], [`Provider`],
[`Credentials`]), how a sync decides and copies ([`SyncOptions`], [`CompareMode`]), and how each object
ended ([`Action`], [`Verification`]).

This crate does no I/O. Everything here is serde-serialisable so the same values travel from the CLI, the
HTTP API and the store to the engines. Validation happens when values are parsed ([`std::str::FromStr`]
impls and [`S3Url::parse`]), so an engine never sees a malformed endpoint.

Secrets never leave through `Debug`: [`Credentials`] prints `[REDACTED]` in place of keys.
*/
#![deny(missing_docs)]

mod access;
mod counters;
mod endpoint;
mod events;
mod image;
mod json;
mod options;
mod outcome;
mod plan;
mod secret;
mod size;
mod task;

pub use access::{Actor, AuthMethod, Denied, Role};
pub use counters::RunCounters;
pub use endpoint::{Credentials, EndpointSpec, ParseError, Provider, S3Url};
pub use events::{EventSource, sequencer_cmp};
pub use image::{
    DEFAULT_IMAGE_ATTEMPTS, DEFAULT_IMAGE_CONCURRENCY, ImageEndpoint, ImageSync,
    RegistryCredentials,
};
pub use json::whole_numbers;
pub use options::{CompareMode, Sse, SyncOptions};
pub use outcome::{Action, Verification};
pub use plan::{
    CostEstimate, CostLine, ImagePlan, ObjectPlan, Plan, Price, PriceTable, PricedSide, Requests,
};
pub use secret::{AccessKey, RegistryLogin, SecretValue, check_secret_name};
pub use size::parse_size;
pub use task::{
    AlarmTarget, DEFAULT_GIANT_THRESHOLD, DEFAULT_LEASE, DEFAULT_MAX_ATTEMPTS, ItemKind, ItemState,
    Job, RunStatus, S3Job, Schedule, TaskSpec, TaskStatus, Trigger,
};
