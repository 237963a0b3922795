//! The answers kept for conditional requests: for each URL whose last
//! answer carried an `ETag` or a `Last-Modified`, those validators, its
//! content type and its body, on disk in the state directory
//! (`http-cache/`), so that the next request (the daemon's next run, or a
//! timer's next process) asks `If-None-Match` / `If-Modified-Since` and a
//! `304 Not Modified` costs the upstream a few hundred bytes instead of the
//! document. Only the last answer of each URL is kept; entries not used
//! for [`MAX_IDLE`] are removed. Files are written to a temporary name and
//! renamed, not synced (a cache: syncing the ~160 files of a first round
//! cost ~0.2 s of CPU and wall on ext4, more than the rest of the round):
//! the entry records the body's length and CRC-32, checked when it is used,
//! so a body a crash left short or damaged is a cache miss, never an error
//! or wrong points.
//!
//! The directory is not trusted either: a file that is a symbolic link (or
//! not a regular file) is never read nor written through, and the
//! directory itself is not used when it is a link; an entry without its
//! length and CRC-32 is dropped; validators longer than [`MAX_VALIDATOR`]
//! are not kept (sent back, a huge `ETag` gets every later request refused
//! with `431`); and an entry whose conditional request is answered with a
//! 4xx is dropped, so the next request is a plain one.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, SystemTime};

/// Entries not used for this long are removed.
pub const MAX_IDLE: Duration = Duration::from_secs(7 * 24 * 3600);

/// Every this many stores, idle entries are looked for.
const PRUNE_EVERY: u64 = 256;

/// The longest `ETag`, `Last-Modified` or content type kept, in bytes;
/// an answer with a longer one is not kept.
pub const MAX_VALIDATOR: usize = 4096;

/// What is remembered of an answer besides its body.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Validators {
    pub url: String,
    pub etag: Option<String>,
    pub last_modified: Option<String>,
    pub content_type: Option<String>,
}

/// An entry's description on disk: the validators and what the body kept
/// beside it must be (an entry without them is dropped).
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
struct Kept {
    #[serde(flatten)]
    validators: Validators,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    len: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    crc32: Option<u32>,
}

impl Validators {
    /// Whether every validator is short enough to keep and send back.
    fn keepable(&self) -> bool {
        [&self.etag, &self.last_modified, &self.content_type]
            .iter()
            .all(|v| v.as_ref().is_none_or(|v| v.len() <= MAX_VALIDATOR))
    }
}

/// The on-disk store.
#[derive(Debug)]
pub struct AnswerCache {
    dir: PathBuf,
    stores: AtomicU64,
}

impl AnswerCache {
    /// The store in `dir` (created when needed), with its idle entries
    /// removed.
    pub fn open(dir: &Path) -> AnswerCache {
        let cache = AnswerCache {
            dir: dir.to_owned(),
            stores: AtomicU64::new(0),
        };
        if let Some(why) = cache.unusable() {
            tracing::warn!(
                "{}: {why}: answers are not kept for conditional requests",
                dir.display()
            );
        }
        cache.prune();
        cache
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Whether the directory is one (or not there yet), not a link to one.
    fn usable(&self) -> bool {
        self.unusable().is_none()
    }

    /// Why the directory cannot be used (a link, not a directory, or what
    /// the system says: a state directory of another user is "Permission
    /// denied"), or `None` when it can (or is not there yet).
    fn unusable(&self) -> Option<String> {
        match std::fs::symlink_metadata(&self.dir) {
            Ok(m) if m.file_type().is_symlink() => Some("a symbolic link, not followed".into()),
            Ok(m) if m.is_dir() => None,
            Ok(_) => Some("not a directory".into()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => None,
            Err(e) => Some(e.to_string()),
        }
    }

    fn paths(&self, url: &str) -> (PathBuf, PathBuf) {
        // 64-bit FNV-1a of the URL: a stable file name.
        let mut h: u64 = 0xcbf2_9ce4_8422_2325;
        for b in url.as_bytes() {
            h ^= u64::from(*b);
            h = h.wrapping_mul(0x0100_0000_01b3);
        }
        (
            self.dir.join(format!("{h:016x}.json")),
            self.dir.join(format!("{h:016x}.body")),
        )
    }

    /// The entry of `url`, if there is a sound one (two URLs with one
    /// hash: the other one's entry is not ours). One that cannot be used
    /// (not a regular file, not JSON, no length and CRC-32, validators too
    /// long) is dropped.
    fn kept(&self, url: &str) -> Option<Kept> {
        if !self.usable() {
            return None;
        }
        let (meta, _) = self.paths(url);
        let bytes = match crate::support::fsutil::read_file(&meta) {
            Ok(b) => b,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return None,
            Err(e) => {
                self.drop_entry(url, &format!("{}: {e}", meta.display()));
                return None;
            }
        };
        let k: Kept = match serde_json::from_slice(&bytes) {
            Ok(k) => k,
            Err(e) => {
                self.drop_entry(url, &format!("{}: not valid: {e}", meta.display()));
                return None;
            }
        };
        if k.validators.url != url {
            return None;
        }
        if k.len.is_none() || k.crc32.is_none() {
            self.drop_entry(url, "no length and CRC-32 of the body");
            return None;
        }
        if !k.validators.keepable() {
            self.drop_entry(url, "validators too long");
            return None;
        }
        Some(k)
    }

    /// Removes the entry of `url`, saying why in the debug log.
    fn drop_entry(&self, url: &str, why: &str) {
        tracing::debug!(
            "the answer kept for {} is dropped ({why}); asking for it in full",
            crate::support::text::redact_url(url)
        );
        self.forget(url);
    }

    /// Removes the entry of `url` (if any): its next request is a plain one.
    pub fn forget(&self, url: &str) {
        if !self.usable() {
            return;
        }
        let (meta, body) = self.paths(url);
        let _ = std::fs::remove_file(meta);
        let _ = std::fs::remove_file(body);
    }

    /// The validators of `url`'s last answer, if it had any and its body is
    /// there, a regular file of the length recorded (else the document is
    /// asked for in full).
    pub fn validators(&self, url: &str) -> Option<Validators> {
        let k = self.kept(url)?;
        let (_, body) = self.paths(url);
        match std::fs::symlink_metadata(&body) {
            Ok(m) if m.is_file() && Some(m.len()) == k.len => Some(k.validators),
            Ok(m) if !m.is_file() => {
                self.drop_entry(url, "the body is not a regular file");
                None
            }
            _ => None,
        }
    }

    /// The body kept for `url` (after a 304), marking the entry used; None
    /// when it is missing or is not the body recorded (a regular file of
    /// the length and CRC-32 recorded).
    pub fn body(&self, url: &str) -> Option<Vec<u8>> {
        let k = self.kept(url)?;
        let (meta, body) = self.paths(url);
        let bytes = match crate::support::fsutil::read_file(&body) {
            Ok(b) => b,
            Err(e) => {
                self.drop_entry(url, &format!("{}: {e}", body.display()));
                return None;
            }
        };
        let intact = k.len == Some(bytes.len() as u64) && k.crc32 == Some(crc32fast::hash(&bytes));
        if !intact {
            // Left short or damaged by a crash: a miss, and the full
            // answer that follows replaces the entry.
            tracing::debug!(
                "the answer kept for {} is damaged; asking for it in full",
                crate::support::text::redact_url(url)
            );
            return None;
        }
        if let Ok(f) = crate::support::fsutil::open_append(&meta) {
            let _ = f.set_modified(SystemTime::now());
        }
        Some(bytes)
    }

    /// Keeps `body` with its validators (a 200 answer that has some), unless
    /// one is longer than [`MAX_VALIDATOR`] (the entry of the URL is then
    /// dropped).
    pub fn store(&self, v: &Validators, body: &[u8]) {
        if !v.keepable() {
            self.drop_entry(&v.url, "validators too long to keep");
            return;
        }
        if !self.usable() {
            return;
        }
        let (meta, path) = self.paths(&v.url);
        let stored = (|| -> std::io::Result<()> {
            std::fs::create_dir_all(&self.dir)?;
            let pid = std::process::id();
            let tmp = |p: &Path| p.with_extension(format!("tmp{pid}"));
            // The body first: a meta file always describes a body there.
            let _ = std::fs::remove_file(&meta);
            crate::support::fsutil::replace_file_unsynced(&path, &tmp(&path), body, 0o600)?;
            let kept = Kept {
                validators: v.clone(),
                len: Some(body.len() as u64),
                crc32: Some(crc32fast::hash(body)),
            };
            let json = serde_json::to_vec(&kept).map_err(std::io::Error::other)?;
            crate::support::fsutil::replace_file_unsynced(&meta, &tmp(&meta), &json, 0o600)
        })();
        if let Err(e) = stored {
            tracing::debug!(
                "cannot keep the answer of {} for conditional requests in {}: {e}",
                crate::support::text::redact_url(&v.url),
                self.dir.display()
            );
        }
        if self.stores.fetch_add(1, Ordering::Relaxed) % PRUNE_EVERY == PRUNE_EVERY - 1 {
            self.prune();
        }
    }

    /// Removes the entries not used for [`MAX_IDLE`].
    pub fn prune(&self) {
        if !self.usable() {
            return;
        }
        let Ok(entries) = std::fs::read_dir(&self.dir) else {
            return;
        };
        let now = SystemTime::now();
        for e in entries.flatten() {
            let path = e.path();
            if path.extension().is_none_or(|x| x != "json") {
                continue;
            }
            let idle = e
                .metadata()
                .and_then(|m| m.modified())
                .ok()
                .and_then(|t| now.duration_since(t).ok())
                .is_some_and(|d| d > MAX_IDLE);
            if idle {
                let _ = std::fs::remove_file(&path);
                let _ = std::fs::remove_file(path.with_extension("body"));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The validators of an answer to `url` with an ETag and no
    /// `Last-Modified`.
    fn validators(url: &str, etag: &str, content_type: Option<&str>) -> Validators {
        Validators {
            url: url.into(),
            etag: Some(etag.into()),
            last_modified: None,
            content_type: content_type.map(Into::into),
        }
    }

    /// Makes the entry described by `meta` look last used `ago`.
    fn last_used(meta: &Path, ago: Duration) {
        std::fs::File::options()
            .append(true)
            .open(meta)
            .unwrap()
            .set_modified(SystemTime::now() - ago)
            .unwrap();
    }

    #[test]
    fn an_answer_is_kept_with_its_validators_and_idle_ones_go() {
        let d = tempfile::tempdir().unwrap();
        let c = AnswerCache::open(&d.path().join("http-cache"));
        let url = "http://h/a.json";
        assert_eq!(c.validators(url), None);
        let v = validators(url, "\"1f-5e\"", Some("application/json"));
        c.store(&v, b"{\"a\": 1}");
        assert_eq!(c.validators(url), Some(v.clone()));
        assert_eq!(c.body(url).as_deref(), Some(&b"{\"a\": 1}"[..]));
        assert_eq!(c.validators("http://h/b.json"), None);
        // Unused for six days: kept. For longer than MAX_IDLE (a week):
        // removed on the next prune.
        let (meta, body) = c.paths(url);
        last_used(&meta, Duration::from_secs(6 * 24 * 3600));
        c.prune();
        assert_eq!(c.validators(url), Some(v.clone()));
        last_used(&meta, Duration::from_secs(7 * 24 * 3600 + 60));
        c.prune();
        assert!(!meta.exists() && !body.exists());
        assert_eq!(c.validators(url), None);
    }

    /// Idle entries are looked for when the cache opens, then every
    /// PRUNE_EVERY (256) stores, not at each one.
    #[test]
    fn idle_entries_are_looked_for_every_256_stores() {
        let d = tempfile::tempdir().unwrap();
        let c = AnswerCache::open(d.path());
        let idle = "http://h/idle.json";
        c.store(&validators(idle, "\"0\"", None), b"0");
        let (meta, _) = c.paths(idle);
        last_used(&meta, MAX_IDLE + Duration::from_secs(60));
        for i in 1..PRUNE_EVERY - 1 {
            c.store(
                &validators(&format!("http://h/{i}.json"), "\"1\"", None),
                b"1",
            );
            assert!(meta.exists(), "pruned at store {}", i + 1);
        }
        c.store(&validators("http://h/last.json", "\"1\"", None), b"1");
        assert!(!meta.exists(), "not pruned at store {PRUNE_EVERY}");
    }

    /// What a crash can leave of an unsynced entry: a body cut short (no
    /// validators: asked in full) or damaged at its length (no body: the
    /// 304 is followed by a full request), never used.
    #[test]
    fn a_body_left_short_or_damaged_is_not_used() {
        let d = tempfile::tempdir().unwrap();
        let c = AnswerCache::open(d.path());
        let url = "http://h/a.json";
        let v = validators(url, "\"1\"", None);
        c.store(&v, b"{\"a\": 1}");
        let (_, body) = c.paths(url);
        std::fs::write(&body, b"").unwrap();
        assert_eq!(c.validators(url), None);
        assert_eq!(c.body(url), None);
        std::fs::write(&body, b"{\"a\": 2}").unwrap();
        assert_eq!(c.validators(url), Some(v.clone()));
        assert_eq!(c.body(url), None);
        // An entry without the length and CRC-32 of its body, or without
        // either, is dropped.
        let (meta, _) = c.paths(url);
        let described = |len: Option<u64>, crc32: Option<u32>| Kept {
            validators: v.clone(),
            len,
            crc32,
        };
        let body_bytes = b"{\"a\": 1}";
        for kept in [
            described(None, None),
            described(Some(body_bytes.len() as u64), None),
            described(None, Some(crc32fast::hash(body_bytes))),
        ] {
            c.store(&v, body_bytes);
            assert_eq!(c.validators(url), Some(v.clone()));
            std::fs::write(&meta, serde_json::to_vec(&kept).unwrap()).unwrap();
            assert_eq!(c.validators(url), None, "{kept:?}");
            assert!(!meta.exists() && !body.exists(), "{kept:?}");
        }
    }

    /// Issue 22, item 5: links planted in the directory are never read nor
    /// written through; validators too long are not kept.
    #[test]
    fn links_are_not_followed_and_long_validators_not_kept() {
        let d = tempfile::tempdir().unwrap();
        let c = AnswerCache::open(d.path());
        let url = "http://h/a.json";
        let v = validators(url, "\"1\"", None);
        // A link at the temporary name of the body: its target unchanged.
        let victim = d.path().join("victim");
        std::fs::write(&victim, "precious").unwrap();
        let (meta, body) = c.paths(url);
        let pid = std::process::id();
        // (The body and its description share one temporary name.)
        std::os::unix::fs::symlink(&victim, body.with_extension(format!("tmp{pid}"))).unwrap();
        c.store(&v, b"{\"a\": 1}");
        assert_eq!(std::fs::read_to_string(&victim).unwrap(), "precious");
        assert_eq!(c.body(url).as_deref(), Some(&b"{\"a\": 1}"[..]));
        // The body replaced by a link to a file of the same length and
        // CRC-32 (as the description says): not read, the entry dropped.
        std::fs::write(&victim, b"{\"a\": 1}").unwrap();
        std::fs::remove_file(&body).unwrap();
        std::os::unix::fs::symlink(&victim, &body).unwrap();
        assert_eq!(c.validators(url), None);
        assert!(
            !meta.exists(),
            "asking for the validators dropped the entry"
        );
        assert_eq!(c.body(url), None);
        // The description a link: not read.
        c.store(&v, b"{\"a\": 1}");
        let described = std::fs::read(&meta).unwrap();
        std::fs::write(&victim, &described).unwrap();
        std::fs::remove_file(&meta).unwrap();
        std::os::unix::fs::symlink(&victim, &meta).unwrap();
        assert_eq!(c.validators(url), None);
        assert!(
            std::fs::symlink_metadata(&meta).is_err(),
            "the link is dropped"
        );
        assert_eq!(std::fs::read(&victim).unwrap(), described);
        // A 70 KB ETag: not kept, and the entry it would replace dropped.
        c.store(&v, b"{\"a\": 1}");
        assert!(c.validators(url).is_some());
        let huge = Validators {
            etag: Some(format!("\"{}\"", "e".repeat(70_000))),
            ..v.clone()
        };
        c.store(&huge, b"{\"a\": 2}");
        assert_eq!(c.validators(url), None);
        assert!(!meta.exists() && !body.exists());
        // A directory that is a link is not used.
        let real = d.path().join("real");
        std::fs::create_dir(&real).unwrap();
        let linked = d.path().join("linked");
        std::os::unix::fs::symlink(&real, &linked).unwrap();
        let c = AnswerCache::open(&linked);
        c.store(&v, b"{\"a\": 1}");
        assert_eq!(std::fs::read_dir(&real).unwrap().count(), 0);
        assert_eq!(c.validators(url), None);
    }

    /// Why a directory cannot hold the kept answers, as the warning says.
    #[test]
    fn an_unusable_directory_is_told_why() {
        let d = tempfile::tempdir().unwrap();
        let why = |p: &Path| AnswerCache::open(p).unusable();
        assert_eq!(why(&d.path().join("not-yet")), None);
        assert_eq!(why(d.path()), None);
        let file = d.path().join("file");
        std::fs::write(&file, "").unwrap();
        assert_eq!(why(&file).as_deref(), Some("not a directory"));
        let link = d.path().join("link");
        std::os::unix::fs::symlink(d.path(), &link).unwrap();
        assert_eq!(why(&link).as_deref(), Some("a symbolic link, not followed"));
        // What the system says, for any other error.
        let under_a_file = why(&file.join("http-cache")).unwrap();
        assert!(under_a_file.contains("Not a directory"), "{under_a_file}");
    }
}
