//! The per-host limit and the HTTP/2 gate: one semaphore per origin
//! (scheme, host, port), shared by every handle of the process, whose
//! permit a request holds from its sending until its body has been read
//! (a streamed body: until the stream is dropped); and, while an `https`
//! host is cold, one request alone opening its connection.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

/// One [`Host`] per origin, created on first use.
pub(super) struct HostLimits {
    pub(super) max: usize,
    semaphores: Mutex<HashMap<String, Arc<Host>>>,
}

/// How long after its last answer a host's connection is taken to be
/// still open (Apache closes an idle keep-alive connection after 5 s).
const WARM: Duration = Duration::from_secs(4);

/// The longest a request waits at a cold host's gate (or the connect
/// timeout, if shorter): enough for a TCP and TLS handshake; a first
/// request slower than that (a large or slow document) no longer holds the
/// others back, which then open connections of their own as before.
pub(super) const GATE_WAIT: Duration = Duration::from_secs(1);

/// One origin: the per-host limit, and the gate that lets a burst of
/// requests to a host that may speak HTTP/2 share one connection.
///
/// Requests that go out together to a host with no open connection each
/// open one: ALPN says whether the host speaks HTTP/2 only once a TLS
/// handshake is done. So while an `https` host is cold (not answered yet,
/// or its last answer was HTTP/2 and more than [`WARM`] ago) the first
/// request goes alone through the gate and the others wait for its answer
/// (or its failure), at most [`GATE_WAIT`]; then they go out together,
/// over that one HTTP/2 connection, or over up to `max_per_host` HTTP/1.1
/// connections. A host that answered HTTP/1.1 is never gated again, and a
/// plain `http` one never is (HTTP/2 is only offered by TLS).
pub(super) struct Host {
    semaphore: Arc<Semaphore>,
    gate: tokio::sync::Mutex<()>,
    /// The last attempt's end and whether it was answered over HTTP/2.
    last: Mutex<Option<(Instant, bool)>>,
}

impl Host {
    fn cold(&self) -> bool {
        match *self.last.lock().unwrap_or_else(|e| e.into_inner()) {
            None => true,
            Some((_, false)) => false,
            Some((at, true)) => at.elapsed() > WARM,
        }
    }

    /// Waits at the gate if the host is cold, at most `at_most`: the
    /// guard (held until the attempt ends, see [`Host::attempted`]) when
    /// this request opens the connection, None when it may go without (the
    /// host answered meanwhile, or the first request is slow: a host that
    /// hangs costs a burst `at_most` more, not a second timeout).
    pub(super) async fn open(&self, at_most: Duration) -> Option<tokio::sync::MutexGuard<'_, ()>> {
        if !self.cold() {
            return None;
        }
        let guard = tokio::time::timeout(at_most, self.gate.lock()).await.ok()?;
        // Another request opened it while this one waited.
        self.cold().then_some(guard)
    }

    /// An attempt ended: answered over HTTP/2 or not (an HTTP/1.x answer,
    /// or a failure, which opens the gate as well: a host that cannot be
    /// reached must not make the others fail one after another).
    pub(super) fn attempted(&self, http2: bool) {
        *self.last.lock().unwrap_or_else(|e| e.into_inner()) = Some((Instant::now(), http2));
    }

    /// A permit to send to this host, waited for while `max_per_host`
    /// requests are in flight there; the request holds it until its body
    /// is read.
    pub(super) async fn permit(&self) -> OwnedSemaphorePermit {
        self.semaphore
            .clone()
            .acquire_owned()
            .await
            .expect("the per-host semaphores are never closed")
    }
}

impl HostLimits {
    pub(super) fn new(max: usize) -> HostLimits {
        HostLimits {
            max: max.max(1),
            semaphores: Mutex::new(HashMap::new()),
        }
    }

    pub(super) fn for_url(&self, url: &reqwest::Url) -> Arc<Host> {
        let key = format!(
            "{}://{}:{}",
            url.scheme(),
            url.host_str().unwrap_or(""),
            url.port_or_known_default().unwrap_or(0)
        );
        let mut map = self.semaphores.lock().unwrap_or_else(|e| e.into_inner());
        map.entry(key)
            .or_insert_with(|| {
                Arc::new(Host {
                    semaphore: Arc::new(Semaphore::new(self.max)),
                    gate: tokio::sync::Mutex::new(()),
                    last: Mutex::new(None),
                })
            })
            .clone()
    }
}
