//! Placeholder; see the crash trials.
fn main() {}
