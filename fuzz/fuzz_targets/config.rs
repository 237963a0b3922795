//! The configuration file: any text either loads or is refused; a loaded
//! configuration can be queried and printed redacted without panicking.
#![no_main]

use libfuzzer_sys::fuzz_target;
use ubuntu_metrics::config::{Config, parse_size};

fuzz_target!(|s: &str| {
    let _ = parse_size(s);
    if let Ok(config) = Config::from_toml(s) {
        let registry = ubuntu_metrics::collectors::registry();
        let _ = config.validate(&registry);
        for c in &registry {
            let _ = config.enabled(c.name());
            let _ = config.interval(c.as_ref());
        }
        let _ = config.to_redacted_toml();
    }
});
