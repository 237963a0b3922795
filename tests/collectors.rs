//! Every collector of the registry, with nothing written per collector: run
//! on its fixtures (`tests/fixtures/<name>/`, served by the fixture server at
//! the URLs its sources declare), it writes exactly its `expected.out`, and
//! every point it writes fits the schema it declares. Every `expected.out`
//! under its fixture folder (the other cases its own tests run) fits the
//! schema too. A new collector is checked here as soon as it is in the
//! registry.

mod common;

use common::*;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use ubuntu_metrics::collectors::registry;
use ubuntu_metrics::model::schema::{self, FieldType, Measurement};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_collector_writes_its_expected_points_and_they_fit_its_schema() {
    let server = server_with_rsync();
    let ctx = context(&server);
    let mut failures = Vec::new();
    for c in registry() {
        let name = c.name();
        let points = match collect(name, &ctx).await {
            Ok(p) => p,
            Err(e) => {
                failures.push(format!("{name}: failed on its fixtures: {e}"));
                continue;
            }
        };
        assert!(!points.is_empty(), "{name}: no points from its fixtures");
        for p in &points {
            if let Err(e) = schema::check(c.schema(), p) {
                failures.push(format!("{name}: {e}"));
            }
        }
        let got = lines(&points);
        let want = expected(&format!("{name}/expected.out"));
        if got != want {
            let missing: Vec<_> = want.iter().filter(|l| !got.contains(l)).collect();
            let extra: Vec<_> = got.iter().filter(|l| !want.contains(l)).collect();
            failures.push(format!(
                "{name}: points differ from {name}/expected.out: missing {missing:?}, unexpected {extra:?}"
            ));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

/// Every `expected.out` under a folder.
fn expected_files(dir: &Path, out: &mut Vec<PathBuf>) {
    for e in std::fs::read_dir(dir).unwrap_or_else(|e| panic!("{}: {e}", dir.display())) {
        let p = e.unwrap().path();
        if p.is_dir() {
            expected_files(&p, out);
        } else if p.file_name().is_some_and(|n| n == "expected.out") {
            out.push(p);
        }
    }
}

/// One line of line protocol, read back (by InfluxData's own parser):
/// measurement, tag keys, and each field's key and type.
fn parse_line(line: &str) -> (String, Vec<String>, BTreeMap<String, FieldType>) {
    use influxdb_line_protocol::FieldValue as V;
    let parsed = influxdb_line_protocol::parse_lines(line)
        .next()
        .expect("one line")
        .unwrap_or_else(|e| panic!("{line}: {e}"));
    let tags = parsed
        .series
        .tag_set
        .iter()
        .flatten()
        .map(|(k, _)| k.to_string())
        .collect();
    let fields = parsed
        .field_set
        .iter()
        .map(|(k, v)| {
            let kind = match v {
                V::I64(_) | V::U64(_) => FieldType::Integer,
                V::F64(_) => FieldType::Float,
                V::Boolean(_) => FieldType::Boolean,
                V::String(_) => FieldType::String,
            };
            (k.to_string(), kind)
        })
        .collect();
    (parsed.series.measurement.to_string(), tags, fields)
}

fn check_line(schema: &[Measurement], line: &str) -> Result<(), String> {
    let (measurement, tags, fields) = parse_line(line);
    let m = schema
        .iter()
        .find(|m| m.name == measurement)
        .ok_or_else(|| format!("measurement {measurement:?} is not declared"))?;
    for t in tags {
        if !m.tags.iter().any(|d| d.name == t) {
            return Err(format!("tag {t:?} is not declared for {measurement}"));
        }
    }
    for (f, kind) in fields {
        match m.field(&f) {
            None => return Err(format!("field {f:?} is not declared for {measurement}")),
            Some(d) if d.kind != kind => {
                return Err(format!(
                    "field {f:?} is {} but {measurement} declares it {}",
                    kind.name(),
                    d.kind.name()
                ));
            }
            Some(_) => {}
        }
    }
    Ok(())
}

#[test]
fn every_expected_output_of_every_collector_fits_its_schema() {
    let mut checked = 0;
    let mut failures = Vec::new();
    for c in registry() {
        let mut files = Vec::new();
        expected_files(&fixtures().join(c.name()), &mut files);
        assert!(
            !files.is_empty(),
            "{}: no tests/fixtures/{}/expected.out",
            c.name(),
            c.name()
        );
        for f in files {
            let text = std::fs::read_to_string(&f).unwrap();
            for (i, line) in text.lines().enumerate() {
                if line.trim().is_empty() || line.starts_with('#') {
                    continue;
                }
                checked += 1;
                if let Err(e) = check_line(c.schema(), line) {
                    failures.push(format!("{}:{}: {e}: {line}", f.display(), i + 1));
                }
            }
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
    println!("{checked} lines checked");
}

#[test]
fn a_line_outside_the_schema_is_named() {
    let s = vec![Measurement::new(
        "m",
        &[schema::tag("a", "")],
        &[schema::int("n", ""), schema::boolean("b", "")],
    )];
    let schema: &[Measurement] = &s;
    assert_eq!(check_line(schema, "m,a=1 n=1i,b=t 1"), Ok(()));
    assert!(
        check_line(schema, "m,a=1 n=1 1")
            .unwrap_err()
            .contains("is float")
    );
    assert!(
        check_line(schema, "m,a=1 b=\"t\" 1")
            .unwrap_err()
            .contains("is string")
    );
    assert!(
        check_line(schema, "m,z=1 n=1i 1")
            .unwrap_err()
            .contains("tag \"z\"")
    );
    assert!(
        check_line(schema, "m x=1i 1")
            .unwrap_err()
            .contains("field \"x\"")
    );
    assert!(
        check_line(schema, "q n=1i 1")
            .unwrap_err()
            .contains("\"q\"")
    );
}

/// What the registry declares is consistent: names and measurements
/// unique, a source key means one source, every HTTP source has its
/// stand-in under `tests/fixtures/`, every collector has panels.
#[test]
fn the_registry_is_consistent() {
    let reg = registry();
    let mut names = std::collections::BTreeSet::new();
    let mut measurements: BTreeMap<&str, &str> = BTreeMap::new();
    let mut sources: BTreeMap<&str, ubuntu_metrics::config::SourceUrl> = BTreeMap::new();
    for c in &reg {
        assert!(names.insert(c.name()), "two collectors named {}", c.name());
        assert!(!c.schema().is_empty(), "{}: empty schema", c.name());
        for m in c.schema() {
            if let Some(other) = measurements.insert(&m.name, c.name()) {
                panic!("{} and {other} both write {}", c.name(), m.name);
            }
        }
        for s in c.sources() {
            if let Some(prev) = sources.insert(&s.key, s.clone()) {
                assert_eq!(
                    prev,
                    s.clone(),
                    "{}: source {} declared twice, differently",
                    c.name(),
                    s.key
                );
            }
            url::Url::parse(&s.default)
                .unwrap_or_else(|e| panic!("{}: {} {:?}: {e}", c.name(), s.key, s.default));
            if !s.default.starts_with("rsync://") {
                let path = fixtures().join(s.fixture.as_ref());
                assert!(
                    path.exists(),
                    "{}: source {} has no fixture at {}",
                    c.name(),
                    s.key,
                    path.display()
                );
            }
        }
        assert!(
            !c.panels().panels.is_empty(),
            "{}: no Grafana panel",
            c.name()
        );
    }
}
