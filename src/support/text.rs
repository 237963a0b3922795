//! The one place secrets are taken out of what the program shows: errors,
//! logs, `status.json`, the health endpoint, `config show`, recordings.
//!
//! A URL (or a message quoting URLs) loses
//! - the password of its user-info (`scheme://user:password@host` keeps the
//!   user), or the whole user-info when it is a name alone
//!   (`scheme://token@host`, often a token);
//! - the value of every query (or fragment) parameter whose name looks
//!   secret ([`is_secret_name`]: `token`, `access_token`, `api_key`,
//!   `Signature`, ...; any case): `?report=x&access_token=S` becomes
//!   `?report=x&access_token=<redacted>`.

use regex::{Captures, Regex};
use std::sync::LazyLock;

/// What a redacted secret is replaced with.
pub const REDACTED: &str = "<redacted>";

/// The user-info of a URL: `://user:password@` or `://user@`.
static USERINFO: LazyLock<Regex> =
    LazyLock::new(|| Regex::new(r"://([^/@\s:?#]*)(:[^/@\s?#]*)?@").expect("valid regex"));

/// A query or fragment parameter: its separator, name and value. A value
/// ends at the next parameter (`&` or `;`), fragment, white space, quote,
/// angle bracket or closing parenthesis (how URLs end in messages, JSON and
/// logs; tokens, hex or base64, never hold those).
static PARAM: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(r#"([?&;#])([A-Za-z0-9_.\-\[\]]+)=([^&;#\s"'<>()\\]*)"#).expect("valid regex")
});

/// Whether a query parameter (or a configuration key) named `name` holds a
/// secret: `token`, `key`, `password`, `secret`, `sig`, `signature`, `auth`
/// and their usual spellings (`access_token`, `api_key`, `apiKey`,
/// `client_secret`, `X-Amz-Signature`, `private-token`, ...), in any case.
pub fn is_secret_name(name: &str) -> bool {
    let n = name.to_ascii_lowercase();
    const EXACT: &[&str] = &[
        "key",
        "sig",
        "auth",
        "pass",
        "passwd",
        "pwd",
        "authorization",
        "credential",
        "credentials",
    ];
    const ENDS: &[&str] = &[
        "token",
        "_key",
        "-key",
        ".key",
        "apikey",
        "accesskey",
        "secretkey",
        "secret",
        "password",
        "signature",
        "_sig",
        "-sig",
        "_auth",
        "-auth",
    ];
    EXACT.contains(&n.as_str()) || ENDS.iter().any(|e| n.ends_with(e))
}

/// `text` (a URL, or a message quoting URLs) with the secrets of every URL
/// redacted (see the module's documentation).
pub fn redact_url(text: &str) -> String {
    let text = USERINFO.replace_all(text, |c: &Captures| {
        if c.get(2).is_some() {
            format!("://{}:{REDACTED}@", &c[1])
        } else if c[1].starts_with('<') {
            c[0].to_owned()
        } else {
            format!("://{REDACTED}@")
        }
    });
    PARAM
        .replace_all(&text, |c: &Captures| {
            if is_secret_name(&c[2]) && !c[3].is_empty() && &c[3] != REDACTED {
                format!("{}{}={REDACTED}", &c[1], &c[2])
            } else {
                c[0].to_owned()
            }
        })
        .into_owned()
}

/// The secrets [`redact_url`] takes out of `text`: user-info passwords
/// and the values of secret parameters (a user name alone is not listed:
/// it is often a common word, and goes with its URL). For messages
/// that quote a fragment of `text` (a parse error quoting a line of the
/// configuration) rather than the whole URL.
pub fn url_secrets(text: &str) -> Vec<String> {
    let mut out = Vec::new();
    for c in USERINFO.captures_iter(text) {
        if let Some(p) = c.get(2).filter(|p| p.as_str().len() > 1) {
            out.push(p.as_str()[1..].to_owned());
        }
    }
    for c in PARAM.captures_iter(text) {
        if is_secret_name(&c[2]) && !c[3].is_empty() && &c[3] != REDACTED {
            out.push(c[3].to_owned());
        }
    }
    out
}

/// A size such as `100MB`, `512KiB`, `1G` or `4096` (bytes). Decimal units
/// (kB, MB, GB, TB: powers of 1000) and binary ones (KiB, MiB, GiB, TiB:
/// powers of 1024); `K`, `M`, `G`, `T` alone are binary, as in systemd.
/// Case does not matter; spaces between number and unit are allowed.
pub fn parse_size(s: &str) -> Result<u64, String> {
    let t = s.trim();
    let split = t
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(t.len());
    let (num, unit) = t.split_at(split);
    let bad = |why: &str| {
        Err(format!(
            "invalid size {s:?}: {why} (write e.g. \"100MB\", \"512MiB\", \"1G\" or a number of bytes)"
        ))
    };
    if num.is_empty() {
        return bad("it does not start with a number");
    }
    let Ok(n) = num.parse::<f64>() else {
        return bad("the number is not valid");
    };
    let mult: u64 = match unit.trim().to_ascii_lowercase().as_str() {
        "" | "b" => 1,
        "kb" => 1_000,
        "mb" => 1_000_000,
        "gb" => 1_000_000_000,
        "tb" => 1_000_000_000_000,
        "k" | "kib" => 1 << 10,
        "m" | "mib" => 1 << 20,
        "g" | "gib" => 1 << 30,
        "t" | "tib" => 1 << 40,
        _ => return bad("unknown unit"),
    };
    let bytes = n * mult as f64;
    if !bytes.is_finite() || bytes >= u64::MAX as f64 {
        return bad("too large");
    }
    let bytes = bytes.round() as u64;
    if bytes == 0 {
        return bad("it must be more than 0 bytes");
    }
    Ok(bytes)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn user_info_and_secret_parameters_go_the_rest_stays() {
        for (url, want) in [
            ("https://u:p@h/x", "https://u:<redacted>@h/x"),
            ("https://tok@h/x", "https://<redacted>@h/x"),
            ("http://h/x?a=1&b=2", "http://h/x?a=1&b=2"),
            (
                "http://h/x?report=x&access_token=S&Signature=T#k",
                "http://h/x?report=x&access_token=<redacted>&Signature=<redacted>#k",
            ),
            ("http://h/?token=S", "http://h/?token=<redacted>"),
            (
                "GET http://h/a?API_KEY=S1;sig=S2 failed (http://h/b?Private-Token=S3)",
                "GET http://h/a?API_KEY=<redacted>;sig=<redacted> failed (http://h/b?Private-Token=<redacted>)",
            ),
            (
                "\"url\": \"http://h/a?apiKey=S&key=K&monkey=m&keys=2\"",
                "\"url\": \"http://h/a?apiKey=<redacted>&key=<redacted>&monkey=m&keys=2\"",
            ),
            (
                "https://h/cb#access_token=S&state=1",
                "https://h/cb#access_token=<redacted>&state=1",
            ),
            (
                "s3://b/o?X-Amz-Signature=S&X-Amz-Security-Token=T&password=P&auth=A&client_secret=C",
                "s3://b/o?X-Amz-Signature=<redacted>&X-Amz-Security-Token=<redacted>&password=<redacted>&auth=<redacted>&client_secret=<redacted>",
            ),
            ("http://h/x?token=", "http://h/x?token="),
        ] {
            assert_eq!(redact_url(url), want, "{url}");
            // Redacting twice changes nothing.
            assert_eq!(redact_url(want), want, "{want}");
        }
    }

    #[test]
    fn the_secrets_of_a_text_are_those_redact_url_removes() {
        let text =
            "url = \"https://u:pw@h/x?a=1&access_token=S1&sig=S2\"\nother = \"rsync://t0k@h/\"";
        let mut s = url_secrets(text);
        s.sort();
        assert_eq!(s, ["S1", "S2", "pw"]);
        let redacted = redact_url(text);
        for secret in s {
            assert!(!redacted.contains(&secret), "{redacted}");
        }
    }
}
