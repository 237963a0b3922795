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
