//! The dry-run printer: points to standard output, in line protocol, JSON
//! (one object per line) or YAML (one document, a list of points).

use crate::model::point::{FieldValue, Point, PointError};
use std::collections::BTreeMap;
use std::io::Write;

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Format {
    /// InfluxDB line protocol, exactly what would be written.
    Lp,
    /// One JSON object per line.
    Json,
    /// A YAML list of points.
    Yaml,
}

#[derive(serde::Serialize)]
struct PointView<'a> {
    measurement: &'a str,
    tags: &'a BTreeMap<String, String>,
    fields: &'a BTreeMap<String, FieldValue>,
    /// RFC 3339, UTC.
    time: Option<String>,
    /// Nanoseconds since the epoch, as written to InfluxDB.
    timestamp: Option<i64>,
}

fn view(p: &Point) -> PointView<'_> {
    PointView {
        measurement: &p.measurement,
        tags: &p.tags,
        fields: &p.fields,
        time: p
            .timestamp
            .map(|t| t.to_rfc3339_opts(chrono::SecondsFormat::AutoSi, true)),
        timestamp: p.timestamp.and_then(|t| t.timestamp_nanos_opt()),
    }
}

/// Prints points; returns the points that cannot be encoded (in every
/// format, so a dry run shows the same refusals a real write would).
pub fn print(
    out: &mut dyn Write,
    points: &[Point],
    format: Format,
) -> std::io::Result<Vec<PointError>> {
    print_points(out, points, format)
}

fn print_points<'p>(
    out: &mut dyn Write,
    points: impl IntoIterator<Item = &'p Point>,
    format: Format,
) -> std::io::Result<Vec<PointError>> {
    let mut errors = Vec::new();
    let mut good = Vec::new();
    let mut line = String::new();
    for p in points {
        line.clear();
        match p.write_line(&mut line) {
            Ok(()) => good.push((p, line.clone())),
            Err(e) => errors.push(e),
        }
    }
    match format {
        Format::Lp => {
            for (_, l) in &good {
                writeln!(out, "{l}")?;
            }
        }
        Format::Json => {
            for (p, _) in &good {
                serde_json::to_writer(&mut *out, &view(p))?;
                writeln!(out)?;
            }
        }
        Format::Yaml => {
            let views: Vec<_> = good.iter().map(|(p, _)| view(p)).collect();
            if !views.is_empty() {
                let text = serde_saphyr::to_string(&views).map_err(std::io::Error::other)?;
                out.write_all(text.as_bytes())?;
            }
        }
    }
    out.flush()?;
    Ok(errors)
}

/// The dry-run sink: every point of a run printed in `format` to the
/// writer it is given (the command line gives it standard output; the
/// self-metrics are not printed: a dry run shows what the collectors
/// produced).
pub struct Printer {
    out: std::sync::Mutex<Box<dyn Write + Send>>,
    format: Format,
}

impl Printer {
    pub fn new(out: Box<dyn Write + Send>, format: Format) -> Printer {
        Printer {
            out: std::sync::Mutex::new(out),
            format,
        }
    }
}

#[async_trait::async_trait]
impl super::Sink for Printer {
    async fn deliver(&self, run: super::Run<'_>) -> super::Delivery {
        let points = run.parts.iter().flat_map(|(_, points)| points.iter());
        let mut d = super::Delivery {
            total: run.parts.iter().map(|(_, points)| points.len()).sum(),
            ..Default::default()
        };
        let mut out = self.out.lock().unwrap_or_else(|e| e.into_inner());
        match print_points(&mut **out, points, self.format) {
            Ok(errors) => {
                d.written = d.total - errors.len();
                d.unencodable = errors;
            }
            Err(e) => d.output_error = Some(e.to_string()),
        }
        d
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    fn pts() -> Vec<Point> {
        vec![
            Point::new("m")
                .tag("a", "x y")
                .field("n", 1i64)
                .field("f", 0.5)
                .field("b", true)
                .at(chrono::Utc
                    .with_ymd_and_hms(2026, 11, 24, 12, 0, 0)
                    .unwrap()),
            Point::new("bad"),
        ]
    }

    #[test]
    fn lp_json_yaml() {
        let mut out = Vec::new();
        let errs = print(&mut out, &pts(), Format::Lp).unwrap();
        assert_eq!(
            String::from_utf8(out).unwrap(),
            "m,a=x\\ y b=true,f=0.5,n=1i 1795521600000000000\n"
        );
        assert_eq!(errs.len(), 1);

        let mut out = Vec::new();
        print(&mut out, &pts(), Format::Json).unwrap();
        let v: serde_json::Value = serde_json::from_slice(&out).unwrap();
        assert_eq!(v["tags"]["a"], "x y");
        assert_eq!(v["fields"]["n"], 1);
        assert_eq!(v["fields"]["f"], 0.5);
        assert_eq!(v["time"], "2026-11-24T12:00:00Z");

        let mut out = Vec::new();
        print(&mut out, &pts(), Format::Yaml).unwrap();
        let y: serde_json::Value = serde_saphyr::from_slice(&out).unwrap();
        assert_eq!(y[0]["measurement"], "m");
        assert_eq!(y[0]["tags"]["a"], "x y");
        assert_eq!(y[0]["fields"]["n"], 1);
        assert_eq!(y[0]["fields"]["f"], 0.5);
    }

    #[test]
    fn yaml_strings_that_look_like_other_things_stay_strings() {
        let tricky = [
            "yes",
            "no",
            "null",
            "~",
            "1.5",
            "0x1F",
            "#c",
            "a: b",
            "- x",
            "'q",
            "\"",
            "two\nlines",
            " pad ",
            "*alias",
            "&anchor",
            "!tag",
        ];
        let mut p = Point::new("m").field("n", 1i64);
        for (i, t) in tricky.iter().enumerate() {
            p = p
                .tag(format!("t{i:02}"), t.replace('\n', " "))
                .field(format!("s{i:02}"), *t);
        }
        let mut out = Vec::new();
        print(&mut out, &[p], Format::Yaml).unwrap();
        let y: serde_json::Value = serde_saphyr::from_slice(&out).unwrap();
        for (i, t) in tricky.iter().enumerate() {
            let text = String::from_utf8_lossy(&out);
            assert_eq!(
                y[0]["tags"][format!("t{i:02}")],
                t.replace('\n', " "),
                "{text}"
            );
            assert_eq!(y[0]["fields"][format!("s{i:02}")], *t);
        }
    }
}
