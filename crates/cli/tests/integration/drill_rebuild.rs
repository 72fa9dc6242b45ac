//! Tests of issue 15 (drill_rebuild): filled in by its part.
