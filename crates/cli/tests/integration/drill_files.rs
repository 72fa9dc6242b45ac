//! Tests of issue 15 (drill_files): filled in by its part.
