//! The fake Launchpad web service of the fixture server. It answers
//! lazr.restful-shaped JSON built from files under `tests/fixtures/launchpad/`.
//!
//! Layout of the fixture directory (`root`):
//!
//! - `<path>.json` holding a JSON **object** is the entry at `<path>`
//!   (e.g. `devel/ubuntu.json` answers `GET /launchpad/devel/ubuntu`).
//! - `<path>.json` holding a JSON **array** is the collection at `<path>`
//!   (e.g. `devel/ubuntu/series.json`). Its elements are entries, or
//!   strings naming an entry file (`"devel/ubuntu/tumbling"` includes
//!   `devel/ubuntu/tumbling.json`), or `{"$repeat": N, "$entry": {...}}`,
//!   which stands for N copies of the entry with `{n}` in its strings
//!   replaced by 1..=N.
//! - `named_operations.json` lists the named operations the fake knows:
//!   `{"object": path, "op": name, "args": {...}, "result": file}`. A GET of
//!   `<object>?ws.op=<op>&<args>` answers the collection in
//!   `<root>/<result>.json`. The arguments must match exactly (the `ws.*`
//!   paging keys aside); anything else is a 400, as Launchpad answers an
//!   invalid argument, so a collector asking the wrong question notices.
//! - In every file, `{base}` is replaced by the service's base URL
//!   (`http://HOST/launchpad/`), so links point back at the fake.
//!
//! Collections are paged with `ws.start` / `ws.size` (75 by default, at most
//! 300) and answer `start`, `entries`, `next_collection_link`,
//! `prev_collection_link` and `total_size`, except that a named
//! operation's result spanning more than one page answers
//! `total_size_link` (the same URL plus `ws.show=total_size`) instead, as
//! the `devel` API does; `ws.show=total_size` answers a bare integer. An
//! unknown object is a 404 with a Launchpad-like text.

use axum::body::Body;
use axum::http::{Response, StatusCode, header};
use serde_json::{Map, Value};
use std::path::Path;

const DEFAULT_SIZE: usize = 75;
const MAX_SIZE: usize = 300;

/// Answers `GET /launchpad/<rest>?<query>`. `base` is the service's own
/// base URL (`http://HOST/launchpad/`), used to build links.
pub fn handle(root: &Path, base: &str, rest: &str, query: &str) -> Response<Body> {
    match answer(root, base, rest, query) {
        Ok(r) => r,
        Err((status, msg)) => text(status, msg),
    }
}

type Failure = (StatusCode, String);

fn answer(root: &Path, base: &str, rest: &str, query: &str) -> Result<Response<Body>, Failure> {
    let path = rest.trim_matches('/');
    if path.is_empty()
        || path
            .split('/')
            .any(|c| c == ".." || c == "." || c.is_empty())
    {
        return Err(not_found(root, path));
    }
    let params: Vec<(String, String)> = url::form_urlencoded::parse(query.as_bytes())
        .into_owned()
        .collect();
    let param = |k: &str| {
        params
            .iter()
            .find(|(key, _)| key == k)
            .map(|(_, v)| v.as_str())
    };

    let object = load(root, base, path)?.ok_or_else(|| not_found(root, path))?;
    if let Some(op) = param("ws.op") {
        let result = find_operation(root, base, path, op, &params)?;
        let entries = collection_entries(root, base, &result)?;
        return page(base, path, &params, entries, true);
    }
    match object {
        Value::Array(_) => {
            let entries = collection_entries(root, base, path)?;
            page(base, path, &params, entries, false)
        }
        entry => Ok(json(&entry)),
    }
}

/// The JSON of `<root>/<path>.json` with `{base}` replaced, or `None` when
/// there is no such file.
fn load(root: &Path, base: &str, path: &str) -> Result<Option<Value>, Failure> {
    let file = root.join(format!("{path}.json"));
    let text = match std::fs::read_to_string(&file) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(fixture_error(format!("{}: {e}", file.display()))),
    };
    serde_json::from_str(&text.replace("{base}", base))
        .map(Some)
        .map_err(|e| fixture_error(format!("{}: invalid JSON: {e}", file.display())))
}

/// The entries of the collection file `<root>/<path>.json`, expanded.
fn collection_entries(root: &Path, base: &str, path: &str) -> Result<Vec<Value>, Failure> {
    let Some(Value::Array(items)) = load(root, base, path)? else {
        return Err(fixture_error(format!(
            "{path}.json is not a collection (a JSON array)"
        )));
    };
    let mut out = Vec::new();
    for item in items {
        match item {
            Value::String(entry_path) => match load(root, base, &entry_path)? {
                Some(e @ Value::Object(_)) => out.push(e),
                _ => {
                    return Err(fixture_error(format!(
                        "{path}.json names a missing entry {entry_path}"
                    )));
                }
            },
            Value::Object(ref o) if o.contains_key("$repeat") => {
                let times = o.get("$repeat").and_then(Value::as_u64).unwrap_or(0);
                let entry = o
                    .get("$entry")
                    .cloned()
                    .unwrap_or(Value::Object(Map::new()));
                for n in 1..=times {
                    out.push(number(&entry, n));
                }
            }
            other => out.push(other),
        }
    }
    Ok(out)
}

/// `entry` with `{n}` replaced by `n` in every string.
fn number(entry: &Value, n: u64) -> Value {
    match entry {
        Value::String(s) => Value::String(s.replace("{n}", &n.to_string())),
        Value::Array(a) => Value::Array(a.iter().map(|v| number(v, n)).collect()),
        Value::Object(o) => {
            Value::Object(o.iter().map(|(k, v)| (k.clone(), number(v, n))).collect())
        }
        other => other.clone(),
    }
}

/// The result file of the named operation `op` on `object` called with
/// `params`.
fn find_operation(
    root: &Path,
    base: &str,
    object: &str,
    op: &str,
    params: &[(String, String)],
) -> Result<String, Failure> {
    let ops = match load(root, base, "named_operations")? {
        Some(Value::Array(ops)) => ops,
        _ => Vec::new(),
    };
    let mut args: Vec<(&str, &str)> = params
        .iter()
        .filter(|(k, _)| !k.starts_with("ws."))
        .map(|(k, v)| (k.as_str(), v.as_str()))
        .collect();
    args.sort();
    let mut known = false;
    for case in &ops {
        if case.get("object").and_then(Value::as_str) != Some(object)
            || case.get("op").and_then(Value::as_str) != Some(op)
        {
            continue;
        }
        known = true;
        let mut want: Vec<(&str, &str)> = case
            .get("args")
            .and_then(Value::as_object)
            .map(|m| {
                m.iter()
                    .map(|(k, v)| (k.as_str(), v.as_str().unwrap_or("")))
                    .collect()
            })
            .unwrap_or_default();
        want.sort();
        if want == args {
            return case
                .get("result")
                .and_then(Value::as_str)
                .map(str::to_owned)
                .ok_or_else(|| {
                    fixture_error(format!("named operation {op} on {object} has no result"))
                });
        }
    }
    if !known {
        return Err((StatusCode::BAD_REQUEST, format!("No such operation: {op}")));
    }
    Err((
        StatusCode::BAD_REQUEST,
        format!("The fake Launchpad has no answer for {op} on {object} with arguments {args:?}"),
    ))
}

/// One page of `entries` as lazr.restful writes it.
fn page(
    base: &str,
    path: &str,
    params: &[(String, String)],
    entries: Vec<Value>,
    named: bool,
) -> Result<Response<Body>, Failure> {
    let param = |k: &str| {
        params
            .iter()
            .find(|(key, _)| key == k)
            .map(|(_, v)| v.as_str())
    };
    let total = entries.len();
    if param("ws.show") == Some("total_size") {
        return Ok(Response::builder()
            .status(StatusCode::OK)
            .header(header::CONTENT_TYPE, "application/json")
            .body(Body::from(total.to_string()))
            .expect("response"));
    }
    let start = match param("ws.start") {
        None => 0,
        Some(s) => s.parse::<usize>().map_err(|_| {
            (
                StatusCode::BAD_REQUEST,
                format!("Invalid value for ws.start: {s:?}"),
            )
        })?,
    };
    let size = match param("ws.size") {
        None => DEFAULT_SIZE,
        Some(s) => match s.parse::<usize>() {
            Ok(n) if n > 0 => n.min(MAX_SIZE),
            _ => {
                return Err((
                    StatusCode::BAD_REQUEST,
                    format!("Invalid value for ws.size: {s:?}"),
                ));
            }
        },
    };
    let link = |start: usize| {
        let mut q = url::form_urlencoded::Serializer::new(String::new());
        for (k, v) in params
            .iter()
            .filter(|(k, _)| k != "ws.start" && k != "ws.size" && k != "ws.show")
        {
            q.append_pair(k, v);
        }
        q.append_pair("ws.size", &size.to_string());
        if start > 0 {
            q.append_pair("ws.start", &start.to_string());
        }
        format!("{base}{path}?{}", q.finish())
    };
    let end = start.saturating_add(size).min(total);
    let mut out = Map::new();
    out.insert("start".into(), Value::from(start));
    let has_next = end < total;
    if named && (has_next || start > total) {
        let mut q = url::form_urlencoded::Serializer::new(String::new());
        for (k, v) in params.iter().filter(|(k, _)| k != "ws.show") {
            q.append_pair(k, v);
        }
        q.append_pair("ws.show", "total_size");
        out.insert(
            "total_size_link".into(),
            Value::from(format!("{base}{path}?{}", q.finish())),
        );
    } else {
        out.insert("total_size".into(), Value::from(total));
    }
    if has_next {
        out.insert("next_collection_link".into(), Value::from(link(end)));
    }
    if start > 0 {
        out.insert(
            "prev_collection_link".into(),
            Value::from(link(start.saturating_sub(size))),
        );
    }
    let version = path.split('/').next().unwrap_or("devel");
    out.insert(
        "resource_type_link".into(),
        Value::from(format!(
            "{base}{version}/#{}-page-resource",
            resource_type(&entries)
        )),
    );
    let slice = if start < total {
        entries[start..end].to_vec()
    } else {
        Vec::new()
    };
    out.insert("entries".into(), Value::Array(slice));
    Ok(json(&Value::Object(out)))
}

/// The lazr resource type of a collection's entries (from the first
/// entry's `resource_type_link`, `...#package_upload`), for show.
fn resource_type(entries: &[Value]) -> String {
    entries
        .first()
        .and_then(|e| e.get("resource_type_link"))
        .and_then(Value::as_str)
        .and_then(|l| l.rsplit_once('#'))
        .map(|(_, t)| t.to_owned())
        .unwrap_or_else(|| "entry".to_owned())
}

fn json(v: &Value) -> Response<Body> {
    Response::builder()
        .status(StatusCode::OK)
        .header(header::CONTENT_TYPE, "application/json")
        .body(Body::from(v.to_string()))
        .expect("response")
}

fn text(status: StatusCode, body: String) -> Response<Body> {
    Response::builder()
        .status(status)
        .header(header::CONTENT_TYPE, "text/plain;charset=utf-8")
        .body(Body::from(body))
        .expect("response")
}

/// Launchpad's answer for an unknown object: it names the first path
/// segment it could not traverse.
fn not_found(root: &Path, path: &str) -> Failure {
    let mut parent = String::new();
    let mut name = path;
    for seg in path.split('/') {
        let prefix = if parent.is_empty() {
            seg.to_owned()
        } else {
            format!("{parent}/{seg}")
        };
        if !root.join(format!("{prefix}.json")).is_file() && !root.join(&prefix).is_dir() {
            name = seg;
            break;
        }
        parent = prefix;
    }
    let parent = if parent.is_empty() {
        "<service root>".to_owned()
    } else {
        parent
    };
    (
        StatusCode::NOT_FOUND,
        format!("Object: <fake Launchpad object {parent}>, name: '{name}'"),
    )
}

fn fixture_error(msg: String) -> Failure {
    (
        StatusCode::INTERNAL_SERVER_ERROR,
        format!("fake Launchpad fixture error: {msg}"),
    )
}
