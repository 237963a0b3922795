//! The one place a configuration's outputs are opened: `run`, `spool
//! flush` and the daemon (at start and on SIGHUP) all call [`open`], so
//! each output's writer and spool are made by the same steps (its secret
//! resolved, its writer built and checked, its spool opened). The only
//! place of the runner that names a kind of output: what it returns is the
//! [`Output`] interface.

use crate::config::{Config, OutputSpec};
use crate::sinks::Output;
use crate::sinks::influxdb::output::{InfluxOutput, OutputSettings};
use std::sync::Arc;

pub use crate::sinks::influxdb::output::{OpenError, SpoolUse};

/// The output `o` of `config`.
pub async fn open_one(
    config: &Config,
    o: &OutputSpec,
    spool: SpoolUse,
) -> Result<Arc<dyn Output>, OpenError> {
    let secret = config
        .output_secret(o)
        .map_err(|e| OpenError::Config(e.to_string()))?;
    let spool_max = config
        .spool
        .max_bytes()
        .map_err(|e| OpenError::Config(format!("spool.max_size: {e}")))?;
    let settings = OutputSettings {
        name: &o.name,
        influx: &o.influx,
        secret,
        spool_dir: &o.spool_dir,
        spool_max,
    };
    Ok(Arc::new(InfluxOutput::open(settings, spool).await?))
}

/// Every output of `config` (`[influxdb]` first), in order; the first
/// that cannot be opened stops it.
pub async fn open(config: &Config, spool: SpoolUse) -> Result<Vec<Arc<dyn Output>>, OpenError> {
    let mut all = Vec::new();
    for o in config.outputs() {
        all.push(open_one(config, &o, spool).await?);
    }
    Ok(all)
}
