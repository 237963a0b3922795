//! Where points go: InfluxDB, or standard output in a dry run.
pub mod influxdb;
pub mod print;
