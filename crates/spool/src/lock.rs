//! The file lock that serialises every change to a spool directory.

use std::fs::{self, File, OpenOptions};
use std::io;
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;

/// An exclusive file lock (the standard library's, an `flock` on Linux),
/// released when dropped (the file is closed). Blocking: see the crate's
/// documentation.
#[derive(Debug)]
pub struct FileLock {
    _file: File,
}

impl FileLock {
    fn open(path: &Path) -> io::Result<File> {
        OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .mode(0o600)
            .custom_flags(libc::O_NOFOLLOW)
            .open(path)
    }

    /// Waits for the lock.
    pub fn exclusive(path: &Path) -> io::Result<FileLock> {
        let file = Self::open(path)?;
        loop {
            match file.lock() {
                Ok(()) => return Ok(FileLock { _file: file }),
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(e),
            }
        }
    }

    /// The lock, or `None` when another holder has it.
    pub fn try_exclusive(path: &Path) -> io::Result<Option<FileLock>> {
        let file = Self::open(path)?;
        loop {
            match file.try_lock() {
                Ok(()) => return Ok(Some(FileLock { _file: file })),
                Err(fs::TryLockError::WouldBlock) => return Ok(None),
                Err(fs::TryLockError::Error(e)) if e.kind() == io::ErrorKind::Interrupted => {
                    continue;
                }
                Err(fs::TryLockError::Error(e)) => return Err(e),
            }
        }
    }
}
