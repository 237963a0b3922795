//! The client's resolver: the system's (`getaddrinfo`, off the runtime),
//! with a name that did not resolve remembered for [`UNRESOLVED_FOR`], so a
//! run offline fails each host once, not once per request.

use std::collections::BTreeMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// How long a name that did not resolve is taken not to resolve: the
/// requests of a run (of every collector of `run --all`) to that host fail
/// at once with the first one's error instead of asking the resolver again
/// (offline, each lookup can take seconds), while the daemon still tries
/// again at its next runs.
pub const UNRESOLVED_FOR: Duration = Duration::from_secs(60);

/// A name that did not resolve: `cannot resolve HOST (why)`.
#[derive(Debug)]
pub struct Unresolved {
    host: String,
    why: String,
}

impl std::fmt::Display for Unresolved {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "cannot resolve {}", self.host)?;
        if !self.why.is_empty() {
            write!(f, " ({})", self.why)?;
        }
        Ok(())
    }
}

impl std::error::Error for Unresolved {}

/// The names that did not resolve, when, and why: shared by every client
/// of the process and by rsync's calls ([`resolves`]).
static UNRESOLVED: Mutex<BTreeMap<String, (Instant, String)>> = Mutex::new(BTreeMap::new());

/// The addresses of `host` from the system's resolver (`getaddrinfo`, off
/// the runtime), or why it does not resolve: a name that failed less than
/// [`UNRESOLVED_FOR`] ago is not asked again.
async fn lookup(host: &str) -> Result<Vec<std::net::SocketAddr>, Unresolved> {
    let known = UNRESOLVED
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .get(host)
        .filter(|(at, _)| at.elapsed() < UNRESOLVED_FOR)
        .map(|(_, why)| why.clone());
    if let Some(why) = known {
        return Err(Unresolved {
            host: host.to_owned(),
            why,
        });
    }
    match tokio::net::lookup_host((host, 0)).await {
        Ok(addrs) => Ok(addrs.collect()),
        Err(e) => {
            let why = e.to_string();
            let why = why
                .strip_prefix("failed to lookup address information: ")
                .unwrap_or(&why)
                .to_owned();
            UNRESOLVED
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .insert(host.to_owned(), (Instant::now(), why.clone()));
            Err(Unresolved {
                host: host.to_owned(),
                why,
            })
        }
    }
}

/// `Err` ("cannot resolve HOST (why)") when the host of `url` is a name
/// that does not resolve (asked once per [`UNRESOLVED_FOR`], as for HTTP):
/// for the callers of other programs (rsync), which would each ask the
/// resolver again. An address, or no host, is `Ok`.
pub async fn resolves(url: &str) -> Result<(), Unresolved> {
    let Some(host) = url::Url::parse(url).ok().and_then(|u| match u.host() {
        Some(url::Host::Domain(d)) => Some(d.to_owned()),
        _ => None,
    }) else {
        return Ok(());
    };
    lookup(&host).await.map(drop)
}

/// The client's resolver: [`lookup`].
pub(super) struct Resolver;

impl reqwest::dns::Resolve for Resolver {
    fn resolve(&self, name: reqwest::dns::Name) -> reqwest::dns::Resolving {
        let host = name.as_str().to_owned();
        Box::pin(async move {
            match lookup(&host).await {
                Ok(addrs) => Ok(Box::new(addrs.into_iter()) as reqwest::dns::Addrs),
                Err(e) => Err(Box::new(e) as _),
            }
        })
    }
}
