//! Collectors declared in the configuration.
pub mod jq;
pub mod points;
