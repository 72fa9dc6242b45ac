//! Tests of issue 15 (drill_schedule): filled in by its part.
