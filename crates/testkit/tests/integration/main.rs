//! The testkit's integration tests: the contract suite against `LocalVault`, crash trials,
//! bit-rot detection.

mod bitrot;
mod contract;
mod crash;
mod model;
