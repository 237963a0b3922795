//! The drop counter: points dropped at the size limit and not yet
//! reported. The count moves from this file to the record that reports it
//! ([`Record::dropped`](crate::Record::dropped)) in the append that spools
//! that record, and back when that record is dropped in its turn.

use crate::files::{fsync_dir, read_count, replace_file};
use crate::{Spool, SpoolError, io_err};
use std::path::PathBuf;

pub(crate) const DROPPED_FILE: &str = "dropped";

impl Spool {
    fn dropped_path(&self) -> PathBuf {
        self.dir().join(DROPPED_FILE)
    }

    /// Lock held.
    pub(crate) fn read_dropped(&self) -> u64 {
        read_count(&self.dropped_path())
    }

    /// Lock held.
    pub(crate) fn write_dropped(&self, n: u64) -> Result<(), SpoolError> {
        let path = self.dropped_path();
        let tmp = self.dir().join(format!("{DROPPED_FILE}.tmp"));
        replace_file(&path, &tmp, format!("{n}\n").as_bytes(), true)
            .map_err(|e| io_err(&path, "cannot write the drop counter", e))?;
        fsync_dir(self.dir())
    }

    /// Lock held.
    pub(crate) fn add_dropped(&self, n: u64) -> Result<(), SpoolError> {
        self.write_dropped(self.read_dropped().saturating_add(n))
    }

    /// The points dropped at the size limit since the last call (for the
    /// self-metrics), resetting the counter.
    pub fn take_dropped(&self) -> Result<u64, SpoolError> {
        let _guard = self.lock()?;
        let n = self.read_dropped();
        if n > 0 {
            self.write_dropped(0)?;
        }
        Ok(n)
    }
}
