//! File helpers: nothing in the spool directory is trusted to be what its
//! name says. A file is read without following a symbolic link and only
//! when it is a regular file (a FIFO cannot block a read), and written
//! through a temporary file created with `O_CREAT | O_EXCL | O_NOFOLLOW`,
//! so a link planted at the temporary name is never written through.

use crate::{SpoolError, io_err};
use std::fs::{self, File, OpenOptions};
use std::io::{self, Read, Write};
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::Path;

/// What a directory entry is, for messages.
pub(crate) fn kind_of(m: &fs::Metadata) -> &'static str {
    use std::os::unix::fs::FileTypeExt;
    let t = m.file_type();
    if t.is_dir() {
        "a directory"
    } else if t.is_symlink() {
        "a symbolic link"
    } else if t.is_fifo() {
        "a FIFO"
    } else if t.is_socket() {
        "a socket"
    } else if t.is_block_device() || t.is_char_device() {
        "a device"
    } else {
        "not a regular file"
    }
}

/// Opens `path` for reading if it is a regular file (`O_NOFOLLOW`,
/// `O_NONBLOCK`).
pub(crate) fn open_regular(path: &Path) -> io::Result<File> {
    let f = OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NONBLOCK | libc::O_NOFOLLOW)
        .open(path)?;
    if !f.metadata()?.file_type().is_file() {
        return Err(io::Error::other("not a regular file"));
    }
    Ok(f)
}

/// At most `limit` bytes of the regular file `path`.
pub(crate) fn read_regular(path: &Path, limit: u64) -> io::Result<Vec<u8>> {
    let mut bytes = Vec::new();
    open_regular(path)?.take(limit).read_to_end(&mut bytes)?;
    Ok(bytes)
}

/// Replaces `path` with `bytes`: written to `tmp` with exactly mode 0600,
/// synced when `sync`, then renamed over `path`. A crash leaves the old
/// file or the new one, never a mix (unsynced: possibly the new name on
/// data not yet written, for files whose reader checks them); on error
/// `tmp` is removed. Syncing the directory is left to the caller.
pub(crate) fn replace_file(path: &Path, tmp: &Path, bytes: &[u8], sync: bool) -> io::Result<()> {
    let written = (|| {
        let mut f = create_new(tmp)?;
        f.set_permissions(fs::Permissions::from_mode(0o600))?;
        f.write_all(bytes)?;
        if sync {
            f.sync_all()?;
        }
        fs::rename(tmp, path)
    })();
    if written.is_err() {
        let _ = fs::remove_file(tmp);
    }
    written
}

/// Creates `tmp` afresh: whatever is there (a crashed writer's file, a
/// planted link) is removed, never opened.
fn create_new(tmp: &Path) -> io::Result<File> {
    let create = || {
        OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .custom_flags(libc::O_NOFOLLOW)
            .open(tmp)
    };
    match create() {
        Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {
            fs::remove_file(tmp)?;
            create()
        }
        r => r,
    }
}

pub(crate) fn fsync_dir(dir: &Path) -> Result<(), SpoolError> {
    File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(|e| io_err(dir, "cannot sync the directory", e))
}

/// A counter kept as text in a file of the spool (0 when absent or
/// unreadable), read without following a link.
pub(crate) fn read_count(path: &Path) -> u64 {
    read_regular(path, 64)
        .ok()
        .and_then(|b| String::from_utf8_lossy(&b).trim().parse().ok())
        .unwrap_or(0)
}
