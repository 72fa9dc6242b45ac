//! `coffer alert test TARGET`.
