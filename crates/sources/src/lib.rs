//! What Coffer backs up, and how it comes back.
//!
//! Each source turns something into objects of a repository, restores it, and can check a
//! restore. Today: [`files`] (directories with full metadata). PostgreSQL and MongoDB come
//! later (see `DESIGN.md`, roadmap).

pub mod files;
