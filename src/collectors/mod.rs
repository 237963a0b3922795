//! One module per collector. To add one: copy a file (e.g. `sponsoring.rs`),
//! add it below and to [`registry`].

use crate::collector::Collector;

pub mod cnf;
pub mod contributors;
pub mod sponsoring;
pub mod upload_queues;

/// Every collector, in the order `list` shows them.
pub fn registry() -> Vec<Box<dyn Collector>> {
    vec![
        Box::new(sponsoring::Sponsoring),
        Box::new(upload_queues::UploadQueues),
        Box::new(contributors::Contributors),
        Box::new(cnf::Cnf),
    ]
}
