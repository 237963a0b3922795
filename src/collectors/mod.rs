//! One module per collector. To add one: copy a file (e.g. `sponsoring.rs`),
//! add it below and to [`registry`].

use crate::collector::Collector;

pub mod autopkgtest;
pub mod britney;
pub mod cnf;
pub mod contributors;
pub mod images;
pub mod rls_bugs;
pub mod sponsoring;
pub mod ubuntu_archive;
pub mod upload_queues;
pub mod versions;

/// Every collector, in the order `list` shows them.
pub fn registry() -> Vec<Box<dyn Collector>> {
    vec![
        Box::new(autopkgtest::Autopkgtest),
        Box::new(britney::Britney),
        Box::new(cnf::Cnf),
        Box::new(contributors::Contributors),
        Box::new(images::Images),
        Box::new(rls_bugs::RlsBugs),
        Box::new(sponsoring::Sponsoring),
        Box::new(ubuntu_archive::UbuntuArchive),
        Box::new(upload_queues::UploadQueues),
        Box::new(versions::Versions),
    ]
}

/// The collectors table of the README (Markdown), generated from the
/// registry so that it cannot go stale (a test compares it).
pub fn markdown_table() -> String {
    let mut s = String::from(
        "| collector | default interval | measurements | what it measures |\n| --- | --- | --- | --- |\n",
    );
    for c in registry() {
        let ms: Vec<String> = c.measurements().iter().map(|m| format!("`{m}`")).collect();
        s.push_str(&format!(
            "| `{}` | {} | {} | {} |\n",
            c.name(),
            c.default_interval(),
            ms.join(", "),
            c.description()
        ));
    }
    s
}
