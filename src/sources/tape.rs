//! Recording a run's upstream answers, and replaying them with no network
//! (`run ... --record DIR` / `run ... --replay DIR`).
//!
//! A recording is a directory: `recording.json` (the run's time, and per
//! request its key and its answers in the order they came, each with its
//! HTTP status, the headers that matter and the file of its body; per
//! rsync URL its exit code, messages and the file of its listing) and the
//! bodies under `answers/`. A request's key is its method and URL,
//! credentials redacted, plus its `Range` header when it has one
//! (`GET https://host/x.csv [Range: bytes=-2048]`); request headers
//! (`Authorization` among them) are never written. Replaying answers each
//! request from the recording: the n-th request with a key gets the n-th
//! answer recorded for it (a retried request gets its own answers, never
//! the next request's), and a request the recording does not hold, or
//! holds fewer times, gets an error naming it: nothing leaves the machine.
//!
//! A recording is input, not trusted: a body is read only from a regular
//! file inside the recording's directory (a relative path without `..`,
//! no symbolic link on the way), and at most `[http] max_body` bytes of
//! it. The first format (one answer per key, keys without the method) is
//! still read: its keys are `GET` requests.

use crate::support::text::redact_url;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, HashMap};
use std::io::Read;
use std::path::{Component, Path, PathBuf};
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
    /// Per request key, its answers in the order they came.
    #[serde(deserialize_with = "answers_by_request")]
    pub http: BTreeMap<String, Vec<HttpAnswer>>,
    pub rsync: BTreeMap<String, RsyncAnswer>,
    /// Bodies written so far (names the next one; not in the file).
    #[serde(skip)]
    saved: usize,
}

/// `http` as written now (key -> answers) or in the first format (URL ->
/// one answer; those keys are `GET` requests).
fn answers_by_request<'de, D>(d: D) -> Result<BTreeMap<String, Vec<HttpAnswer>>, D::Error>
where
    D: serde::Deserializer<'de>,
{
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum OneOrMany {
        Many(Vec<HttpAnswer>),
        One(HttpAnswer),
    }
    let map = BTreeMap::<String, OneOrMany>::deserialize(d)?;
    Ok(map
        .into_iter()
        .map(|(k, v)| {
            let k = if has_method(&k) {
                k
            } else {
                format!("GET {k}")
            };
            let v = match v {
                OneOrMany::Many(v) => v,
                OneOrMany::One(a) => vec![a],
            };
            (k, v)
        })
        .collect())
}

/// Whether a key starts with a method (`GET `), as keys do since the
/// second format (a URL has a scheme, lower case, before any space).
fn has_method(key: &str) -> bool {
    key.split_once(' ')
        .is_some_and(|(m, _)| !m.is_empty() && m.bytes().all(|b| b.is_ascii_uppercase()))
}

/// What went wrong making or replaying a recording: each names the file
/// or the request.
#[derive(Debug, thiserror::Error)]
pub enum TapeError {
    #[error("{}: cannot create: {source}", dir.display())]
    Create {
        dir: PathBuf,
        source: std::io::Error,
    },
    #[error("{}: cannot read: {source}", path.display())]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{}: not valid: {source}", path.display())]
    Invalid {
        path: PathBuf,
        source: serde_json::Error,
    },
    #[error("{}: cannot write: {source}", path.display())]
    Write {
        path: PathBuf,
        source: std::io::Error,
    },
    /// A body of the recording refused: `why` says what it is.
    #[error("recording {}: the body {name:?} {why}; refused (replaying reads only regular files inside the recording)", dir.display())]
    Refused {
        dir: PathBuf,
        name: String,
        why: &'static str,
    },
    /// A body of the recording that cannot be read.
    #[error("recording {}: {source}", path.display())]
    Body {
        path: PathBuf,
        source: std::io::Error,
    },
    /// A request the recording holds no (more) answer to.
    #[error("{key}: {}", missing(dir, *asked, *held))]
    Missing {
        key: String,
        dir: PathBuf,
        asked: usize,
        held: usize,
    },
    /// An rsync call the recording does not hold.
    #[error("not in the recording {} (replaying: no network)", dir.display())]
    MissingRsync { dir: PathBuf },
}

/// Why a request is not answered: not in the recording, or asked more
/// times than the recording holds answers to it.
fn missing(dir: &Path, asked: usize, held: usize) -> String {
    if held == 0 {
        format!(
            "not in the recording {} (replaying: no network)",
            dir.display()
        )
    } else {
        format!(
            "asked {asked} times, and the recording {} holds {held} answer(s) to it (replaying: no network)",
            dir.display()
        )
    }
}

/// A replayed HTTP answer: status, headers, body.
pub type Replayed = (u16, reqwest::header::HeaderMap, Vec<u8>);
/// A replayed rsync call: exit code, listing, messages.
pub type ReplayedRsync = (i32, Vec<u8>, String);

/// A recording being made, or being replayed.
#[derive(Debug)]
pub enum Tape {
    Record {
        dir: PathBuf,
        index: Mutex<Index>,
    },
    Replay {
        dir: PathBuf,
        index: Index,
        /// Per request key, how many of its answers were replayed.
        used: Mutex<HashMap<String, usize>>,
    },
}

/// The key of a request: its method, its URL (credentials redacted) and
/// its `Range`.
pub fn key(method: &str, url: &str, range: Option<&str>) -> String {
    match range {
        Some(r) => format!("{method} {} [Range: {r}]", redact_url(url)),
        None => format!("{method} {}", redact_url(url)),
    }
}

/// Reads the body `name` of the recording in `dir`: at most `max` + 1
/// bytes (the caller tells a body over `max` by its length), only from a
/// regular file inside `dir`, reached without `..`, an absolute path or a
/// symbolic link.
fn read_inside(dir: &Path, name: &str, max: u64) -> Result<Vec<u8>, TapeError> {
    let refuse = |why: &'static str| {
        Err(TapeError::Refused {
            dir: dir.to_owned(),
            name: name.to_owned(),
            why,
        })
    };
    let rel = Path::new(name);
    if name.is_empty() || !rel.components().all(|c| matches!(c, Component::Normal(_))) {
        return refuse("is not a path inside the recording (an absolute path, `..` or `.`)");
    }
    // No symbolic link on the way: each step is looked at, not followed.
    let mut path = dir.to_owned();
    for c in rel.components() {
        path.push(c);
        match std::fs::symlink_metadata(&path) {
            Ok(m) if m.file_type().is_symlink() => {
                return refuse("is, or lies under, a symbolic link");
            }
            Ok(_) => {}
            Err(source) => return Err(TapeError::Body { path, source }),
        }
    }
    let unreadable = |source| TapeError::Body {
        path: path.clone(),
        source,
    };
    use std::os::unix::fs::OpenOptionsExt;
    // Not followed if it became a link since; a FIFO does not block.
    let file = std::fs::File::options()
        .read(true)
        .custom_flags(libc::O_NOFOLLOW | libc::O_NONBLOCK)
        .open(&path)
        .map_err(unreadable)?;
    let meta = file.metadata().map_err(unreadable)?;
    if !meta.is_file() {
        return refuse("is not a regular file");
    }
    let mut body = Vec::with_capacity(usize::try_from(meta.len().min(max)).unwrap_or(0));
    file.take(max.saturating_add(1))
        .read_to_end(&mut body)
        .map_err(unreadable)?;
    Ok(body)
}

impl Tape {
    /// The recording a run makes (`--record DIR`, a run at `now`) or
    /// replays (`--replay DIR`), or none.
    pub fn for_run(
        record: Option<&Path>,
        replay: Option<&Path>,
        now: DateTime<Utc>,
    ) -> Result<Option<Tape>, TapeError> {
        match (record, replay) {
            (Some(dir), _) => Tape::record(dir, now).map(Some),
            (None, Some(dir)) => Tape::replay(dir).map(Some),
            (None, None) => Ok(None),
        }
    }

    /// A new recording in `dir` (created) of a run at `now`.
    pub fn record(dir: &Path, now: DateTime<Utc>) -> Result<Tape, TapeError> {
        std::fs::create_dir_all(dir.join(ANSWERS)).map_err(|source| TapeError::Create {
            dir: dir.to_owned(),
            source,
        })?;
        Ok(Tape::Record {
            dir: dir.to_owned(),
            index: Mutex::new(Index {
                now: Some(now),
                ..Default::default()
            }),
        })
    }

    /// The recording in `dir`.
    pub fn replay(dir: &Path) -> Result<Tape, TapeError> {
        let path = dir.join(INDEX_FILE);
        let bytes = match std::fs::read(&path) {
            Ok(b) => b,
            Err(source) => return Err(TapeError::Read { path, source }),
        };
        let index = match serde_json::from_slice(&bytes) {
            Ok(i) => i,
            Err(source) => return Err(TapeError::Invalid { path, source }),
        };
        Ok(Tape::Replay {
            dir: dir.to_owned(),
            index,
            used: Mutex::default(),
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

    /// Writes the body to a new file of the recording: its name (one file
    /// per answer, numbered in the order they came).
    fn save(dir: &Path, index: &mut Index, body: &[u8]) -> String {
        let name = format!("{ANSWERS}/{:05}", index.saved);
        index.saved += 1;
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
        let body = Tape::save(dir, &mut index, body);
        index.http.entry(key).or_default().push(HttpAnswer {
            status,
            headers,
            body,
        });
    }

    /// The next recorded answer to `key` (when replaying): status,
    /// headers, body (at most `max` + 1 bytes: longer is over the cap); an
    /// error naming the request when the recording does not hold it, or
    /// holds fewer answers to it than it was asked.
    pub fn get_http(&self, key: &str, max: u64) -> Option<Result<Replayed, TapeError>> {
        let Tape::Replay { dir, index, used } = self else {
            return None;
        };
        let answers = index.http.get(key).map_or(&[][..], Vec::as_slice);
        let n = {
            let mut used = used.lock().unwrap_or_else(|e| e.into_inner());
            let n = used.entry(key.to_owned()).or_default();
            *n += 1;
            *n
        };
        let Some(a) = answers.get(n - 1) else {
            return Some(Err(TapeError::Missing {
                key: key.to_owned(),
                dir: dir.clone(),
                asked: n,
                held: answers.len(),
            }));
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
        Some(read_inside(dir, &a.body, max).map(|b| (a.status, headers, b)))
    }

    /// Records an rsync call's outcome (when recording).
    pub fn put_rsync(&self, url: &str, exit_code: i32, stdout: &[u8], stderr: &str) {
        let Tape::Record { dir, index } = self else {
            return;
        };
        let mut index = index.lock().unwrap_or_else(|e| e.into_inner());
        let stdout = Tape::save(dir, &mut index, stdout);
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
    /// listing (at most `max` + 1 bytes), messages.
    pub fn get_rsync(&self, url: &str, max: u64) -> Option<Result<ReplayedRsync, TapeError>> {
        let Tape::Replay { dir, index, .. } = self else {
            return None;
        };
        let Some(a) = index.rsync.get(&redact_url(url)) else {
            return Some(Err(TapeError::MissingRsync { dir: dir.clone() }));
        };
        Some(read_inside(dir, &a.stdout, max).map(|b| (a.exit_code, b, a.stderr.clone())))
    }

    /// Writes the index of a recording (atomically).
    pub fn finish(&self) -> Result<(), TapeError> {
        let Tape::Record { dir, index } = self else {
            return Ok(());
        };
        let index = index.lock().unwrap_or_else(|e| e.into_inner());
        let path = dir.join(INDEX_FILE);
        let mut bytes = match serde_json::to_vec_pretty(&*index) {
            Ok(b) => b,
            Err(source) => return Err(TapeError::Invalid { path, source }),
        };
        bytes.push(b'\n');
        let tmp = dir.join(format!(".{INDEX_FILE}.tmp"));
        std::fs::write(&tmp, &bytes)
            .and_then(|()| std::fs::rename(&tmp, &path))
            .map_err(|source| TapeError::Write { path, source })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MAX: u64 = 1 << 20;

    #[test]
    fn record_then_replay_without_secrets() {
        let d = tempfile::tempdir().unwrap();
        let now: DateTime<Utc> = "2026-11-24T12:00:00Z".parse().unwrap();
        let t = Tape::record(d.path(), now).unwrap();
        let mut h = reqwest::header::HeaderMap::new();
        h.insert("content-type", "text/csv".parse().unwrap());
        h.insert("set-cookie", "session=Sekr1t".parse().unwrap());
        let k = key("GET", "https://u:Sekr1t@h/x.csv", Some("bytes=-2048"));
        t.put_http(k.clone(), 206, &h, b"a,b\n");
        t.put_rsync("rsync://h/m/*", 23, b"listing", "some files vanished");
        t.finish().unwrap();
        let text = std::fs::read_to_string(d.path().join(INDEX_FILE)).unwrap();
        assert!(!text.contains("Sekr1t"), "{text}");
        let r = Tape::replay(d.path()).unwrap();
        assert_eq!(r.now(), Some(now));
        let (status, headers, body) = r.get_http(&k, MAX).unwrap().unwrap();
        assert_eq!((status, body.as_slice()), (206, &b"a,b\n"[..]));
        assert_eq!(headers["content-type"], "text/csv");
        let e = r
            .get_http("GET https://h/other", MAX)
            .unwrap()
            .unwrap_err()
            .to_string();
        assert!(
            e.starts_with("GET https://h/other: not in the recording"),
            "{e}"
        );
        assert_eq!(r.get_rsync("rsync://h/m/*", MAX).unwrap().unwrap().0, 23);
    }

    /// Issue 22, item 6: a request asked twice (a retry) then another one:
    /// each gets its own answers, in order, whatever the order of the
    /// replay's requests; one asked once more than recorded is an error.
    #[test]
    fn answers_are_keyed_by_the_request_and_replayed_in_their_order() {
        let d = tempfile::tempdir().unwrap();
        let t = Tape::record(d.path(), Utc::now()).unwrap();
        let h = reqwest::header::HeaderMap::new();
        let a = key("GET", "https://h/a", None);
        let b = key("GET", "https://h/b", None);
        let a_range = key("GET", "https://h/a", Some("bytes=0-1"));
        let a_head = key("HEAD", "https://h/a", None);
        t.put_http(a.clone(), 503, &h, b"busy");
        t.put_http(a.clone(), 200, &h, b"v=111");
        t.put_http(b.clone(), 200, &h, b"v=222");
        t.put_http(a_range.clone(), 206, &h, b"v=");
        t.put_http(a_head.clone(), 200, &h, b"");
        t.finish().unwrap();
        let r = Tape::replay(d.path()).unwrap();
        let get = |k: &str| r.get_http(k, MAX).unwrap().map(|(s, _, b)| (s, b));
        assert_eq!(get(&b).unwrap(), (200, b"v=222".to_vec()));
        assert_eq!(get(&a_head).unwrap(), (200, Vec::new()));
        assert_eq!(get(&a).unwrap(), (503, b"busy".to_vec()));
        assert_eq!(get(&a_range).unwrap(), (206, b"v=".to_vec()));
        assert_eq!(get(&a).unwrap(), (200, b"v=111".to_vec()));
        let e = get(&a).unwrap_err().to_string();
        assert!(
            e.starts_with("GET https://h/a: asked 3 times") && e.contains("holds 2 answer(s)"),
            "{e}"
        );
    }

    /// The first format (URL -> one answer) is read: its keys are GETs.
    #[test]
    fn the_first_format_is_still_read() {
        let d = tempfile::tempdir().unwrap();
        std::fs::create_dir(d.path().join(ANSWERS)).unwrap();
        std::fs::write(d.path().join("answers/00000"), "old").unwrap();
        std::fs::write(
            d.path().join(INDEX_FILE),
            r#"{"now": null, "http": {"https://h/x [Range: bytes=-5]": {"status": 206, "headers": {}, "body": "answers/00000"}}, "rsync": {}}"#,
        )
        .unwrap();
        let r = Tape::replay(d.path()).unwrap();
        let k = key("GET", "https://h/x", Some("bytes=-5"));
        assert_eq!(r.get_http(&k, MAX).unwrap().unwrap().2, b"old");
    }

    /// Bodies are read only from regular files inside the recording, and
    /// at most the cap plus one byte.
    #[test]
    fn bodies_are_read_only_inside_the_recording_and_up_to_the_cap() {
        let d = tempfile::tempdir().unwrap();
        let rec = d.path().join("rec");
        std::fs::create_dir_all(rec.join(ANSWERS)).unwrap();
        std::fs::write(d.path().join("outside"), "secret").unwrap();
        std::os::unix::fs::symlink(d.path().join("outside"), rec.join("answers/link")).unwrap();
        std::os::unix::fs::symlink(d.path(), rec.join("dirlink")).unwrap();
        std::fs::write(rec.join("answers/big"), vec![b'x'; 100]).unwrap();
        for name in [
            "../outside",
            "answers/../../outside",
            "./answers/big",
            "",
            "/etc/passwd",
            "/dev/zero",
        ] {
            let e = read_inside(&rec, name, MAX).unwrap_err().to_string();
            assert!(e.contains("not a path inside the recording"), "{name}: {e}");
        }
        for name in ["answers/link", "dirlink/outside"] {
            let e = read_inside(&rec, name, MAX).unwrap_err().to_string();
            assert!(e.contains("symbolic link"), "{name}: {e}");
        }
        let e = read_inside(&rec, "answers", MAX).unwrap_err().to_string();
        assert!(e.contains("not a regular file"), "{e}");
        assert_eq!(read_inside(&rec, "answers/big", 10).unwrap().len(), 11);
        assert_eq!(read_inside(&rec, "answers/big", 1000).unwrap().len(), 100);
    }
}
