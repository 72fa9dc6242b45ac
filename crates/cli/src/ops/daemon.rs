//! `coffer daemon`.
