/*!
The container image engine of Data Transfer Hub: copy images between OCI/Docker registries (and
from local OCI layouts and `docker save` archives), incrementally by digest, multi-arch images
whole, every streamed byte verified.

Client modules talk to one registry: [`registry`] (our own OCI distribution client on `reqwest`:
[`registry::auth`] for anonymous, Basic and Bearer token auth, [`registry::retry`] for backoff and
per-(registry, action) rate windows, [`registry::client`] for manifests, blobs, uploads, mounts and
listings) and [`profile`] (registry quirks in one table, the only place that looks at which
registry we talk to). [`source`] puts every place images come from behind one trait,
[`source::ImageSource`]: a registry, ECR (the ECR API lists and creates repositories and issues
tokens), Artifactory, an OCI layout directory, a docker archive.

Engine modules decide and move: [`plan`] (selection, tag filters, destination names: the list of
[`plan::ImageJob`]s), [`copy`] (the [`copy::Copier`]: HEAD-only skip of unchanged tags, global
blob dedupe with cross-repository mounts, parallel images and blobs, children before the index
and the tag last) and [`verify`] (the digest check of streamed blobs).

[`open`] is the entry point both `dth image sync` and the hub's image tasks use: it turns a
[`dth_model::ImageSync`] (locations, credentials per host, filters, options) into both sides
connected, the plan's inputs and copiers.

Data enters as an [`source::ImageSource`], a destination [`registry::RegistryClient`] and the
jobs from [`plan::plan`]; it leaves as images at the destination, a stream of
[`copy::ImageReport`]s and a [`copy::Summary`]. This crate knows nothing of the store or the CLI.

It never reports an image copied unless every blob it streamed matched its digest and the
registry accepted every manifest under its digest; it never pushes a tag before what the tag
points to; it never re-serialises a manifest it copies (digests are preserved; only a platform
selection writes a new index); and it never puts a credential into a log line, an error or a
`Debug` print.

Request retries live here ([`registry::retry`]: seconds, in memory, bounded by count and time,
with jitter; 429 answers shrink the registry's rate window and honour `Retry-After`). Item
retries (minutes, durable) belong to the store and runtime.

```no_run
# async fn f() -> Result<(), dth_oci::Error> {
use std::sync::Arc;
use dth_oci::copy::{Copier, CopyOptions};
use dth_oci::plan::{Naming, Selection, TagFilter, plan};
use dth_oci::registry::{ClientConfig, RegistryClient};
use dth_oci::source::RegistrySource;

let src = RegistryClient::connect(ClientConfig::new("registry.example.com")).await?;
let dst = RegistryClient::connect(ClientConfig::new("mirror.example.com")).await?;
let source = Arc::new(RegistrySource::new(src));
let jobs = plan(source.as_ref(), &Selection::All, &TagFilter::default(), &Naming::Same).await?;
let summary = Arc::new(Copier::new(source, dst, CopyOptions::default())).run(jobs, None).await;
assert!(summary.is_success());
# Ok(()) }
```
*/
#![deny(missing_docs)]

pub mod copy;
mod error;
pub mod manifest;
pub mod open;
pub mod plan;
pub mod profile;
pub mod reference;
pub mod registry;
pub mod source;
pub mod verify;

pub use error::{Error, Result, is_transient_status};
pub use reference::{Digest, ImageEntry, Location, Reference, TagSelector};
