//! File-system helpers shared by the spool, the state files, the unit
//! installer and the answers kept for conditional requests.

use std::io::Write;
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::Path;

/// Replaces `path` with `bytes` atomically: written to `tmp` with exactly
/// `mode` (whatever the umask), synced, then renamed over `path`. A crash
/// leaves the old file or the new one, never a mix; on error `tmp` is
/// removed. Syncing the directory is left to callers that need it.
pub fn replace_file(path: &Path, tmp: &Path, bytes: &[u8], mode: u32) -> std::io::Result<()> {
    write_and_rename(path, tmp, bytes, mode, true)
}

/// [`replace_file`] without the sync, for files that may be lost or
/// damaged by a crash because their reader checks them (the answers kept
/// for conditional requests): a rename never leaves a mix of old and new,
/// but a crash soon after may leave the new name on data not yet written.
pub fn replace_file_unsynced(
    path: &Path,
    tmp: &Path,
    bytes: &[u8],
    mode: u32,
) -> std::io::Result<()> {
    write_and_rename(path, tmp, bytes, mode, false)
}

fn write_and_rename(
    path: &Path,
    tmp: &Path,
    bytes: &[u8],
    mode: u32,
    sync: bool,
) -> std::io::Result<()> {
    let written = (|| {
        let mut f = std::fs::OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(mode)
            .open(tmp)?;
        f.set_permissions(std::fs::Permissions::from_mode(mode))?;
        f.write_all(bytes)?;
        if sync {
            f.sync_all()?;
        }
        std::fs::rename(tmp, path)
    })();
    if written.is_err() {
        let _ = std::fs::remove_file(tmp);
    }
    written
}
