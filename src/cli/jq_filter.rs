//! `ubuntu-metrics __jq-filter PARENT_PID`: the process a jq filter runs in
//! (see `custom::jq`), not a command. Its memory is limited before it reads
//! anything; it ends by itself should the program that started it be gone
//! (a filter that never ends must not outlive the daemon). It exits 0 with
//! every output written, else 1 with the reason on standard error (2 when
//! started wrongly).

use super::{EXIT_FAILED, EXIT_OK, EXIT_USAGE};
use crate::custom::jq;
use std::ffi::OsString;
use std::time::Duration;

/// How often the process checks that its parent is still there.
const PARENT_CHECK: Duration = Duration::from_millis(200);

/// `args` are what follows the hidden argument: the parent's pid.
pub fn main(args: &[OsString]) -> i32 {
    if let Err(e) = jq::limit_memory() {
        eprintln!("{e}");
        return EXIT_FAILED;
    }
    let Some(parent) = args
        .first()
        .and_then(|a| a.to_str())
        .and_then(|a| a.parse::<libc::pid_t>().ok())
    else {
        eprintln!(
            "usage: ubuntu-metrics {} PARENT_PID (the process of a jq filter; not a command)",
            jq::CHILD_ARG
        );
        return EXIT_USAGE;
    };
    let watch = std::thread::Builder::new()
        .stack_size(64 << 10)
        .spawn(move || {
            loop {
                // SAFETY: getppid(2) cannot fail and touches no memory.
                if unsafe { libc::getppid() } != parent {
                    std::process::exit(EXIT_FAILED);
                }
                std::thread::sleep(PARENT_CHECK);
            }
        });
    if let Err(e) = watch {
        eprintln!("cannot start the watch on the parent process: {e}");
        return EXIT_FAILED;
    }
    let served = jq::serve(std::io::stdin().lock(), std::io::stdout());
    match served.message() {
        None => EXIT_OK,
        Some(m) => {
            eprintln!("{m}");
            EXIT_FAILED
        }
    }
}
