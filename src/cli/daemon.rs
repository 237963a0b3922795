//! `daemon`: the exit status of the scheduler in `crate::schedule::daemon`.

use super::{EXIT_FAILED, EXIT_OK, EXIT_USAGE};
use crate::collector::Collector;
use crate::config::Config;
use crate::schedule::daemon::{self, DaemonError};
use std::path::PathBuf;
use std::sync::Arc;

/// Runs the daemon until SIGTERM/SIGINT: 0 when it stopped in order, 2
/// when the configuration does not let it start, 1 without signals.
pub(super) async fn main(
    config_path: Option<PathBuf>,
    config: Config,
    registry: Vec<Box<dyn Collector>>,
) -> i32 {
    match daemon::run(config_path, config, Arc::new(registry)).await {
        Ok(()) => EXIT_OK,
        Err(e) => {
            // Under systemd the log is the journal: the error goes there once.
            tracing::error!("{e}");
            match e {
                DaemonError::Start(_) => EXIT_USAGE,
                DaemonError::Signals(_) | DaemonError::Watchdog(_) | DaemonError::Listen(_) => {
                    EXIT_FAILED
                }
            }
        }
    }
}
