//! The drift watch: the store's protective configuration against its baseline. (Issue 14: to be built.)
