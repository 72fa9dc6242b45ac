//! The testkit's integration tests: the contract suite against `LocalVault`, crash trials,
//! bit-rot detection.
