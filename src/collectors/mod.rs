//! One module per collector, and the registry: the one list that names
//! them. To add a collector: copy `sponsoring.rs` to `NAME.rs`, rename what
//! it declares, and add two lines: `pub mod NAME;` below and
//! `Box::new(NAME::Type::default()),` to [`registry`]. `list`, `config show`, the
//! README table, the dashboards, the systemd units, the fixture server's
//! URLs and every test that enumerates collectors follow from here.
//!
//! Plain `pub mod` lines (not declared by a macro), so that `cargo fmt` and
//! `cargo clippy` see every collector file.

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

/// Every collector, in the order `list` shows them: one line each.
pub fn registry() -> Vec<Box<dyn Collector>> {
    vec![
        Box::new(autopkgtest::Autopkgtest::default()),
        Box::new(britney::Britney::default()),
        Box::new(cnf::Cnf::default()),
        Box::new(contributors::Contributors::default()),
        Box::new(images::Images::default()),
        Box::new(rls_bugs::RlsBugs::default()),
        Box::new(sponsoring::Sponsoring::default()),
        Box::new(ubuntu_archive::UbuntuArchive::default()),
        Box::new(upload_queues::UploadQueues::default()),
        Box::new(versions::Versions::default()),
    ]
}

/// The collectors table of the README (Markdown), generated from the
/// registry so that it cannot go stale (`tests/readme.rs` compares it).
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

/// Every collector's documentation, generated from its declaration: what
/// it measures, its interval, sources, options, and its schema table.
pub fn markdown_reference() -> String {
    let mut s = String::new();
    for c in registry() {
        s.push_str(&format!("### `{}`\n\n{}.\n\n", c.name(), c.description()));
        s.push_str(&format!("Default interval: {}.\n\n", c.default_interval()));
        if !c.sources().is_empty() {
            s.push_str("Sources (`[sources]`):\n\n");
            for src in c.sources() {
                s.push_str(&format!(
                    "- `{}` = `{}`: {}\n",
                    src.key, src.default, src.about
                ));
            }
            s.push('\n');
        }
        if !c.options().is_empty() {
            s.push_str(&format!("Options (`[collectors.{}]`):\n\n", c.name()));
            for (key, about) in c.options() {
                s.push_str(&format!("- `{key}`: {about}\n"));
            }
            s.push('\n');
        }
        s.push_str(&crate::model::schema::markdown(c.schema()));
        s.push('\n');
    }
    s
}
