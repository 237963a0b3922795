//! The dead-letter file: batches the output refused for good, kept as line
//! protocol with `#` comments, so that they can be fixed and written again
//! by hand.

use crate::files::{fsync_dir, read_regular};
use crate::summary::{DeadLetters, Summary};
use crate::{SpoolError, io_err};
use chrono::Utc;
use std::fs::{self, OpenOptions};
use std::io::Write;
use std::os::unix::fs::{MetadataExt, OpenOptionsExt};
use std::path::Path;

pub const DEAD_LETTER_FILE: &str = "dead-letter.lp";
/// The first words of each dead-letter entry's header line.
pub const DEAD_LETTER_MARK: &str = "# ubuntu-metrics dead letter:";

/// Appends a refused batch, after a header line with the server's message,
/// to the dead-letter file of the spool at `dir` (lock held), and counts
/// it in the backlog summary.
pub(crate) fn append(
    dir: &Path,
    label: &str,
    lines: &[String],
    message: &str,
) -> Result<(), SpoolError> {
    let path = dir.join(DEAD_LETTER_FILE);
    let before = fs::metadata(&path).ok().map(|m| (m.len(), m.ino()));
    let mut text = format!(
        "{DEAD_LETTER_MARK} {} {label}: {} lines refused by InfluxDB: {}\n",
        Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
        lines.len(),
        message.replace(['\n', '\r'], " ")
    );
    for l in lines {
        text.push_str(l);
        text.push('\n');
    }
    let r = (|| {
        let mut f = OpenOptions::new()
            .append(true)
            .create(true)
            .mode(0o600)
            .custom_flags(libc::O_NOFOLLOW)
            .open(&path)?;
        f.write_all(text.as_bytes())?;
        f.sync_all()?;
        f.metadata()
    })();
    let after = r.map_err(|e| io_err(&path, "cannot write the dead-letter file", e))?;
    if before.is_none() {
        fsync_dir(dir)?;
    }
    count_one_more(dir, before, &after);
    Ok(())
}

/// One more entry in the summary's dead-letter count, when the count was
/// that of the file as it was `before` the append (else the next status
/// counts the file again).
fn count_one_more(dir: &Path, before: Option<(u64, u64)>, after: &fs::Metadata) {
    let mut sum = Summary::load(dir);
    let entries = match (sum.dead, before) {
        (None, None) => 0,
        (Some(d), Some(b)) if (d.len, d.ino) == b => d.entries,
        _ => return,
    };
    sum.dead = Some(DeadLetters {
        len: after.len(),
        ino: after.ino(),
        entries: entries + 1,
    });
    sum.save(dir);
}

/// The entries of the dead-letter file in `dir` (0 when it cannot be read).
pub(crate) fn count_entries(dir: &Path) -> usize {
    read_regular(&dir.join(DEAD_LETTER_FILE), u64::MAX)
        .map(|t| {
            String::from_utf8_lossy(&t)
                .lines()
                .filter(|l| l.starts_with(DEAD_LETTER_MARK))
                .count()
        })
        .unwrap_or(0)
}
