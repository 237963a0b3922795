//! Record and replay (`run --record/--replay`): a request answered from
//! the recording with no network, or sent and its answer recorded.

use super::Http;
use super::body::Reply;
use super::limit::Host;
use crate::sources::SourceError;
use crate::sources::tape;

impl Http {
    /// The answer to `req` from the recording being replayed, or from the
    /// next layers (recorded when recording).
    pub(super) async fn replayed_or_sent(
        &self,
        host: &Host,
        req: reqwest::Request,
    ) -> Result<Reply, SourceError> {
        let Some(tape) = &self.tape else {
            return self.conditional_send(host, req).await;
        };
        let url = req.url().to_string();
        let range = req
            .headers()
            .get(reqwest::header::RANGE)
            .and_then(|v| v.to_str().ok());
        let key = tape::key(req.method().as_str(), &url, range);
        match tape.get_http(&key, self.max_body) {
            Some(Ok((status, headers, body))) => Ok(Reply {
                status: reqwest::StatusCode::from_u16(status)
                    .unwrap_or(reqwest::StatusCode::BAD_GATEWAY),
                headers,
                body: self.capped(body),
            }),
            Some(Err(e)) => Err(SourceError::Request {
                url,
                message: e.to_string(),
            }),
            None => {
                let reply = self.conditional_send(host, req).await?;
                if let Some(b) = reply.read() {
                    tape.put_http(key, reply.status.as_u16(), &reply.headers, b);
                }
                Ok(reply)
            }
        }
    }
}
