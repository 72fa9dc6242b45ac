//! Tests of issue 15 (drill_pg): filled in by its part.
