//! The fake Launchpad web service of the fixture server. It answers
//! lazr.restful-shaped JSON built from files under `tests/fixtures/launchpad/`.

use axum::body::Body;
use axum::http::{Response, StatusCode, header};
use std::path::Path;

/// Answers `GET /launchpad/<rest>?<query>`. `base` is the service's own
/// base URL (`http://HOST/launchpad/`), used to build links.
pub fn handle(_root: &Path, _base: &str, rest: &str, _query: &str) -> Response<Body> {
    Response::builder()
        .status(StatusCode::NOT_FOUND)
        .header(header::CONTENT_TYPE, "text/plain")
        .body(Body::from(format!("Object: {rest} not found\n")))
        .expect("response")
}
