//! The answers kept for conditional requests: for each URL whose last
//! answer carried an `ETag` or a `Last-Modified`, those validators, its
//! content type and its body, on disk in the state directory
//! (`http-cache/`), so that the next request (the daemon's next run, or a
//! timer's next process) asks `If-None-Match` / `If-Modified-Since` and a
//! `304 Not Modified` costs the upstream a few hundred bytes instead of the
//! document. Only the last answer of each URL is kept; entries not used
//! for [`MAX_IDLE`] are removed. Files are written to a temporary name and
//! renamed, so a crash leaves the old entry or the new one; a damaged or
//! missing entry is a cache miss, never an error.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, SystemTime};

/// Entries not used for this long are removed.
pub const MAX_IDLE: Duration = Duration::from_secs(7 * 24 * 3600);

/// Every this many stores, idle entries are looked for.
const PRUNE_EVERY: u64 = 256;

/// What is remembered of an answer besides its body.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Validators {
    pub url: String,
    pub etag: Option<String>,
    pub last_modified: Option<String>,
    pub content_type: Option<String>,
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
        cache.prune();
        cache
    }

    pub fn dir(&self) -> &Path {
        &self.dir
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

    /// The validators of `url`'s last answer, if it had any.
    pub fn validators(&self, url: &str) -> Option<Validators> {
        let (meta, _) = self.paths(url);
        let v: Validators = serde_json::from_slice(&std::fs::read(meta).ok()?).ok()?;
        // (Two URLs with one hash: the other one's entry is not ours.)
        (v.url == url).then_some(v)
    }

    /// The body kept for `url` (after a 304), marking the entry used.
    pub fn body(&self, url: &str) -> Option<Vec<u8>> {
        let (meta, body) = self.paths(url);
        let bytes = std::fs::read(body).ok()?;
        if let Ok(f) = std::fs::File::options().append(true).open(meta) {
            let _ = f.set_modified(SystemTime::now());
        }
        Some(bytes)
    }

    /// Keeps `body` with its validators (a 200 answer that has some).
    pub fn store(&self, v: &Validators, body: &[u8]) {
        let (meta, path) = self.paths(&v.url);
        let stored = (|| -> std::io::Result<()> {
            std::fs::create_dir_all(&self.dir)?;
            let pid = std::process::id();
            let tmp = |p: &Path| p.with_extension(format!("tmp{pid}"));
            // The body first: a meta file always describes a body there.
            let _ = std::fs::remove_file(&meta);
            crate::fsutil::replace_file(&path, &tmp(&path), body, 0o600)?;
            let json = serde_json::to_vec(v).map_err(std::io::Error::other)?;
            crate::fsutil::replace_file(&meta, &tmp(&meta), &json, 0o600)
        })();
        if let Err(e) = stored {
            tracing::debug!(
                "cannot keep the answer of {} for conditional requests in {}: {e}",
                crate::sources::http::redact_url(&v.url),
                self.dir.display()
            );
        }
        if self.stores.fetch_add(1, Ordering::Relaxed) % PRUNE_EVERY == PRUNE_EVERY - 1 {
            self.prune();
        }
    }

    /// Removes the entries not used for [`MAX_IDLE`].
    pub fn prune(&self) {
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

    #[test]
    fn an_answer_is_kept_with_its_validators_and_idle_ones_go() {
        let d = tempfile::tempdir().unwrap();
        let c = AnswerCache::open(&d.path().join("http-cache"));
        let url = "http://h/a.json";
        assert_eq!(c.validators(url), None);
        let v = Validators {
            url: url.into(),
            etag: Some("\"1f-5e\"".into()),
            last_modified: None,
            content_type: Some("application/json".into()),
        };
        c.store(&v, b"{\"a\": 1}");
        assert_eq!(c.validators(url), Some(v.clone()));
        assert_eq!(c.body(url).as_deref(), Some(&b"{\"a\": 1}"[..]));
        assert_eq!(c.validators("http://h/b.json"), None);
        // Idle for longer than MAX_IDLE: removed on the next prune.
        let (meta, body) = c.paths(url);
        let old = SystemTime::now() - MAX_IDLE - Duration::from_secs(60);
        std::fs::File::options()
            .append(true)
            .open(&meta)
            .unwrap()
            .set_modified(old)
            .unwrap();
        c.prune();
        assert!(!meta.exists() && !body.exists());
        assert_eq!(c.validators(url), None);
    }
}
