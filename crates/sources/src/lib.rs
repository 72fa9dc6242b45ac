//! What Coffer backs up, and how it comes back.
//!
//! Each source turns something into objects of a repository, restores it, and can check a
//! restore. Today: [`files`] (directories with full metadata), [`postgres`] (continuous
//! archiving and point-in-time recovery of a PostgreSQL cluster), and [`tar`], which
//! unpacks a tar archive stored as one file (a PostgreSQL base backup) in parallel.
//! MongoDB comes later (see `DESIGN.md`, roadmap).
//!
//! Nothing here parses a command line, prints or exits: jobs take options structs (serde,
//! and `clap::Args` behind the optional `clap` feature, which only the CLI turns on) and a
//! `JobControl`, and return typed reports and errors.

pub mod files;
mod owners;
pub mod postgres;
pub mod tar;
