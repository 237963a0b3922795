//! What a collector declares besides its code: the sources shared by
//! several collectors, and its typed options.

pub use crate::config::OptionError;
use crate::config::SourceUrl;

/// Launchpad's web service, read through [`Context::launchpad`] by several
/// collectors: each lists it in its [`Collector::sources`].
pub const LAUNCHPAD: SourceUrl = SourceUrl {
    key: "launchpad",
    default: "https://api.launchpad.net/devel/",
    about: "Launchpad's web service (API version devel)",
    fixture: "launchpad/devel/",
};

/// A collector's typed options: deserialised from its `[collectors.NAME]`
/// table (declare it `#[serde(deny_unknown_fields, default)]`, every field
/// with its default), then checked for what serde cannot say (ranges).
pub trait CollectorOptions: serde::de::DeserializeOwned + Default {
    /// Checks the values: `Err((key, why))` for the first bad one.
    fn check(&self) -> Result<(), (&'static str, String)> {
        Ok(())
    }
}

/// The options of the collectors reading time-series sources.
impl CollectorOptions for crate::model::catch_up::Options {
    fn check(&self) -> Result<(), (&'static str, String)> {
        crate::model::catch_up::Options::check(self)
    }
}

/// The typed options `T` from a `[collectors.NAME]` table (without
/// `interval` and `enabled`), checked; an error names the key.
pub fn parse_options<T: CollectorOptions>(options: &toml::Table) -> Result<T, OptionError> {
    let parse = |t: &toml::Table| -> Result<T, String> {
        toml::Value::Table(t.clone()).try_into::<T>().map_err(|e| {
            // toml adds "in `key`" on a line of its own: the key is
            // named by the caller already.
            let m = e.to_string();
            m.lines().next().unwrap_or_default().trim().to_owned()
        })
    };
    let opts = match parse(options) {
        Ok(o) => o,
        Err(whole) => {
            // Every field has a default: the key alone in a table fails
            // the same way, which names the key.
            for (key, value) in options {
                let mut one = toml::Table::new();
                one.insert(key.clone(), value.clone());
                if let Err(message) = parse(&one) {
                    return Err(OptionError {
                        key: key.clone(),
                        message: format!("{value}: {message}"),
                    });
                }
            }
            return Err(OptionError {
                key: options.keys().cloned().collect::<Vec<_>>().join(", "),
                message: whole,
            });
        }
    };
    opts.check().map_err(|(key, message)| OptionError {
        key: key.to_owned(),
        message,
    })?;
    Ok(opts)
}
