//! `ubuntu-metrics influxdb provision`: make an InfluxDB 1.x server ready for
//! the station, as the first generation's charm did.
//!
//! Against a server with authentication (`[http] auth-enabled = true`) and
//! an admin, or a fresh server (no user yet, auth on or off), it ensures:
//!
//! | what | how |
//! | --- | --- |
//! | an admin user (default `admin`) | created on a server without users, with the given password or a generated one |
//! | the database (default `metrics`) | `CREATE DATABASE` when `SHOW DATABASES` lacks it |
//! | its retention (optional, `--retention 52w`) | `ALTER RETENTION POLICY` of the database's default policy when its duration differs |
//! | user `collector` with WRITE on the database | created with a generated password; `GRANT WRITE` when `SHOW GRANTS` differs |
//! | user `grafana` with READ on the database | the same with `GRANT READ` |
//!
//! Generated passwords (32 alphanumerics from the operating system's CSPRNG)
//! are written to `<secrets dir>/<user>-password`, mode 0600, *before* the
//! user is created, so a password is never lost. Existing users keep their
//! passwords; a password file left by an earlier run is reused for a user
//! that is missing (a server set up again). Every step says what it did or
//! that nothing was needed; a second run changes nothing and says so.
//!
//! Credentials never travel on a command line: the admin password comes from
//! the environment (`INFLUXDB_ADMIN_PASSWORD`), a file
//! (`--admin-password-file`), or the admin password file of an earlier run.

use std::fmt;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// The environment variable holding the admin password.
pub const ADMIN_PASSWORD_ENV: &str = "INFLUXDB_ADMIN_PASSWORD";
/// The environment variable naming the admin user.
pub const ADMIN_USER_ENV: &str = "INFLUXDB_ADMIN_USER";
/// Where the password files go by default.
pub const DEFAULT_SECRETS_DIR: &str = "/etc/ubuntu-metrics/secrets";

/// What to provision.
#[derive(Debug, Clone)]
pub struct Options {
    /// The server's base URL (a path prefix is kept).
    pub url: url::Url,
    pub database: String,
    /// The default retention policy's duration, when it should be set.
    pub retention: Option<Retention>,
    pub admin_user: String,
    /// The admin password, when the operator gave one.
    pub admin_password: Option<String>,
    pub collector_user: String,
    pub grafana_user: String,
    pub secrets_dir: PathBuf,
    pub ca_file: Option<PathBuf>,
    pub insecure_skip_verify: bool,
    pub timeout: Duration,
}

/// A retention duration: whole seconds, or infinite.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Retention {
    Infinite,
    Seconds(u64),
}

/// A `--retention` that is not one: the text, and why.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("retention {text:?}: {why}")]
pub struct RetentionError {
    pub text: String,
    pub why: String,
}

impl Retention {
    /// `inf` / `infinite` / `0`, or a time span (`52w`, `365d`, `8760h`) of
    /// at least one hour (InfluxDB's minimum).
    pub fn parse(s: &str) -> Result<Retention, RetentionError> {
        let bad = |why: String| RetentionError {
            text: s.to_owned(),
            why,
        };
        let t = s.trim();
        if t.eq_ignore_ascii_case("inf") || t.eq_ignore_ascii_case("infinite") || t == "0" {
            return Ok(Retention::Infinite);
        }
        let usec = crate::model::timespan::parse_usec(t).map_err(|e| bad(e.to_string()))?;
        let secs = usec / 1_000_000;
        if secs < 3600 {
            return Err(bad(
                "InfluxDB keeps data at least 1h (or `inf` for ever)".to_owned()
            ));
        }
        Ok(Retention::Seconds(secs))
    }

    /// From InfluxDB's `SHOW RETENTION POLICIES` duration (Go's
    /// `time.Duration` text, e.g. `8736h0m0s`; `0s` is infinite).
    pub fn from_influx(s: &str) -> Option<Retention> {
        let secs = parse_go_duration(s)?;
        Some(if secs == 0 {
            Retention::Infinite
        } else {
            Retention::Seconds(secs)
        })
    }

    /// As an InfluxQL duration literal.
    pub fn to_influxql(self) -> String {
        match self {
            Retention::Infinite => "INF".into(),
            Retention::Seconds(s) if s % 3600 == 0 => format!("{}h", s / 3600),
            Retention::Seconds(s) => format!("{s}s"),
        }
    }
}

impl fmt::Display for Retention {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            Retention::Infinite => write!(f, "infinite"),
            Retention::Seconds(s) if s % (7 * 86400) == 0 => write!(f, "{}w", s / (7 * 86400)),
            Retention::Seconds(s) if s % 86400 == 0 => write!(f, "{}d", s / 86400),
            Retention::Seconds(s) if s % 3600 == 0 => write!(f, "{}h", s / 3600),
            Retention::Seconds(s) => write!(f, "{s}s"),
        }
    }
}

/// Go's `time.Duration.String()` text to whole seconds (`8736h0m0s`,
/// `1h30m`, `0s`, `1.5h`); `None` when it is not such a text.
pub fn parse_go_duration(s: &str) -> Option<u64> {
    let s = s.trim();
    if s.is_empty() {
        return None;
    }
    let mut total = 0f64;
    let mut rest = s;
    while !rest.is_empty() {
        let num_len = rest
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .unwrap_or(rest.len());
        if num_len == 0 {
            return None;
        }
        let n: f64 = rest[..num_len].parse().ok()?;
        rest = &rest[num_len..];
        let unit_len = rest
            .find(|c: char| c.is_ascii_digit() || c == '.')
            .unwrap_or(rest.len());
        let factor = match &rest[..unit_len] {
            "h" => 3600.0,
            "m" => 60.0,
            "s" => 1.0,
            "ms" => 1e-3,
            "us" | "µs" | "μs" => 1e-6,
            "ns" => 1e-9,
            _ => return None,
        };
        total += n * factor;
        rest = &rest[unit_len..];
    }
    Some(total.floor() as u64)
}

/// One thing provisioning looked at.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Step {
    /// It changed something on the server or on disk.
    Changed(String),
    /// It found things as they should be.
    Unchanged(String),
    /// Something the operator should know (no change).
    Note(String),
}

impl fmt::Display for Step {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Step::Changed(s) => write!(f, "changed:   {s}"),
            Step::Unchanged(s) => write!(f, "unchanged: {s}"),
            Step::Note(s) => write!(f, "note:      {s}"),
        }
    }
}

/// What a run did, step by step.
#[derive(Debug, Default)]
pub struct Report {
    pub url: String,
    pub steps: Vec<Step>,
    /// The password files of users this run created, by user.
    pub secrets: Vec<(String, PathBuf)>,
}

impl Report {
    pub fn changes(&self) -> usize {
        self.steps
            .iter()
            .filter(|s| matches!(s, Step::Changed(_)))
            .count()
    }

    fn changed(&mut self, s: impl Into<String>) {
        let s = s.into();
        tracing::debug!("provision: {s}");
        self.steps.push(Step::Changed(s));
    }

    fn unchanged(&mut self, s: impl Into<String>) {
        self.steps.push(Step::Unchanged(s.into()));
    }

    fn note(&mut self, s: impl Into<String>) {
        self.steps.push(Step::Note(s.into()));
    }
}

impl fmt::Display for Report {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(f, "InfluxDB at {}:", self.url)?;
        for s in &self.steps {
            writeln!(f, "  {s}")?;
        }
        match self.changes() {
            0 => writeln!(f, "nothing changed: the server was already provisioned"),
            1 => writeln!(f, "1 change"),
            n => writeln!(f, "{n} changes"),
        }
    }
}

/// Why provisioning stopped. Steps done before it are in `report`.
#[derive(Debug)]
pub struct ProvisionError {
    pub message: String,
    pub report: Report,
}

impl fmt::Display for ProvisionError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.message)
    }
}

impl std::error::Error for ProvisionError {}

/// A failed query.
#[derive(Debug, Clone, PartialEq)]
enum QueryError {
    /// HTTP 401/403 (or a statement refused for lack of rights).
    Auth(String),
    /// Anything else: transport, server, statement.
    Other(String),
}

impl fmt::Display for QueryError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            QueryError::Auth(m) | QueryError::Other(m) => write!(f, "{m}"),
        }
    }
}

/// The rows of one statement's result: (column -> value) per row, over all
/// series.
type Rows = Vec<serde_json::Map<String, serde_json::Value>>;

/// A minimal InfluxDB 1.x `/query` client.
struct Influx {
    client: reqwest::Client,
    query_url: url::Url,
    display_url: String,
    auth: Option<(String, String)>,
}

impl Influx {
    fn new(opts: &Options) -> Result<Influx, String> {
        let mut base = opts.url.clone();
        if !matches!(base.scheme(), "http" | "https") {
            return Err(format!(
                "InfluxDB URL {:?}: the scheme must be http or https",
                crate::support::text::redact_url(opts.url.as_str())
            ));
        }
        if !base.username().is_empty() || base.password().is_some() {
            return Err(format!(
                "InfluxDB URL {}: give no credentials in the URL (use {ADMIN_USER_ENV} and {ADMIN_PASSWORD_ENV} or --admin-password-file)",
                base.host_str().unwrap_or("?")
            ));
        }
        base.set_query(None);
        let display_url = base.to_string();
        let mut query_url = base.clone();
        let prefix = base.path().trim_end_matches('/').to_owned();
        query_url.set_path(&format!("{prefix}/query"));
        if opts.insecure_skip_verify {
            tracing::warn!(
                "insecure_skip_verify: the InfluxDB server's TLS certificate is NOT checked"
            );
        }
        let client = crate::support::tls::ClientSpec::new("the HTTP client", opts.timeout)
            .ca_file(opts.ca_file.as_deref(), "CA file")
            .skip_verify(opts.insecure_skip_verify)
            .build()?;
        Ok(Influx {
            client,
            query_url,
            display_url,
            auth: None,
        })
    }

    /// Runs one InfluxQL statement (POST, as InfluxDB requires for
    /// statements that change things) and returns its rows.
    async fn query(&self, q: &str) -> Result<Rows, QueryError> {
        let body = url::form_urlencoded::Serializer::new(String::new())
            .append_pair("q", q)
            .finish();
        let mut req = self
            .client
            .post(self.query_url.clone())
            .header(
                reqwest::header::CONTENT_TYPE,
                "application/x-www-form-urlencoded",
            )
            .body(body);
        if let Some((u, p)) = &self.auth {
            req = req.basic_auth(u, Some(p));
        }
        let statement = redact_statement(q);
        let resp = req.send().await.map_err(|e| {
            let mut m = e.to_string();
            let mut src = std::error::Error::source(&e);
            while let Some(s) = src {
                m.push_str(": ");
                m.push_str(&s.to_string());
                src = s.source();
            }
            if m.contains("certificate") || m.contains("UnknownIssuer") {
                return QueryError::Other(format!(
                    "cannot verify the TLS certificate of InfluxDB at {}: {m}; {}",
                    self.display_url,
                    crate::sinks::influxdb::tls_advice(&m, &self.display_url)
                ));
            }
            QueryError::Other(format!(
                "cannot reach InfluxDB at {}: {m}",
                self.display_url
            ))
        })?;
        let status = resp.status().as_u16();
        let text = resp.text().await.unwrap_or_default();
        let v: serde_json::Value = serde_json::from_str(&text).unwrap_or(serde_json::Value::Null);
        let top_error = v.get("error").and_then(|e| e.as_str()).map(str::to_owned);
        if status == 401 || status == 403 {
            return Err(QueryError::Auth(
                top_error.unwrap_or_else(|| format!("HTTP {status}")),
            ));
        }
        if let Some(e) = top_error {
            return Err(QueryError::Other(format!(
                "InfluxDB refused {statement}: {e}"
            )));
        }
        if !(200..300).contains(&status) {
            return Err(QueryError::Other(format!(
                "InfluxDB answered HTTP {status} to {statement}: {}",
                crate::sources::http::summarize_body(&text)
            )));
        }
        let result = &v["results"][0];
        if let Some(e) = result.get("error").and_then(|e| e.as_str()) {
            return Err(
                if e.contains("not authorized") || e.contains("requires admin") {
                    QueryError::Auth(e.to_owned())
                } else {
                    QueryError::Other(format!("InfluxDB refused {statement}: {e}"))
                },
            );
        }
        Ok(rows_of(result))
    }
}

fn rows_of(result: &serde_json::Value) -> Rows {
    let mut out = Vec::new();
    for series in result["series"].as_array().into_iter().flatten() {
        let cols: Vec<&str> = series["columns"]
            .as_array()
            .into_iter()
            .flatten()
            .map(|c| c.as_str().unwrap_or(""))
            .collect();
        for row in series["values"].as_array().into_iter().flatten() {
            let mut m = serde_json::Map::new();
            for (c, val) in cols.iter().zip(row.as_array().into_iter().flatten()) {
                m.insert((*c).to_owned(), val.clone());
            }
            out.push(m);
        }
    }
    out
}

/// A statement as it may appear in a message: any password literal hidden.
fn redact_statement(q: &str) -> String {
    match q.find(" WITH PASSWORD ") {
        Some(i) => format!("{} WITH PASSWORD <redacted>", &q[..i]),
        None => q.to_owned(),
    }
}

/// An InfluxQL identifier, double-quoted.
pub fn ident(s: &str) -> String {
    format!("\"{}\"", s.replace('\\', "\\\\").replace('"', "\\\""))
}

/// An InfluxQL string literal, single-quoted.
pub fn string_literal(s: &str) -> String {
    format!("'{}'", s.replace('\\', "\\\\").replace('\'', "\\'"))
}

/// A password of 32 characters from [A-Za-z0-9], drawn from the operating
/// system's CSPRNG (rejection sampling: no bias).
pub fn generate_password() -> Result<String, RandomError> {
    const ALPHABET: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789";
    const LEN: usize = 32;
    // The largest multiple of 62 below 256: bytes at or above it are drawn again.
    const LIMIT: u8 = (256 / ALPHABET.len() * ALPHABET.len()) as u8;
    let mut out = String::with_capacity(LEN);
    let mut buf = [0u8; 64];
    while out.len() < LEN {
        getrandom::fill(&mut buf).map_err(RandomError)?;
        for b in buf {
            if b < LIMIT && out.len() < LEN {
                out.push(ALPHABET[usize::from(b) % ALPHABET.len()] as char);
            }
        }
    }
    Ok(out)
}

/// The operating system's random generator failed.
#[derive(Debug, thiserror::Error)]
#[error("the operating system's random generator failed: {0}")]
pub struct RandomError(getrandom::Error);

/// The password file of a user.
pub fn secret_path(dir: &Path, user: &str) -> PathBuf {
    let safe: String = user
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '-' || c == '_' || c == '.' {
                c
            } else {
                '_'
            }
        })
        .collect();
    dir.join(format!("{safe}-password"))
}

/// Reads a password file (one line; the trailing newline is not part of it).
pub fn read_secret(path: &Path) -> Result<Option<String>, String> {
    match std::fs::read_to_string(path) {
        Ok(s) => {
            let p = s.trim_end_matches(['\n', '\r']).to_owned();
            if p.is_empty() {
                Err(format!("{}: the password file is empty", path.display()))
            } else {
                Ok(Some(p))
            }
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(format!("{}: {e}", path.display())),
    }
}

/// A password file being written: the password sits in `<file>.new` (mode
/// 0600) until the user exists, then [`PendingSecret::commit`] renames it
/// into place; dropped uncommitted, it is removed.
struct PendingSecret {
    tmp: PathBuf,
    path: PathBuf,
    done: bool,
}

impl PendingSecret {
    fn write(path: &Path, password: &str) -> Result<PendingSecret, String> {
        use std::io::Write;
        use std::os::unix::fs::OpenOptionsExt;
        let mut tmp = path.as_os_str().to_owned();
        tmp.push(".new");
        let tmp = PathBuf::from(tmp);
        let _ = std::fs::remove_file(&tmp);
        let mut f = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(&tmp)
            .map_err(|e| format!("cannot write {}: {e}", tmp.display()))?;
        f.write_all(format!("{password}\n").as_bytes())
            .and_then(|_| f.sync_all())
            .map_err(|e| format!("cannot write {}: {e}", tmp.display()))?;
        Ok(PendingSecret {
            tmp,
            path: path.to_owned(),
            done: false,
        })
    }

    fn commit(mut self) -> Result<(), String> {
        std::fs::rename(&self.tmp, &self.path)
            .map_err(|e| format!("cannot rename {}: {e}", self.tmp.display()))?;
        self.done = true;
        Ok(())
    }
}

impl Drop for PendingSecret {
    fn drop(&mut self) {
        if !self.done {
            let _ = std::fs::remove_file(&self.tmp);
        }
    }
}

/// The secrets directory: created mode 0700 when missing.
fn ensure_secrets_dir(dir: &Path, report: &mut Report) -> Result<(), String> {
    use std::os::unix::fs::DirBuilderExt;
    if dir.is_dir() {
        return Ok(());
    }
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)
        .map_err(|e| format!("cannot create the secrets directory {}: {e}", dir.display()))?;
    report.changed(format!(
        "created the secrets directory {} (mode 0700)",
        dir.display()
    ));
    Ok(())
}

/// A password file readable by others is made 0600.
fn tighten_mode(path: &Path, report: &mut Report) -> Result<(), String> {
    use std::os::unix::fs::PermissionsExt;
    let Ok(meta) = std::fs::metadata(path) else {
        return Ok(());
    };
    let mode = meta.permissions().mode() & 0o777;
    if mode & 0o077 != 0 {
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600))
            .map_err(|e| format!("cannot chmod {}: {e}", path.display()))?;
        report.changed(format!(
            "{} was mode {mode:04o}; made it 0600",
            path.display()
        ));
    }
    Ok(())
}

/// A user as `SHOW USERS` lists it.
#[derive(Debug, Clone)]
struct User {
    name: String,
    admin: bool,
}

fn users_of(rows: &Rows) -> Vec<User> {
    rows.iter()
        .filter_map(|r| {
            Some(User {
                name: r.get("user")?.as_str()?.to_owned(),
                admin: r.get("admin").and_then(|a| a.as_bool()).unwrap_or(false),
            })
        })
        .collect()
}

/// How the server answered an anonymous `SHOW USERS`.
enum Access {
    /// Authentication is off: anyone may do anything.
    Open(Vec<User>),
    /// Authentication is on and there is no user yet.
    FreshWithAuth,
    /// Authentication is on and users exist.
    Closed,
}

async fn probe(influx: &Influx) -> Result<Access, String> {
    match influx.query("SHOW USERS").await {
        Ok(rows) => Ok(Access::Open(users_of(&rows))),
        Err(QueryError::Auth(m)) if m.contains("create admin user first") => {
            Ok(Access::FreshWithAuth)
        }
        Err(QueryError::Auth(_)) => Ok(Access::Closed),
        Err(QueryError::Other(m)) => Err(m),
    }
}

/// Provisions the server; see the module documentation.
pub async fn provision(opts: &Options) -> Result<Report, ProvisionError> {
    let mut report = Report {
        url: String::new(),
        ..Report::default()
    };
    match run(opts, &mut report).await {
        Ok(()) => Ok(report),
        Err(message) => Err(ProvisionError { message, report }),
    }
}

async fn run(opts: &Options, report: &mut Report) -> Result<(), String> {
    let mut influx = Influx::new(opts)?;
    report.url = influx.display_url.clone();
    check_names(opts)?;
    let admin_file = secret_path(&opts.secrets_dir, &opts.admin_user);
    let given = match &opts.admin_password {
        Some(p) => Some(p.clone()),
        None => read_secret(&admin_file)?,
    };
    let users = existing_users(opts, &mut influx, report, &admin_file, given.as_ref()).await?;
    ensure_admin(opts, &mut influx, report, &users, &admin_file, given).await?;
    if influx.auth.is_none() {
        // Auth is off and the admin exists: its password is not needed.
        if let Some(pw) = opts.admin_password.clone() {
            influx.auth = Some((opts.admin_user.clone(), pw));
        }
    }
    let q = |e: QueryError| e.to_string();
    ensure_database(opts, &influx, report).await?;
    ensure_retention(opts, &influx, report).await?;

    // 4. The collector and grafana users and their one privilege.
    let users = users_of(&influx.query("SHOW USERS").await.map_err(q)?);
    for (user, privilege) in [
        (&opts.collector_user, "WRITE"),
        (&opts.grafana_user, "READ"),
    ] {
        ensure_user(opts, &influx, report, &users, user).await?;
        ensure_grant(opts, &influx, report, user, privilege).await?;
    }
    Ok(())
}

/// Every name given is set, and the three users are three.
fn check_names(opts: &Options) -> Result<(), String> {
    for (what, name) in [
        ("admin", &opts.admin_user),
        ("collector", &opts.collector_user),
        ("grafana", &opts.grafana_user),
        ("database", &opts.database),
    ] {
        if name.trim().is_empty() {
            return Err(format!("the {what} name is empty"));
        }
    }
    if opts.collector_user == opts.grafana_user
        || opts.collector_user == opts.admin_user
        || opts.grafana_user == opts.admin_user
    {
        return Err("the admin, collector and grafana users must be three different users".into());
    }
    Ok(())
}

/// Step 1, who may do what: the server's users, as the admin when
/// authentication is on (with the admin password `given`).
async fn existing_users(
    opts: &Options,
    influx: &mut Influx,
    report: &mut Report,
    admin_file: &Path,
    given: Option<&String>,
) -> Result<Vec<User>, String> {
    let access = probe(influx).await?;
    Ok(match access {
        Access::Open(users) => {
            report.note(
                "authentication is disabled on this server: anyone can read and write. Set \
                 `auth-enabled = true` in the [http] section of influxdb.conf and restart influxd \
                 for the users below to matter",
            );
            users
        }
        Access::FreshWithAuth => Vec::new(),
        Access::Closed => {
            let Some(pw) = given.cloned() else {
                return Err(format!(
                    "the server requires authentication: give the password of its admin user {:?} \
                     in the environment variable {ADMIN_PASSWORD_ENV} or with --admin-password-file \
                     (it is read from {} when that file exists)",
                    opts.admin_user,
                    admin_file.display()
                ));
            };
            influx.auth = Some((opts.admin_user.clone(), pw));
            match influx.query("SHOW USERS").await {
                Ok(rows) => users_of(&rows),
                Err(QueryError::Auth(m)) => {
                    return Err(format!(
                        "InfluxDB refused the admin credentials of {:?} ({m}); check the admin \
                         user ({ADMIN_USER_ENV} / --admin-user) and its password",
                        opts.admin_user
                    ));
                }
                Err(QueryError::Other(m)) => return Err(m),
            }
        }
    })
}

/// Step 1 (continued): the admin exists (and we know its password), or we
/// create it.
async fn ensure_admin(
    opts: &Options,
    influx: &mut Influx,
    report: &mut Report,
    users: &[User],
    admin_file: &Path,
    given: Option<String>,
) -> Result<(), String> {
    let admin = users.iter().find(|u| u.name == opts.admin_user);
    match admin {
        Some(u) if u.admin => {
            report.unchanged(format!("admin user {:?} exists", opts.admin_user));
        }
        Some(_) => {
            return Err(format!(
                "user {:?} exists but is not an admin; name the server's admin with --admin-user \
                 (or {ADMIN_USER_ENV})",
                opts.admin_user
            ));
        }
        None => {
            if !users.is_empty() && !users.iter().any(|u| u.admin) {
                report.note("the server has users but no admin");
            }
            let (password, pending, origin) = match (&opts.admin_password, given) {
                (Some(p), _) => (p.clone(), None, "the given password".to_owned()),
                (None, Some(p)) => (p, None, format!("the password in {}", admin_file.display())),
                (None, None) => {
                    ensure_secrets_dir(&opts.secrets_dir, report)?;
                    let p = generate_password().map_err(|e| e.to_string())?;
                    let pending = PendingSecret::write(admin_file, &p)?;
                    (
                        p,
                        Some(pending),
                        format!(
                            "a generated password, written to {} (mode 0600)",
                            admin_file.display()
                        ),
                    )
                }
            };
            influx
                .query(&format!(
                    "CREATE USER {} WITH PASSWORD {} WITH ALL PRIVILEGES",
                    ident(&opts.admin_user),
                    string_literal(&password)
                ))
                .await
                .map_err(|e| e.to_string())?;
            if let Some(p) = pending {
                p.commit()?;
                report
                    .secrets
                    .push((opts.admin_user.clone(), admin_file.to_owned()));
            }
            report.changed(format!(
                "created admin user {:?} with {origin}",
                opts.admin_user
            ));
            influx.auth = Some((opts.admin_user.clone(), password));
        }
    }
    Ok(())
}

/// Step 2: the database.
async fn ensure_database(
    opts: &Options,
    influx: &Influx,
    report: &mut Report,
) -> Result<(), String> {
    let q = |e: QueryError| e.to_string();
    let dbs = influx.query("SHOW DATABASES").await.map_err(q)?;
    let exists = dbs
        .iter()
        .any(|r| r.get("name").and_then(|n| n.as_str()) == Some(opts.database.as_str()));
    if exists {
        report.unchanged(format!("database {:?} exists", opts.database));
    } else {
        influx
            .query(&format!("CREATE DATABASE {}", ident(&opts.database)))
            .await
            .map_err(q)?;
        report.changed(format!("created database {:?}", opts.database));
    }

    Ok(())
}

/// Step 3: its default retention policy.
async fn ensure_retention(
    opts: &Options,
    influx: &Influx,
    report: &mut Report,
) -> Result<(), String> {
    let q = |e: QueryError| e.to_string();
    let rps = influx
        .query(&format!(
            "SHOW RETENTION POLICIES ON {}",
            ident(&opts.database)
        ))
        .await
        .map_err(q)?;
    let default = rps
        .iter()
        .find(|r| r.get("default").and_then(|d| d.as_bool()) == Some(true));
    match (default, opts.retention) {
        (None, _) => report.note(format!(
            "database {:?} has no default retention policy",
            opts.database
        )),
        (Some(rp), wanted) => {
            let name = rp
                .get("name")
                .and_then(|n| n.as_str())
                .unwrap_or("autogen")
                .to_owned();
            let current = rp
                .get("duration")
                .and_then(|d| d.as_str())
                .and_then(Retention::from_influx);
            let shown = current.map_or_else(|| "unknown".to_owned(), |c| c.to_string());
            match wanted {
                Some(w) if Some(w) != current => {
                    influx
                        .query(&format!(
                            "ALTER RETENTION POLICY {} ON {} DURATION {}",
                            ident(&name),
                            ident(&opts.database),
                            w.to_influxql()
                        ))
                        .await
                        .map_err(q)?;
                    report.changed(format!(
                        "retention of {:?} (policy {name:?}): {shown} -> {w}",
                        opts.database
                    ));
                }
                Some(_) => report.unchanged(format!(
                    "retention of {:?} (policy {name:?}) is {shown}",
                    opts.database
                )),
                None => report.unchanged(format!(
                    "retention of {:?} (policy {name:?}) is {shown} (--retention sets it)",
                    opts.database
                )),
            }
        }
    }
    Ok(())
}

/// Step 4: a collector or grafana user: kept if it exists (no longer an
/// admin), else created with the password in its file or a generated one.
async fn ensure_user(
    opts: &Options,
    influx: &Influx,
    report: &mut Report,
    users: &[User],
    user: &String,
) -> Result<(), String> {
    let q = |e: QueryError| e.to_string();
    let file = secret_path(&opts.secrets_dir, user);
    match users.iter().find(|u| &u.name == user) {
        Some(u) => {
            let note = if file.exists() {
                tighten_mode(&file, report)?;
                format!("its password is in {}", file.display())
            } else {
                format!(
                    "no password file {}: its password is whatever it was set to",
                    file.display()
                )
            };
            report.unchanged(format!("user {user:?} exists, password kept ({note})"));
            if u.admin {
                influx
                    .query(&format!("REVOKE ALL PRIVILEGES FROM {}", ident(user)))
                    .await
                    .map_err(q)?;
                report.changed(format!("revoked the admin rights of {user:?}"));
            }
        }
        None => {
            let (password, pending, origin) = match read_secret(&file)? {
                Some(p) => {
                    tighten_mode(&file, report)?;
                    (
                        p,
                        None,
                        format!("the password already in {}", file.display()),
                    )
                }
                None => {
                    ensure_secrets_dir(&opts.secrets_dir, report)?;
                    let p = generate_password().map_err(|e| e.to_string())?;
                    let pending = PendingSecret::write(&file, &p)?;
                    (
                        p,
                        Some(pending),
                        format!(
                            "a generated password, written to {} (mode 0600)",
                            file.display()
                        ),
                    )
                }
            };
            influx
                .query(&format!(
                    "CREATE USER {} WITH PASSWORD {}",
                    ident(user),
                    string_literal(&password)
                ))
                .await
                .map_err(q)?;
            if let Some(p) = pending {
                p.commit()?;
            }
            report.secrets.push((user.clone(), file.clone()));
            report.changed(format!("created user {user:?} with {origin}"));
        }
    }
    Ok(())
}

/// Step 4 (continued): the user's one privilege on the database.
async fn ensure_grant(
    opts: &Options,
    influx: &Influx,
    report: &mut Report,
    user: &String,
    privilege: &str,
) -> Result<(), String> {
    let q = |e: QueryError| e.to_string();
    let grants = influx
        .query(&format!("SHOW GRANTS FOR {}", ident(user)))
        .await
        .map_err(q)?;
    let current = grants
        .iter()
        .find(|r| r.get("database").and_then(|d| d.as_str()) == Some(opts.database.as_str()))
        .and_then(|r| r.get("privilege").and_then(|p| p.as_str()))
        .unwrap_or("NO PRIVILEGES")
        .to_owned();
    if current == privilege {
        report.unchanged(format!(
            "user {user:?} has {privilege} on {:?}",
            opts.database
        ));
    } else {
        // GRANT replaces the user's privilege on that database.
        influx
            .query(&format!(
                "GRANT {privilege} ON {} TO {}",
                ident(&opts.database),
                ident(user)
            ))
            .await
            .map_err(q)?;
        report.changed(format!(
            "granted {privilege} on {:?} to {user:?} (had {current})",
            opts.database
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retention_parses_spans_and_infinity() {
        assert_eq!(
            Retention::parse("52w").unwrap(),
            Retention::Seconds(52 * 7 * 86400)
        );
        assert_eq!(Retention::parse("inf").unwrap(), Retention::Infinite);
        assert_eq!(Retention::parse("INF").unwrap(), Retention::Infinite);
        assert_eq!(Retention::parse("0").unwrap(), Retention::Infinite);
        assert_eq!(Retention::parse("1h").unwrap(), Retention::Seconds(3600));
        assert!(Retention::parse("30m").is_err());
        assert!(Retention::parse("soon").is_err());
        assert_eq!(Retention::parse("52w").unwrap().to_string(), "52w");
        assert_eq!(Retention::parse("52w").unwrap().to_influxql(), "8736h");
        assert_eq!(Retention::Infinite.to_influxql(), "INF");
        assert_eq!(Retention::Seconds(5400).to_influxql(), "5400s");
    }

    #[test]
    fn influx_durations_compare_with_spans() {
        assert_eq!(
            Retention::from_influx("8736h0m0s"),
            Some(Retention::parse("52w").unwrap())
        );
        assert_eq!(Retention::from_influx("0s"), Some(Retention::Infinite));
        assert_eq!(parse_go_duration("1h30m"), Some(5400));
        assert_eq!(parse_go_duration("1.5h"), Some(5400));
        assert_eq!(parse_go_duration("500ms"), Some(0));
        assert_eq!(parse_go_duration(""), None);
        assert_eq!(parse_go_duration("h"), None);
        assert_eq!(parse_go_duration("3x"), None);
    }

    #[test]
    fn passwords_are_long_alphanumeric_and_differ() {
        let a = generate_password().unwrap();
        let b = generate_password().unwrap();
        assert_eq!(a.len(), 32);
        assert!(a.chars().all(|c| c.is_ascii_alphanumeric()), "{a}");
        assert_ne!(a, b);
    }

    #[test]
    fn quoting() {
        assert_eq!(ident("met\"rics"), "\"met\\\"rics\"");
        assert_eq!(string_literal("it's"), "'it\\'s'");
        assert_eq!(string_literal("a\\b"), "'a\\\\b'");
        assert_eq!(
            redact_statement("CREATE USER \"c\" WITH PASSWORD 'x' WITH ALL PRIVILEGES"),
            "CREATE USER \"c\" WITH PASSWORD <redacted>"
        );
        assert_eq!(redact_statement("SHOW USERS"), "SHOW USERS");
    }

    #[test]
    fn secret_paths_are_safe_names() {
        let d = Path::new("/s");
        assert_eq!(
            secret_path(d, "collector"),
            PathBuf::from("/s/collector-password")
        );
        assert_eq!(
            secret_path(d, "../x y"),
            PathBuf::from("/s/.._x_y-password")
        );
    }

    #[test]
    fn pending_secret_is_0600_and_removed_unless_committed() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("u-password");
        let p = PendingSecret::write(&path, "pw").unwrap();
        drop(p);
        assert!(!path.exists());
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 0);
        let p = PendingSecret::write(&path, "pw").unwrap();
        p.commit().unwrap();
        assert_eq!(std::fs::read_to_string(&path).unwrap(), "pw\n");
        let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
        assert_eq!(read_secret(&path).unwrap().as_deref(), Some("pw"));
        assert_eq!(read_secret(&dir.path().join("none")).unwrap(), None);
    }

    #[test]
    fn report_says_when_nothing_changed() {
        let mut r = Report {
            url: "http://x/".into(),
            ..Report::default()
        };
        r.unchanged("database \"metrics\" exists");
        let text = r.to_string();
        assert!(
            text.contains("nothing changed") && text.contains("unchanged: database"),
            "{text}"
        );
        r.changed("created user \"grafana\"");
        assert!(r.to_string().ends_with("1 change\n"));
    }
}
