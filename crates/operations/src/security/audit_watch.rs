//! The local vault's audit log, followed by sequence: which entries are security events.
//! (Issue 14: to be built.)
