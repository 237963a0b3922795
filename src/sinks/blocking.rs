//! Blocking file I/O off the async workers: the spool's calls (`flock`,
//! `fsync`, reading segments) run on tokio's blocking threads.

use crate::sinks::spool::{Spool, SpoolError};
use std::sync::Arc;

/// Runs the blocking spool call `f` on tokio's blocking threads (a
/// panic or a cancelled runtime becomes a [`SpoolError`]).
pub async fn blocking<T: Send + 'static>(
    spool: &Arc<Spool>,
    f: impl FnOnce(&Spool) -> Result<T, SpoolError> + Send + 'static,
) -> Result<T, SpoolError> {
    let s = spool.clone();
    let dir = spool.dir().to_owned();
    tokio::task::spawn_blocking(move || f(&s))
        .await
        .unwrap_or_else(|e| {
            Err(SpoolError(format!(
                "spool {}: a spool operation did not finish: {e}",
                dir.display()
            )))
        })
}
