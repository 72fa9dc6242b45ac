//! Test support for Coffer (`publish = false`): the `ObjectStore` contract suite, written
//! once and run against every implementation, a small in-memory model of the contract's
//! semantics for property tests, and harnesses that start real components (the S3 test
//! servers: [`s3`]; a PostgreSQL 15 server: [`pg`]; a TCP proxy to cut them off mid-request: [`proxy`]; a CloudTrail emulator, S3 proxy + EventBridge/SQS bus: [`cloudtrail`]), and a directory
//! tree described for comparison ([`tree`]); mail-like messages for the size tests ([`mail`]).
//!
//! This crate enables `coffer-store/test-clock`, so a movable [`coffer_store::Clock`]
//! exists only in builds that link it (tests); release builds of `coffer` cannot move time.
//! It also enables `coffer-store/raw-client` (`S3Store::client()`, raw SDK requests that
//! bypass the store's checks), for the same reason: only tests may go around the store.

pub mod cloudtrail;
pub mod contract;
pub mod crash;
pub mod eventbridge;
pub mod http;
pub mod mail;
pub mod model;
pub mod pg;
pub mod proxy;
pub mod s3;
pub mod smtp;
pub mod tree;

/// How long a test waits for what a working component does within seconds (a server to
/// start, a daemon to run a job, an alert to arrive). Only a component that never gets
/// there reaches it, so it is long: on a loaded 2-core machine with a slow disk, what takes
/// a second alone has taken over 30. A test that waits with it measures nothing about
/// speed; timings belong in the benchmarks.
pub const WAIT: std::time::Duration = std::time::Duration::from_secs(180);
