//! The values every layer shares: a point and its line protocol, time
//! spans, what a collector declares it writes (schema) and the Grafana
//! panels it brings; the catch-up of time-series sources (options,
//! marks, the cutoff).

pub mod catch_up;
pub mod panel;
pub mod point;
pub mod schema;
pub mod timespan;
