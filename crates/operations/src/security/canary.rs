//! The immutability canary: probes that must be refused. (Issue 14: to be built.)
