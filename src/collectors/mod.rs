//! One module per collector. To add one: copy a file (e.g. `sponsoring.rs`),
//! add it below and to [`registry`].

use crate::collector::Collector;

pub mod autopkgtest;
pub mod images;
pub mod rls_bugs;
pub mod sponsoring;
pub mod versions;

/// Every collector, in the order `list` shows them.
pub fn registry() -> Vec<Box<dyn Collector>> {
    vec![
        Box::new(autopkgtest::Autopkgtest),
        Box::new(images::Images),
        Box::new(rls_bugs::RlsBugs),
        Box::new(sponsoring::Sponsoring),
        Box::new(versions::Versions),
    ]
}
