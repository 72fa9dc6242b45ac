//! Prometheus metrics: per job last success, status, duration, bytes and overdue; per
//! repository and PostgreSQL source the numbers `status` shows; alert deliveries. Served on
//! the configured listener in the official text exposition format.
//!
//! Invariant guarded here: no label carries a secret or grows without bound (no
//! per-snapshot or per-run labels).
