//! What Coffer backs up, and how it comes back.
//!
//! Each source turns something into objects of a repository, restores it, and can check a
//! restore. Today: [`files`] (directories with full metadata), and [`tar`], which unpacks
//! a tar archive stored as one file (a PostgreSQL base backup) in parallel. MongoDB comes
//! later (see `DESIGN.md`, roadmap).

pub mod files;
mod owners;
pub mod tar;
