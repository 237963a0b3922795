//! The TLS set-up every HTTP client of the program shares: rustls with the
//! `ring` crypto provider (pure Rust and assembly, no C build tools), the
//! system's trust store (through reqwest's platform verifier) plus any
//! `ca_file` given.

/// A reqwest client builder with the crypto provider installed.
pub fn client_builder() -> reqwest::ClientBuilder {
    // Installed once per process; later calls find it there (an `Err` that
    // only says so).
    let _ = rustls::crypto::ring::default_provider().install_default();
    reqwest::Client::builder()
}
