//! `coffer status`: per job the last success and failure, the next run and whether it is
//! overdue; per PostgreSQL source the recovery window and archive lag. Exit code non-zero
//! when anything is failing or overdue.
