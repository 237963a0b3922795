//! File-system helpers shared by the state files, the unit installer and
//! the answers kept for conditional requests. (The spool crate keeps the
//! few it needs in crates/spool/src/files.rs, so that it stands alone.)
//!
//! Nothing under the state directory is trusted to be what its name says:
//! a file is read with [`read_file`] (`O_NOFOLLOW`: a symbolic link is
//! refused, not followed; only a regular file is read, so a FIFO cannot
//! block it) and written through a temporary file created with
//! `O_CREAT | O_EXCL | O_NOFOLLOW` ([`replace_file`]), so a link planted at
//! the temporary name is never written through.

use std::io::{Read, Write};
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::Path;

/// The error of opening `path` with `O_NOFOLLOW` when it is a link, said
/// plainly (the system says "Too many levels of symbolic links").
fn no_link(e: std::io::Error) -> std::io::Error {
    if e.raw_os_error() == Some(libc::ELOOP) {
        std::io::Error::new(
            std::io::ErrorKind::InvalidInput,
            "a symbolic link, not followed",
        )
    } else {
        e
    }
}

/// Opens `path` for reading if it is a regular file, without following a
/// symbolic link at its last component (an error naming it a link) and
/// without blocking on a FIFO.
pub fn open_regular(path: &Path) -> std::io::Result<std::fs::File> {
    let f = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NOFOLLOW | libc::O_NONBLOCK)
        .open(path)
        .map_err(no_link)?;
    let t = f.metadata()?.file_type();
    if !t.is_file() {
        return Err(std::io::Error::new(
            std::io::ErrorKind::InvalidInput,
            if t.is_dir() {
                "a directory, not a file"
            } else {
                "not a regular file"
            },
        ));
    }
    Ok(f)
}

/// The content of the regular file `path` ([`open_regular`]): a symbolic
/// link, a FIFO or a device is an error, never read.
pub fn read_file(path: &Path) -> std::io::Result<Vec<u8>> {
    let mut f = open_regular(path)?;
    let mut bytes = Vec::new();
    f.read_to_end(&mut bytes)?;
    Ok(bytes)
}

/// Opens the regular file `path` to append (or to set its times), without
/// following a symbolic link.
pub fn open_append(path: &Path) -> std::io::Result<std::fs::File> {
    std::fs::OpenOptions::new()
        .append(true)
        .custom_flags(libc::O_NOFOLLOW | libc::O_NONBLOCK)
        .open(path)
        .map_err(no_link)
}

/// Creates `tmp` afresh with exactly `mode`: `O_CREAT | O_EXCL |
/// O_NOFOLLOW`, so whatever is there (a stale file of a crashed writer, or
/// a link planted to have a file elsewhere overwritten) is removed, never
/// opened; a link planted again meanwhile makes it fail.
pub fn create_new(tmp: &Path, mode: u32) -> std::io::Result<std::fs::File> {
    let create = || {
        std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(mode)
            .custom_flags(libc::O_NOFOLLOW)
            .open(tmp)
    };
    match create() {
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
            std::fs::remove_file(tmp)?;
            create()
        }
        r => r,
    }
}

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
        let mut f = create_new(tmp, mode)?;
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

/// Makes sure `dir` is a directory (not a symbolic link to one), creating
/// it with mode 0700 when missing (its parent must exist); one already
/// there is left as it is.
pub fn private_dir(dir: &Path) -> std::io::Result<()> {
    use std::os::unix::fs::DirBuilderExt;
    match std::fs::DirBuilder::new().mode(0o700).create(dir) {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {}
        Err(e) => return Err(e),
    }
    let t = std::fs::symlink_metadata(dir)?.file_type();
    if t.is_symlink() {
        return Err(std::io::Error::new(
            std::io::ErrorKind::InvalidInput,
            "a symbolic link, not followed",
        ));
    }
    if !t.is_dir() {
        return Err(std::io::Error::new(
            std::io::ErrorKind::InvalidInput,
            "not a directory",
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A link planted at the temporary name: removed, never written
    /// through; the file it points to is unchanged.
    #[test]
    fn a_link_at_the_temporary_name_is_not_written_through() {
        let d = tempfile::tempdir().unwrap();
        let victim = d.path().join("victim");
        std::fs::write(&victim, "precious").unwrap();
        let path = d.path().join("status.json");
        let tmp = d.path().join(".status.json.1.tmp");
        std::os::unix::fs::symlink(&victim, &tmp).unwrap();
        replace_file(&path, &tmp, b"{}", 0o600).unwrap();
        assert_eq!(std::fs::read_to_string(&victim).unwrap(), "precious");
        assert_eq!(std::fs::read(&path).unwrap(), b"{}");
        assert!(std::fs::symlink_metadata(&tmp).is_err());
        // A stale temporary file of a crashed writer is replaced too.
        std::fs::write(&tmp, "stale, longer than the new content").unwrap();
        replace_file_unsynced(&path, &tmp, b"[]", 0o600).unwrap();
        assert_eq!(std::fs::read(&path).unwrap(), b"[]");
    }

    #[test]
    fn links_fifos_and_directories_are_not_read() {
        let d = tempfile::tempdir().unwrap();
        let secret = d.path().join("secret");
        std::fs::write(&secret, "s3cr3t").unwrap();
        let link = d.path().join("link");
        std::os::unix::fs::symlink(&secret, &link).unwrap();
        let e = read_file(&link).unwrap_err();
        assert!(e.to_string().contains("symbolic link"), "{e}");
        let e = open_append(&link).unwrap_err();
        assert!(e.to_string().contains("symbolic link"), "{e}");
        let fifo = d.path().join("fifo");
        let c = std::ffi::CString::new(fifo.to_str().unwrap()).unwrap();
        // SAFETY: mkfifo(3) on a NUL-terminated path.
        assert_eq!(unsafe { libc::mkfifo(c.as_ptr(), 0o600) }, 0);
        let e = read_file(&fifo).unwrap_err();
        assert!(e.to_string().contains("not a regular file"), "{e}");
        let e = read_file(d.path()).unwrap_err();
        assert!(e.to_string().contains("directory"), "{e}");
        assert_eq!(read_file(&secret).unwrap(), b"s3cr3t");
    }

    #[test]
    fn private_dirs_are_made_0700_and_links_refused() {
        let d = tempfile::tempdir().unwrap();
        let home = d.path().join("home");
        private_dir(&home).unwrap();
        let m = std::fs::metadata(&home).unwrap();
        assert!(m.is_dir());
        assert_eq!(m.permissions().mode() & 0o777, 0o700);
        // Again: left as it is.
        std::fs::set_permissions(&home, std::fs::Permissions::from_mode(0o750)).unwrap();
        private_dir(&home).unwrap();
        let m = std::fs::metadata(&home).unwrap();
        assert_eq!(m.permissions().mode() & 0o777, 0o750);
        let link = d.path().join("link");
        std::os::unix::fs::symlink(&home, &link).unwrap();
        let e = private_dir(&link).unwrap_err();
        assert!(e.to_string().contains("symbolic link"), "{e}");
        let file = d.path().join("file");
        std::fs::write(&file, "").unwrap();
        let e = private_dir(&file).unwrap_err();
        assert!(e.to_string().contains("not a directory"), "{e}");
    }
}
