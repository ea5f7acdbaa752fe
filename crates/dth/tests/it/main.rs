//! End-to-end tests of `dth`: the real binary against real S3 servers (s3s-fs, moto, rclone serve s3)
//! started by `dth-testkit` on free 127.0.0.1 ports. Every test asserts the data at the destination:
//! keys, bytes, metadata.

mod client;
mod common;
mod deploy;
mod hub;
mod image_common;
mod image_ecr;
mod image_faults;
mod image_hub;
mod image_local;
mod image_sync;
mod open_uploads;
mod portal_browser;
mod s3_faults;
mod s3_sync;
mod schemathesis;
mod signin;
mod uploads;
