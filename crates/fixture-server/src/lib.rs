//! A local HTTP server standing in for the upstream sources: it serves the
//! recorded-shape files under a fixtures directory (`tests/fixtures/`), so
//! tests, the offline try-out and the benchmark never leave loopback.
//!
//! - `GET /<path>` serves `<root>/<path>`; a directory (or a path ending in
//!   `/`) serves its `index.html`. Paths are percent-decoded.
//! - `Range: bytes=-N` and `bytes=A-` / `bytes=A-B` are honoured with 206 and
//!   `Content-Range`, as Apache does for the archive team's CSV files.
//! - Conditional requests as Apache answers them (files: an `ETag` of size
//!   and modification time, `Last-Modified`; `If-None-Match` or
//!   `If-Modified-Since` gets `304` with no body, before any `Range` is
//!   looked at) and as lazr.restful does
//!   (Launchpad: an `ETag` of the representation).
//! - `/launchpad/...` is a fake Launchpad web service (see
//!   [`crate::launchpad`]) built from files under
//!   `<root>/launchpad/`.
//! - Every answer can be delayed by a fixed latency (benchmarks), and faults
//!   can be planted per path prefix (tests of misbehaving sources).
//!
//! The server runs on its own thread and runtime, so synchronous tests that
//! drive the `ubuntu-metrics` binary can use it as well as async ones.

pub mod launchpad;
pub mod rsyncd;

use axum::body::Body;
use axum::http::{HeaderMap, Request, Response, StatusCode, header};
use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use ubuntu_metrics::config::{SourceUrl, Sources, declared_sources};

/// A misbehaviour planted for every path starting with a prefix.
#[derive(Debug, Clone, PartialEq)]
pub enum Fault {
    /// Answer with this status and a short body.
    Status(u16),
    /// Wait this long before answering normally.
    Delay(Duration),
    /// Announce the full length but close the connection halfway through.
    Truncate,
    /// Answer 200 with an empty body.
    Empty,
    /// Answer 200 with an HTML error page instead of the document.
    Garbage,
}

pub struct State {
    root: PathBuf,
    latency: Mutex<Duration>,
    requests: Mutex<BTreeMap<String, u64>>,
    /// Requests by whole (decoded) path, without the query.
    paths: Mutex<BTreeMap<String, u64>>,
    /// Requests by path and query, with their `Range` header if any: one
    /// key per document (or part of one) asked for.
    documents: Mutex<BTreeMap<String, u64>>,
    faults: Mutex<Vec<(String, Fault)>>,
    /// Answers `304 Not Modified` given so far.
    not_modified: std::sync::atomic::AtomicU64,
    /// Body bytes sent so far.
    sent: std::sync::atomic::AtomicU64,
    /// Serving TLS ([`FixtureServer::start_tls`]): links say `https`.
    https: bool,
    /// TLS connections accepted, and those that chose HTTP/2 (ALPN `h2`).
    tls_connections: std::sync::atomic::AtomicU64,
    h2_connections: std::sync::atomic::AtomicU64,
    /// Requests by HTTP version (`HTTP/1.1`, `HTTP/2.0`).
    versions: Mutex<BTreeMap<String, u64>>,
    /// Requests being answered now, and the most at once so far.
    in_flight: std::sync::atomic::AtomicU64,
    max_in_flight: std::sync::atomic::AtomicU64,
}

impl State {
    /// `https` when serving TLS, else `http`: the scheme of every URL the
    /// server gives (its base, Launchpad's links).
    fn scheme(&self) -> &'static str {
        if self.https { "https" } else { "http" }
    }
}

/// How [`FixtureServer::start_tls`] serves: both protocols offered by ALPN
/// (as Launchpad's and Canonical's front ends do), or HTTP/1.1 alone.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Alpn {
    H2AndHttp11,
    Http11Only,
}

/// The certificate authority of a TLS fixture server, and the server's
/// certificate (for `127.0.0.1` and `localhost`) it signed.
pub struct TestCa {
    /// The CA certificate, PEM: what a client must trust.
    pub ca_pem: String,
    cert_der: rustls::pki_types::CertificateDer<'static>,
    key_der: rustls::pki_types::PrivateKeyDer<'static>,
}

impl TestCa {
    /// A new CA and server certificate.
    pub fn generate() -> TestCa {
        use rcgen::{BasicConstraints, CertificateParams, CertifiedIssuer, DnType, IsCa, KeyPair};
        let mut p = CertificateParams::new(Vec::<String>::new()).expect("CA parameters");
        p.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        p.distinguished_name
            .push(DnType::CommonName, "ubuntu-metrics fixture CA");
        let issuer =
            CertifiedIssuer::self_signed(p, KeyPair::generate().expect("key")).expect("CA");
        let key = KeyPair::generate().expect("key");
        let mut params =
            CertificateParams::new(vec!["127.0.0.1".to_owned(), "localhost".to_owned()])
                .expect("server parameters");
        params
            .distinguished_name
            .push(DnType::CommonName, "fixture server");
        let cert = params.signed_by(&key, &issuer).expect("server certificate");
        TestCa {
            ca_pem: issuer.pem(),
            cert_der: cert.der().clone(),
            key_der: rustls::pki_types::PrivateKeyDer::Pkcs8(key.serialize_der().into()),
        }
    }
}

pub struct FixtureServer {
    pub addr: SocketAddr,
    state: Arc<State>,
    /// The cdimage stand-in, when started with [`FixtureServer::with_rsync`].
    rsync: Option<rsyncd::RsyncDaemon>,
    shutdown: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl FixtureServer {
    /// Starts a server on a free loopback port, serving `root`.
    pub fn start(root: impl Into<PathBuf>) -> std::io::Result<FixtureServer> {
        FixtureServer::start_on(root, "127.0.0.1:0".parse().expect("valid address"))
    }

    pub fn start_on(root: impl Into<PathBuf>, addr: SocketAddr) -> std::io::Result<FixtureServer> {
        FixtureServer::start_with(root.into(), addr, None)
    }

    /// Starts a server on a free loopback port serving `root` over TLS with
    /// `ca`'s certificate, offering HTTP/2 or not (`alpn`). Its base URL is
    /// `https://127.0.0.1:PORT/`.
    pub fn start_tls(
        root: impl Into<PathBuf>,
        ca: &TestCa,
        alpn: Alpn,
    ) -> std::io::Result<FixtureServer> {
        FixtureServer::start_with(
            root.into(),
            "127.0.0.1:0".parse().expect("valid address"),
            Some((ca, alpn)),
        )
    }

    fn start_with(
        root: PathBuf,
        addr: SocketAddr,
        tls: Option<(&TestCa, Alpn)>,
    ) -> std::io::Result<FixtureServer> {
        let state = Arc::new(State {
            root,
            latency: Mutex::new(Duration::ZERO),
            requests: Mutex::new(BTreeMap::new()),
            paths: Mutex::new(BTreeMap::new()),
            documents: Mutex::new(BTreeMap::new()),
            faults: Mutex::new(Vec::new()),
            not_modified: Default::default(),
            sent: Default::default(),
            https: tls.is_some(),
            tls_connections: Default::default(),
            h2_connections: Default::default(),
            versions: Mutex::new(BTreeMap::new()),
            in_flight: Default::default(),
            max_in_flight: Default::default(),
        });
        let acceptor = match tls {
            None => None,
            Some((ca, alpn)) => {
                let provider = Arc::new(rustls::crypto::ring::default_provider());
                let mut config = rustls::ServerConfig::builder_with_provider(provider)
                    .with_safe_default_protocol_versions()
                    .map_err(std::io::Error::other)?
                    .with_no_client_auth()
                    .with_single_cert(vec![ca.cert_der.clone()], ca.key_der.clone_key())
                    .map_err(std::io::Error::other)?;
                config.alpn_protocols = match alpn {
                    Alpn::H2AndHttp11 => vec![b"h2".to_vec(), b"http/1.1".to_vec()],
                    Alpn::Http11Only => vec![b"http/1.1".to_vec()],
                };
                Some(tokio_rustls::TlsAcceptor::from(Arc::new(config)))
            }
        };
        let listener = std::net::TcpListener::bind(addr)?;
        listener.set_nonblocking(true)?;
        let addr = listener.local_addr()?;
        let (tx, rx) = tokio::sync::oneshot::channel::<()>();
        let st = state.clone();
        let thread = std::thread::Builder::new()
            .name("fixture-server".into())
            .spawn(move || {
                let rt = tokio::runtime::Builder::new_multi_thread()
                    .worker_threads(2)
                    .enable_all()
                    .build()
                    .expect("tokio runtime");
                rt.block_on(async move {
                    let listener = tokio::net::TcpListener::from_std(listener).expect("listener");
                    let app = {
                        let st = st.clone();
                        axum::Router::new()
                            .fallback(move |req: Request<Body>| handle(st.clone(), req))
                    };
                    serve(listener, acceptor, app, st, rx).await;
                });
            })?;
        Ok(FixtureServer {
            addr,
            state,
            rsync: None,
            shutdown: Some(tx),
            thread: Some(thread),
        })
    }

    /// Also serves the images fixture tree (`<root>/images/tree.txt`) with a
    /// real `rsync --daemon`, and points `sources.cdimage_rsync` at it.
    pub fn with_rsync(self) -> std::io::Result<FixtureServer> {
        self.with_rsync_on(0)
    }

    /// [`FixtureServer::with_rsync`] with the rsync daemon on loopback port
    /// `port` (0: any free port).
    pub fn with_rsync_on(mut self, port: u16) -> std::io::Result<FixtureServer> {
        let tree = self.state.root.join("images/tree.txt");
        self.rsync = Some(rsyncd::RsyncDaemon::start_on(&tree, port)?);
        Ok(self)
    }

    /// The server's base URL, `http://127.0.0.1:PORT/` (`https` when
    /// started with [`FixtureServer::start_tls`]).
    pub fn base(&self) -> String {
        format!("{}://{}/", self.state.scheme(), self.addr)
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{}", self.base(), path.trim_start_matches('/'))
    }

    /// TLS connections accepted so far, and how many of them chose HTTP/2.
    pub fn tls_connections(&self) -> (u64, u64) {
        use std::sync::atomic::Ordering::Relaxed;
        (
            self.state.tls_connections.load(Relaxed),
            self.state.h2_connections.load(Relaxed),
        )
    }

    /// Requests served so far by HTTP version (`HTTP/1.1`, `HTTP/2.0`).
    pub fn versions(&self) -> BTreeMap<String, u64> {
        self.state.versions.lock().expect("lock").clone()
    }

    /// The most requests this server was answering at one time.
    pub fn max_in_flight(&self) -> u64 {
        self.state
            .max_in_flight
            .load(std::sync::atomic::Ordering::Relaxed)
    }

    /// Adds a fixed delay to every answer.
    pub fn set_latency(&self, latency: Duration) {
        *self.state.latency.lock().expect("lock") = latency;
    }

    /// Plants a fault for every path starting with `prefix`.
    pub fn set_fault(&self, prefix: &str, fault: Fault) {
        self.state
            .faults
            .lock()
            .expect("lock")
            .push((prefix.to_owned(), fault));
    }

    pub fn clear_faults(&self) {
        self.state.faults.lock().expect("lock").clear();
    }

    /// Requests served so far, by document: path, query and `Range`
    /// header (`/x.csv?a=1 [bytes=-2048]`).
    pub fn document_requests(&self) -> BTreeMap<String, u64> {
        self.state.documents.lock().expect("lock").clone()
    }

    /// `304 Not Modified` answers given so far.
    pub fn not_modified(&self) -> u64 {
        self.state
            .not_modified
            .load(std::sync::atomic::Ordering::Relaxed)
    }

    /// Body bytes sent so far (all answers).
    pub fn bytes_sent(&self) -> u64 {
        self.state.sent.load(std::sync::atomic::Ordering::Relaxed)
    }

    /// Requests served so far, by first path segment (= collector folder).
    pub fn requests(&self) -> BTreeMap<String, u64> {
        self.state.requests.lock().expect("lock").clone()
    }

    /// Requests served so far, by whole path (decoded, without the leading
    /// `/` and the query): `launchpad/devel/ubuntu/series`.
    pub fn path_requests(&self) -> BTreeMap<String, u64> {
        self.state.paths.lock().expect("lock").clone()
    }

    /// The rsync daemon's `rsync://127.0.0.1:PORT/cdimage/`, when started.
    pub fn rsync_url(&self) -> Option<String> {
        self.rsync.as_ref().map(|r| r.url())
    }

    /// The `[sources]` that point every collector at this server's fixture
    /// layout: each source a collector declares at its
    /// [`SourceUrl::fixture`] under `tests/fixtures/`, an `rsync://` source
    /// at the rsync daemon (when started).
    pub fn sources(&self) -> Sources {
        let mut s = fixture_sources(&self.base(), &self.state.root);
        if let Some(r) = &self.rsync {
            for d in declared_sources(&ubuntu_metrics::collectors::registry()) {
                if d.default.starts_with("rsync://") {
                    s.set(&d.key, r.url());
                }
            }
        }
        s
    }
}

/// The `[sources]` for a fixture server at `base` serving `root`, from the
/// sources the registry's collectors declare: `base` + the source's
/// fixture path; an `rsync://` source points at a closed port until an
/// rsync daemon is started ([`FixtureServer::with_rsync`]).
pub fn fixture_sources(base: &str, root: &Path) -> Sources {
    let mut s = Sources::default();
    s.distro_info = root.join("distro-info/ubuntu.csv");
    for d in declared_sources(&ubuntu_metrics::collectors::registry()) {
        if d.default.starts_with("rsync://") {
            s.set(&d.key, "rsync://127.0.0.1:1/cdimage/");
        } else {
            s.set(&d.key, source_url(base, &d));
        }
    }
    s
}

/// Where this server serves the stand-in of `source`.
pub fn source_url(base: &str, source: &SourceUrl) -> String {
    format!("{base}{}", source.fixture)
}

impl Drop for FixtureServer {
    fn drop(&mut self) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

fn plain(status: StatusCode, body: impl Into<String>) -> Response<Body> {
    Response::builder()
        .status(status)
        .header(header::CONTENT_TYPE, "text/plain; charset=utf-8")
        .body(Body::from(body.into()))
        .expect("response")
}

/// Counts the request by version and while it is answered, and answers it.
async fn handle(state: Arc<State>, req: Request<Body>) -> Response<Body> {
    use std::sync::atomic::Ordering::Relaxed;
    *state
        .versions
        .lock()
        .expect("lock")
        .entry(format!("{:?}", req.version()))
        .or_default() += 1;
    /// Ends the count of a request when its answer is given or dropped.
    struct InFlight(Arc<State>);
    impl Drop for InFlight {
        fn drop(&mut self) {
            self.0.in_flight.fetch_sub(1, Relaxed);
        }
    }
    let now = state.in_flight.fetch_add(1, Relaxed) + 1;
    state.max_in_flight.fetch_max(now, Relaxed);
    let _counted = InFlight(state.clone());
    answer(state, req).await
}

async fn answer(state: Arc<State>, req: Request<Body>) -> Response<Body> {
    let raw_path = req.uri().path().to_owned();
    let query = req.uri().query().unwrap_or("").to_owned();
    let path = percent_encoding::percent_decode_str(&raw_path)
        .decode_utf8_lossy()
        .into_owned();
    let segment = path
        .trim_start_matches('/')
        .split('/')
        .next()
        .unwrap_or("")
        .to_owned();
    *state
        .requests
        .lock()
        .expect("lock")
        .entry(segment.clone())
        .or_default() += 1;
    *state
        .paths
        .lock()
        .expect("lock")
        .entry(path.trim_start_matches('/').to_owned())
        .or_default() += 1;

    let range = req
        .headers()
        .get(header::RANGE)
        .and_then(|v| v.to_str().ok())
        .map_or_else(String::new, |r| format!(" [{r}]"));
    *state
        .documents
        .lock()
        .expect("lock")
        .entry(format!("{raw_path}?{query}{range}"))
        .or_default() += 1;

    let latency = *state.latency.lock().expect("lock");
    if !latency.is_zero() {
        tokio::time::sleep(latency).await;
    }
    let fault = state
        .faults
        .lock()
        .expect("lock")
        .iter()
        .rev()
        .find(|(p, _)| path.starts_with(p.as_str()))
        .map(|(_, f)| f.clone());
    let resp = match &fault {
        Some(Fault::Status(code)) => {
            let status = StatusCode::from_u16(*code).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
            return plain(status, format!("planted fault: {code}\n"));
        }
        Some(Fault::Delay(d)) => {
            tokio::time::sleep(*d).await;
            None
        }
        Some(Fault::Empty) => return plain(StatusCode::OK, ""),
        Some(Fault::Garbage) => {
            return Response::builder()
                .status(StatusCode::OK)
                .header(header::CONTENT_TYPE, "text/html")
                .body(Body::from(
                    "<html><body><h1>Service Temporarily Unavailable</h1></body></html>",
                ))
                .expect("response");
        }
        _ => None,
    };
    let resp = match resp {
        Some(r) => r,
        None if segment == "launchpad" => {
            let rest = path
                .trim_start_matches('/')
                .trim_start_matches("launchpad/");
            let resp = launchpad::handle(
                &state.root.join("launchpad"),
                &format!("{}://{}/launchpad/", state.scheme(), host(&req)),
                rest,
                &query,
            );
            with_content_etag(resp, req.headers()).await
        }
        None => serve_file(&state.root, &path, req.headers()),
    };
    if fault == Some(Fault::Truncate) {
        return truncate(resp).await;
    }
    use std::sync::atomic::Ordering::Relaxed;
    if resp.status() == StatusCode::NOT_MODIFIED {
        state.not_modified.fetch_add(1, Relaxed);
    }
    if let Some(n) = axum::body::HttpBody::size_hint(resp.body()).exact() {
        state.sent.fetch_add(n, Relaxed);
    }
    resp
}

/// Launchpad's answers carry an `ETag` of their representation, and an
/// `If-None-Match` with it gets `304 Not Modified` and no body, as
/// lazr.restful does.
async fn with_content_etag(resp: Response<Body>, headers: &HeaderMap) -> Response<Body> {
    if resp.status() != StatusCode::OK {
        return resp;
    }
    let (mut parts, body) = resp.into_parts();
    let Ok(bytes) = axum::body::to_bytes(body, usize::MAX).await else {
        return plain(
            StatusCode::INTERNAL_SERVER_ERROR,
            "cannot read the answer\n",
        );
    };
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in bytes.iter() {
        h ^= u64::from(*b);
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    let etag = format!("\"{h:016x}-{:x}\"", bytes.len());
    if if_none_match(headers, &etag) {
        return not_modified(&etag, None);
    }
    parts
        .headers
        .insert(header::ETAG, etag.parse().expect("a valid header"));
    Response::from_parts(parts, Body::from(bytes))
}

/// Whether the request's `If-None-Match` names `etag` (or `*`).
fn if_none_match(headers: &HeaderMap, etag: &str) -> bool {
    headers
        .get(header::IF_NONE_MATCH)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.split(',').any(|t| t.trim() == etag || t.trim() == "*"))
}

/// `304 Not Modified`: the validators, no body.
fn not_modified(etag: &str, last_modified: Option<&str>) -> Response<Body> {
    let mut r = Response::builder()
        .status(StatusCode::NOT_MODIFIED)
        .header(header::ETAG, etag);
    if let Some(m) = last_modified {
        r = r.header(header::LAST_MODIFIED, m);
    }
    r.body(Body::empty()).expect("response")
}

/// The host (and port) the request was sent to: its `Host` header, or in
/// HTTP/2 its `:authority`.
fn host(req: &Request<Body>) -> String {
    req.headers()
        .get(header::HOST)
        .and_then(|h| h.to_str().ok())
        .map(str::to_owned)
        .or_else(|| req.uri().authority().map(|a| a.to_string()))
        .unwrap_or_else(|| "127.0.0.1".to_owned())
}

/// Accepts connections until `stop`, each served as HTTP/2 or HTTP/1.1:
/// over TLS as ALPN chose, in plain text as the client speaks. Not
/// `axum::serve`: its `tokio` feature (and axum's default features) would
/// give tower, tracing and form_urlencoded other features than the
/// product's, and `cargo build -p fixture-server` would then rebuild the
/// product's library instead of sharing `cargo build`'s.
async fn serve(
    listener: tokio::net::TcpListener,
    acceptor: Option<tokio_rustls::TlsAcceptor>,
    app: axum::Router,
    state: Arc<State>,
    mut stop: tokio::sync::oneshot::Receiver<()>,
) {
    use std::sync::atomic::Ordering::Relaxed;
    loop {
        let tcp = tokio::select! {
            _ = &mut stop => return,
            accepted = listener.accept() => match accepted {
                Ok((tcp, _)) => tcp,
                Err(_) => continue,
            },
        };
        // As axum::serve does, and web servers do (nginx's tcp_nodelay):
        // an HTTP/2 answer is several frames, each a write.
        let _ = tcp.set_nodelay(true);
        let acceptor = acceptor.clone();
        let app = app.clone();
        let state = state.clone();
        tokio::spawn(async move {
            let service = hyper_util::service::TowerToHyperService::new(app);
            let builder =
                hyper_util::server::conn::auto::Builder::new(hyper_util::rt::TokioExecutor::new());
            let Some(acceptor) = acceptor else {
                let _ = builder
                    .serve_connection_with_upgrades(hyper_util::rt::TokioIo::new(tcp), service)
                    .await;
                return;
            };
            let Ok(tls) = acceptor.accept(tcp).await else {
                return;
            };
            state.tls_connections.fetch_add(1, Relaxed);
            if tls.get_ref().1.alpn_protocol() == Some(b"h2") {
                state.h2_connections.fetch_add(1, Relaxed);
            }
            let _ = builder
                .serve_connection(hyper_util::rt::TokioIo::new(tls), service)
                .await;
        });
    }
}

/// Sends half of the body after announcing all of it, then fails the
/// stream: the client sees the connection close mid-body.
async fn truncate(resp: Response<Body>) -> Response<Body> {
    let (parts, body) = resp.into_parts();
    let bytes = axum::body::to_bytes(body, usize::MAX)
        .await
        .unwrap_or_default();
    let half = bytes.slice(0..bytes.len() / 2);
    let stream = futures::stream::iter(vec![
        Ok::<_, std::io::Error>(half),
        Err(std::io::Error::new(
            std::io::ErrorKind::BrokenPipe,
            "planted truncation",
        )),
    ]);
    let mut resp = Response::from_parts(parts, Body::from_stream(stream));
    resp.headers_mut().insert(
        header::CONTENT_LENGTH,
        bytes.len().to_string().parse().expect("header"),
    );
    resp
}

fn content_type(path: &Path) -> &'static str {
    match path.extension().and_then(|e| e.to_str()) {
        Some("json") => "application/json",
        Some("html") => "text/html; charset=utf-8",
        Some("csv") => "text/csv",
        Some("yaml") => "application/x-yaml",
        _ => "text/plain; charset=utf-8",
    }
}

fn serve_file(root: &Path, path: &str, headers: &HeaderMap) -> Response<Body> {
    let rel = path.trim_start_matches('/');
    if rel.split('/').any(|c| c == "..") {
        return plain(StatusCode::BAD_REQUEST, "no .. in paths\n");
    }
    let mut file = root.join(rel);
    if path.ends_with('/') || file.is_dir() {
        file = file.join("index.html");
    }
    let data = match std::fs::read(&file) {
        Ok(d) => d,
        Err(_) => return plain(StatusCode::NOT_FOUND, format!("Not Found: {path}\n")),
    };
    let ctype = content_type(&file);
    let total = data.len() as u64;
    // As Apache: an ETag of the size and the modification time (in µs,
    // hexadecimal), and Last-Modified.
    let mtime = std::fs::metadata(&file)
        .and_then(|m| m.modified())
        .map(chrono::DateTime::<chrono::Utc>::from)
        .unwrap_or_default();
    let etag = format!("\"{total:x}-{:x}\"", mtime.timestamp_micros());
    let last_modified = mtime.format("%a, %d %b %Y %H:%M:%S GMT").to_string();
    let range = headers
        .get(header::RANGE)
        .and_then(|v| v.to_str().ok())
        .and_then(|r| r.strip_prefix("bytes="))
        .and_then(|r| parse_range(r, total));
    // The validators before the range, as Apache (RFC 9110, 13.2.2): a
    // GET with `Range` and a matching `If-None-Match` gets a 304.
    let unchanged = if headers.contains_key(header::IF_NONE_MATCH) {
        if_none_match(headers, &etag)
    } else {
        headers
            .get(header::IF_MODIFIED_SINCE)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| chrono::DateTime::parse_from_rfc2822(v).ok())
            .is_some_and(|since| mtime.timestamp() <= since.timestamp())
    };
    if unchanged {
        return not_modified(&etag, Some(&last_modified));
    }
    match range {
        Some((first, last)) => Response::builder()
            .status(StatusCode::PARTIAL_CONTENT)
            .header(header::ETAG, &etag)
            .header(header::LAST_MODIFIED, &last_modified)
            .header(header::CONTENT_TYPE, ctype)
            .header(
                header::CONTENT_RANGE,
                format!("bytes {first}-{last}/{total}"),
            )
            .body(Body::from(data[first as usize..=last as usize].to_vec()))
            .expect("response"),
        None => Response::builder()
            .status(StatusCode::OK)
            .header(header::ETAG, &etag)
            .header(header::LAST_MODIFIED, &last_modified)
            .header(header::CONTENT_TYPE, ctype)
            .header(header::ACCEPT_RANGES, "bytes")
            .body(Body::from(data))
            .expect("response"),
    }
}

/// One byte range (`-N`, `A-`, `A-B`) of a document of `total` bytes.
fn parse_range(r: &str, total: u64) -> Option<(u64, u64)> {
    if total == 0 {
        return None;
    }
    let (a, b) = r.split_once('-')?;
    if a.is_empty() {
        let n: u64 = b.parse().ok()?;
        let n = n.min(total);
        (n > 0).then(|| (total - n, total - 1))
    } else {
        let first: u64 = a.parse().ok()?;
        let last = if b.is_empty() {
            total - 1
        } else {
            b.parse::<u64>().ok()?.min(total - 1)
        };
        (first <= last).then_some((first, last))
    }
}

#[cfg(test)]
mod tests {
    use super::parse_range;

    #[test]
    fn ranges() {
        assert_eq!(parse_range("-10", 100), Some((90, 99)));
        assert_eq!(parse_range("-1000", 100), Some((0, 99)));
        assert_eq!(parse_range("5-", 100), Some((5, 99)));
        assert_eq!(parse_range("5-9", 100), Some((5, 9)));
        assert_eq!(parse_range("x", 100), None);
    }
}
