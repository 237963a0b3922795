//! The shape of the crate, read from `src/`: the graph of its top-level
//! modules (each file and folder directly under `src/`, `lib.rs` and
//! `main.rs` aside) has no cycle, `sources` sits below `collector` and
//! `config`, nothing depends on the command line, and only the command line
//! (`src/cli/`) prints, exits or defines subcommands. The files (modules
//! at any depth) have no cycle either.
//!
//! An edge `a -> b` is a reference `crate::b` (also inside
//! `use crate::{b, ...}`) or a `super::` path that climbs out of `a` to
//! `b`, in `a`'s code outside comments, string literals and `#[cfg(test)]`
//! items. (`../shared/tools/module-cycles src` gives the same cycles; it is
//! not part of the repository, so CI runs this test instead.)

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

const SRC: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/src");

/// One reference of a module to another: where it is.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
struct Site {
    file: String,
    line: usize,
}

/// `from -> to` with the places that make the edge.
type Graph = BTreeMap<String, BTreeMap<String, Vec<Site>>>;

/// A source file: its path under `src/`, its module path (`["cli",
/// "run"]` for `src/cli/run.rs`) and its code without comments, literals
/// and test-only items (lines kept, so positions still point into the file).
struct SourceFile {
    rel: String,
    module_path: Vec<String>,
    code: String,
}

fn module_path_of(rel: &Path) -> Vec<String> {
    let mut parts: Vec<String> = rel
        .components()
        .map(|c| c.as_os_str().to_string_lossy().into_owned())
        .collect();
    let last = parts.pop().unwrap_or_default();
    let stem = last.strip_suffix(".rs").unwrap_or(&last).to_owned();
    if stem != "mod" {
        parts.push(stem);
    }
    parts
}

fn read_sources(src: &Path) -> Vec<SourceFile> {
    common::rust_files(src)
        .into_iter()
        .map(|p| {
            let rel = p.strip_prefix(src).unwrap().to_owned();
            let text =
                std::fs::read_to_string(&p).unwrap_or_else(|e| panic!("{}: {e}", p.display()));
            SourceFile {
                rel: rel.to_string_lossy().into_owned(),
                module_path: module_path_of(&rel),
                code: without_test_items(&strip_comments_and_literals(&text)),
            }
        })
        .collect()
}

/// The code with comments, string, byte-string and character literals
/// blanked out (newlines kept): `crate::x` in a doc comment or a message is
/// no dependency, and a `{` in a literal must not upset brace matching.
fn strip_comments_and_literals(text: &str) -> String {
    let c: Vec<char> = text.chars().collect();
    let mut out = String::with_capacity(text.len());
    let blank = |out: &mut String, ch: char| out.push(if ch == '\n' { '\n' } else { ' ' });
    let mut i = 0;
    while i < c.len() {
        let at = |j: usize| c.get(j).copied();
        if c[i] == '/' && at(i + 1) == Some('/') {
            while i < c.len() && c[i] != '\n' {
                out.push(' ');
                i += 1;
            }
        } else if c[i] == '/' && at(i + 1) == Some('*') {
            let mut depth = 0;
            while i < c.len() {
                if c[i] == '/' && at(i + 1) == Some('*') {
                    depth += 1;
                    out.push_str("  ");
                    i += 2;
                } else if c[i] == '*' && at(i + 1) == Some('/') {
                    depth -= 1;
                    out.push_str("  ");
                    i += 2;
                    if depth == 0 {
                        break;
                    }
                } else {
                    blank(&mut out, c[i]);
                    i += 1;
                }
            }
        } else if (c[i] == 'r' || (c[i] == 'b' && at(i + 1) == Some('r')))
            && (i == 0 || !(c[i - 1].is_alphanumeric() || c[i - 1] == '_'))
            && {
                let start = if c[i] == 'b' { i + 2 } else { i + 1 };
                let mut j = start;
                while c.get(j) == Some(&'#') {
                    j += 1;
                }
                c.get(j) == Some(&'"')
            }
        {
            // A raw string: r"...", r#"..."#, br"...".
            let mut j = if c[i] == 'b' { i + 2 } else { i + 1 };
            let mut hashes = 0;
            while c[j] == '#' {
                hashes += 1;
                j += 1;
            }
            j += 1;
            loop {
                if j >= c.len() {
                    break;
                }
                if c[j] == '"' && (0..hashes).all(|h| c.get(j + 1 + h) == Some(&'#')) {
                    j += 1 + hashes;
                    break;
                }
                j += 1;
            }
            for &ch in &c[i..j.min(c.len())] {
                blank(&mut out, ch);
            }
            i = j;
        } else if c[i] == '"' {
            let mut j = i + 1;
            while j < c.len() && c[j] != '"' {
                j += if c[j] == '\\' { 2 } else { 1 };
            }
            let end = (j + 1).min(c.len());
            for &ch in &c[i..end] {
                blank(&mut out, ch);
            }
            i = end;
        } else if c[i] == '\'' {
            // A character literal ('x', '\n', '\u{7b}'), or a lifetime ('a).
            let end = if at(i + 1) == Some('\\') {
                // Past the backslash and the escaped character.
                let mut j = i + 3;
                while j < c.len() && c[j] != '\'' {
                    j += 1;
                }
                Some(j + 1)
            } else if at(i + 2) == Some('\'') {
                Some(i + 3)
            } else {
                None
            };
            match end {
                Some(end) => {
                    let end = end.min(c.len());
                    for &ch in &c[i..end] {
                        blank(&mut out, ch);
                    }
                    i = end;
                }
                None => {
                    out.push('\'');
                    i += 1;
                }
            }
        } else {
            out.push(c[i]);
            i += 1;
        }
    }
    out
}

/// The code without the items marked `#[cfg(test)]` (a test module, a
/// test-only `use` or function): blanked out, lines kept.
fn without_test_items(code: &str) -> String {
    let mut c: Vec<char> = code.chars().collect();
    let marker: Vec<char> = "#[cfg(test)]".chars().collect();
    let mut i = 0;
    while i + marker.len() <= c.len() {
        if c[i..i + marker.len()] != marker[..] {
            i += 1;
            continue;
        }
        // The item runs to its first `;` outside braces, or to the end of
        // its first brace block (and a `;` right after it).
        let mut j = i + marker.len();
        let mut depth = 0usize;
        let mut bracket = 0usize;
        while j < c.len() {
            match c[j] {
                '[' => bracket += 1,
                ']' => bracket = bracket.saturating_sub(1),
                '{' => depth += 1,
                '}' => {
                    depth = depth.saturating_sub(1);
                    if depth == 0 {
                        j += 1;
                        break;
                    }
                }
                ';' if depth == 0 && bracket == 0 => {
                    j += 1;
                    break;
                }
                _ => {}
            }
            j += 1;
        }
        let end = j.min(c.len());
        for ch in &mut c[i..end] {
            if *ch != '\n' {
                *ch = ' ';
            }
        }
        i = j;
    }
    c.into_iter().collect()
}

fn line_of(code: &str, offset: usize) -> usize {
    code[..offset].matches('\n').count() + 1
}

/// The first identifier of each comma-separated part of a `{...}` group
/// starting at `open` (the `{`), at the group's top level.
fn group_heads(code: &str, open: usize) -> Vec<(String, usize)> {
    let bytes = code.as_bytes();
    let mut heads = Vec::new();
    let mut depth = 0;
    let mut expect_head = true;
    let mut i = open;
    while i < bytes.len() {
        let b = bytes[i];
        match b {
            b'{' => {
                depth += 1;
                if depth == 1 {
                    expect_head = true;
                }
            }
            b'}' => {
                depth -= 1;
                if depth == 0 {
                    break;
                }
            }
            b',' if depth == 1 => expect_head = true,
            _ if depth == 1 && expect_head && (b.is_ascii_alphabetic() || b == b'_') => {
                let end = code[i..]
                    .find(|ch: char| !(ch.is_ascii_alphanumeric() || ch == '_'))
                    .map_or(code.len(), |n| i + n);
                heads.push((code[i..end].to_owned(), i));
                expect_head = false;
                i = end;
                continue;
            }
            _ => {}
        }
        i += 1;
    }
    heads
}

/// The top-level modules (files and folders directly under `src/`, except
/// `lib.rs`, `main.rs`, `bin/` and the modules `lib.rs` declares only for
/// tests).
fn top_level_modules(src: &Path, files: &[SourceFile]) -> BTreeSet<String> {
    let mut test_only = BTreeSet::new();
    if let Ok(lib) = std::fs::read_to_string(src.join("lib.rs")) {
        let mut after_cfg_test = false;
        for line in lib.lines().map(str::trim) {
            if line == "#[cfg(test)]" {
                after_cfg_test = true;
                continue;
            }
            if after_cfg_test && let Some(pos) = line.find("mod ") {
                test_only.insert(line[pos + 4..].trim_end_matches(';').trim().to_owned());
            }
            after_cfg_test = false;
        }
    }
    files
        .iter()
        .filter_map(|f| f.module_path.first().cloned())
        .filter(|m| !matches!(m.as_str(), "lib" | "main" | "bin") && !test_only.contains(m))
        .collect()
}

/// The top-level module a reference leads to: `crate::NAME...`, or
/// `super::` climbing out of the file's top-level module to the crate
/// root and then down to NAME.
fn graph_of(files: &[SourceFile], modules: &BTreeSet<String>) -> Graph {
    let crate_re = regex::Regex::new(r"\bcrate\s*::\s*(\{|[A-Za-z_]\w*)").unwrap();
    let super_re = regex::Regex::new(r"\b((?:super\s*::\s*)+)(\{|[A-Za-z_]\w*)").unwrap();
    let mut graph = Graph::new();
    for f in files {
        let Some(from) = f.module_path.first().filter(|m| modules.contains(*m)) else {
            continue;
        };
        let mut add = |to: &str, offset: usize| {
            if to != from && modules.contains(to) {
                graph
                    .entry(from.clone())
                    .or_default()
                    .entry(to.to_owned())
                    .or_default()
                    .push(Site {
                        file: format!("src/{}", f.rel),
                        line: line_of(&f.code, offset),
                    });
            }
        };
        let mut targets = |m: regex::Captures| {
            let name = m.get(m.len() - 1).unwrap();
            if name.as_str() == "{" {
                for (head, at) in group_heads(&f.code, name.start()) {
                    add(&head, at);
                }
            } else {
                add(name.as_str(), name.start());
            }
        };
        for m in crate_re.captures_iter(&f.code) {
            targets(m);
        }
        for m in super_re.captures_iter(&f.code) {
            // Each `super` climbs one level; only a climb past the top-level
            // module (to the crate root) can name another module.
            let climbs = m[1].matches("super").count();
            if climbs >= f.module_path.len() {
                targets(m);
            }
        }
    }
    graph
}

/// The strongly connected components of more than one module (Tarjan).
fn cycles(graph: &Graph) -> Vec<Vec<String>> {
    struct Tarjan<'a> {
        graph: &'a Graph,
        index: BTreeMap<&'a str, usize>,
        low: BTreeMap<&'a str, usize>,
        stack: Vec<&'a str>,
        on_stack: BTreeSet<&'a str>,
        out: Vec<Vec<String>>,
    }
    impl<'a> Tarjan<'a> {
        fn visit(&mut self, v: &'a str) {
            let n = self.index.len();
            self.index.insert(v, n);
            self.low.insert(v, n);
            self.stack.push(v);
            self.on_stack.insert(v);
            let graph = self.graph;
            for w in graph.get(v).into_iter().flat_map(|e| e.keys()) {
                if !self.index.contains_key(w.as_str()) {
                    self.visit(w);
                    let lw = self.low[w.as_str()];
                    let lv = self.low.get_mut(v).unwrap();
                    *lv = (*lv).min(lw);
                } else if self.on_stack.contains(w.as_str()) {
                    let iw = self.index[w.as_str()];
                    let lv = self.low.get_mut(v).unwrap();
                    *lv = (*lv).min(iw);
                }
            }
            if self.low[v] == self.index[v] {
                let mut comp = Vec::new();
                loop {
                    let w = self.stack.pop().unwrap();
                    self.on_stack.remove(w);
                    comp.push(w.to_owned());
                    if w == v {
                        break;
                    }
                }
                if comp.len() > 1 {
                    comp.sort();
                    self.out.push(comp);
                }
            }
        }
    }
    let mut t = Tarjan {
        graph,
        index: BTreeMap::new(),
        low: BTreeMap::new(),
        stack: Vec::new(),
        on_stack: BTreeSet::new(),
        out: Vec::new(),
    };
    let nodes: BTreeSet<&str> = graph
        .iter()
        .flat_map(|(k, v)| std::iter::once(k.as_str()).chain(v.keys().map(String::as_str)))
        .collect();
    for v in nodes {
        if !t.index.contains_key(v) {
            t.visit(v);
        }
    }
    t.out.sort();
    t.out
}

/// Each cycle with the edges inside it and where the first reference of
/// each edge is.
fn describe_cycles(graph: &Graph, found: &[Vec<String>]) -> String {
    let mut s = String::new();
    for comp in found {
        s.push_str(&format!("cycle: {}\n", comp.join(" <-> ")));
        for from in comp {
            for (to, sites) in graph.get(from).into_iter().flatten() {
                if comp.contains(to) {
                    s.push_str(&format!(
                        "  {from} -> {to}: {}:{} ({} references)\n",
                        sites[0].file,
                        sites[0].line,
                        sites.len()
                    ));
                }
            }
        }
    }
    s
}

fn crate_graph() -> Graph {
    let src = Path::new(SRC);
    let files = read_sources(src);
    let modules = top_level_modules(src, &files);
    assert!(
        modules.contains("cli") && modules.contains("collector"),
        "the modules under {SRC}: {modules:?}"
    );
    graph_of(&files, &modules)
}

fn edge_sites(graph: &Graph, from: &str, to: &str) -> Vec<Site> {
    graph
        .get(from)
        .and_then(|e| e.get(to))
        .cloned()
        .unwrap_or_default()
}

fn show(sites: &[Site]) -> String {
    sites
        .iter()
        .map(|s| format!("{}:{}", s.file, s.line))
        .collect::<Vec<_>>()
        .join(", ")
}

#[test]
fn the_top_level_modules_have_no_cycle() {
    let graph = crate_graph();
    let found = cycles(&graph);
    for (from, to) in &graph {
        let to: Vec<&str> = to.keys().map(String::as_str).collect();
        println!("{from} -> {}", to.join(" "));
    }
    println!(
        "{} top-level modules, {} cycles",
        graph
            .iter()
            .flat_map(|(k, v)| std::iter::once(k).chain(v.keys()))
            .collect::<BTreeSet<_>>()
            .len(),
        found.len()
    );
    assert!(
        found.is_empty(),
        "the module graph has cycles (strongly connected components):\n{}",
        describe_cycles(&graph, &found)
    );
}

#[test]
fn sources_import_neither_collector_nor_config() {
    let graph = crate_graph();
    let mut wrong = Vec::new();
    for to in ["collector", "config"] {
        let sites = edge_sites(&graph, "sources", to);
        if !sites.is_empty() {
            wrong.push(format!("sources -> {to}: {}", show(&sites)));
        }
    }
    assert!(
        wrong.is_empty(),
        "sources must not depend on these (they come above it):\n{}",
        wrong.join("\n")
    );
}

#[test]
fn no_module_depends_on_the_command_line() {
    let graph = crate_graph();
    let wrong: Vec<String> = graph
        .iter()
        .filter_map(|(from, edges)| {
            edges
                .get("cli")
                .map(|sites| format!("{from} -> cli: {}", show(sites)))
        })
        .collect();
    assert!(
        wrong.is_empty(),
        "the command line is the top: nothing may use it\n{}",
        wrong.join("\n")
    );
}

#[test]
fn time_spans_do_not_tie_config_and_collectors_to_the_scheduler() {
    let graph = crate_graph();
    let mut wrong = Vec::new();
    for from in ["config", "collectors", "collector", "sources", "sinks"] {
        let sites = edge_sites(&graph, from, "schedule");
        if !sites.is_empty() {
            wrong.push(format!("{from} -> schedule: {}", show(&sites)));
        }
    }
    assert!(wrong.is_empty(), "{}", wrong.join("\n"));
}

/// What only the command line may do: print, exit the process, use exit
/// statuses, define subcommands and arguments.
const CLI_ONLY: &[(&str, &str)] = &[
    (r"\b(e?print(ln)?|dbg)\s*!", "prints"),
    (
        r"\bio\s*::\s*(stdout|stderr)\s*\(",
        "writes to stdout/stderr",
    ),
    (r"\bprocess\s*::\s*(exit|abort)\b", "exits the process"),
    (r"\bExitCode\b", "returns an exit status"),
    (r"\bEXIT_[A-Z]+\b", "uses an exit status"),
    (
        r"#\s*\[\s*derive\s*\([^)]*\b(Parser|Subcommand|Args)\b",
        "defines command-line arguments",
    ),
    (
        r"#\s*\[\s*(arg|command)\s*\(",
        "defines command-line arguments",
    ),
];

fn cli_only_violations(files: &[SourceFile]) -> Vec<String> {
    let rules: Vec<(regex::Regex, &str)> = CLI_ONLY
        .iter()
        .map(|(re, what)| (regex::Regex::new(re).unwrap(), *what))
        .collect();
    let mut wrong = Vec::new();
    for f in files {
        if f.module_path.first().map(String::as_str) == Some("cli") {
            continue;
        }
        for (re, what) in &rules {
            for m in re.find_iter(&f.code) {
                wrong.push(format!(
                    "src/{}:{}: {what} (`{}`)",
                    f.rel,
                    line_of(&f.code, m.start()),
                    m.as_str().trim()
                ));
            }
        }
    }
    wrong
}

#[test]
fn only_the_command_line_prints_exits_or_defines_arguments() {
    let files = read_sources(Path::new(SRC));
    let wrong = cli_only_violations(&files);
    assert!(
        wrong.is_empty(),
        "outside src/cli/ (library modules return typed errors; the command line prints them and picks the exit status):\n{}",
        wrong.join("\n")
    );
}

/// The graph once the edges the architecture removes elsewhere are gone
/// (sources -> collector and sources -> config: sources get their own
/// error type and settings; config -> collector: typed collector options)
/// has no cycle, so the test above passes when they are.
#[test]
fn without_the_edges_being_removed_elsewhere_there_is_no_cycle() {
    let mut graph = crate_graph();
    for (from, to) in [
        ("sources", "collector"),
        ("sources", "config"),
        ("config", "collector"),
    ] {
        if let Some(e) = graph.get_mut(from) {
            e.remove(to);
        }
    }
    let found = cycles(&graph);
    assert!(found.is_empty(), "{}", describe_cycles(&graph, &found));
}

// The checker itself, on small synthetic trees.

fn synthetic(files: &[(&str, &str)]) -> (tempfile::TempDir, Vec<SourceFile>, BTreeSet<String>) {
    let dir = tempfile::tempdir().unwrap();
    for (path, text) in files {
        let p = dir.path().join(path);
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::write(p, text).unwrap();
    }
    let sources = read_sources(dir.path());
    let modules = top_level_modules(dir.path(), &sources);
    (dir, sources, modules)
}

fn edges(graph: &Graph) -> Vec<String> {
    graph
        .iter()
        .flat_map(|(f, e)| e.keys().map(move |t| format!("{f}->{t}")))
        .collect()
}

#[test]
fn the_checker_reads_every_kind_of_reference() {
    let (_d, files, modules) = synthetic(&[
        ("lib.rs", "pub mod a;\n#[cfg(test)]\nmod testing;\n"),
        ("main.rs", "use crate::a;\n"),
        (
            "a.rs",
            "use crate::{b::X, c::{self, Y}, self as me};\nfn f() { crate :: d::g(); }\n",
        ),
        (
            "b/mod.rs",
            "mod inner;\nuse super::e;\nfn h() { super::super::x(); }\n",
        ),
        (
            "b/inner.rs",
            "use super::super::{f, b};\nuse super::Sibling;\n",
        ),
        (
            "c.rs",
            "// crate::g in a comment\n/// [`crate::g`]\nconst S: &str = \"crate::g {\";\nconst C: char = '{';\nfn l<'a>(x: &'a str) -> &'a str { x }\nconst R: &str = r#\"crate::g \"quoted\" {\"#;\n",
        ),
        (
            "d.rs",
            "#[cfg(test)]\nmod tests {\n    use crate::e;\n    fn x() { let _ = '}'; }\n}\n#[cfg(test)]\nuse crate::f;\nuse crate::h;\n",
        ),
        ("e.rs", ""),
        ("f.rs", ""),
        ("g.rs", ""),
        ("h.rs", ""),
        ("testing.rs", "use crate::a;\n"),
    ]);
    assert_eq!(
        modules.iter().map(String::as_str).collect::<Vec<_>>(),
        ["a", "b", "c", "d", "e", "f", "g", "h"],
        "lib.rs, main.rs and test-only modules are not nodes"
    );
    let graph = graph_of(&files, &modules);
    assert_eq!(
        edges(&graph),
        ["a->b", "a->c", "a->d", "b->e", "b->f", "d->h"],
        "{graph:#?}"
    );
    let site = &graph["a"]["d"][0];
    assert_eq!((site.file.as_str(), site.line), ("src/a.rs", 2));
    assert!(cycles(&graph).is_empty());
}

#[test]
fn the_checker_finds_every_cycle_and_nothing_else() {
    let (_d, files, modules) = synthetic(&[
        ("a.rs", "use crate::b;"),
        ("b.rs", "use crate::c;"),
        ("c.rs", "use crate::a; use crate::d;"),
        ("d.rs", ""),
        ("e/mod.rs", "use crate::f::x;"),
        ("f.rs", "fn g() { crate::e::y(); }"),
        ("g.rs", "use crate::d;"),
    ]);
    let graph = graph_of(&files, &modules);
    let found = cycles(&graph);
    assert_eq!(
        found,
        [vec!["a", "b", "c"], vec!["e", "f"]],
        "{}",
        describe_cycles(&graph, &found)
    );
    let text = describe_cycles(&graph, &found);
    assert!(text.contains("cycle: a <-> b <-> c\n"), "{text}");
    assert!(text.contains("  f -> e: src/f.rs:1"), "{text}");
}

#[test]
fn the_checker_finds_what_only_the_command_line_may_do() {
    let (_d, files, _) = synthetic(&[
        (
            "cli/mod.rs",
            "pub const EXIT_OK: i32 = 0;\n#[derive(clap::Parser)]\nstruct Cli;\nfn main() { println!(\"x\"); std::process::exit(EXIT_OK) }\n",
        ),
        (
            "lib_part.rs",
            "fn f() -> i32 {\n    eprintln!(\"no\");\n    crate::cli::EXIT_FAILED\n}\n#[derive(Debug, clap::Subcommand)]\nenum C {}\n// println!(\"in a comment\")\nconst S: &str = \"print!(x)\";\n#[cfg(test)]\nmod tests { fn t() { println!(\"ok in tests\"); } }\n",
        ),
        (
            "quiet.rs",
            "fn g(w: &mut dyn std::io::Write) { let _ = writeln!(w, \"fine\"); }\n",
        ),
    ]);
    let wrong = cli_only_violations(&files);
    assert_eq!(wrong.len(), 3, "{wrong:#?}");
    assert!(
        wrong[0].starts_with("src/lib_part.rs:2: prints"),
        "{wrong:#?}"
    );
    assert!(
        wrong[1].starts_with("src/lib_part.rs:3: uses an exit status"),
        "{wrong:#?}"
    );
    assert!(
        wrong[2].starts_with("src/lib_part.rs:5: defines command-line arguments"),
        "{wrong:#?}"
    );
}

// The same rule between files: no circle among the crate's files (modules
// at any depth), so that a folder's files can be read bottom-up too.

/// The paths a file's code names: `crate::a::b`, `super::x` (made absolute
/// from the file's module path) and each item of a `{...}` group after
/// either, with where each one is.
fn referenced_paths(f: &SourceFile) -> Vec<(Vec<String>, usize)> {
    let path_re = regex::Regex::new(
        r"\b(crate|(?:super\s*::\s*)*super)((?:\s*::\s*[A-Za-z_]\w*)*)(\s*::\s*\{)?",
    )
    .unwrap();
    let ident = |s: &str| -> Vec<String> {
        s.split("::")
            .map(str::trim)
            .filter(|x| !x.is_empty())
            .map(str::to_owned)
            .collect()
    };
    let mut out = Vec::new();
    for m in path_re.captures_iter(&f.code) {
        let head = if &m[1] == "crate" {
            Vec::new()
        } else {
            let climbs = m[1].matches("super").count();
            // A file's own module is its module path; `super` is its parent.
            let keep = f.module_path.len().saturating_sub(climbs);
            f.module_path[..keep].to_vec()
        };
        let mut base = head;
        base.extend(ident(&m[2]));
        let at = m.get(0).unwrap().start();
        match m.get(3) {
            None => out.push((base, at)),
            Some(open) => {
                let close = open.end() - 1;
                for (item, item_at) in group_items(&f.code, close) {
                    let mut p = base.clone();
                    p.extend(ident(&item));
                    out.push((p, item_at));
                }
            }
        }
    }
    out
}

/// Each comma-separated item of a `{...}` group at `open`, as its leading
/// path (`a::b` of `a::b::{c, d}` or of `a::b as x`).
fn group_items(code: &str, open: usize) -> Vec<(String, usize)> {
    let mut items = Vec::new();
    let (mut depth, mut start) = (0usize, open + 1);
    for (i, ch) in code[open..].char_indices().map(|(i, c)| (i + open, c)) {
        match ch {
            '{' => depth += 1,
            '}' | ',' if depth == 1 => {
                let item = &code[start..i];
                let lead: String = item
                    .trim_start()
                    .chars()
                    .take_while(|c| c.is_alphanumeric() || *c == '_' || *c == ':' || *c == ' ')
                    .collect();
                let lead = lead.split(" as ").next().unwrap_or("").trim().to_owned();
                if !lead.is_empty() && lead != "self" {
                    items.push((lead.trim_end_matches(':').to_owned(), start));
                }
                start = i + 1;
                if ch == '}' {
                    break;
                }
            }
            '}' => depth -= 1,
            _ => {}
        }
    }
    items
}

/// The graph among files: an edge to the file that defines the longest
/// prefix of a referenced path; a file's ties to its own ancestors and
/// descendants (a `mod.rs` re-exporting its children) do not count.
fn file_graph(files: &[SourceFile]) -> Graph {
    let nodes: BTreeSet<Vec<String>> = files
        .iter()
        .filter(|f| !f.module_path.is_empty() && !matches!(f.rel.as_str(), "main.rs" | "lib.rs"))
        .map(|f| f.module_path.clone())
        .collect();
    let mut graph = Graph::new();
    for f in files.iter().filter(|f| nodes.contains(&f.module_path)) {
        for (path, at) in referenced_paths(f) {
            let Some(to) = (1..=path.len())
                .rev()
                .map(|n| path[..n].to_vec())
                .find(|p| nodes.contains(p))
            else {
                continue;
            };
            let a = &f.module_path;
            if to.starts_with(a) || a.starts_with(&to) {
                continue;
            }
            graph
                .entry(a.join("::"))
                .or_default()
                .entry(to.join("::"))
                .or_default()
                .push(Site {
                    file: format!("src/{}", f.rel),
                    line: line_of(&f.code, at),
                });
        }
    }
    graph
}

#[test]
fn the_files_have_no_cycle() {
    let files = read_sources(Path::new(SRC));
    let graph = file_graph(&files);
    let found = cycles(&graph);
    println!(
        "{} files with references, {} cycles",
        graph.len(),
        found.len()
    );
    assert!(
        found.is_empty(),
        "the files of src/ reference each other in a circle:\n{}",
        describe_cycles(&graph, &found)
    );
}

#[test]
fn the_file_checker_reads_paths_groups_and_supers() {
    let (_d, files, _) = synthetic(&[
        ("lib.rs", "pub mod s;\n"),
        (
            "s/mod.rs",
            "pub mod http;\npub mod tape;\npub use http::Client;\n",
        ),
        (
            "s/http.rs",
            "use super::tape::Tape;\nuse crate::t::{text::redact, self};\n",
        ),
        (
            "s/tape.rs",
            "fn f() { crate::s::http::send(); }\n#[cfg(test)]\nmod tests { use crate::u; }\n",
        ),
        ("t/mod.rs", "pub mod text;\n"),
        ("t/text.rs", "use crate::s::{http as h, tape::{Tape, X}};\n"),
        ("u.rs", ""),
    ]);
    let graph = file_graph(&files);
    assert_eq!(
        edges(&graph),
        [
            "s::http->s::tape",
            "s::http->t::text",
            "s::tape->s::http",
            "t::text->s::http",
            "t::text->s::tape"
        ],
        "{graph:#?}"
    );
    let found = cycles(&graph);
    assert_eq!(
        found,
        [vec!["s::http", "s::tape", "t::text"]],
        "{}",
        describe_cycles(&graph, &found)
    );
}
