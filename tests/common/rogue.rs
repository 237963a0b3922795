//! A small misbehaving HTTP server on a loopback port: a proxy answering
//! for InfluxDB (redirects, HTML pages), an InfluxDB that reads the request
//! and never answers, an upstream with a huge body. Each connection is read
//! (headers and `Content-Length` body), then `answer` decides: the raw
//! response bytes, or `None` to hold the connection open without a word.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

/// A request as the server read it.
#[derive(Debug, Clone)]
pub struct Request {
    pub method: String,
    pub path: String,
    pub body_len: usize,
    /// The `Authorization` header, if any.
    pub authorization: Option<String>,
}

pub struct Rogue {
    pub port: u16,
    /// Requests read so far.
    pub requests: Arc<AtomicUsize>,
    /// Connections held open (answer `None`), kept until the server drops.
    held: Arc<Mutex<Vec<TcpStream>>>,
}

impl Rogue {
    pub fn start<F>(answer: F) -> Rogue
    where
        F: Fn(&Request) -> Option<Vec<u8>> + Send + Sync + 'static,
    {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind loopback");
        let port = listener.local_addr().unwrap().port();
        let requests = Arc::new(AtomicUsize::new(0));
        let held = Arc::new(Mutex::new(Vec::new()));
        let answer = Arc::new(answer);
        let (r, h) = (requests.clone(), held.clone());
        std::thread::spawn(move || {
            for conn in listener.incoming() {
                let Ok(conn) = conn else { return };
                let (answer, r, h) = (answer.clone(), r.clone(), h.clone());
                std::thread::spawn(move || serve(conn, &*answer, &r, &h));
            }
        });
        Rogue {
            port,
            requests,
            held,
        }
    }

    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    pub fn held(&self) -> usize {
        self.held.lock().unwrap().len()
    }
}

/// A complete response with `Connection: close`.
pub fn response(status: &str, headers: &[(&str, &str)], body: &[u8]) -> Vec<u8> {
    let mut out = format!(
        "HTTP/1.1 {status}\r\nContent-Length: {}\r\nConnection: close\r\n",
        body.len()
    );
    for (k, v) in headers {
        out.push_str(&format!("{k}: {v}\r\n"));
    }
    out.push_str("\r\n");
    let mut out = out.into_bytes();
    out.extend_from_slice(body);
    out
}

fn serve(
    conn: TcpStream,
    answer: &(dyn Fn(&Request) -> Option<Vec<u8>> + Send + Sync),
    requests: &AtomicUsize,
    held: &Mutex<Vec<TcpStream>>,
) {
    let mut reader = BufReader::new(conn.try_clone().expect("clone stream"));
    let mut line = String::new();
    if reader.read_line(&mut line).unwrap_or(0) == 0 {
        return;
    }
    let mut parts = line.split_whitespace();
    let method = parts.next().unwrap_or_default().to_owned();
    let path = parts.next().unwrap_or_default().to_owned();
    let mut body_len = 0;
    let mut authorization = None;
    loop {
        let mut h = String::new();
        if reader.read_line(&mut h).unwrap_or(0) == 0 {
            return;
        }
        let h = h.trim_end();
        if h.is_empty() {
            break;
        }
        if let Some((k, v)) = h.split_once(':') {
            if k.eq_ignore_ascii_case("content-length") {
                body_len = v.trim().parse().unwrap_or(0);
            } else if k.eq_ignore_ascii_case("authorization") {
                authorization = Some(v.trim().to_owned());
            }
        }
    }
    let mut body = vec![0; body_len];
    if reader.read_exact(&mut body).is_err() {
        return;
    }
    requests.fetch_add(1, Ordering::SeqCst);
    let req = Request {
        method,
        path,
        body_len,
        authorization,
    };
    // One request per connection: every answer closes it.
    match answer(&req) {
        Some(bytes) => {
            let mut w = &conn;
            let _ = w.write_all(&bytes);
            let _ = w.flush();
        }
        None => held.lock().unwrap().push(conn),
    }
}
