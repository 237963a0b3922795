//! Conditional requests: a whole document (a `GET` without `Range`) whose
//! last answer is kept ([`AnswerCache`]) with an `ETag` or a
//! `Last-Modified` is asked `If-None-Match` / `If-Modified-Since`; a `304`
//! is answered with the kept body as a `200`; a `200` with validators is
//! kept for the next time.

use super::Http;
use super::body::Reply;
use super::kept::{AnswerCache, Validators};
use super::limit::Host;
use crate::sources::SourceError;
use reqwest::header::{
    CONTENT_TYPE, ETAG, HeaderMap, IF_MODIFIED_SINCE, IF_NONE_MATCH, LAST_MODIFIED, RANGE,
};

impl Http {
    /// The answer to `req`, asked conditionally when its document is kept.
    pub(super) async fn conditional_send(
        &self,
        host: &Host,
        mut req: reqwest::Request,
    ) -> Result<Reply, SourceError> {
        let cache = self
            .conditional
            .as_deref()
            .filter(|_| req.method() == reqwest::Method::GET && !req.headers().contains_key(RANGE));
        let Some(cache) = cache else {
            return Ok(self.receive(self.send(host, req).await?).await);
        };
        let url = req.url().to_string();
        let known = cache.validators(&url);
        if let Some(v) = &known {
            ask_if_changed(req.headers_mut(), v);
        }
        let retry = known.as_ref().and_then(|_| req.try_clone());
        let mut resp = self.send(host, req).await?;
        if let Some(v) = &known {
            // A conditional request refused (431 for its validators, 400,
            // or the document gone): the entry goes, the next request is a
            // plain one. A 408 or 429 says nothing of the request.
            let status = resp.status();
            if status.is_client_error() && !matches!(status.as_u16(), 408 | 429) {
                cache.forget(&url);
            }
            if status == reqwest::StatusCode::NOT_MODIFIED {
                match cache.body(&url) {
                    Some(body) => return Ok(not_modified(v, body)),
                    // The kept body is gone: ask for the whole document.
                    None => resp = self.ask_in_full(host, retry, &url).await?,
                }
            }
        }
        let reply = self.receive(resp).await;
        keep(cache, url, &reply);
        Ok(reply)
    }

    /// `retry` (a conditional request) sent again without its validators.
    async fn ask_in_full(
        &self,
        host: &Host,
        retry: Option<reqwest::Request>,
        url: &str,
    ) -> Result<reqwest::Response, SourceError> {
        let Some(mut again) = retry else {
            return Err(SourceError::Request {
                url: url.to_owned(),
                message: "a 304 for a document no longer kept, and the request cannot be repeated"
                    .into(),
            });
        };
        again.headers_mut().remove(IF_NONE_MATCH);
        again.headers_mut().remove(IF_MODIFIED_SINCE);
        self.count_request(again.url());
        self.send(host, again).await
    }
}

/// Adds the validators of the kept answer to the request's headers.
fn ask_if_changed(h: &mut HeaderMap, v: &Validators) {
    if let Some(e) = v.etag.as_deref().and_then(|e| e.parse().ok()) {
        h.insert(IF_NONE_MATCH, e);
    }
    if let Some(m) = v.last_modified.as_deref().and_then(|m| m.parse().ok()) {
        h.insert(IF_MODIFIED_SINCE, m);
    }
}

/// Not modified: the kept document, as a 200 answer.
fn not_modified(v: &Validators, body: Vec<u8>) -> Reply {
    let mut headers = HeaderMap::new();
    if let Some(ct) = v.content_type.as_deref().and_then(|c| c.parse().ok()) {
        headers.insert(CONTENT_TYPE, ct);
    }
    Reply {
        status: reqwest::StatusCode::OK,
        headers,
        body: Ok(body),
    }
}

/// Keeps a whole `200` answer that has validators.
fn keep(cache: &AnswerCache, url: String, reply: &Reply) {
    let (reqwest::StatusCode::OK, Ok(body)) = (reply.status, &reply.body) else {
        return;
    };
    let header = |n| {
        reply
            .headers
            .get(n)
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned)
    };
    let v = Validators {
        url,
        etag: header(ETAG),
        last_modified: header(LAST_MODIFIED),
        content_type: header(CONTENT_TYPE),
    };
    if v.etag.is_some() || v.last_modified.is_some() {
        cache.store(&v, body);
    }
}
