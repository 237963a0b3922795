//! One run of one or more collectors: each gets its own context (options,
//! request counter), they run concurrently, a failure stays with its
//! collector, and every point leaves with an explicit timestamp.

use crate::collector::{Collector, Context};
use crate::config::Config;
use crate::point::Point;
use crate::sources::http::Http;
use chrono::{DateTime, Utc};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tracing::Instrument;

/// What one collector's run produced.
#[derive(Debug)]
pub struct Outcome {
    pub name: &'static str,
    pub points: Vec<Point>,
    /// The collector's error message, when it failed.
    pub error: Option<String>,
    pub duration: Duration,
    pub requests: u64,
}

/// The base context of a run, from the configuration.
pub fn context(config: &Config, now: DateTime<Utc>) -> Result<Context, String> {
    let http = Http::new(
        config.http.connect_timeout.as_duration(),
        config.http.timeout.as_duration(),
    )?;
    Ok(Context::new(http, Arc::new(config.sources.clone()), now))
}

/// Runs one collector once.
pub async fn collect_one(c: &dyn Collector, base: &Context, config: &Config) -> Outcome {
    let ctx = base.for_collector(config.collector(c.name()).options);
    let started = Instant::now();
    let span = tracing::info_span!("collector", name = c.name());
    let result = c.collect(&ctx).instrument(span).await;
    let duration = started.elapsed();
    let requests = ctx.http.requests();
    match result {
        Ok(mut points) => {
            for p in &mut points {
                if p.timestamp.is_none() {
                    p.timestamp = Some(ctx.now);
                }
            }
            tracing::info!(
                collector = c.name(),
                points = points.len(),
                requests,
                duration_ms = duration.as_millis() as u64,
                "collected"
            );
            Outcome {
                name: c.name(),
                points,
                error: None,
                duration,
                requests,
            }
        }
        Err(e) => {
            tracing::error!(collector = c.name(), "failed: {e}");
            Outcome {
                name: c.name(),
                points: Vec::new(),
                error: Some(e.to_string()),
                duration,
                requests,
            }
        }
    }
}

/// Runs collectors concurrently; outcomes come back in the given order.
pub async fn collect_many(
    collectors: &[&dyn Collector],
    base: &Context,
    config: &Config,
) -> Vec<Outcome> {
    futures::future::join_all(collectors.iter().map(|c| collect_one(*c, base, config))).await
}
