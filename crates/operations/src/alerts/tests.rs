//! Alerts tests
