//! Line-protocol encoder throughput: points per second on one core.
//!
//!     cargo bench --bench encoder
//!
//! The points are those of one real round: every collector's expected
//! output (`tests/fixtures/<collector>/expected.out`, about 200 points of
//! 22 measurements), read back into `Point`s and repeated to 10,000.
//! `encode_lines` is what the writer calls (one `String` per point);
//! `write_line` into one buffer is the encoder alone. criterion prints the
//! throughput in elements (= points) per second.

use chrono::DateTime;
use criterion::{BatchSize, Criterion, Throughput, criterion_group, criterion_main};
use influxdb_line_protocol::{FieldValue, parse_lines};
use std::hint::black_box;
use std::path::PathBuf;
use ubuntu_metrics::model::point::{Point, encode_lines};

/// The points of every `expected.out` under the fixtures.
fn round_points() -> Vec<Point> {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures");
    let mut files: Vec<PathBuf> = std::fs::read_dir(&root)
        .expect("fixtures")
        .flatten()
        .map(|e| e.path().join("expected.out"))
        .filter(|p| p.is_file())
        .collect();
    files.sort();
    let mut points = Vec::new();
    for f in files {
        let text = std::fs::read_to_string(&f).expect("readable");
        let lines: Vec<&str> = text
            .lines()
            .filter(|l| !l.trim().is_empty() && !l.starts_with('#'))
            .collect();
        for parsed in parse_lines(&lines.join("\n")) {
            let l = parsed.unwrap_or_else(|e| panic!("{}: {e}", f.display()));
            let mut p = Point::new(l.series.measurement.as_str());
            for (k, v) in l.series.tag_set.iter().flatten() {
                p = p.tag(k.as_str(), v.as_str());
            }
            for (k, v) in &l.field_set {
                p = match v {
                    FieldValue::I64(i) => p.field(k.as_str(), *i),
                    FieldValue::U64(u) => p.field(k.as_str(), *u),
                    FieldValue::F64(x) => p.field(k.as_str(), *x),
                    FieldValue::Boolean(b) => p.field(k.as_str(), *b),
                    FieldValue::String(s) => p.field(k.as_str(), s.as_str()),
                };
            }
            if let Some(ns) = l.timestamp {
                p = p.at(DateTime::from_timestamp_nanos(ns));
            }
            points.push(p);
        }
    }
    points
}

fn encoder(c: &mut Criterion) {
    const N: usize = 10_000;
    let one_round = round_points();
    assert!(one_round.len() > 100, "{} points", one_round.len());
    let batch: Vec<Point> = one_round.iter().cycle().take(N).cloned().collect();
    println!(
        "{} points of one round ({} bytes of line protocol), repeated to {N}",
        one_round.len(),
        encode_lines(&one_round)
            .0
            .iter()
            .map(|l| l.len() + 1)
            .sum::<usize>()
    );
    let mut g = c.benchmark_group("line_protocol");
    g.throughput(Throughput::Elements(N as u64));
    g.bench_function("encode_lines", |b| {
        b.iter(|| {
            let (lines, errors) = encode_lines(black_box(&batch));
            assert!(errors.is_empty());
            lines
        })
    });
    g.bench_function("write_line_into_one_buffer", |b| {
        b.iter_batched_ref(
            || String::with_capacity(N * 128),
            |out| {
                for p in black_box(&batch) {
                    p.write_line(out).expect("encodable");
                    out.push('\n');
                }
            },
            BatchSize::SmallInput,
        )
    });
    g.finish();
}

criterion_group!(benches, encoder);
criterion_main!(benches);
