//! Prints the access matrix as Markdown (the table in docs/store.md).
#![allow(clippy::disallowed_macros, reason = "a program of its own: it prints")]
fn main() {
    print!("{}", coffer_store::matrix_markdown());
}
