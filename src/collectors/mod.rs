//! One module per collector. To add one: copy a file (e.g. `sponsoring.rs`),
//! add it below and to [`registry`].

use crate::collector::Collector;

pub mod britney;
pub mod sponsoring;

/// Every collector, in the order `list` shows them.
pub fn registry() -> Vec<Box<dyn Collector>> {
    vec![Box::new(britney::Britney), Box::new(sponsoring::Sponsoring)]
}
