//! Documents read at most once per run and shared by the collectors of
//! that run.

use std::any::Any;
use std::collections::HashMap;
use std::sync::{Arc, Mutex};

/// Documents read at most once per run, shared by every collector of the
/// run (`run --all`, or one daemon wake-up): e.g. Launchpad's `ubuntu`
/// distribution and its series, which several collectors need. Each value
/// is computed by the first caller; callers asking for it meanwhile wait
/// for that answer (concurrent identical requests coalesce). Failures are
/// kept too: the run sees one answer per document.
#[derive(Default)]
pub struct RunCache {
    cells: Mutex<HashMap<String, Arc<Cell>>>,
}

type Cell = tokio::sync::OnceCell<Arc<dyn Any + Send + Sync>>;

impl RunCache {
    /// The value under `key` (typically a URL), computing it with `fetch`
    /// if no one has yet. The key space is per value and error type.
    pub async fn get_or_fetch<T, E, F, Fut>(&self, key: &str, fetch: F) -> Result<Arc<T>, E>
    where
        T: Send + Sync + 'static,
        E: Clone + Send + Sync + 'static,
        F: FnOnce() -> Fut,
        Fut: std::future::Future<Output = Result<T, E>>,
    {
        let cell = {
            let full = format!("{}\u{0}{key}", std::any::type_name::<Result<T, E>>());
            let mut cells = self.cells.lock().unwrap_or_else(|e| e.into_inner());
            cells.entry(full).or_default().clone()
        };
        let value = cell
            .get_or_init(|| async {
                let result: Result<Arc<T>, E> = fetch().await.map(Arc::new);
                Arc::new(result) as Arc<dyn Any + Send + Sync>
            })
            .await;
        value
            .downcast_ref::<Result<Arc<T>, E>>()
            .expect("the key includes the types")
            .clone()
    }

    /// Entries held (for tests and logs).
    pub fn len(&self) -> usize {
        self.cells.lock().unwrap_or_else(|e| e.into_inner()).len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sources::SourceError;
    use std::sync::atomic::{AtomicUsize, Ordering};

    #[tokio::test]
    async fn concurrent_askers_share_one_fetch() {
        let cache = RunCache::default();
        let calls = AtomicUsize::new(0);
        let ask = || {
            cache.get_or_fetch("http://x/ubuntu", || async {
                calls.fetch_add(1, Ordering::SeqCst);
                tokio::time::sleep(std::time::Duration::from_millis(20)).await;
                Ok::<String, SourceError>("ubuntu".into())
            })
        };
        let (a, b, c) = tokio::join!(ask(), ask(), ask());
        assert_eq!(calls.load(Ordering::SeqCst), 1);
        for v in [a, b, c] {
            assert_eq!(v.unwrap().as_str(), "ubuntu");
        }
        assert_eq!(cache.len(), 1);
    }

    #[tokio::test]
    async fn failures_are_kept_and_types_do_not_mix() {
        let cache = RunCache::default();
        let e = cache
            .get_or_fetch::<String, _, _, _>("k", || async {
                Err(SourceError::Invalid("down".into()))
            })
            .await
            .unwrap_err();
        assert_eq!(e.to_string(), "down");
        let again = cache
            .get_or_fetch::<String, SourceError, _, _>("k", || async { Ok("up".to_owned()) })
            .await;
        assert!(again.is_err());
        // The same key for another value type is another entry, and so is
        // the same value type with another error type.
        let n = cache
            .get_or_fetch::<_, SourceError, _, _>("k", || async { Ok(3u64) })
            .await
            .unwrap();
        assert_eq!(*n, 3);
        let s = cache
            .get_or_fetch::<String, String, _, _>("k", || async { Ok("other".to_owned()) })
            .await
            .unwrap();
        assert_eq!(s.as_str(), "other");
        assert_eq!(cache.len(), 3);
    }

    #[tokio::test]
    async fn an_abandoned_fetch_is_taken_over() {
        let cache = RunCache::default();
        let slow = cache.get_or_fetch::<_, SourceError, _, _>("k", || async {
            tokio::time::sleep(std::time::Duration::from_secs(60)).await;
            Ok(1u8)
        });
        // The first asker gives up (a collector's run timeout).
        assert!(
            tokio::time::timeout(std::time::Duration::from_millis(10), slow)
                .await
                .is_err()
        );
        let v = cache
            .get_or_fetch::<_, SourceError, _, _>("k", || async { Ok(2u8) })
            .await
            .unwrap();
        assert_eq!(*v, 2);
    }
}
