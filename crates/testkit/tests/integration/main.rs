//! The testkit's integration tests: the contract suite against `LocalVault` and (in `s3`)
//! against `S3Store` on real S3 servers, crash trials,
//! bit-rot detection.

#![allow(clippy::disallowed_macros, reason = "test code reports seeds and timings on stderr")]

mod bitrot;
mod contract;
mod crash;
mod iam;
mod model;
mod s3;
