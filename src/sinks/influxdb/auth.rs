//! How a writer proves who it is: nothing, basic authentication (v1:
//! username and password, in a header, never in the URL) or a token (v2:
//! `Authorization: Token ...`). Checked when the writer is built, so that a
//! secret that cannot be sent (a token that is not a valid header value)
//! is a configuration error when the command starts, never a write error
//! sending points to the dead letters.

use reqwest::header::HeaderValue;

/// The credentials a writer sends with every request.
#[derive(Clone, Default)]
pub enum Auth {
    #[default]
    None,
    /// v1: basic authentication.
    Basic {
        username: String,
        password: Option<String>,
    },
    /// v2: the `Authorization` header's value (`Token ...`), marked
    /// sensitive (never logged by the HTTP client).
    Token(HeaderValue),
}

/// Debug output never shows a secret.
impl std::fmt::Debug for Auth {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Auth::None => f.write_str("None"),
            Auth::Basic { username, .. } => f
                .debug_struct("Basic")
                .field("username", username)
                .field("password", &crate::support::text::REDACTED)
                .finish(),
            Auth::Token(_) => f.write_str("Token(<redacted>)"),
        }
    }
}

/// A secret that cannot be sent, naming the key it came from.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "{key}.token: the token is not a valid HTTP header value (it holds a control character or a line break; check the token or the file it is read from)"
)]
pub struct AuthError {
    /// The output's configuration key: `influxdb` or `outputs.NAME`.
    pub key: String,
}

impl Auth {
    /// Basic authentication for `username` (none without one).
    pub fn basic(username: Option<String>, password: Option<String>) -> Auth {
        match username {
            Some(username) => Auth::Basic { username, password },
            None => Auth::None,
        }
    }

    /// Token authentication (none without a token); `key` names the output
    /// in the error.
    pub fn token(token: Option<&str>, key: &str) -> Result<Auth, AuthError> {
        let Some(token) = token else {
            return Ok(Auth::None);
        };
        let mut v = HeaderValue::from_str(&format!("Token {token}")).map_err(|_| AuthError {
            key: key.to_owned(),
        })?;
        v.set_sensitive(true);
        Ok(Auth::Token(v))
    }

    /// Whether a token is sent (v2).
    pub fn is_token(&self) -> bool {
        matches!(self, Auth::Token(_))
    }

    /// `req` with the credentials.
    pub fn apply(&self, req: reqwest::RequestBuilder) -> reqwest::RequestBuilder {
        match self {
            Auth::None => req,
            Auth::Basic { username, password } => req.basic_auth(username, password.as_deref()),
            Auth::Token(v) => req.header(reqwest::header::AUTHORIZATION, v.clone()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_token_that_cannot_be_a_header_is_refused_naming_its_key() {
        let e = Auth::token(Some("abc\ndef"), "outputs.vm").unwrap_err();
        assert!(e.to_string().starts_with("outputs.vm.token: "), "{e}");
        assert!(Auth::token(Some("abc"), "influxdb").unwrap().is_token());
        assert!(matches!(Auth::token(None, "influxdb"), Ok(Auth::None)));
        let shown = format!("{:?}", Auth::token(Some("s3cret"), "influxdb").unwrap());
        assert!(!shown.contains("s3cret"), "{shown}");
    }
}
