//! Prints the access matrix as Markdown (the table in docs/store.md).
fn main() {
    print!("{}", coffer_store::matrix_markdown());
}
