//! What code logs through `tracing`, captured for a test: the lines it
//! wrote at a level and above, without colours.
//!
//! One crate for the library's unit tests and the integration tests alike
//! (a `cfg(test)` helper of the library cannot be reached from `tests/`).

use std::sync::{Arc, Mutex, OnceLock};
use tracing::Dispatch;
use tracing::subscriber::DefaultGuard;

/// A writer whose bytes the test keeps: clones share them (a log
/// subscriber's writer, a printer's output, a filter process's stdout).
#[derive(Clone, Default)]
pub struct Captured(Arc<Mutex<Vec<u8>>>);

impl Captured {
    /// Everything written so far, as UTF-8 text.
    pub fn text(&self) -> String {
        String::from_utf8(self.0.lock().unwrap().clone()).unwrap()
    }
}

impl std::io::Write for Captured {
    fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(b);
        Ok(b.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// Captures what this thread logs at `level` and above until the guard is
/// dropped (for an async test: what its current-thread runtime logs).
pub fn capture(level: tracing::Level) -> (Captured, DefaultGuard) {
    // A second dispatcher, alive for the whole run: while a test's scoped
    // dispatcher is the only one, tracing-core computes the interest of a
    // callsite first seen on another test's thread from that thread's
    // default (none), and the test's own events are then filtered out
    // (tokio-rs/tracing#3611).
    static OTHER: OnceLock<Dispatch> = OnceLock::new();
    OTHER.get_or_init(|| Dispatch::new(tracing::subscriber::NoSubscriber::default()));
    let log = Captured::default();
    let writer = log.clone();
    let subscriber = tracing_subscriber::fmt()
        .with_max_level(level)
        .with_ansi(false)
        .with_writer(move || writer.clone())
        .finish();
    (log, tracing::subscriber::set_default(subscriber))
}

/// What `f` logs at `level` and above, with its result.
pub fn logged_at<T>(level: tracing::Level, f: impl FnOnce() -> T) -> (T, String) {
    let (log, guard) = capture(level);
    let out = f();
    drop(guard);
    (out, log.text())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn what_is_logged_at_the_level_and_above_is_captured_and_nothing_after() {
        let (n, text) = logged_at(tracing::Level::INFO, || {
            tracing::debug!("too fine");
            tracing::info!(count = 3, "kept");
            tracing::warn!("kept too");
            7
        });
        assert_eq!(n, 7);
        assert!(
            text.contains("INFO") && text.contains("kept count=3"),
            "{text}"
        );
        assert!(text.contains("WARN") && text.contains("kept too"), "{text}");
        assert!(
            !text.contains("too fine") && !text.contains('\u{1b}'),
            "{text}"
        );
        let (_, after) = logged_at(tracing::Level::INFO, || ());
        assert!(after.is_empty(), "{after}");
    }

    /// The workaround's case: a callsite first reached, while a test
    /// captures, on another thread (with no subscriber) is still captured
    /// when the capturing thread reaches it.
    #[test]
    fn a_callsite_first_seen_on_a_thread_without_a_subscriber_is_captured() {
        fn say() {
            tracing::info!("from the shared callsite");
        }
        let (log, guard) = capture(tracing::Level::INFO);
        std::thread::spawn(say).join().unwrap();
        say();
        drop(guard);
        assert!(
            log.text().contains("from the shared callsite"),
            "{}",
            log.text()
        );
    }
}
