//! The continuous security watch job: polls the layers of one repository's store. (Issue 14: to be built.)
