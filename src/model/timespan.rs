//! Time spans in systemd's syntax (`systemd.time(7)`), read exactly as
//! systemd's `parse_sec()` reads them: a sequence of `<number>[unit]` parts,
//! optionally separated by white space; numbers may have a decimal fraction;
//! a bare number is seconds; units are matched case-sensitively against
//! systemd's table, first match wins (so `3mins` is `3min` followed by a
//! stray `s` and is refused, as systemd refuses it).

use std::fmt;
use std::time::Duration;

const USEC_PER_SEC: f64 = 1_000_000.0;
const USEC_PER_MINUTE: f64 = 60.0 * USEC_PER_SEC;
const USEC_PER_HOUR: f64 = 60.0 * USEC_PER_MINUTE;
const USEC_PER_DAY: f64 = 24.0 * USEC_PER_HOUR;
const USEC_PER_WEEK: f64 = 7.0 * USEC_PER_DAY;
// systemd: 30.44 days and 365.25 days.
const USEC_PER_MONTH: f64 = 2_629_800.0 * USEC_PER_SEC;
const USEC_PER_YEAR: f64 = 31_557_600.0 * USEC_PER_SEC;

/// systemd's suffix table, in its order (src/basic/time-util.c).
const UNITS: &[(&str, f64)] = &[
    ("seconds", USEC_PER_SEC),
    ("second", USEC_PER_SEC),
    ("sec", USEC_PER_SEC),
    ("s", USEC_PER_SEC),
    ("minutes", USEC_PER_MINUTE),
    ("minute", USEC_PER_MINUTE),
    ("min", USEC_PER_MINUTE),
    ("months", USEC_PER_MONTH),
    ("month", USEC_PER_MONTH),
    ("M", USEC_PER_MONTH),
    ("msec", 1000.0),
    ("ms", 1000.0),
    ("m", USEC_PER_MINUTE),
    ("hours", USEC_PER_HOUR),
    ("hour", USEC_PER_HOUR),
    ("hr", USEC_PER_HOUR),
    ("h", USEC_PER_HOUR),
    ("days", USEC_PER_DAY),
    ("day", USEC_PER_DAY),
    ("d", USEC_PER_DAY),
    ("weeks", USEC_PER_WEEK),
    ("week", USEC_PER_WEEK),
    ("w", USEC_PER_WEEK),
    ("years", USEC_PER_YEAR),
    ("year", USEC_PER_YEAR),
    ("y", USEC_PER_YEAR),
    ("usec", 1.0),
    ("us", 1.0),
    ("μs", 1.0),
];

/// A parsed time span, remembering the text it came from (shown back to
/// operators, and written into generated timer units as given).
#[derive(Clone, PartialEq, Eq)]
pub struct TimeSpan {
    text: String,
    usec: u64,
}

impl TimeSpan {
    pub fn parse(s: &str) -> Result<TimeSpan, String> {
        parse_usec(s).map(|usec| TimeSpan {
            text: s.trim().to_owned(),
            usec,
        })
    }

    pub fn from_secs(secs: u64) -> TimeSpan {
        TimeSpan {
            text: format!("{secs}s"),
            usec: secs * 1_000_000,
        }
    }

    /// `n` minutes, written `{n}m` (a built-in default interval).
    pub fn minutes(n: u64) -> TimeSpan {
        TimeSpan {
            text: format!("{n}m"),
            usec: n * 60_000_000,
        }
    }

    /// `n` hours, written `{n}h` (a built-in default interval).
    pub fn hours(n: u64) -> TimeSpan {
        TimeSpan {
            text: format!("{n}h"),
            usec: n * 3_600_000_000,
        }
    }

    pub fn as_duration(&self) -> Duration {
        Duration::from_micros(self.usec)
    }

    pub fn as_usec(&self) -> u64 {
        self.usec
    }

    pub fn text(&self) -> &str {
        &self.text
    }
}

impl fmt::Display for TimeSpan {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.text)
    }
}

impl fmt::Debug for TimeSpan {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "TimeSpan({:?} = {}us)", self.text, self.usec)
    }
}

impl std::str::FromStr for TimeSpan {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        TimeSpan::parse(s)
    }
}

/// A time span in the configuration: a string in systemd's syntax, or a
/// bare integer meaning seconds (`interval = 90`), as systemd reads one.
impl<'de> serde::Deserialize<'de> for TimeSpan {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl serde::de::Visitor<'_> for V {
            type Value = TimeSpan;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a time span such as \"90s\" or \"1h 30min\", or a number of seconds")
            }
            fn visit_str<E: serde::de::Error>(self, s: &str) -> Result<TimeSpan, E> {
                TimeSpan::parse(s).map_err(E::custom)
            }
            fn visit_u64<E: serde::de::Error>(self, n: u64) -> Result<TimeSpan, E> {
                if n > u64::MAX / 2_000_000 {
                    return Err(E::custom(format!("invalid time span {n}: it is too large")));
                }
                Ok(TimeSpan {
                    text: n.to_string(),
                    usec: n * 1_000_000,
                })
            }
            fn visit_i64<E: serde::de::Error>(self, n: i64) -> Result<TimeSpan, E> {
                match u64::try_from(n) {
                    Ok(n) => self.visit_u64(n),
                    Err(_) => Err(E::custom(format!(
                        "invalid time span {n}: negative spans are not allowed"
                    ))),
                }
            }
        }
        d.deserialize_any(V)
    }
}

impl serde::Serialize for TimeSpan {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.text)
    }
}

fn is_ws(c: char) -> bool {
    matches!(c, ' ' | '\t' | '\n' | '\r')
}

/// Parses a systemd time span into microseconds.
pub fn parse_usec(input: &str) -> Result<u64, String> {
    let bad = |why: &str| Err(format!("invalid time span {input:?}: {why}"));
    let mut p = input.trim_start_matches(is_ws);
    if p.is_empty() {
        return bad("it is empty");
    }
    if p == "infinity" {
        return bad("\"infinity\" is not allowed here");
    }
    let mut total: f64 = 0.0;
    let mut something = false;
    loop {
        p = p.trim_start_matches(is_ws);
        if p.is_empty() {
            if !something {
                return bad("it is empty");
            }
            break;
        }
        if p.starts_with('-') {
            return bad("negative spans are not allowed");
        }
        // Integer part, then an optional fraction.
        let int_len = p.find(|c: char| !c.is_ascii_digit()).unwrap_or(p.len());
        let (int_part, rest) = p.split_at(int_len);
        let mut rest = rest;
        let mut frac_part = "";
        if let Some(r) = rest.strip_prefix('.') {
            let frac_len = r.find(|c: char| !c.is_ascii_digit()).unwrap_or(r.len());
            frac_part = &r[..frac_len];
            rest = &r[frac_len..];
            // systemd: "Don't allow 3.sec": a point needs digits after it.
            if frac_part.is_empty() {
                return bad("a digit is expected after the decimal point");
            }
        } else if int_part.is_empty() {
            return bad(&format!("a number is expected at {p:?}"));
        }
        let number: f64 = format!(
            "{}.{}",
            if int_part.is_empty() { "0" } else { int_part },
            if frac_part.is_empty() { "0" } else { frac_part }
        )
        .parse()
        .map_err(|_| format!("invalid time span {input:?}: bad number"))?;
        let after_ws = rest.trim_start_matches(is_ws);
        let (mult, consumed) = match UNITS.iter().find(|(u, _)| after_ws.starts_with(u)) {
            Some((u, m)) => (*m, &after_ws[u.len()..]),
            None => {
                // systemd: "Don't allow '12.34.56', but accept '12.34 .56'".
                if rest.chars().next().is_some_and(|c| !is_ws(c)) {
                    return bad(&format!("unknown unit at {rest:?}"));
                }
                (USEC_PER_SEC, rest)
            }
        };
        total += number * mult;
        if total > u64::MAX as f64 / 2.0 {
            return bad("it is too large");
        }
        something = true;
        p = consumed;
    }
    Ok(total.round() as u64)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Shown as written (trimmed); debugged with its value.
    #[test]
    fn a_span_shows_its_text_and_debugs_with_its_value() {
        let t = TimeSpan::parse(" 1h 30min ").unwrap();
        assert_eq!(t.to_string(), "1h 30min");
        assert_eq!(format!("{t:?}"), "TimeSpan(\"1h 30min\" = 5400000000us)");
    }

    #[derive(serde::Deserialize, Debug)]
    struct Holder {
        #[allow(dead_code)]
        t: TimeSpan,
    }

    /// In the configuration: a string, or a whole number of seconds up to
    /// u64::MAX / 2,000,000 (beyond it, too large: the microseconds must
    /// fit twice over); anything else is refused saying what is wanted.
    #[test]
    fn a_configured_span_is_text_or_seconds_within_bounds() {
        let read = |v: &str| toml::from_str::<Holder>(&format!("t = {v}")).map(|h| h.t);
        assert_eq!(read("90").unwrap(), TimeSpan::parse("90").unwrap());
        assert_eq!(read("\"90s\"").unwrap().as_usec(), 90_000_000);
        let max = u64::MAX / 2_000_000;
        assert_eq!(read(&max.to_string()).unwrap().as_usec(), max * 1_000_000);
        let e = read(&(max + 1).to_string()).unwrap_err().to_string();
        assert!(
            e.contains(&format!("invalid time span {}: it is too large", max + 1)),
            "{e}"
        );
        let e = read("-1").unwrap_err().to_string();
        assert!(
            e.contains("invalid time span -1: negative spans are not allowed"),
            "{e}"
        );
        let e = read("true").unwrap_err().to_string();
        assert!(
            e.contains("a time span such as \"90s\" or \"1h 30min\", or a number of seconds"),
            "{e}"
        );
    }

    /// A span up to half of u64::MAX microseconds (about 292,000 years)
    /// is read; beyond it is too large.
    #[test]
    fn a_span_is_too_large_only_past_half_the_microseconds_u64_holds() {
        assert_eq!(parse_usec("9223372036854775808us"), Ok(1 << 63));
        assert_eq!(parse_usec("290000y"), Ok(290_000 * 31_557_600_000_000));
        for text in ["300000y", "9223372036854777856us", "200000y 100000y"] {
            assert_eq!(
                parse_usec(text),
                Err(format!("invalid time span {text:?}: it is too large"))
            );
        }
    }

    /// The built-in defaults read as their text does.
    #[test]
    fn built_in_spans_are_what_their_text_says() {
        for n in [0, 1, 2, 7, 24] {
            assert_eq!(
                TimeSpan::hours(n),
                TimeSpan::parse(&format!("{n}h")).unwrap()
            );
            assert_eq!(
                TimeSpan::minutes(n),
                TimeSpan::parse(&format!("{n}m")).unwrap()
            );
            assert_eq!(
                TimeSpan::from_secs(n),
                TimeSpan::parse(&format!("{n}s")).unwrap()
            );
        }
        assert_eq!(TimeSpan::hours(2).as_usec(), 7_200_000_000);
        assert_eq!(TimeSpan::minutes(2).as_duration(), Duration::from_secs(120));
    }

    #[test]
    fn units_and_combinations() {
        let s = 1_000_000u64;
        let cases: &[(&str, u64)] = &[
            ("5m", 300 * s),
            ("1h", 3600 * s),
            ("1h 30min", 5400 * s),
            ("1h30min", 5400 * s),
            ("1.5h", 5400 * s),
            ("90", 90 * s),
            ("2s", 2 * s),
            ("10 sec", 10 * s),
            ("1d", 86400 * s),
            ("1w", 604800 * s),
            ("1M", 2_629_800 * s),
            ("1y", 31_557_600 * s),
            ("500ms", 500_000),
            ("7us", 7),
            ("3 minutes 2 seconds", 182 * s),
            ("0", 0),
        ];
        for (text, want) in cases {
            assert_eq!(parse_usec(text), Ok(*want), "{text}");
        }
    }

    #[test]
    fn refuses_what_systemd_refuses() {
        for text in [
            "1H",
            "1h,30m",
            "3mins",
            "",
            "  ",
            "abc",
            "-5s",
            "5 parsecs",
            "1.2.3s",
        ] {
            let e = parse_usec(text).unwrap_err();
            assert!(e.contains(&format!("{text:?}")), "{e}");
        }
    }
}
