//! Test kit for Data Transfer Hub: real S3 servers and a fault-injecting proxy for integration tests.
//!
//! Our tests never talk to hand-written mocks of S3. Instead this crate starts real, independent
//! S3 implementations as child processes on free `127.0.0.1` ports, one set per test:
//!
//! - [`PeerKind::S3sFs`]: `s3s-fs`, a Rust S3 server over a directory (buckets are directories,
//!   open multipart uploads are `.upload-*.json` files in the data root);
//! - [`PeerKind::Moto`]: `moto_server`, the Python AWS mock (in memory, accepts any credentials);
//! - [`PeerKind::RcloneServe`]: `rclone serve s3` over a directory (listings carry unquoted ETags,
//!   multipart ETags change after completion).
//!
//! They disagree in useful places, so tests should usually run against all of [`PeerKind::ALL`].
//!
//! The binaries are installed by `scripts/install-peers` into `.tools/` at the workspace root
//! (`scripts/test` does that and exports `DTH_TOOLS_DIR`). [`S3Peer::start`] finds them through
//! `DTH_TOOLS_DIR`, falling back to `<workspace>/.tools`, and panics with a hint when they are missing.
//!
//! [`FaultProxy`] sits between a client and a peer and injects `503 SlowDown` answers, corrupted
//! and truncated object bodies, delayed object GETs and a round trip added to every request (far
//! endpoints; `dth-latency-proxy` is the same as a command), counting what it did (and the most object
//! GETs in flight at once) so tests can assert on retries, verification and concurrency.
//!
//! [`PgServer`] runs a real PostgreSQL (Debian's binaries, `initdb` into a temporary directory) for
//! the store's tests.
//!
//! [`OidcProvider`] runs a real OpenID Connect provider (npm `oidc-provider` under `node`) with
//! given clients and accounts, and signs a user in through its login and consent forms, for the
//! hub's sign-in tests.
//!
//! Peers and proxies stop when dropped; peer processes are also killed if the test process dies.
//!
//! ```no_run
//! use dth_testkit::{FaultProxy, Faults, PeerKind, S3Peer};
//!
//! # async fn demo() {
//! for kind in PeerKind::ALL {
//!     let peer = S3Peer::start(kind).await;
//!     peer.create_bucket("src").await;
//!     let proxy = FaultProxy::start(&peer.endpoint_url(), Faults { fail_ratio: 0.2, ..Faults::default() }).await;
//!     let client = peer.client_for(&proxy.endpoint_url());
//!     // ... exercise the code under test with `client`, then look at what happened ...
//!     println!("{kind}: {:?}", proxy.stats());
//!     # drop(client);
//! }
//! # }
//! ```

/// A real OpenID Connect provider (npm `oidc-provider`) and a browser that signs in through it.
pub mod oidc;
mod peer;
mod postgres;
mod proxy;
mod registry;

pub use oidc::{OidcAccount, OidcClientConfig, OidcProvider};
pub use peer::{PeerKind, S3Peer, tools_dir, workspace_root};
pub use postgres::PgServer;
pub use proxy::{FaultProxy, Faults, ProxyStats};
pub use registry::{
    AccessLine, LogMark, OciLayout, Registry, RegistryFaults, RegistryProxy, RegistryProxyStats,
    Written, gzip_stored, inspect_raw, parse_access_log, pull_to_layout, push_layout, random_bytes,
    sha256_digest, skopeo, skopeo_try,
};
