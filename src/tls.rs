//! The one place HTTP clients are set up: the upstream client, the
//! InfluxDB writer and provisioning all start from [`client_builder`]
//! (and a CA file is read by [`with_ca_file`] alone). The TLS set-up they
//! share: rustls with the `ring` crypto provider (pure Rust and assembly,
//! no C build tools), the system's trust store (through reqwest's platform
//! verifier) plus any `ca_file` given.

/// The User-Agent of every request the program makes (upstreams and
/// InfluxDB).
pub const USER_AGENT: &str = concat!(
    "ubuntu-metrics/",
    env!("CARGO_PKG_VERSION"),
    " (+https://launchpad.net/ubuntu-metrics)"
);

/// A reqwest client builder with the crypto provider installed.
pub fn client_builder() -> reqwest::ClientBuilder {
    // Installed once per process; later calls find it there (an `Err` that
    // only says so).
    let _ = rustls::crypto::ring::default_provider().install_default();
    reqwest::Client::builder()
}

/// `builder` also trusting the certificates of the PEM file `ca` (a
/// private CA), besides the system's. `what` names the setting in errors
/// (`influxdb.ca_file`, `CA file`).
pub fn with_ca_file(
    builder: reqwest::ClientBuilder,
    ca: &std::path::Path,
    what: &str,
) -> Result<reqwest::ClientBuilder, String> {
    let pem = std::fs::read(ca).map_err(|e| format!("{what} {}: {e}", ca.display()))?;
    let certs = reqwest::Certificate::from_pem_bundle(&pem)
        .map_err(|e| format!("{what} {}: not a PEM certificate: {e}", ca.display()))?;
    Ok(builder.tls_certs_merge(certs))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn err(r: Result<reqwest::ClientBuilder, String>) -> String {
        match r {
            Ok(_) => panic!("an error was expected"),
            Err(e) => e,
        }
    }

    #[test]
    fn a_bad_ca_file_is_named_with_its_setting() {
        let dir = tempfile::tempdir().unwrap();
        let missing = dir.path().join("missing.pem");
        let e = err(with_ca_file(client_builder(), &missing, "influxdb.ca_file"));
        assert!(
            e.starts_with(&format!("influxdb.ca_file {}: ", missing.display())),
            "{e}"
        );
        let junk = dir.path().join("junk.pem");
        std::fs::write(&junk, "-----BEGIN CERTIFICATE-----\nnot base64\n").unwrap();
        let e = err(with_ca_file(client_builder(), &junk, "CA file"));
        assert!(
            e.starts_with(&format!(
                "CA file {}: not a PEM certificate: ",
                junk.display()
            )),
            "{e}"
        );
    }
}
