//! The testkit's integration tests: the contract suite against `LocalVault` and (in `s3`)
//! against `S3Store` on real S3 servers, crash trials,
//! bit-rot detection.

mod bitrot;
mod contract;
mod crash;
mod iam;
mod model;
mod s3;
