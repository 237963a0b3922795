//! The names of a spool directory's files, and its segments as listed.

/// A segment's name ends so: `<seq>-<pid>-<n>.seg`.
pub(crate) const SEGMENT_SUFFIX: &str = ".seg";
/// A file being written ends so; renamed into place once written.
pub(crate) const TMP_SUFFIX: &str = ".tmp";

/// A segment file as listed: name, size and inode.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Listed {
    pub name: String,
    pub len: u64,
    pub ino: u64,
}
