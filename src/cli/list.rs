//! `list`: every collector, its effective interval, whether it is enabled,
//! its measurements, and under it (indented) its description: the
//! built-in one, or a declared collector's `description`.

use super::EXIT_OK;
use crate::collector::Collector;
use crate::config::Config;

pub(super) fn main(registry: &[Box<dyn Collector>], config: &Config) -> i32 {
    use std::fmt::Write as _;
    let mut out = String::new();
    let _ = writeln!(
        out,
        "{:<16} {:<9} {:<8} MEASUREMENTS",
        "COLLECTOR", "INTERVAL", "ENABLED"
    );
    for c in registry {
        let _ = writeln!(
            out,
            "{:<16} {:<9} {:<8} {}",
            c.name(),
            config.interval(c.as_ref()).to_string(),
            if config.enabled(c.name()) {
                "yes"
            } else {
                "no"
            },
            c.measurements().join(", ")
        );
        let description = c.description().trim();
        if !description.is_empty() {
            let _ = writeln!(out, "{:<16} {description}", "");
        }
    }
    // Written at once. A reader that stopped early (`| head`, `| grep -q`)
    // ends the command quietly (SIGPIPE, see `end_with_the_reader`).
    let _ = std::io::Write::write_all(&mut std::io::stdout().lock(), out.as_bytes());
    EXIT_OK
}
