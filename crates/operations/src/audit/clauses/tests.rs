//! Unit tests of the verdicts.
