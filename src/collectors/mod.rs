//! One module per collector. To add one: copy a file (e.g. `sponsoring.rs`),
//! add it below and to [`registry`].

use crate::collector::Collector;

pub mod britney;
pub mod sponsoring;
pub mod ubuntu_archive;

/// Every collector, in the order `list` shows them.
pub fn registry() -> Vec<Box<dyn Collector>> {
    vec![
        Box::new(britney::Britney),
        Box::new(sponsoring::Sponsoring),
        Box::new(ubuntu_archive::UbuntuArchive),
    ]
}
