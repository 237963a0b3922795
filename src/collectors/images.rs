//! images: age and size of the daily images on cdimage.ubuntu.com.
//!
//! What it writes: [`schema`].
//!
//! Source: the rsync server [`CDIMAGE`]
//! (`rsync://cdimage.ubuntu.com/cdimage/`), listed, never downloaded, by
//! the `rsync` client (see [`crate::sources::rsync`]): every path pattern
//! of [`PATTERNS`] with every image suffix of [`SUFFIXES`], 15 paths, in
//! one call (one connection), killed after `rsync_timeout` (default 10s).
//! Should that call fail, each path is listed in its own call, all at once
//! ([`CONCURRENCY`]): a failed or timed-out call is then logged and the
//! other listings are used; every call failing is an error. One call costs
//! the server one connection instead of 15 and the station a tenth of the
//! CPU, in the time of one listing (`cargo bench --bench round` measures
//! the ways). The active series come from Launchpad, asked while rsync
//! lists (the listing does not depend on them); if Launchpad fails, the
//! listing is abandoned.
//!
//! The rules that turn a listed path into a point are in [`image`]; they
//! are the first generation's, kept literally (a top-level `daily-legacy/`
//! is a flavor, `ubuntu-core-24-…` images have `release=ubuntu`, two paths
//! giving one tag set are two points).

use crate::collector::LAUNCHPAD;
use crate::collector::{
    Collector, CollectorError, CollectorOptions, Configured, Context, OptionError, Parts, Spec,
};
use crate::config::SourceUrl;
use crate::model::panel::{Agg, Board, Kind, Panel, Panels};
use crate::model::point::Point;
use crate::model::schema::{Measurement, int, tag};
use crate::model::timespan::TimeSpan;
use crate::sources::rsync::{Entry, RsyncError};
use chrono::{DateTime, Utc};
use regex::Regex;
use std::sync::LazyLock;
use std::time::Duration;

/// The collector: its spec and its typed options.
pub struct Images {
    spec: Spec,
    options: Configured<Options>,
}

/// cdimage's rsync module.
pub static CDIMAGE: SourceUrl = SourceUrl::new(
    "cdimage_rsync",
    "rsync://cdimage.ubuntu.com/cdimage/",
    "cdimage's rsync module, listed (never downloaded)",
    "",
);

/// What it writes.
pub fn schema() -> Vec<Measurement> {
    vec![Measurement::new(
        "daily_image_details",
        &[
            tag("flavor", ""),
            tag("release", ""),
            tag("current_or_pending", ""),
            tag("architecture", ""),
            tag("image_type", "left out when none"),
        ],
        &[int("age", "days"), int("size", "bytes")],
    )]
}

/// The path patterns listed, each followed by one of [`SUFFIXES`].
pub const PATTERNS: [&str; 5] = [
    "daily*/*/*",
    "*/daily*/*/*",
    "*/dvd/*/*",
    "*/*/daily*/*/*",
    "*/*/dvd/*/*",
];

/// The image suffixes.
pub const SUFFIXES: [&str; 3] = [".iso", ".img.xz", ".wsl"];

/// rsync calls running at once when each path is listed apart (after the
/// one call failed): all of them. Measured against the fixtures with 20 ms
/// round trips, one listing takes about 0.25 s (some seven round trips plus
/// rsync's own start and stop); 4 at a time made the collector take about
/// 1 s, all 15 at once about 0.33 s.
pub const CONCURRENCY: usize = PATTERNS.len() * SUFFIXES.len();

const DEFAULT_TIMEOUT: Duration = Duration::from_secs(10);

/// Series and architecture from an image's file name.
static NAME: LazyLock<Regex> =
    LazyLock::new(|| Regex::new(r"^(\w+)-.*-([\w\+]+)\..+").expect("valid regex"));

/// Its panels: one row on its dashboard.
fn panels() -> Panels {
    Panels {
        board: Board::Images,
        title: "Daily images".into(),
        panels: vec![
            Panel::new(Kind::Timeseries, "Oldest current image per flavor", "daily_image_details", &["age"], &["flavor"])
                .filter("\"current_or_pending\" = 'current'")
                .agg(Agg::Max)
                .unit("d")
                .describe("Days since the oldest `current` image of each flavor was built: a flavor whose images stopped building climbs."),
            Panel::new(Kind::Timeseries, "Oldest pending image per flavor", "daily_image_details", &["age"], &["flavor"])
                .filter("\"current_or_pending\" = 'pending'")
                .agg(Agg::Max)
                .unit("d"),
            Panel::new(Kind::Timeseries, "Largest image per flavor", "daily_image_details", &["size"], &["flavor"])
                .agg(Agg::Max)
                .unit("decbytes")
                .width(24),
            Panel::new(Kind::Table, "Images (latest)", "daily_image_details", &["age", "size"], &["flavor", "release", "image_type", "architecture", "current_or_pending"])
                .field_units(&[("age", "d"), ("size", "decbytes")]),
        ],
    }
}

impl Default for Images {
    fn default() -> Images {
        Images {
            spec: Spec::new(
                "images",
                "age and size of the current and pending daily images on cdimage (rsync listing)",
            )
            .schema(schema())
            .sources(vec![CDIMAGE.clone(), LAUNCHPAD.clone()])
            .panels(panels())
            .options(&[(
            "rsync_timeout",
            "time allowed to each rsync listing call before it is killed (systemd time span, default 10s)",
        )]),
            options: Configured::default(),
        }
    }
}

#[async_trait::async_trait]
impl Collector for Images {
    fn spec(&self) -> &Spec {
        &self.spec
    }

    fn configure(&self, options: &toml::Table) -> Result<Option<Box<dyn Collector>>, OptionError> {
        Ok(Some(Box::new(Images {
            spec: self.spec.clone(),
            options: Configured::new(options)?,
        })))
    }

    async fn collect(&self, ctx: &Context) -> Result<Vec<Point>, CollectorError> {
        let ctx = &ctx.with_options(self.options.current(&ctx.options)?);
        // Checked first: a bad option should not cost a Launchpad request.
        timeout_option(ctx)?;
        let active = async {
            let series = ctx.launchpad().ubuntu_series().await?;
            Ok::<Vec<String>, CollectorError>(
                series
                    .into_iter()
                    .filter(|s| s.active)
                    .map(|s| s.name)
                    .collect(),
            )
        };
        let (active, entries) = futures::try_join!(active, list(ctx))?;
        Ok(points(&entries, &active, ctx.now))
    }
}

/// `[collectors.images]` options, checked when the configuration loads
/// and read by `collect`.
#[derive(Debug, Clone, serde::Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Options {
    /// Time allowed to each rsync listing call: a systemd time span (a
    /// bare TOML integer is seconds), more than zero.
    pub rsync_timeout: TimeSpan,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            rsync_timeout: TimeSpan::from_secs(DEFAULT_TIMEOUT.as_secs()),
        }
    }
}

impl CollectorOptions for Options {
    fn check(&self) -> Result<(), (&'static str, String)> {
        if self.rsync_timeout.as_usec() == 0 {
            return Err((
                "rsync_timeout",
                format!("{}: must be more than zero", self.rsync_timeout),
            ));
        }
        Ok(())
    }
}

/// The `rsync_timeout` option.
fn timeout_option(ctx: &Context) -> Result<Duration, CollectorError> {
    let options: Options = ctx.options_as()?;
    Ok(options.rsync_timeout.as_duration())
}

/// Lists the server and builds the points, given the active series.
pub async fn collect_for_series(
    ctx: &Context,
    active: &[String],
) -> Result<Vec<Point>, CollectorError> {
    let entries = list(ctx).await?;
    Ok(points(&entries, active, ctx.now))
}

/// Every listing's entries (see [`merge`]).
async fn list(ctx: &Context) -> Result<Vec<Entry>, CollectorError> {
    let timeout = timeout_option(ctx)?;
    let base = &ctx.source(&CDIMAGE);
    let rsync = ctx.rsync(timeout).map_err(|e| {
        CollectorError::Other(format!(
            "{base}: cannot create a scratch directory for rsync: {e}"
        ))
    })?;
    let urls = urls(base);
    match rsync.list_together(&urls).await {
        Ok(listing) => {
            listing.log_partial(base);
            Ok(in_pattern_order(listing.entries))
        }
        Err(e @ RsyncError::NotInstalled { .. }) => Err(CollectorError::Other(e.to_string())),
        // Each path apart would not reach the host either.
        Err(RsyncError::Unreachable { url, message }) => {
            Err(CollectorError::unreachable(url, message))
        }
        Err(e) => {
            // Each path apart, so that what failed them all together (a
            // hang, a dropped connection, a listing over the limit) fails
            // only its own path. Said at debug level: what fails again is
            // then reported once, by path.
            tracing::debug!(
                "images: {}; listing each of the {} paths in its own call",
                CollectorError::Other(e.to_string()),
                urls.len()
            );
            let results = rsync.list_all(&urls, CONCURRENCY).await;
            merge(&urls, results)
        }
    }
}

/// The index in `patterns` ([`paths`] split on `/`, built once by the
/// caller; the order of [`urls`]) of the (pattern, suffix) whose listing
/// gives `path`: the first whose components match the path's first ones
/// (a directory matched by a pattern is listed with its content). None for
/// the directories rsync adds above the matches (`-R`).
fn pattern_of(path: &str, patterns: &[Vec<&str>]) -> Option<usize> {
    let components: Vec<&str> = path.split('/').collect();
    patterns.iter().position(|parts| {
        parts.len() <= components.len() && parts.iter().zip(&components).all(|(p, c)| glob(p, c))
    })
}

/// Whether `name` matches the rsync wildcard `pattern`, whose only
/// wildcard is `*` (any characters: one path component is matched at a
/// time).
fn glob(pattern: &str, name: &str) -> bool {
    let mut pieces = pattern.split('*');
    let first = pieces.next().unwrap_or("");
    let Some(mut rest) = name.strip_prefix(first) else {
        return false;
    };
    let pieces: Vec<&str> = pieces.collect();
    let Some((last, middle)) = pieces.split_last() else {
        return rest.is_empty();
    };
    for piece in middle {
        match rest.find(piece) {
            Some(at) => rest = &rest[at + piece.len()..],
            None => return false,
        }
    }
    rest.len() >= last.len() && rest.ends_with(last)
}

/// The entries of one call for every path in the order 15 calls, one per
/// path, gave them: by path pattern (in the order of [`urls`]), each in
/// rsync's order. Points keep that order, and where two images give the
/// same tag set the last one written is the one stored.
pub fn in_pattern_order(entries: Vec<Entry>) -> Vec<Entry> {
    let paths = paths();
    let patterns: Vec<Vec<&str>> = paths.iter().map(|p| p.split('/').collect()).collect();
    let mut keyed: Vec<(usize, Entry)> = entries
        .into_iter()
        .map(|e| (pattern_of(&e.path, &patterns).unwrap_or(usize::MAX), e))
        .collect();
    keyed.sort_by_key(|(i, _)| *i);
    keyed.into_iter().map(|(_, e)| e).collect()
}

/// The paths listed, one per (pattern, suffix): `<pattern><suffix>`,
/// pattern-major.
fn paths() -> Vec<String> {
    PATTERNS
        .iter()
        .flat_map(|p| SUFFIXES.iter().map(move |s| format!("{p}{s}")))
        .collect()
}

/// One URL per (pattern, suffix): `<base><pattern><suffix>`.
pub fn urls(base: &str) -> Vec<String> {
    let base = if base.ends_with('/') {
        base.to_owned()
    } else {
        format!("{base}/")
    };
    paths().into_iter().map(|p| format!("{base}{p}")).collect()
}

/// The entries of every listing that worked ([`Parts`]: a failed call is
/// logged, unless every call failed, which is an error naming each); rsync
/// missing is said at once.
fn merge(
    urls: &[String],
    results: Vec<Result<crate::sources::rsync::Listing, RsyncError>>,
) -> Result<Vec<Entry>, CollectorError> {
    let mut entries = Vec::new();
    let mut parts = Parts::new("images");
    for (url, result) in urls.iter().zip(results) {
        match result {
            Ok(listing) => {
                listing.log_partial(url);
                entries.extend(listing.entries);
                parts.ok([]);
            }
            Err(e @ RsyncError::NotInstalled { .. }) => {
                return Err(CollectorError::Other(e.to_string()));
            }
            Err(RsyncError::Unreachable { url, message }) => {
                parts.fail("", CollectorError::unreachable(url, message));
            }
            // The error names the URL (redacted when shown).
            Err(e) => parts.fail("", CollectorError::Other(e.to_string())),
        }
    }
    parts.finish()?;
    Ok(entries)
}

/// One image, as the spec's rules read it from a listed path.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Image<'a> {
    pub flavor: &'a str,
    pub release: &'a str,
    pub current_or_pending: &'static str,
    pub architecture: &'a str,
    pub image_type: Option<&'a str>,
}

/// Applies the spec's rules to a listed path; `None` when the path is not
/// an image to report (each skip is logged at debug level).
pub fn image<'a>(path: &'a str, active: &[String]) -> Option<Image<'a>> {
    if !SUFFIXES.iter().any(|s| path.ends_with(s)) {
        return None;
    }
    let current_or_pending = if path.contains("current") {
        "current"
    } else if path.contains("pending") {
        "pending"
    } else {
        return None;
    };
    let components: Vec<&str> = path.split('/').collect();
    let first = components[0];
    if first == "ubuntu" {
        return None;
    }
    let flavor = if first == "daily-live"
        || first == "daily-preinstalled"
        || active.iter().any(|s| s == first)
    {
        "ubuntu"
    } else {
        first
    };
    let image_type = components.iter().find_map(|c| {
        if let Some(t) = c.strip_prefix("daily-") {
            Some(t)
        } else if *c == "dvd" {
            Some("dvd")
        } else {
            None
        }
    });
    let name = components.last().copied().unwrap_or(path);
    if name.starts_with("ubuntu-core-16") {
        tracing::debug!("{path}: ubuntu-core-16 image, skipped");
        return None;
    }
    let Some(caps) = NAME.captures(name) else {
        tracing::debug!("{path}: file name is not <series>-...-<arch>.<ext>, skipped");
        return None;
    };
    let (Some(release), Some(architecture)) = (caps.get(1), caps.get(2)) else {
        return None;
    };
    let release = release.as_str();
    if flavor == "ubuntustudio"
        && image_type == Some("dvd")
        && release != "jammy"
        && release != "noble"
    {
        tracing::debug!("{path}: Ubuntu Studio dvd image of {release}, skipped");
        return None;
    }
    Some(Image {
        flavor,
        release,
        current_or_pending,
        architecture: architecture.as_str(),
        image_type,
    })
}

/// Whole days (floor) from `modified` to `now`.
fn age_days(modified: DateTime<Utc>, now: DateTime<Utc>) -> i64 {
    (now - modified).num_seconds().div_euclid(86_400)
}

/// One point per kept entry, duplicates included.
pub fn points(entries: &[Entry], active: &[String], now: DateTime<Utc>) -> Vec<Point> {
    entries
        .iter()
        .filter_map(|e| {
            let img = image(&e.path, active)?;
            Some(
                Point::new("daily_image_details")
                    .tag("flavor", img.flavor)
                    .tag("release", img.release)
                    .tag("current_or_pending", img.current_or_pending)
                    .tag("architecture", img.architecture)
                    .tag_opt("image_type", img.image_type)
                    .field("age", age_days(e.modified, now))
                    .field("size", e.size)
                    .at(now),
            )
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::support::test_support::now;
    use chrono::TimeZone;

    /// Its option is read when the configuration loads: a bad value is
    /// refused then, naming its key.
    #[test]
    fn the_rsync_timeout_is_checked_when_configured() {
        let ok: toml::Table = toml::from_str("rsync_timeout = \"30s\"").unwrap();
        assert!(Images::default().configure(&ok).unwrap().is_some());
        for bad in ["rsync_timeout = \"0\"", "rsync_timeout = \"soon\""] {
            let bad: toml::Table = toml::from_str(bad).unwrap();
            let e = Images::default().configure(&bad).err().unwrap();
            assert_eq!(e.key, "rsync_timeout", "{e}");
        }
    }

    fn active() -> Vec<String> {
        ["tumbling", "stonking", "resolute", "noble", "jammy"]
            .map(String::from)
            .to_vec()
    }

    /// (flavor, release, current_or_pending, architecture, image_type)
    fn tags(path: &str) -> Option<(String, String, String, String, Option<String>)> {
        image(path, &active()).map(|i| {
            (
                i.flavor.into(),
                i.release.into(),
                i.current_or_pending.into(),
                i.architecture.into(),
                i.image_type.map(String::from),
            )
        })
    }

    fn t(
        f: &str,
        r: &str,
        c: &str,
        a: &str,
        it: Option<&str>,
    ) -> Option<(String, String, String, String, Option<String>)> {
        Some((f.into(), r.into(), c.into(), a.into(), it.map(String::from)))
    }

    #[test]
    fn urls_are_pattern_then_suffix() {
        let u = urls("rsync://h/cdimage/");
        assert_eq!(u.len(), 15);
        assert_eq!(u[0], "rsync://h/cdimage/daily*/*/*.iso");
        assert_eq!(u[4], "rsync://h/cdimage/*/daily*/*/*.img.xz");
        assert_eq!(u[14], "rsync://h/cdimage/*/*/dvd/*/*.wsl");
        assert_eq!(
            urls("rsync://h/cdimage")[0],
            "rsync://h/cdimage/daily*/*/*.iso"
        );
    }

    #[test]
    fn rsync_wildcards_match_one_component() {
        for (pattern, name, yes) in [
            ("daily*", "daily-live", true),
            ("daily*", "daily", true),
            ("daily*", "kubuntu", false),
            ("*", "anything", true),
            ("*", "", true),
            ("*.iso", "x.iso", true),
            ("*.iso", "x.iso.zsync", false),
            ("*.img.xz", "a-b.img.xz", true),
            ("*.img.xz", ".img.x", false),
            ("dvd", "dvd", true),
            ("dvd", "dvds", false),
            ("a*b*c", "abc", true),
            ("a*b*c", "a-b-b-c", true),
            ("a*b*c", "acb", false),
            ("*a*", "bab", true),
            // A middle piece and the last one do not share characters.
            ("*ab*ab", "ab", false),
            ("*ab*ab", "xabab", true),
            ("x*bc*c", "xbc", false),
        ] {
            assert_eq!(glob(pattern, name), yes, "{pattern} ~ {name}");
        }
    }

    #[test]
    fn each_path_belongs_to_the_pattern_that_lists_it() {
        let paths = paths();
        let patterns: Vec<Vec<&str>> = paths.iter().map(|p| p.split('/').collect()).collect();
        let at = |p: &str| pattern_of(p, &patterns);
        // urls(): pattern-major, suffix-minor.
        assert_eq!(at("daily-live/current/x-amd64.iso"), Some(0));
        assert_eq!(at("daily-live/current/x-amd64.wsl"), Some(2));
        assert_eq!(at("kubuntu/daily-live/current/x-amd64.img.xz"), Some(4));
        assert_eq!(at("ubuntustudio/dvd/current/x-dvd-amd64.iso"), Some(6));
        assert_eq!(
            at("ubuntu-server/noble/daily-preinstalled/current/x.img.xz"),
            Some(10)
        );
        assert_eq!(at("ubuntu/noble/dvd/pending/x.wsl"), Some(14));
        // A directory matched as an image name is listed with its content.
        assert_eq!(at("daily-live/current/odd.iso/inside.iso"), Some(0));
        // The directories rsync -R adds above the matches.
        assert_eq!(at("daily-live"), None);
        assert_eq!(at("kubuntu/daily-live/current"), None);
    }

    #[test]
    fn one_listing_is_put_in_the_order_of_the_calls_per_path() {
        let entry = |path: &str| Entry {
            size: 1,
            modified: now(),
            path: path.into(),
        };
        // rsync's one sorted list: the top-level series directory before
        // the daily-live one would be the other way round in 15 calls.
        let one = vec![
            entry("daily-live"),
            entry("noble/daily-live/current/noble-desktop-amd64.iso"),
            entry("daily-live/current/noble-desktop-amd64.wsl"),
            entry("daily-live/current/noble-desktop-amd64.iso"),
            entry("daily-live/pending/noble-desktop-amd64.iso"),
        ];
        let paths: Vec<String> = in_pattern_order(one).into_iter().map(|e| e.path).collect();
        assert_eq!(
            paths,
            [
                "daily-live/current/noble-desktop-amd64.iso",
                "daily-live/pending/noble-desktop-amd64.iso",
                "daily-live/current/noble-desktop-amd64.wsl",
                "noble/daily-live/current/noble-desktop-amd64.iso",
                "daily-live",
            ]
        );
    }

    #[test]
    fn suffix_and_current_or_pending() {
        // not an image suffix (directories, checksums, zsync, other case)
        assert_eq!(tags("daily-live/current"), None);
        assert_eq!(tags("daily-live/current/SHA256SUMS"), None);
        assert_eq!(
            tags("daily-live/current/tumbling-desktop-amd64.iso.zsync"),
            None
        );
        assert_eq!(tags("daily-live/current/tumbling-desktop-amd64.ISO"), None);
        assert_eq!(tags("daily-live/current/tumbling-desktop-amd64.xz"), None);
        // neither current nor pending
        assert_eq!(tags("daily-live/20261124/tumbling-desktop-amd64.iso"), None);
        // substrings, anywhere in the path; current wins
        assert_eq!(
            tags("daily-live/pending/tumbling-desktop-amd64.iso"),
            t("ubuntu", "tumbling", "pending", "amd64", Some("live"))
        );
        assert_eq!(
            tags("daily-live/current-old/tumbling-desktop-amd64.wsl"),
            t("ubuntu", "tumbling", "current", "amd64", Some("live"))
        );
        assert_eq!(
            tags("daily-live/pending/current/tumbling-desktop-amd64.iso")
                .unwrap()
                .2,
            "current"
        );
        assert_eq!(
            tags("daily-live/20261124/tumbling-desktop-pending-amd64.img.xz")
                .unwrap()
                .2,
            "pending"
        );
    }

    #[test]
    fn flavors() {
        assert_eq!(
            tags("daily-live/current/tumbling-desktop-amd64.iso")
                .unwrap()
                .0,
            "ubuntu"
        );
        assert_eq!(
            tags("daily-preinstalled/current/tumbling-preinstalled-server-arm64+raspi.img.xz")
                .unwrap()
                .0,
            "ubuntu"
        );
        // an active series as first component
        assert_eq!(
            tags("noble/daily-live/current/noble-desktop-amd64.iso")
                .unwrap()
                .0,
            "ubuntu"
        );
        assert_eq!(
            tags("jammy/ubuntu-wsl/daily-live/current/jammy-wsl-amd64.wsl")
                .unwrap()
                .0,
            "ubuntu"
        );
        // an inactive series gives its name
        assert_eq!(
            tags("questing/daily-live/current/questing-desktop-amd64.iso"),
            t("questing", "questing", "current", "amd64", Some("live"))
        );
        // a daily-* directory other than live and preinstalled is a flavor
        assert_eq!(
            tags("daily-legacy/current/tumbling-desktop-legacy-amd64.iso"),
            t(
                "daily-legacy",
                "tumbling",
                "current",
                "amd64",
                Some("legacy")
            )
        );
        assert_eq!(
            tags("kubuntu/daily-live/current/tumbling-desktop-amd64.iso")
                .unwrap()
                .0,
            "kubuntu"
        );
        // ubuntu/ is skipped, wherever it leads
        assert_eq!(
            tags("ubuntu/daily-live/current/tumbling-desktop-amd64.iso"),
            None
        );
        assert_eq!(
            tags("ubuntu/noble/daily-live/current/noble-desktop-amd64.iso"),
            None
        );
        // without the active series, series directories are flavors
        assert_eq!(
            image("noble/daily-live/current/noble-desktop-amd64.iso", &[])
                .unwrap()
                .flavor,
            "noble"
        );
    }

    #[test]
    fn image_types() {
        assert_eq!(
            tags("daily-preinstalled/current/tumbling-preinstalled-server-arm64+raspi.img.xz")
                .unwrap()
                .4
                .as_deref(),
            Some("preinstalled")
        );
        assert_eq!(
            tags("ubuntu-server/noble/daily-live/current/noble-live-server-amd64.iso")
                .unwrap()
                .4
                .as_deref(),
            Some("live")
        );
        assert_eq!(
            tags("edubuntu/dvd/current/tumbling-dvd-amd64.iso")
                .unwrap()
                .4
                .as_deref(),
            Some("dvd")
        );
        // `daily` alone is no image type
        assert_eq!(
            tags("daily/current/tumbling-server-s390x.iso"),
            t("daily", "tumbling", "current", "s390x", None)
        );
        // the first such component wins
        assert_eq!(
            tags("kubuntu/dvd/daily-live/current/tumbling-dvd-amd64.iso")
                .unwrap()
                .4
                .as_deref(),
            Some("dvd")
        );
        assert_eq!(
            tags("kubuntu/daily-live/dvd/current/tumbling-dvd-amd64.iso")
                .unwrap()
                .4
                .as_deref(),
            Some("live")
        );
        // `dvds` is not `dvd`
        assert_eq!(
            tags("kubuntu/dvds/current/tumbling-dvd-amd64.iso")
                .unwrap()
                .4,
            None
        );
    }

    #[test]
    fn series_and_architecture_from_the_file_name() {
        assert_eq!(
            tags("daily-live/current/tumbling-desktop-arm64.iso"),
            t("ubuntu", "tumbling", "current", "arm64", Some("live"))
        );
        // `+` words
        assert_eq!(
            tags(
                "daily-preinstalled/current/tumbling-preinstalled-server-riscv64+unmatched.img.xz"
            )
            .unwrap()
            .3,
            "riscv64+unmatched"
        );
        assert_eq!(
            tags("ubuntu-server/daily-live/current/tumbling-live-server-arm64+largemem.iso")
                .unwrap()
                .3,
            "arm64+largemem"
        );
        // the word after the LAST `-`, whatever it is
        assert_eq!(
            tags("daily-preinstalled/current/tumbling-preinstalled-desktop-arm64+intel-iot.img.xz")
                .unwrap()
                .3,
            "iot"
        );
        assert_eq!(
            tags("kubuntu/daily-live/current/tumbling-desktop-amd64_v3.iso")
                .unwrap()
                .3,
            "amd64_v3"
        );
        // the word before the first `.` after it
        assert_eq!(
            tags("kubuntu/daily-live/current/tumbling-desktop-amd64.v2.iso")
                .unwrap()
                .3,
            "amd64"
        );
        // ubuntu-core-24 gives release ubuntu
        assert_eq!(
            tags("ubuntu-core/daily-preinstalled/current/ubuntu-core-24-amd64.img.xz"),
            t(
                "ubuntu-core",
                "ubuntu",
                "current",
                "amd64",
                Some("preinstalled")
            )
        );
        // release-named files
        assert_eq!(
            tags("kubuntu/daily-live/current/ubuntu-24.04.3-desktop-amd64.iso")
                .unwrap()
                .1,
            "ubuntu"
        );
        // no match: one `-` only, no `-`, nothing between `-` and `.`, a
        // non-word series
        assert_eq!(tags("lubuntu/daily-live/current/tumbling-amd64.iso"), None);
        assert_eq!(tags("lubuntu/daily-live/current/unreadable.iso"), None);
        assert_eq!(
            tags("lubuntu/daily-live/current/tumbling-desktop-.iso"),
            None
        );
        assert_eq!(
            tags("lubuntu/daily-live/current/.hidden-desktop-amd64.iso"),
            None
        );
    }

    #[test]
    fn ubuntu_core_16_is_skipped() {
        assert_eq!(
            tags("ubuntu-core/daily-preinstalled/current/ubuntu-core-16-pi2.img.xz"),
            None
        );
        assert_eq!(
            tags("ubuntu-core/daily-preinstalled/current/ubuntu-core-16-amd64.img.xz"),
            None
        );
        assert!(
            tags("ubuntu-core/daily-preinstalled/current/ubuntu-core-18-amd64.img.xz").is_some()
        );
    }

    #[test]
    fn ubuntustudio_dvd_only_for_jammy_and_noble() {
        assert!(tags("ubuntustudio/dvd/current/noble-dvd-amd64.iso").is_some());
        assert!(tags("ubuntustudio/dvd/current/jammy-dvd-amd64.iso").is_some());
        assert!(tags("ubuntustudio/noble/dvd/current/noble-dvd-amd64.iso").is_some());
        assert_eq!(
            tags("ubuntustudio/dvd/current/resolute-dvd-amd64.iso"),
            None
        );
        assert_eq!(
            tags("ubuntustudio/plucky/dvd/current/plucky-dvd-amd64.iso"),
            None
        );
        // named -dvd- but not in a dvd tree: kept
        assert_eq!(
            tags("ubuntustudio/daily-live/current/tumbling-dvd-amd64.iso"),
            t("ubuntustudio", "tumbling", "current", "amd64", Some("live"))
        );
        // the series of the file name decides, not the directory
        assert_eq!(
            tags("ubuntustudio/noble/dvd/current/resolute-dvd-amd64.iso"),
            None
        );
        // daily-dvd is image type dvd too
        assert_eq!(
            tags("ubuntustudio/daily-dvd/current/tumbling-dvd-amd64.iso"),
            None
        );
        // other flavors' dvd trees are kept
        assert!(tags("edubuntu/dvd/current/resolute-dvd-amd64.iso").is_some());
    }

    #[test]
    fn ages_sizes_and_duplicates() {
        let e = |path: &str, size: u64, modified: DateTime<Utc>| Entry {
            size,
            modified,
            path: path.into(),
        };
        let at = |d, h, m, s| Utc.with_ymd_and_hms(2026, 11, d, h, m, s).unwrap();
        let p = "daily-live/current/tumbling-desktop-amd64.iso";
        let entries = [
            e(p, 6_012_345_678, at(24, 5, 30, 0)),
            e(p, 6_012_345_678, at(24, 5, 30, 0)),
            e(p, 1, at(23, 12, 0, 0)),
            e(p, 2, at(23, 12, 0, 1)),
            e(p, 3, at(1, 0, 0, 0)),
            // in the future: floor gives -1
            e(p, 4, at(24, 18, 0, 0)),
            e("daily-live/current", 4096, at(24, 5, 30, 0)),
        ];
        let got: Vec<String> = points(&entries, &active(), now())
            .iter()
            .map(|p| p.to_line().unwrap())
            .collect();
        let line = |age: i64, size: u64| {
            format!(
                "daily_image_details,architecture=amd64,current_or_pending=current,flavor=ubuntu,image_type=live,release=tumbling age={age}i,size={size}i 1795521600000000000"
            )
        };
        assert_eq!(
            got,
            [
                line(0, 6_012_345_678),
                line(0, 6_012_345_678),
                line(1, 1),
                line(0, 2),
                line(23, 3),
                line(-1, 4)
            ]
        );
    }

    #[test]
    fn image_type_left_out_when_none() {
        let entries = [Entry {
            size: 5,
            modified: now(),
            path: "daily/current/tumbling-server-s390x.iso".into(),
        }];
        let got = points(&entries, &active(), now())[0].to_line().unwrap();
        assert_eq!(
            got,
            "daily_image_details,architecture=s390x,current_or_pending=current,flavor=daily,release=tumbling age=0i,size=5i 1795521600000000000"
        );
    }

    #[test]
    fn failures_are_logged_until_all_fail() {
        let urls = vec!["u1".to_owned(), "u2".to_owned()];
        let ok = crate::sources::rsync::Listing {
            entries: vec![Entry {
                size: 1,
                modified: now(),
                path: "x".into(),
            }],
            exit_code: 23,
            stderr: String::new(),
        };
        let timeout = RsyncError::Timeout {
            url: "u2".into(),
            timeout: Duration::from_secs(1),
        };
        let got = merge(&urls, vec![Ok(ok), Err(timeout.clone())]).unwrap();
        assert_eq!(got.len(), 1);
        let timeout1 = RsyncError::Timeout {
            url: "u1".into(),
            timeout: Duration::from_secs(1),
        };
        let e = merge(&urls, vec![Err(timeout1), Err(timeout.clone())])
            .unwrap_err()
            .to_string();
        assert!(
            e.starts_with("every part of images failed (2): u1: rsync did not finish")
                && e.contains("; u2: rsync did not finish"),
            "{e}"
        );
        let missing = RsyncError::NotInstalled {
            url: "u1".into(),
            program: "rsync".into(),
        };
        let e = merge(&urls, vec![Err(missing), Err(timeout)]).unwrap_err();
        assert!(e.to_string().contains("install rsync"), "{e}");
    }
}
