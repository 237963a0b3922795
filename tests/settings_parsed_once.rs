//! Settings are typed once, when the configuration loads (issue 25, shape
//! item 2): a size is bytes, a URL a `Url`, a span a `TimeSpan`, each
//! parsed by the configuration (`src/config/`) or by the type that holds
//! it (`support::setting`, `model::timespan`). This test fails when product
//! code elsewhere calls one of the setting parsers, so that a new caller
//! either takes the typed value from the configuration or is named below
//! with its reason.
//!
//! The parsers: `Url::parse` (of `url` or `reqwest`), `parse_size`,
//! `TimeSpan::parse` and `.parse::<SocketAddr>()` (`daemon.listen`). Test
//! modules (`#[cfg(test)] mod NAME {` to the end of the file) and comments
//! are not product code.

mod common;

use std::collections::BTreeMap;
use std::path::Path;

const SRC: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/src");

/// Where parsing a setting is the job.
const PARSERS_HOME: &[&str] = &[
    "config/",
    "support/setting.rs",
    "model/timespan.rs",
    "support/text.rs",
    // Test helpers, compiled for tests only.
    "support/test_support.rs",
    "support/proptest_support.rs",
];

/// (file, how many parser calls it holds, why none of them is a setting
/// parsed again after load).
const EXCEPTIONS: &[(&str, usize, &str)] = &[
    (
        "model/catch_up.rs",
        1,
        "the built-in default DEFAULT_MAX_CATCH_UP, a constant, not a configured value",
    ),
    (
        "ops/health.rs",
        1,
        "the built-in default DEFAULT_SPOOL_AGE, a constant (the threshold itself is a TimeSpan argument)",
    ),
    (
        "ops/systemd_view.rs",
        1,
        "a timer's next elapse as systemctl prints it: an answer of systemd, not a setting",
    ),
    (
        "cli/influxdb.rs",
        1,
        "`influxdb provision --url`, a command-line argument, read once (without it, the configured URL as the configuration read it)",
    ),
    (
        "custom/exec.rs",
        1,
        "a declared collector's max_output, read once when the collector value is built from its section at load",
    ),
    (
        "custom/http.rs",
        1,
        "a declared collector's url/urls, read once when the collector value is built from its section at load",
    ),
    (
        "sinks/influxdb/writer.rs",
        1,
        "tls_advice: the host named in the advice of a TLS error message, from the URL text it is given",
    ),
    (
        "sources/http/errors.rs",
        1,
        "the URL of a request that could not connect: the host and port its error names",
    ),
    (
        "sources/http/resolve.rs",
        1,
        "the URL another program is about to fetch (an rsync URL): the host asked of the resolver",
    ),
    (
        "sources/launchpad.rs",
        3,
        "Launchpad's API URLs: one built per request, and the next_collection_link of each answer (an upstream's response)",
    ),
    (
        "sources/rsync.rs",
        2,
        "the rsync URL of each listing, for its host and module",
    ),
];

/// The product part of a file: up to its test module, without comments.
fn product_lines(text: &str) -> Vec<(usize, &str)> {
    let mut out = Vec::new();
    let mut lines = text.lines().enumerate().peekable();
    while let Some((n, line)) = lines.next() {
        let t = line.trim_start();
        if t.starts_with("#[cfg(test)]")
            && lines
                .peek()
                .is_some_and(|(_, next)| next.trim_start().starts_with("mod "))
        {
            break;
        }
        if t.starts_with("//") {
            continue;
        }
        out.push((n + 1, line));
    }
    out
}

fn is_parser_call(line: &str) -> bool {
    [
        "Url::parse(",
        "parse_size(",
        "TimeSpan::parse(",
        "SocketAddr>()",
    ]
    .iter()
    .any(|p| line.contains(p))
        && !line.contains("fn parse_size(")
}

#[test]
fn no_setting_is_parsed_outside_the_configuration() {
    let files = common::rust_files(Path::new(SRC));
    let mut found: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for p in &files {
        let rel = p.strip_prefix(SRC).unwrap().to_string_lossy().into_owned();
        if PARSERS_HOME.iter().any(|h| rel.starts_with(h)) {
            continue;
        }
        let text = std::fs::read_to_string(p).unwrap();
        for (n, line) in product_lines(&text) {
            if is_parser_call(line) {
                found
                    .entry(rel.clone())
                    .or_default()
                    .push(format!("src/{rel}:{n}: {}", line.trim()));
            }
        }
    }
    let mut wrong = Vec::new();
    for (file, calls) in &found {
        let allowed = EXCEPTIONS
            .iter()
            .find(|(f, _, _)| f == file)
            .map_or(0, |(_, n, _)| *n);
        if calls.len() > allowed {
            wrong.push(format!(
                "{file}: {} setting parser calls, {allowed} named in EXCEPTIONS:\n  {}",
                calls.len(),
                calls.join("\n  ")
            ));
        }
    }
    assert!(
        wrong.is_empty(),
        "a setting is parsed after load: take the typed value the configuration holds (support::setting, TimeSpan), or name the call in EXCEPTIONS with why it is not a setting:\n{}",
        wrong.join("\n")
    );
    // An exception that no longer happens is taken out, so the list stays
    // the truth.
    for (file, n, why) in EXCEPTIONS {
        let have = found.get(*file).map_or(0, Vec::len);
        assert!(
            have >= *n,
            "src/{file}: EXCEPTIONS allows {n} parser calls ({why}) but it has {have}: lower the count"
        );
    }
}

#[test]
fn the_scan_sees_a_parser_call_and_skips_tests_and_comments() {
    let text = "fn a() {\n    // url::Url::parse(x)\n    let u = url::Url::parse(x);\n}\n#[cfg(test)]\nmod tests {\n    fn b() { parse_size(\"1\"); }\n}\n";
    let calls: Vec<usize> = product_lines(text)
        .into_iter()
        .filter(|(_, l)| is_parser_call(l))
        .map(|(n, _)| n)
        .collect();
    assert_eq!(calls, [3]);
}
