//! The README's generated blocks: the collectors table and the reference
//! of what each collector writes, both from the registry (each collector's
//! name, interval, description, sources, options and schema); the
//! command-line reference, from the command-line definition (what
//! `--help` shows); the table of contents, from the README's own headings.
//! This test fails when one is stale and shows it; `UPDATE_README=1 cargo
//! test --test readme` writes the current blocks into the README instead.

const README: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/README.md");

/// The text between `<!-- NAME: ... -->` and `<!-- end NAME -->`.
fn block(readme: &str, name: &str) -> std::ops::Range<usize> {
    let start = readme
        .find(&format!("<!-- {name}:"))
        .unwrap_or_else(|| panic!("README: no start marker <!-- {name}: ... -->"));
    let start = start + readme[start..].find('\n').unwrap() + 1;
    let end = readme
        .find(&format!("<!-- end {name} -->"))
        .unwrap_or_else(|| panic!("README: no end marker <!-- end {name} -->"));
    start..end
}

/// GitHub's anchor of a heading: lower case, only letters, digits, `-`
/// and `_` kept, spaces made `-`.
fn anchor(heading: &str) -> String {
    heading
        .trim()
        .to_lowercase()
        .chars()
        .filter_map(|c| match c {
            ' ' => Some('-'),
            c if c.is_alphanumeric() || c == '-' || c == '_' => Some(c),
            _ => None,
        })
        .collect()
}

/// The table of contents: each `##` section, with its `###` sections on
/// the same line.
fn table_of_contents(readme: &str) -> String {
    let mut out = String::new();
    let mut seen = std::collections::BTreeMap::<String, usize>::new();
    let mut link = |title: &str| {
        let base = anchor(title);
        let n = seen.entry(base.clone()).or_insert(0);
        let a = if *n == 0 {
            base.clone()
        } else {
            format!("{base}-{n}")
        };
        *n += 1;
        format!("[{}](#{a})", title.trim())
    };
    let mut subs: Vec<String> = Vec::new();
    let flush = |out: &mut String, subs: &mut Vec<String>| {
        if !subs.is_empty() {
            out.push_str(": ");
            out.push_str(&subs.join(", "));
            subs.clear();
        }
    };
    for line in readme.lines() {
        if let Some(t) = line.strip_prefix("## ") {
            if !out.is_empty() {
                flush(&mut out, &mut subs);
                out.push('\n');
            }
            out.push_str("- ");
            out.push_str(&link(t));
        } else if let Some(t) = line.strip_prefix("### ") {
            subs.push(link(t));
        } else if let Some(t) = line.strip_prefix("# ") {
            link(t);
        }
    }
    flush(&mut out, &mut subs);
    out.push('\n');
    out
}

#[test]
fn readme_generated_blocks_match_the_registry() {
    let mut readme = std::fs::read_to_string(README).unwrap();
    let update = std::env::var_os("UPDATE_README").is_some_and(|v| v == "1");
    let mut stale = Vec::new();
    for (name, text) in [
        (
            "collectors-table",
            ubuntu_metrics::collectors::markdown_table(),
        ),
        (
            "collectors-reference",
            ubuntu_metrics::collectors::markdown_reference(),
        ),
        (
            "command-reference",
            ubuntu_metrics::cli::clidoc::markdown_reference(),
        ),
        // Last: from the headings as the blocks above leave them.
        ("contents", String::new()),
    ] {
        let text = if name == "contents" {
            table_of_contents(&readme)
        } else {
            text
        };
        let range = block(&readme, name);
        if readme[range.clone()] != text {
            stale.push(format!("{name}:\n{text}"));
            readme.replace_range(range, &text);
        }
    }
    if stale.is_empty() {
        return;
    }
    if update {
        std::fs::write(README, readme).unwrap();
        return;
    }
    panic!(
        "the README's generated blocks are stale: regenerate them with `UPDATE_README=1 cargo test --test readme`; they are:\n{}",
        stale.join("\n")
    );
}

/// Every command `ubuntu-metrics help` lists, and every option its
/// `--help` shows, is in the README's command-line reference, on the row
/// of that command with the first line of its `--help` (the real binary's
/// output, not the definition it is generated from).
#[test]
fn readme_command_reference_matches_help() {
    let readme = std::fs::read_to_string(README).unwrap();
    let reference = &readme[block(&readme, "command-reference")];
    let help = |args: &[&str]| {
        let out = std::process::Command::new(env!("CARGO_BIN_EXE_ubuntu-metrics"))
            .args(args)
            .arg("--help")
            .output()
            .unwrap();
        assert_eq!(out.status.code(), Some(0), "{args:?} --help");
        String::from_utf8(out.stdout).unwrap()
    };
    // The commands of a `Commands:` section.
    let commands = |text: &str| -> Vec<String> {
        text.lines()
            .skip_while(|l| *l != "Commands:")
            .skip(1)
            .take_while(|l| l.starts_with("  "))
            .filter_map(|l| l.split_whitespace().next())
            .filter(|c| *c != "help")
            .map(str::to_owned)
            .collect()
    };
    let mut leaves = Vec::new();
    let mut todo: Vec<Vec<String>> = commands(&help(&[])).into_iter().map(|c| vec![c]).collect();
    while let Some(path) = todo.pop() {
        let args: Vec<&str> = path.iter().map(String::as_str).collect();
        let text = help(&args);
        let subs = commands(&text);
        if subs.is_empty() {
            leaves.push((path.join(" "), text));
        } else {
            todo.extend(subs.into_iter().map(|s| {
                let mut p = path.clone();
                p.push(s);
                p
            }));
        }
    }
    assert!(leaves.len() > 15, "{leaves:?}");
    let mut wrong = Vec::new();
    for (path, text) in &leaves {
        let Some(row) = reference.lines().find(|l| {
            l.starts_with(&format!("| `{path} ")) || l.starts_with(&format!("| `{path}`"))
        }) else {
            wrong.push(format!("{path}: no row"));
            continue;
        };
        let about = text.lines().next().unwrap_or_default().replace('|', "\\|");
        if !row.contains(&about) {
            wrong.push(format!("{path}: the row does not say {about:?}: {row}"));
        }
        // Each option of its own (`--config`, `-v`, `-h` are everyone's).
        for word in text
            .lines()
            .skip_while(|l| *l != "Options:")
            .filter_map(|l| {
                l.trim_start()
                    .split([' ', ',', '='])
                    .find(|w| w.starts_with("--"))
            })
        {
            if ["--config", "--verbose", "--help", "--version"].contains(&word) {
                continue;
            }
            if !row.contains(word) {
                wrong.push(format!("{path}: {word} is not on its row: {row}"));
            }
        }
    }
    assert!(
        wrong.is_empty(),
        "the README's command-line reference and --help disagree (regenerate it with `UPDATE_README=1 cargo test --test readme`):\n{}",
        wrong.join("\n")
    );
}
