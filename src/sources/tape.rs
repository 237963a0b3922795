//! Recording a run's upstream answers, and replaying them with no network
//! (`run ... --record DIR` / `run ... --replay DIR`).
//!
//! A recording is a directory: `recording.json` (the run's time, and per
//! request its key, HTTP status, the headers that matter and the file of
//! its body; per rsync URL its exit code, messages and the file of its
//! listing) and the bodies under `answers/`. A request's key is its URL,
//! credentials redacted, plus its `Range` header when it has one; request
//! headers (`Authorization` among them) are never written. Replaying
//! answers each request from the recording, and a request the recording
//! does not hold with an error: nothing leaves the machine.

use crate::sources::http::redact_url;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

/// The index of a recording, in its directory.
pub const INDEX_FILE: &str = "recording.json";
/// Where the bodies go, in the recording's directory.
const ANSWERS: &str = "answers";

/// Answer headers kept in a recording.
const KEPT_HEADERS: [&str; 7] = [
    "content-type",
    "content-range",
    "last-modified",
    "etag",
    "retry-after",
    "location",
    "x-influxdb-version",
];

/// One recorded HTTP answer.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct HttpAnswer {
    pub status: u16,
    pub headers: BTreeMap<String, String>,
    /// The body's file, relative to the recording.
    pub body: String,
}

/// One recorded rsync listing.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RsyncAnswer {
    pub exit_code: i32,
    pub stderr: String,
    /// The listing's file, relative to the recording.
    pub stdout: String,
}

/// `recording.json`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Index {
    /// The recorded run's time: a replay runs at it.
    pub now: Option<DateTime<Utc>>,
    /// The catch-up marks the recorded run read with (a replay reads the
    /// same rows).
    #[serde(default)]
    pub marks: serde_json::Value,
    pub http: BTreeMap<String, HttpAnswer>,
    pub rsync: BTreeMap<String, RsyncAnswer>,
}

/// A replayed HTTP answer: status, headers, body.
pub type Replayed = (u16, reqwest::header::HeaderMap, Vec<u8>);
/// A replayed rsync call: exit code, listing, messages.
pub type ReplayedRsync = (i32, Vec<u8>, String);

/// A recording being made, or being replayed.
#[derive(Debug)]
pub enum Tape {
    Record { dir: PathBuf, index: Mutex<Index> },
    Replay { dir: PathBuf, index: Index },
}

/// The key of a request: its URL (credentials redacted) and its `Range`.
pub fn key(url: &str, range: Option<&str>) -> String {
    match range {
        Some(r) => format!("{} [Range: {r}]", redact_url(url)),
        None => redact_url(url),
    }
}

impl Tape {
    /// A new recording in `dir` (created) of a run at `now`.
    pub fn record(dir: &Path, now: DateTime<Utc>) -> Result<Tape, String> {
        std::fs::create_dir_all(dir.join(ANSWERS))
            .map_err(|e| format!("{}: cannot create: {e}", dir.display()))?;
        Ok(Tape::Record {
            dir: dir.to_owned(),
            index: Mutex::new(Index {
                now: Some(now),
                ..Default::default()
            }),
        })
    }

    /// The recording in `dir`.
    pub fn replay(dir: &Path) -> Result<Tape, String> {
        let path = dir.join(INDEX_FILE);
        let bytes =
            std::fs::read(&path).map_err(|e| format!("{}: cannot read: {e}", path.display()))?;
        let index = serde_json::from_slice(&bytes)
            .map_err(|e| format!("{}: not valid: {e}", path.display()))?;
        Ok(Tape::Replay {
            dir: dir.to_owned(),
            index,
        })
    }

    /// The recorded run's time (a replay's).
    pub fn now(&self) -> Option<DateTime<Utc>> {
        match self {
            Tape::Record { index, .. } => index.lock().unwrap_or_else(|e| e.into_inner()).now,
            Tape::Replay { index, .. } => index.now,
        }
    }

    /// Records the catch-up marks of the run (when recording).
    pub fn set_marks(&self, marks: serde_json::Value) {
        if let Tape::Record { index, .. } = self {
            index.lock().unwrap_or_else(|e| e.into_inner()).marks = marks;
        }
    }

    /// The recorded run's catch-up marks.
    pub fn marks(&self) -> serde_json::Value {
        match self {
            Tape::Record { index, .. } => index
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .marks
                .clone(),
            Tape::Replay { index, .. } => index.marks.clone(),
        }
    }

    pub fn is_replay(&self) -> bool {
        matches!(self, Tape::Replay { .. })
    }

    /// Writes the body to a new file of the recording: its name.
    fn save(dir: &Path, index: &Index, body: &[u8]) -> String {
        let name = format!("{ANSWERS}/{:05}", index.http.len() + index.rsync.len());
        if let Err(e) = std::fs::write(dir.join(&name), body) {
            tracing::warn!("recording: {}: {e}", dir.join(&name).display());
        }
        name
    }

    /// Records an HTTP answer (when recording).
    pub fn put_http(
        &self,
        key: String,
        status: u16,
        headers: &reqwest::header::HeaderMap,
        body: &[u8],
    ) {
        let Tape::Record { dir, index } = self else {
            return;
        };
        let mut index = index.lock().unwrap_or_else(|e| e.into_inner());
        let headers = KEPT_HEADERS
            .iter()
            .filter_map(|h| {
                headers
                    .get(*h)
                    .and_then(|v| v.to_str().ok())
                    .map(|v| ((*h).to_owned(), redact_url(v)))
            })
            .collect();
        let body = Tape::save(dir, &index, body);
        index.http.insert(
            key,
            HttpAnswer {
                status,
                headers,
                body,
            },
        );
    }

    /// The recorded answer to `key` (when replaying): status, headers,
    /// body; an error naming the key when the recording does not hold it.
    pub fn get_http(&self, key: &str) -> Option<Result<Replayed, String>> {
        let Tape::Replay { dir, index } = self else {
            return None;
        };
        let Some(a) = index.http.get(key) else {
            return Some(Err(format!(
                "not in the recording {} (replaying: no network)",
                dir.display()
            )));
        };
        let mut headers = reqwest::header::HeaderMap::new();
        for (k, v) in &a.headers {
            if let (Ok(k), Ok(v)) = (
                reqwest::header::HeaderName::from_bytes(k.as_bytes()),
                reqwest::header::HeaderValue::from_str(v),
            ) {
                headers.insert(k, v);
            }
        }
        Some(
            std::fs::read(dir.join(&a.body))
                .map(|b| (a.status, headers, b))
                .map_err(|e| format!("recording {}: {e}", dir.join(&a.body).display())),
        )
    }

    /// Records an rsync call's outcome (when recording).
    pub fn put_rsync(&self, url: &str, exit_code: i32, stdout: &[u8], stderr: &str) {
        let Tape::Record { dir, index } = self else {
            return;
        };
        let mut index = index.lock().unwrap_or_else(|e| e.into_inner());
        let stdout = Tape::save(dir, &index, stdout);
        index.rsync.insert(
            redact_url(url),
            RsyncAnswer {
                exit_code,
                stderr: redact_url(stderr),
                stdout,
            },
        );
    }

    /// The recorded rsync call of `url` (when replaying): exit code,
    /// listing, messages.
    pub fn get_rsync(&self, url: &str) -> Option<Result<ReplayedRsync, String>> {
        let Tape::Replay { dir, index } = self else {
            return None;
        };
        let Some(a) = index.rsync.get(&redact_url(url)) else {
            return Some(Err(format!(
                "not in the recording {} (replaying: no network)",
                dir.display()
            )));
        };
        Some(
            std::fs::read(dir.join(&a.stdout))
                .map(|b| (a.exit_code, b, a.stderr.clone()))
                .map_err(|e| format!("recording {}: {e}", dir.join(&a.stdout).display())),
        )
    }

    /// Writes the index of a recording (atomically).
    pub fn finish(&self) -> Result<(), String> {
        let Tape::Record { dir, index } = self else {
            return Ok(());
        };
        let index = index.lock().unwrap_or_else(|e| e.into_inner());
        let mut bytes = serde_json::to_vec_pretty(&*index).map_err(|e| e.to_string())?;
        bytes.push(b'\n');
        let path = dir.join(INDEX_FILE);
        let tmp = dir.join(format!(".{INDEX_FILE}.tmp"));
        std::fs::write(&tmp, &bytes)
            .and_then(|()| std::fs::rename(&tmp, &path))
            .map_err(|e| format!("{}: cannot write: {e}", path.display()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn record_then_replay_without_secrets() {
        let d = tempfile::tempdir().unwrap();
        let now: DateTime<Utc> = "2026-11-24T12:00:00Z".parse().unwrap();
        let t = Tape::record(d.path(), now).unwrap();
        let mut h = reqwest::header::HeaderMap::new();
        h.insert("content-type", "text/csv".parse().unwrap());
        h.insert("set-cookie", "session=Sekr1t".parse().unwrap());
        let k = key("https://u:Sekr1t@h/x.csv", Some("bytes=-2048"));
        t.put_http(k.clone(), 206, &h, b"a,b\n");
        t.put_rsync("rsync://h/m/*", 23, b"listing", "some files vanished");
        t.finish().unwrap();
        let text = std::fs::read_to_string(d.path().join(INDEX_FILE)).unwrap();
        assert!(!text.contains("Sekr1t"), "{text}");
        let r = Tape::replay(d.path()).unwrap();
        assert_eq!(r.now(), Some(now));
        let (status, headers, body) = r.get_http(&k).unwrap().unwrap();
        assert_eq!((status, body.as_slice()), (206, &b"a,b\n"[..]));
        assert_eq!(headers["content-type"], "text/csv");
        assert!(r.get_http("https://h/other").unwrap().is_err());
        assert_eq!(r.get_rsync("rsync://h/m/*").unwrap().unwrap().0, 23);
    }
}
