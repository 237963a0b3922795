//! The product's dependencies stay current and safe (issue 11, item 7):
//! checked from Cargo.toml and Cargo.lock, so a dependency that comes back
//! fails here rather than in a review.

use std::collections::BTreeSet;

fn manifest() -> toml::Table {
    let text = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/Cargo.toml")).unwrap();
    text.parse().unwrap()
}

/// Names of the packages in Cargo.lock (the whole workspace's graph).
fn locked_packages() -> BTreeSet<String> {
    let text = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/Cargo.lock")).unwrap();
    let lock: toml::Table = text.parse().unwrap();
    lock["package"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["name"].as_str().unwrap().to_owned())
        .collect()
}

#[test]
fn no_unused_or_unmaintained_dependencies() {
    let m = manifest();
    let deps = m["dependencies"].as_table().unwrap();
    for gone in ["tokio-util", "serde_norway", "serde_yaml", "serde_yml"] {
        assert!(
            !deps.contains_key(gone),
            "Cargo.toml [dependencies] lists {gone}"
        );
    }
    // YAML from the network is parsed by safe Rust, never by a C port.
    let locked = locked_packages();
    for unsafe_port in ["unsafe-libyaml", "unsafe-libyaml-norway", "libyaml"] {
        assert!(
            !locked.contains(unsafe_port),
            "Cargo.lock holds {unsafe_port}"
        );
    }
    assert!(deps.contains_key("serde-saphyr"), "the YAML crate");
}

#[test]
fn http_on_the_current_reqwest_line_with_rustls_and_ring() {
    let m = manifest();
    let reqwest = m["dependencies"]["reqwest"].as_table().unwrap();
    let version = reqwest["version"].as_str().unwrap();
    assert!(version.starts_with("0.13"), "reqwest {version}");
    assert_eq!(reqwest["default-features"].as_bool(), Some(false));
    // No OpenSSL, and no C crypto build (aws-lc needs cmake): ring.
    let locked = locked_packages();
    for c in ["openssl-sys", "native-tls", "aws-lc-sys", "aws-lc-rs"] {
        assert!(!locked.contains(c), "Cargo.lock holds {c}");
    }
    assert!(locked.contains("ring"));
}

/// Each package's features in one build (`cargo tree`), by package: a
/// package built for the host and for the target may appear twice.
fn features(args: &[&str]) -> std::collections::BTreeMap<String, BTreeSet<String>> {
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".to_owned());
    let out = std::process::Command::new(&cargo)
        .args(["tree", "--locked", "--offline", "--prefix", "none"])
        .args(["--format", "{p}|{f}"])
        .args(args)
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .output()
        .unwrap_or_else(|e| panic!("cannot run {cargo} tree: {e}"));
    assert!(
        out.status.success(),
        "{cargo} tree {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let mut map = std::collections::BTreeMap::<String, BTreeSet<String>>::new();
    for line in String::from_utf8(out.stdout).unwrap().lines() {
        let line = line.trim_end_matches(" (*)");
        let Some((package, features)) = line.split_once('|') else {
            continue;
        };
        map.entry(package.to_owned())
            .or_default()
            .insert(features.to_owned());
    }
    map
}

/// Issue 24, item 5: building the fixture server after the product (the
/// offline try-out, `cargo build -p fixture-server`), or the tests after
/// `cargo build`, reuses the product's artefacts only when every package
/// they share gets the same features in each. A dependency of the fixture
/// server or a dev-dependency that asks for one more feature of a shared
/// crate (axum's defaults did: tower's `log`, tracing's `log`) rebuilds
/// that crate, everything above it and this library.
#[test]
fn the_fixture_server_and_the_tests_share_the_products_features() {
    let product = features(&["-p", "ubuntu-metrics", "-e", "normal,build"]);
    for (what, args) in [
        (
            "cargo build -p fixture-server",
            ["-p", "fixture-server", "-e", "normal,build"],
        ),
        (
            "cargo test (with the dev-dependencies)",
            ["-p", "ubuntu-metrics", "-e", "normal,build,dev"],
        ),
    ] {
        let other = features(&args);
        let differ: Vec<String> = product
            .iter()
            .filter_map(|(package, mine)| {
                let theirs = other.get(package)?;
                (theirs != mine).then(|| format!("{package}: {mine:?} in cargo build, {theirs:?}"))
            })
            .collect();
        assert!(
            differ.is_empty(),
            "{what} builds these shared packages with other features than `cargo build` \
             (ask for the same features in the product's Cargo.toml, or fewer in the other):\n{}",
            differ.join("\n")
        );
    }
}
