//! The drop counter: points dropped at the size limit and not yet
//! reported, in the file `dropped`. The count moves from this file to the
//! record that reports it ([`Record::dropped`](crate::Record::dropped)) in
//! the append that spools that record, and back when that record is
//! dropped in its turn. Every function here is called with the spool's
//! lock held.

use crate::files::{fsync_dir, read_count, replace_file};
use crate::{SpoolError, io_err};
use std::path::Path;

pub(crate) const DROPPED_FILE: &str = "dropped";

/// The count in the spool at `dir` (0 when there is none).
pub(crate) fn read(dir: &Path) -> u64 {
    read_count(&dir.join(DROPPED_FILE))
}

/// Sets the count, written whole and synced.
pub(crate) fn write(dir: &Path, n: u64) -> Result<(), SpoolError> {
    let path = dir.join(DROPPED_FILE);
    let tmp = dir.join(format!("{DROPPED_FILE}.tmp"));
    replace_file(&path, &tmp, format!("{n}\n").as_bytes(), true)
        .map_err(|e| io_err(&path, "cannot write the drop counter", e))?;
    fsync_dir(dir)
}

/// Adds `n` to the count.
pub(crate) fn add(dir: &Path, n: u64) -> Result<(), SpoolError> {
    write(dir, read(dir).saturating_add(n))
}
