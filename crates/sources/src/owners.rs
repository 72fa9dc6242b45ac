//! Owner names to numeric ids, each name looked up once.
//!
//! Restores set owners by name first (a snapshot's or an archive's numbers are those of the
//! machine that made it) and fall back to the recorded number when the name is unknown here.
//! Asking the user database per file would cost a lookup per file; both restores (files and
//! tar) share this cache.

use std::collections::HashMap;
use std::ffi::OsStr;
use std::os::unix::ffi::OsStrExt as _;
use std::sync::{Mutex, PoisonError};

/// Names already looked up, with their ids here (`None`: unknown on this machine).
#[derive(Default)]
pub(crate) struct Owners {
    users: Mutex<HashMap<Vec<u8>, Option<u32>>>,
    groups: Mutex<HashMap<Vec<u8>, Option<u32>>>,
}

impl Owners {
    /// The uid of user `name` on this machine.
    pub(crate) fn user(&self, name: &[u8]) -> Option<u32> {
        let mut m = self.users.lock().unwrap_or_else(PoisonError::into_inner);
        *m.entry(name.to_vec()).or_insert_with(|| uzers::get_user_by_name(OsStr::from_bytes(name)).map(|u| u.uid()))
    }

    /// The gid of group `name` on this machine.
    pub(crate) fn group(&self, name: &[u8]) -> Option<u32> {
        let mut m = self.groups.lock().unwrap_or_else(PoisonError::into_inner);
        *m.entry(name.to_vec()).or_insert_with(|| uzers::get_group_by_name(OsStr::from_bytes(name)).map(|g| g.gid()))
    }
}
