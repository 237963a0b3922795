//! Ubuntu's release calendar from distro-info-data's `ubuntu.csv`, answered
//! with the rules of Debian's python3-distro-info (`UbuntuDistroInfo`).

use chrono::NaiveDate;
use std::path::Path;

/// One row of `ubuntu.csv`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Release {
    pub version: String,
    pub codename: String,
    pub series: String,
    pub created: NaiveDate,
    pub release: Option<NaiveDate>,
    pub eol: Option<NaiveDate>,
    pub eol_server: Option<NaiveDate>,
    pub eol_esm: Option<NaiveDate>,
}

/// The whole table, in file (= release) order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DistroInfo {
    releases: Vec<Release>,
}

impl DistroInfo {
    pub fn load(path: &Path) -> Result<DistroInfo, String> {
        let data = std::fs::read(path)
            .map_err(|e| format!("cannot read distro-info data {}: {e}", path.display()))?;
        DistroInfo::parse(&data).map_err(|e| format!("distro-info data {}: {e}", path.display()))
    }

    /// Parses the CSV. Columns are found by header name; rows may have 6 to
    /// 9 columns (the trailing end-of-life dates are optional).
    pub fn parse(data: &[u8]) -> Result<DistroInfo, String> {
        let mut rdr = csv::ReaderBuilder::new().flexible(true).from_reader(data);
        let headers = rdr
            .headers()
            .map_err(|e| format!("bad header: {e}"))?
            .clone();
        let col = |name: &str| headers.iter().position(|h| h.trim() == name);
        let need =
            |name: &str| col(name).ok_or_else(|| format!("no column {name:?} in the header"));
        let (c_version, c_codename, c_series, c_created) = (
            need("version")?,
            need("codename")?,
            need("series")?,
            need("created")?,
        );
        let (c_release, c_eol, c_eol_server, c_eol_esm) = (
            col("release"),
            col("eol"),
            col("eol-server"),
            col("eol-esm"),
        );
        let mut releases = Vec::new();
        for (i, rec) in rdr.records().enumerate() {
            let line = i + 2;
            let rec = rec.map_err(|e| format!("line {line}: {e}"))?;
            if !(6..=9).contains(&rec.len()) {
                return Err(format!(
                    "line {line}: {} columns, expected 6 to 9",
                    rec.len()
                ));
            }
            let get = |c: Option<usize>| {
                c.and_then(|c| rec.get(c))
                    .map(str::trim)
                    .filter(|s| !s.is_empty())
            };
            let date = |c: Option<usize>, name: &str| -> Result<Option<NaiveDate>, String> {
                get(c)
                    .map(|s| {
                        NaiveDate::parse_from_str(s, "%Y-%m-%d")
                            .map_err(|e| format!("line {line}: column {name} {s:?}: {e}"))
                    })
                    .transpose()
            };
            let series = get(Some(c_series)).ok_or_else(|| format!("line {line}: empty series"))?;
            releases.push(Release {
                version: get(Some(c_version)).unwrap_or_default().to_owned(),
                codename: get(Some(c_codename)).unwrap_or_default().to_owned(),
                series: series.to_owned(),
                created: date(Some(c_created), "created")?
                    .ok_or_else(|| format!("line {line}: empty created date"))?,
                release: date(c_release, "release")?,
                eol: date(c_eol, "eol")?,
                eol_server: date(c_eol_server, "eol-server")?,
                eol_esm: date(c_eol_esm, "eol-esm")?,
            });
        }
        Ok(DistroInfo { releases })
    }

    /// Every release, in release order.
    pub fn all(&self) -> &[Release] {
        &self.releases
    }

    fn available(&self, date: NaiveDate) -> impl Iterator<Item = &Release> {
        self.releases.iter().filter(move |r| r.created <= date)
    }

    /// Supported on `date`: available and `date <= eol` or `date <= eol-server`.
    /// A release without an end of life yet (the devel series) is supported.
    pub fn supported(&self, date: NaiveDate) -> Vec<&Release> {
        self.available(date)
            .filter(|r| r.eol.is_none_or(|e| date <= e) || r.eol_server.is_some_and(|e| date <= e))
            .collect()
    }

    /// ESM-supported on `date`: available and `date <= eol-esm`.
    pub fn supported_esm(&self, date: NaiveDate) -> Vec<&Release> {
        self.available(date)
            .filter(|r| r.eol_esm.is_some_and(|e| date <= e))
            .collect()
    }

    /// The series in development on `date`: the last available release with
    /// no release date or `date < release` (and `date <= eol` when set).
    pub fn devel(&self, date: NaiveDate) -> Option<&Release> {
        self.available(date)
            .filter(|r| r.release.is_none_or(|rel| date < rel) && r.eol.is_none_or(|e| date <= e))
            .last()
    }

    /// The position of a series in release order.
    pub fn index_of(&self, series: &str) -> Option<usize> {
        self.releases.iter().position(|r| r.series == series)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const CSV: &str = "version,codename,series,created,release,eol,eol-server,eol-esm\n\
4.10,Warty Warthog,warty,2004-03-05,2004-10-20,2006-04-30\n\
14.04 LTS,Trusty Tahr,trusty,2013-10-17,2014-04-17,2019-04-25,2019-04-25,2024-04-25\n\
22.04 LTS,Jammy Jellyfish,jammy,2021-10-14,2022-04-21,2027-06-01,2027-06-01,2032-04-21\n\
24.10,Oracular Oriole,oracular,2024-04-25,2024-10-10,2025-07-10\n\
25.04,Plucky Puffin,plucky,2024-10-10,2025-04-17,2026-01-15\n\
25.10,Questing Quokka,questing,2025-04-17,2025-10-09,2026-07-09\n";

    fn d(s: &str) -> NaiveDate {
        NaiveDate::parse_from_str(s, "%Y-%m-%d").unwrap()
    }

    fn names(rs: Vec<&Release>) -> Vec<&str> {
        rs.into_iter().map(|r| r.series.as_str()).collect()
    }

    #[test]
    fn supported_includes_devel_and_server_eol() {
        let di = DistroInfo::parse(CSV.as_bytes()).unwrap();
        assert_eq!(
            names(di.supported(d("2025-05-01"))),
            ["jammy", "oracular", "plucky", "questing"]
        );
        // eol is inclusive; created is inclusive (questing appears on 04-17).
        assert_eq!(
            names(di.supported(d("2025-07-10"))),
            ["jammy", "oracular", "plucky", "questing"]
        );
        assert_eq!(
            names(di.supported(d("2025-04-16"))),
            ["jammy", "oracular", "plucky"]
        );
    }

    #[test]
    fn esm() {
        let di = DistroInfo::parse(CSV.as_bytes()).unwrap();
        assert_eq!(
            names(di.supported_esm(d("2024-04-25"))),
            ["trusty", "jammy"]
        );
        assert_eq!(names(di.supported_esm(d("2024-04-26"))), ["jammy"]);
    }

    #[test]
    fn devel_rules() {
        let di = DistroInfo::parse(CSV.as_bytes()).unwrap();
        assert_eq!(di.devel(d("2025-05-01")).unwrap().series, "questing");
        // Before questing is created, plucky is devel until its release day.
        assert_eq!(di.devel(d("2025-04-16")).unwrap().series, "plucky");
        // Plucky released on 2025-04-17, questing created the same day.
        assert_eq!(di.devel(d("2025-04-17")).unwrap().series, "questing");
        let old = DistroInfo::parse(
            CSV.lines()
                .take(6)
                .collect::<Vec<_>>()
                .join("\n")
                .as_bytes(),
        )
        .unwrap();
        assert!(old.devel(d("2026-11-24")).is_none());
    }

    #[test]
    fn malformed_rows_are_named() {
        let e = DistroInfo::parse(b"version,codename,series,created\n1,a,b,notadate,x,y\n")
            .unwrap_err();
        assert!(e.contains("line 2") && e.contains("created"), "{e}");
        let e = DistroInfo::parse(b"version,codename,series,created\n1,a,b\n").unwrap_err();
        assert!(e.contains("line 2"), "{e}");
        let e = DistroInfo::parse(b"version,codename\n").unwrap_err();
        assert!(e.contains("series"), "{e}");
    }
}
