//! `coffer status`.
