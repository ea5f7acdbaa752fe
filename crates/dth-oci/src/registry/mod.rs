//! The OCI distribution client: [`client`] (requests, manifests, blobs, uploads, listings),
//! [`auth`] (anonymous, Basic, Bearer tokens, Docker config files), [`retry`] (backoff and rate
//! windows).

pub mod auth;
pub mod client;
pub mod retry;

pub use auth::{Challenge, Credentials};
pub use client::{BlobStream, ClientConfig, ManifestHead, Mount, RegistryClient, RequestCounts};
pub use retry::{RateWindow, RetryPolicy};
