//! The one place HTTP clients are set up: the upstream client, the
//! InfluxDB writer and provisioning are all built by [`ClientSpec`] (and a
//! CA file is read by [`with_ca_file`] alone). The TLS set-up they
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

/// Why a client could not be built: its CA file (the message names the
/// setting and the file), or reqwest's own refusal.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// The CA file, named by its setting (`influxdb.ca_file`, `CA file`).
    #[error("{setting} {}: {why}", path.display())]
    CaFile {
        setting: String,
        path: std::path::PathBuf,
        why: String,
    },
    #[error("cannot build {name}: {source}")]
    Build {
        name: String,
        source: reqwest::Error,
    },
}

/// For the callers that still report errors as text.
impl From<ClientError> for String {
    fn from(e: ClientError) -> String {
        e.to_string()
    }
}

/// The one TLS client builder: what a client of the program is (its
/// name for errors, its timeouts, an optional CA file named by its
/// setting, whether the certificate is checked at all, whether redirects
/// are followed), every client getting the crypto provider and the
/// [`USER_AGENT`].
#[derive(Debug, Clone)]
pub struct ClientSpec<'a> {
    name: &'a str,
    connect_timeout: std::time::Duration,
    timeout: std::time::Duration,
    ca_file: Option<(&'a std::path::Path, &'a str)>,
    skip_verify: bool,
    redirects: bool,
}

impl<'a> ClientSpec<'a> {
    /// A client called `name` in errors ("the InfluxDB client"), with
    /// `timeout` for a whole request and for connecting.
    pub fn new(name: &'a str, timeout: std::time::Duration) -> Self {
        ClientSpec {
            name,
            connect_timeout: timeout,
            timeout,
            ca_file: None,
            skip_verify: false,
            redirects: true,
        }
    }

    /// Time allowed to connect, when shorter than the request's.
    pub fn connect_timeout(mut self, t: std::time::Duration) -> Self {
        self.connect_timeout = t;
        self
    }

    /// Also trusting the PEM file `ca` ([`with_ca_file`]), named `setting`
    /// in errors (`influxdb.ca_file`, `CA file`).
    pub fn ca_file(mut self, ca: Option<&'a std::path::Path>, setting: &'a str) -> Self {
        self.ca_file = ca.map(|ca| (ca, setting));
        self
    }

    /// Not checking the server's certificate at all ([`skip_verify`]);
    /// the caller warns.
    pub fn skip_verify(mut self, skip: bool) -> Self {
        self.skip_verify = skip;
        self
    }

    /// Never following a redirect (a write that follows one becomes a GET
    /// of whatever is there).
    pub fn no_redirects(mut self) -> Self {
        self.redirects = false;
        self
    }

    /// The client.
    pub fn build(self) -> Result<reqwest::Client, ClientError> {
        self.build_with(|b| b)
    }

    /// The client, with `more` of reqwest's settings (a resolver, gzip).
    pub fn build_with(
        self,
        more: impl FnOnce(reqwest::ClientBuilder) -> reqwest::ClientBuilder,
    ) -> Result<reqwest::Client, ClientError> {
        let mut builder = more(
            client_builder()
                .user_agent(USER_AGENT)
                .timeout(self.timeout)
                .connect_timeout(self.connect_timeout),
        );
        if !self.redirects {
            builder = builder.redirect(reqwest::redirect::Policy::none());
        }
        if let Some((ca, setting)) = self.ca_file {
            builder = with_ca_file(builder, ca, setting)?;
        }
        if self.skip_verify {
            // After with_ca_file, whose own TLS configuration this drops.
            builder = skip_verify(builder);
        }
        builder.build().map_err(|source| ClientError::Build {
            name: self.name.to_owned(),
            source,
        })
    }
}

/// `builder` also trusting the certificates of the PEM file `ca` (a
/// private CA, or a server's own self-signed certificate), besides the
/// system's. `what` names the setting in errors (`influxdb.ca_file`, `CA
/// file`).
///
/// A server whose certificate is byte for byte one of the file's is
/// trusted as that exact certificate ([`PinnedOrPlatform`]): the
/// certificate itself is the identity (what `openssl req -x509` makes for
/// InfluxDB: a self-signed CA certificate without subjectAltName, which
/// webpki refuses as a server's own). Every other server is verified as
/// reqwest does it with extra roots: the platform verifier with the
/// system's roots plus the file's certificates.
///
/// The client gets a rustls configuration of its own
/// (`tls_backend_preconfigured`), made as reqwest makes its default one:
/// the installed crypto provider, TLS 1.3 and 1.2, SNI, no client
/// certificate, ALPN `h2` then `http/1.1` (reqwest's default preference
/// with its `http2` feature). reqwest's own TLS settings no longer apply
/// to that client: a caller asking for `http1_only` or
/// `danger_accept_invalid_certs` calls them after this one with
/// [`skip_verify`] or `tls_backend_rustls` first.
pub fn with_ca_file(
    builder: reqwest::ClientBuilder,
    ca: &std::path::Path,
    what: &str,
) -> Result<reqwest::ClientBuilder, ClientError> {
    let config = ca_file_config(ca, what)?;
    Ok(builder.tls_backend_preconfigured(config))
}

/// `builder` with the server's certificate not checked at all (reqwest's
/// own rustls configuration with its `NoVerifier`), whatever
/// [`with_ca_file`] set before.
pub fn skip_verify(builder: reqwest::ClientBuilder) -> reqwest::ClientBuilder {
    builder
        .tls_backend_rustls()
        .tls_danger_accept_invalid_certs(true)
}

/// The rustls configuration of [`with_ca_file`].
fn ca_file_config(ca: &std::path::Path, what: &str) -> Result<rustls::ClientConfig, ClientError> {
    use rustls::pki_types::CertificateDer;
    use rustls::pki_types::pem::PemObject;
    let bad = |why: String| ClientError::CaFile {
        setting: what.to_owned(),
        path: ca.to_owned(),
        why,
    };
    let pem = std::fs::read(ca).map_err(|e| bad(e.to_string()))?;
    let certs = CertificateDer::pem_slice_iter(&pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| bad(format!("not a PEM certificate: {e}")))?;
    if certs.is_empty() {
        return Err(bad(
            "no PEM certificate in it (-----BEGIN CERTIFICATE-----)".into(),
        ));
    }
    // As reqwest: the installed provider, else ring (client_builder
    // installs it).
    let _ = rustls::crypto::ring::default_provider().install_default();
    let provider = rustls::crypto::CryptoProvider::get_default()
        .cloned()
        .unwrap_or_else(|| std::sync::Arc::new(rustls::crypto::ring::default_provider()));
    let verifier = PinnedOrPlatform::new(certs, provider.clone(), what, ca).map_err(bad)?;
    let mut config = rustls::ClientConfig::builder_with_provider(provider)
        .with_protocol_versions(rustls::ALL_VERSIONS)
        .map_err(|e| bad(e.to_string()))?
        .dangerous()
        .with_custom_certificate_verifier(std::sync::Arc::new(verifier))
        .with_no_client_auth();
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Ok(config)
}

/// The server certificate verifier of a client with a CA file: a server
/// presenting one of the file's certificates as its own is trusted as that
/// exact certificate (pinned: its names are not checked, its validity
/// period is, and the handshake signature is verified with the crypto
/// provider against its key); any other server goes to the platform
/// verifier with the file's certificates as extra roots, as reqwest would
/// have it.
#[derive(Debug)]
pub struct PinnedOrPlatform {
    pinned: Vec<rustls::pki_types::CertificateDer<'static>>,
    platform: rustls_platform_verifier::Verifier,
    provider: std::sync::Arc<rustls::crypto::CryptoProvider>,
    /// `influxdb.ca_file /etc/...`, for errors.
    origin: String,
}

impl PinnedOrPlatform {
    /// `certs`: those of the CA file `ca` (named `what` in the
    /// handshake's errors); the error says why the platform verifier
    /// refused them.
    pub fn new(
        certs: Vec<rustls::pki_types::CertificateDer<'static>>,
        provider: std::sync::Arc<rustls::crypto::CryptoProvider>,
        what: &str,
        ca: &std::path::Path,
    ) -> Result<Self, String> {
        let origin = format!("{what} {}", ca.display());
        let platform = rustls_platform_verifier::Verifier::new_with_extra_roots(
            certs.clone(),
            provider.clone(),
        )
        .map_err(|e| e.to_string())?;
        Ok(PinnedOrPlatform {
            pinned: certs,
            platform,
            provider,
            origin,
        })
    }

    fn is_pinned(&self, cert: &rustls::pki_types::CertificateDer<'_>) -> bool {
        self.pinned.iter().any(|p| p.as_ref() == cert.as_ref())
    }
}

/// A verification failure told in words (rustls shows it as `other
/// error: ...`).
#[derive(Debug)]
struct Refused(String);

impl std::fmt::Display for Refused {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for Refused {}

fn refused(message: String) -> rustls::Error {
    rustls::Error::Other(rustls::OtherError(std::sync::Arc::new(Refused(message))))
}

/// A UNIX time in words (UTC).
fn utc(secs: i64) -> String {
    chrono::DateTime::from_timestamp(secs, 0)
        .map(|t| t.format("%Y-%m-%d %H:%M:%S UTC").to_string())
        .unwrap_or_else(|| format!("{secs} (UNIX time)"))
}

impl rustls::client::danger::ServerCertVerifier for PinnedOrPlatform {
    fn verify_server_cert(
        &self,
        end_entity: &rustls::pki_types::CertificateDer<'_>,
        intermediates: &[rustls::pki_types::CertificateDer<'_>],
        server_name: &rustls::pki_types::ServerName<'_>,
        ocsp_response: &[u8],
        now: rustls::pki_types::UnixTime,
    ) -> Result<rustls::client::danger::ServerCertVerified, rustls::Error> {
        if self.is_pinned(end_entity) {
            let Some(fields) = der::fields(end_entity.as_ref()) else {
                return Err(refused(format!(
                    "the server's certificate is the one pinned by {}, but its validity period cannot be read (not a DER X.509 certificate)",
                    self.origin
                )));
            };
            let now = i64::try_from(now.as_secs()).unwrap_or(i64::MAX);
            if now > fields.not_after {
                return Err(refused(format!(
                    "the server's certificate is the one pinned by {}, and it expired on {} (now {})",
                    self.origin,
                    utc(fields.not_after),
                    utc(now)
                )));
            }
            if now < fields.not_before {
                return Err(refused(format!(
                    "the server's certificate is the one pinned by {}, and it is not valid before {} (now {})",
                    self.origin,
                    utc(fields.not_before),
                    utc(now)
                )));
            }
            return Ok(rustls::client::danger::ServerCertVerified::assertion());
        }
        self.platform
            .verify_server_cert(end_entity, intermediates, server_name, ocsp_response, now)
            .map_err(|e| match der::fields(end_entity.as_ref()) {
                // A self-signed certificate that is not the pinned one:
                // say so (the error alone, CaUsedAsEndEntity or
                // UnknownIssuer, does not).
                Some(f) if f.issuer == f.subject => refused(format!(
                    "the server's certificate is self-signed and is not one of the certificates in {} ({e})",
                    self.origin
                )),
                _ => e,
            })
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &rustls::pki_types::CertificateDer<'_>,
        dss: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        if self.is_pinned(cert) {
            rustls::crypto::verify_tls12_signature(
                message,
                cert,
                dss,
                &self.provider.signature_verification_algorithms,
            )
        } else {
            self.platform.verify_tls12_signature(message, cert, dss)
        }
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &rustls::pki_types::CertificateDer<'_>,
        dss: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        if self.is_pinned(cert) {
            rustls::crypto::verify_tls13_signature(
                message,
                cert,
                dss,
                &self.provider.signature_verification_algorithms,
            )
        } else {
            self.platform.verify_tls13_signature(message, cert, dss)
        }
    }

    fn supported_verify_schemes(&self) -> Vec<rustls::SignatureScheme> {
        self.platform.supported_verify_schemes()
    }

    fn root_hint_subjects(&self) -> Option<&[rustls::DistinguishedName]> {
        self.platform.root_hint_subjects()
    }
}

/// The few fields of an X.509 certificate (DER) the pinning needs, read
/// by hand (webpki keeps its parser to itself): RFC 5280's
/// `Certificate ::= SEQUENCE { tbsCertificate SEQUENCE { [0] version
/// OPTIONAL, serialNumber, signature, issuer, validity SEQUENCE {
/// notBefore, notAfter }, subject, ... }, ... }`.
mod der {
    pub struct Fields<'a> {
        pub issuer: &'a [u8],
        pub subject: &'a [u8],
        /// UNIX seconds.
        pub not_before: i64,
        pub not_after: i64,
    }

    pub fn fields(cert: &[u8]) -> Option<Fields<'_>> {
        let (0x30, cert, _) = tlv(cert)? else {
            return None;
        };
        let (0x30, mut tbs, _) = tlv(cert)? else {
            return None;
        };
        if tbs.first() == Some(&0xa0) {
            tbs = tlv(tbs)?.2;
        }
        let (_serial, _, tbs) = tlv(tbs)?;
        let (_signature, _, tbs) = tlv(tbs)?;
        let (0x30, _, rest) = tlv(tbs)? else {
            return None;
        };
        let issuer = &tbs[..tbs.len() - rest.len()];
        let (0x30, validity, tbs) = tlv(rest)? else {
            return None;
        };
        let (0x30, _, rest) = tlv(tbs)? else {
            return None;
        };
        let subject = &tbs[..tbs.len() - rest.len()];
        let (tag, not_before, validity) = tlv(validity)?;
        let not_before = time(tag, not_before)?;
        let (tag, not_after, _) = tlv(validity)?;
        let not_after = time(tag, not_after)?;
        Some(Fields {
            issuer,
            subject,
            not_before,
            not_after,
        })
    }

    /// (tag, contents, what follows) of the DER element `b` starts with.
    fn tlv(b: &[u8]) -> Option<(u8, &[u8], &[u8])> {
        let (&tag, b) = b.split_first()?;
        let (&first, mut b) = b.split_first()?;
        let len = if first < 0x80 {
            usize::from(first)
        } else {
            let n = usize::from(first & 0x7f);
            if n == 0 || n > 4 {
                return None;
            }
            let (bytes, rest) = b.split_at_checked(n)?;
            b = rest;
            bytes
                .iter()
                .fold(0usize, |len, &byte| (len << 8) | usize::from(byte))
        };
        let (contents, rest) = b.split_at_checked(len)?;
        Some((tag, contents, rest))
    }

    /// A UTCTime (tag 0x17, `YYMMDDHHMMSSZ`, 1950-2049) or
    /// GeneralizedTime (0x18, `YYYYMMDDHHMMSSZ`) in UNIX seconds.
    fn time(tag: u8, text: &[u8]) -> Option<i64> {
        let text = std::str::from_utf8(text).ok()?;
        let full = match (tag, text.len()) {
            (0x17, 13) => {
                let yy: u32 = text.get(..2)?.parse().ok()?;
                format!("{}{text}", if yy >= 50 { "19" } else { "20" })
            }
            (0x18, 15) => text.to_owned(),
            _ => return None,
        };
        chrono::NaiveDateTime::parse_from_str(&full, "%Y%m%d%H%M%SZ")
            .ok()
            .map(|t| t.and_utc().timestamp())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn err(r: Result<reqwest::ClientBuilder, ClientError>) -> String {
        match r {
            Ok(_) => panic!("an error was expected"),
            Err(e) => e.to_string(),
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
        let key_only = dir.path().join("key.pem");
        std::fs::write(
            &key_only,
            rcgen::KeyPair::generate().unwrap().serialize_pem(),
        )
        .unwrap();
        let e = err(with_ca_file(
            client_builder(),
            &key_only,
            "influxdb.ca_file",
        ));
        assert_eq!(
            e,
            format!(
                "influxdb.ca_file {}: no PEM certificate in it (-----BEGIN CERTIFICATE-----)",
                key_only.display()
            )
        );
    }

    use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, KeyPair};
    use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName, UnixTime};
    use std::sync::Arc;

    /// A certificate as `openssl req -x509 -subj /CN=<cn>` makes it: self-signed,
    /// basicConstraints CA:TRUE, no subjectAltName.
    fn self_signed(
        cn: &str,
        edit: impl FnOnce(&mut CertificateParams),
    ) -> (rcgen::Certificate, KeyPair) {
        let key = KeyPair::generate().unwrap();
        let mut p = CertificateParams::new(Vec::<String>::new()).unwrap();
        p.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        p.distinguished_name.push(DnType::CommonName, cn);
        edit(&mut p);
        (p.self_signed(&key).unwrap(), key)
    }

    /// The client configuration of [`with_ca_file`] for a CA file holding
    /// `pems`.
    fn client(dir: &std::path::Path, pems: &[&str]) -> rustls::ClientConfig {
        let path = dir.join("ca.pem");
        std::fs::write(&path, pems.concat()).unwrap();
        ca_file_config(&path, "influxdb.ca_file").unwrap()
    }

    #[derive(Debug)]
    struct Fixed(Arc<rustls::sign::CertifiedKey>);

    impl rustls::server::ResolvesServerCert for Fixed {
        fn resolve(
            &self,
            _: rustls::server::ClientHello<'_>,
        ) -> Option<Arc<rustls::sign::CertifiedKey>> {
            Some(self.0.clone())
        }
    }

    /// A server presenting `cert` and signing with `key` (which need not
    /// be the certificate's), speaking `version`.
    fn server(
        cert: &CertificateDer<'static>,
        key: &KeyPair,
        version: &'static rustls::SupportedProtocolVersion,
    ) -> rustls::ServerConfig {
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let signing = provider
            .key_provider
            .load_private_key(PrivateKeyDer::Pkcs8(key.serialize_der().into()))
            .unwrap();
        let certified = rustls::sign::CertifiedKey::new(vec![cert.clone()], signing);
        rustls::ServerConfig::builder_with_provider(provider)
            .with_protocol_versions(&[version])
            .unwrap()
            .with_no_client_auth()
            .with_cert_resolver(Arc::new(Fixed(Arc::new(certified))))
    }

    /// A handshake in memory between `client` (asking for `name`) and
    /// `server`: the client's error if any.
    fn handshake(
        client: rustls::ClientConfig,
        server: rustls::ServerConfig,
        name: &str,
    ) -> Result<(), rustls::Error> {
        let name = ServerName::try_from(name.to_owned()).unwrap();
        let mut c = rustls::ClientConnection::new(Arc::new(client), name).unwrap();
        let mut s = rustls::ServerConnection::new(Arc::new(server)).unwrap();
        // A TLS 1.2 or 1.3 handshake is a few flights each way.
        for _ in 0..8 {
            if !c.is_handshaking() && !s.is_handshaking() {
                return Ok(());
            }
            let mut buf = Vec::new();
            while c.wants_write() {
                c.write_tls(&mut buf).unwrap();
            }
            let mut rd = &buf[..];
            while !rd.is_empty() {
                s.read_tls(&mut rd).unwrap();
                s.process_new_packets()
                    .unwrap_or_else(|e| panic!("server: {e}"));
            }
            buf.clear();
            while s.wants_write() {
                s.write_tls(&mut buf).unwrap();
            }
            let mut rd = &buf[..];
            while !rd.is_empty() {
                c.read_tls(&mut rd).unwrap();
                c.process_new_packets()?;
            }
        }
        panic!("the handshake did not end");
    }

    const VERSIONS: [&rustls::SupportedProtocolVersion; 2] =
        [&rustls::version::TLS13, &rustls::version::TLS12];

    #[test]
    fn the_pinned_certificate_is_trusted_whatever_its_names() {
        let dir = tempfile::tempdir().unwrap();
        let (cert, key) = self_signed("somehost", |_| {});
        for version in VERSIONS {
            for name in ["127.0.0.1", "somehost", "elsewhere.example"] {
                let r = handshake(
                    client(dir.path(), &[&cert.pem()]),
                    server(cert.der(), &key, version),
                    name,
                );
                assert!(r.is_ok(), "{version:?} {name}: {r:?}");
            }
        }
        // Among other certificates of the file too.
        let (other, _) = self_signed("otherhost", |_| {});
        let r = handshake(
            client(dir.path(), &[&other.pem(), &cert.pem()]),
            server(cert.der(), &key, &rustls::version::TLS13),
            "127.0.0.1",
        );
        assert!(r.is_ok(), "{r:?}");
    }

    #[test]
    fn another_self_signed_certificate_is_refused_naming_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let (pinned, _) = self_signed("somehost", |_| {});
        let (cert, key) = self_signed("somehost", |_| {});
        for version in VERSIONS {
            let e = handshake(
                client(dir.path(), &[&pinned.pem()]),
                server(cert.der(), &key, version),
                "somehost",
            )
            .unwrap_err()
            .to_string();
            assert!(
                e.contains(&format!(
                    "the server's certificate is self-signed and is not one of the certificates in influxdb.ca_file {}",
                    dir.path().join("ca.pem").display()
                )) && e.contains("CaUsedAsEndEntity"),
                "{e}"
            );
        }
    }

    #[test]
    fn the_handshake_signature_of_a_pinned_certificate_is_verified() {
        // The pinned certificate presented by a server without its key.
        let dir = tempfile::tempdir().unwrap();
        let (cert, _) = self_signed("somehost", |_| {});
        let impostor = KeyPair::generate().unwrap();
        for version in VERSIONS {
            let e = handshake(
                client(dir.path(), &[&cert.pem()]),
                server(cert.der(), &impostor, version),
                "somehost",
            )
            .unwrap_err();
            assert!(
                matches!(
                    e,
                    rustls::Error::InvalidCertificate(rustls::CertificateError::BadSignature)
                ),
                "{version:?}: {e}"
            );
        }
    }

    #[test]
    fn a_pinned_certificate_out_of_its_validity_period_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let (cert, key) = self_signed("somehost", |p| {
            p.not_before = rcgen::date_time_ymd(2000, 1, 1);
            p.not_after = rcgen::date_time_ymd(2001, 2, 3);
        });
        let ca = dir.path().join("ca.pem");
        let e = handshake(
            client(dir.path(), &[&cert.pem()]),
            server(cert.der(), &key, &rustls::version::TLS13),
            "somehost",
        )
        .unwrap_err()
        .to_string();
        assert!(
            e.contains(&format!(
                "the server's certificate is the one pinned by influxdb.ca_file {}, and it expired on 2001-02-03 00:00:00 UTC (now ",
                ca.display()
            )),
            "{e}"
        );

        // The bounds, with the verifier alone.
        use rustls::client::danger::ServerCertVerifier;
        let (cert, _) = self_signed("somehost", |p| {
            p.not_before = rcgen::date_time_ymd(2030, 1, 1);
            p.not_after = rcgen::date_time_ymd(2060, 1, 1);
        });
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let v = PinnedOrPlatform::new(vec![cert.der().clone()], provider, "CA file", &ca).unwrap();
        let at = |y: i32| {
            let t = rcgen::date_time_ymd(y, 1, 1).unix_timestamp();
            UnixTime::since_unix_epoch(std::time::Duration::from_secs(t as u64))
        };
        let name = ServerName::try_from("127.0.0.1").unwrap();
        let verify = |y| v.verify_server_cert(cert.der(), &[], &name, &[], at(y));
        assert!(verify(2030).is_ok());
        assert!(verify(2045).is_ok());
        assert!(verify(2060).is_ok());
        let e = verify(2029).unwrap_err().to_string();
        assert_eq!(
            e,
            format!(
                "other error: the server's certificate is the one pinned by CA file {}, and it is not valid before 2030-01-01 00:00:00 UTC (now 2029-01-01 00:00:00 UTC)",
                ca.display()
            )
        );
        // GeneralizedTime (from 2050 on).
        let e = verify(2061).unwrap_err().to_string();
        assert!(e.contains("expired on 2060-01-01 00:00:00 UTC"), "{e}");
    }

    #[test]
    fn a_server_certificate_signed_by_the_files_ca_is_verified_as_before() {
        let dir = tempfile::tempdir().unwrap();
        let mut p = CertificateParams::new(Vec::<String>::new()).unwrap();
        p.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        p.distinguished_name.push(DnType::CommonName, "test CA");
        let ca = rcgen::CertifiedIssuer::self_signed(p, KeyPair::generate().unwrap()).unwrap();
        let key = KeyPair::generate().unwrap();
        let leaf = CertificateParams::new(vec!["127.0.0.1".to_owned()])
            .unwrap()
            .signed_by(&key, &ca)
            .unwrap();
        for version in VERSIONS {
            let r = handshake(
                client(dir.path(), &[&ca.pem()]),
                server(leaf.der(), &key, version),
                "127.0.0.1",
            );
            assert!(r.is_ok(), "{version:?}: {r:?}");
            // Its names are checked (it is not pinned).
            let e = handshake(
                client(dir.path(), &[&ca.pem()]),
                server(leaf.der(), &key, version),
                "somehost",
            )
            .unwrap_err();
            assert!(
                matches!(
                    e,
                    rustls::Error::InvalidCertificate(
                        rustls::CertificateError::NotValidForNameContext { .. }
                    )
                ),
                "{e}"
            );
        }
    }

    #[test]
    fn the_client_offers_h2_and_http1_as_reqwest_does() {
        let dir = tempfile::tempdir().unwrap();
        let (cert, _) = self_signed("somehost", |_| {});
        let c = client(dir.path(), &[&cert.pem()]);
        assert_eq!(c.alpn_protocols, vec![b"h2".to_vec(), b"http/1.1".to_vec()]);
        assert!(c.enable_sni);
    }
}
