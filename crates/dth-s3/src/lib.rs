/*!
The object engine of Data Transfer Hub: copy objects between any two S3-compatible endpoints,
incrementally, in parallel, and verified.

Client modules talk to one S3 service: [`profile`] (provider quirks, the only place that looks at the
provider), [`endpoint`] (an SDK client built from an [`dth_model::EndpointSpec`]), [`list`] (streamed
listings). Engine modules decide and move: [`diff`] (merge-join of two sorted listings), [`sort`] (the
fallback for out-of-order listings), [`filter`], [`finder`] (list both sides and decide per key), [`copy`], [`multipart`] and [`giant`] (verified copies,
whole or part by part), [`sync`] (a whole run in one process: finder, transfers, counters, reports).

Data enters as two [`Endpoint`]s and a [`dth_model::SyncOptions`]; it leaves as objects written at the
destination, a stream of [`sync::ObjectReport`]s, and a [`sync::Summary`]. This crate knows nothing of
the store or the CLI, and it never reports an object as copied unless the copy was verified.

```no_run
# async fn f() -> Result<(), dth_s3::Error> {
use dth_model::{EndpointSpec, Provider, S3Url, SyncOptions};
use dth_s3::{Endpoint, Side, Sync};
let src = EndpointSpec::new(Provider::Aws, S3Url::parse("s3://src-bucket/photos").unwrap());
let dst = EndpointSpec::new(Provider::AliyunOss, S3Url::parse("s3://dst-bucket").unwrap());
let opts = SyncOptions::default();
let sync = Sync::new(
    Endpoint::connect(Side::Source, &src, opts.retries).await?,
    Endpoint::connect(Side::Destination, &dst, opts.retries).await?,
    opts,
    None, // or a file of prefixes to list
).await?;
let summary = sync.run().await;
assert!(summary.is_success());
# Ok(()) }
```
*/
#![deny(missing_docs)]

mod adapt;
mod bwlimit;
pub mod copy;
pub mod diff;
pub mod endpoint;
mod error;
pub mod event;
pub mod event_queue;
pub mod filter;
pub mod finder;
pub mod giant;
pub mod list;
mod list_page;
mod meta;
pub mod multipart;
pub mod profile;
pub mod sort;
mod stats;
pub mod sync;
pub mod uploads;
mod write;

pub use copy::{Copied, Copier, Transferred};
pub use endpoint::Endpoint;
pub use error::{Error, Result, Side};
pub use finder::{Finder, Found};
pub use giant::{GiantUpload, PartCopied};
pub use meta::{Keyed, ObjectMeta};
pub use multipart::{OpenUpload, Unrecorded, UploadLog};
pub use profile::{EtagKind, Profile};
pub use stats::{Snapshot, Stats};
pub use sync::{ObjectReport, Summary, Sync};
