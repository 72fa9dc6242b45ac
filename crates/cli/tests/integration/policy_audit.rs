//! Tests of issue 15 (policy_audit): filled in by its part.
