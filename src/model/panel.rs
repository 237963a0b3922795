//! A Grafana panel, declared by the collector whose measurement it shows
//! (its `Spec::panels`, in the collector layer): its measurement, fields, aggregation,
//! `GROUP BY` tags and optional tag filter. Its InfluxQL query is built
//! from those ([`Panel::query`]) with Grafana's `$timeFilter` and
//! `$__interval` macros; the dashboards module lays the panels out.

use crate::model::schema::Text;

/// How a panel shows its query.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// Lines over time (`GROUP BY time($__interval)`).
    Timeseries,
    /// The latest value of each series, big.
    Stat,
    /// The latest value of each series, as rows (one per tag set).
    Table,
}

/// How the values of one series are aggregated per time bucket (or over
/// the whole range, for stats and tables).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Agg {
    Last,
    Max,
    Mean,
    /// The last value of each series, summed over the series that share
    /// the panel's `GROUP BY` tags (a subquery).
    SumOfLast,
}

impl Agg {
    fn function(self) -> &'static str {
        match self {
            Agg::Last | Agg::SumOfLast => "last",
            Agg::Max => "max",
            Agg::Mean => "mean",
        }
    }
}

/// One panel: everything its query and look are made of.
#[derive(Debug, Clone)]
pub struct Panel {
    pub title: Text,
    pub description: &'static str,
    pub kind: Kind,
    pub measurement: Text,
    pub fields: Vec<Text>,
    pub agg: Agg,
    /// Tags the series are split by (each becomes part of the legend).
    pub group_by: Vec<Text>,
    /// An extra `WHERE` condition on tags, e.g. `"devel" = 'True'`.
    pub filter: Option<&'static str>,
    /// Grafana's unit of the values (`short`, `h`, `m`, `d`, `s`, `decbytes`).
    pub unit: &'static str,
    /// Per-field units overriding `unit` (tables with mixed fields).
    pub field_units: &'static [(&'static str, &'static str)],
    /// Width on Grafana's 24-column grid.
    pub width: u32,
}

impl Panel {
    /// A panel of `measurement`'s `fields`, a series per value of the
    /// `group_by` tags (a built-in collector's constants).
    pub fn new(
        kind: Kind,
        title: &'static str,
        measurement: &'static str,
        fields: &[&'static str],
        group_by: &[&'static str],
    ) -> Panel {
        let names = |n: &[&'static str]| n.iter().map(|&n| Text::Borrowed(n)).collect();
        Panel::owned(
            kind,
            title.into(),
            measurement.into(),
            names(fields),
            names(group_by),
        )
    }

    /// A panel whose names are owned (a collector declared in the
    /// configuration).
    pub fn owned(
        kind: Kind,
        title: Text,
        measurement: Text,
        fields: Vec<Text>,
        group_by: Vec<Text>,
    ) -> Panel {
        Panel {
            title,
            description: "",
            kind,
            measurement,
            fields,
            agg: Agg::Last,
            group_by,
            filter: None,
            unit: "short",
            field_units: &[],
            width: match kind {
                Kind::Timeseries => 12,
                Kind::Stat => 6,
                Kind::Table => 24,
            },
        }
    }

    pub fn describe(mut self, d: &'static str) -> Panel {
        self.description = d;
        self
    }

    pub fn agg(mut self, a: Agg) -> Panel {
        self.agg = a;
        self
    }

    pub fn filter(mut self, f: &'static str) -> Panel {
        self.filter = Some(f);
        self
    }

    pub fn unit(mut self, u: &'static str) -> Panel {
        self.unit = u;
        self
    }

    pub fn field_units(mut self, u: &'static [(&'static str, &'static str)]) -> Panel {
        self.field_units = u;
        self
    }

    pub fn width(mut self, w: u32) -> Panel {
        self.width = w;
        self
    }

    pub(crate) fn height(&self) -> u32 {
        match self.kind {
            Kind::Timeseries => 8,
            Kind::Stat => 5,
            Kind::Table => 10,
        }
    }

    /// The InfluxQL query, with Grafana's `$timeFilter` (and, for time
    /// series, `$__interval`) macros.
    pub fn query(&self) -> String {
        let m = quote_ident(&self.measurement);
        let mut cond = String::new();
        if let Some(f) = self.filter {
            cond.push_str(f);
            cond.push_str(" AND ");
        }
        cond.push_str("$timeFilter");
        let tags: Vec<String> = self.group_by.iter().map(|t| quote_ident(t)).collect();
        let time_bucket = self.kind == Kind::Timeseries;
        let mut group: Vec<String> = Vec::new();
        if time_bucket {
            group.push("time($__interval)".into());
        }
        group.extend(tags.iter().cloned());
        let group_clause = if group.is_empty() {
            String::new()
        } else {
            format!(" GROUP BY {}", group.join(", "))
        };
        let fill = if time_bucket { " fill(none)" } else { "" };
        match self.agg {
            Agg::SumOfLast => {
                // Each series' last value per bucket, then summed over the
                // series sharing the panel's tags.
                let inner_select = self
                    .fields
                    .iter()
                    .map(|f| format!("last({}) AS {}", quote_ident(f), quote_ident(f)))
                    .collect::<Vec<_>>()
                    .join(", ");
                let outer_select = self
                    .fields
                    .iter()
                    .map(|f| format!("sum({}) AS {}", quote_ident(f), quote_ident(f)))
                    .collect::<Vec<_>>()
                    .join(", ");
                let inner_group = if time_bucket {
                    "time($__interval), *"
                } else {
                    "*"
                };
                format!(
                    "SELECT {outer_select} FROM (SELECT {inner_select} FROM {m} WHERE {cond} GROUP BY {inner_group}) WHERE $timeFilter{group_clause}{fill}"
                )
            }
            agg => {
                let select = self
                    .fields
                    .iter()
                    .map(|f| {
                        format!(
                            "{}({}) AS {}",
                            agg.function(),
                            quote_ident(f),
                            quote_ident(f)
                        )
                    })
                    .collect::<Vec<_>>()
                    .join(", ");
                format!("SELECT {select} FROM {m} WHERE {cond}{group_clause}{fill}")
            }
        }
    }

    /// The legend of each series: its tags, and the field when there are several.
    pub fn alias(&self) -> String {
        let mut parts: Vec<String> = self.group_by.iter().map(|t| format!("$tag_{t}")).collect();
        if self.fields.len() > 1 || parts.is_empty() {
            parts.push("$col".into());
        }
        parts.join(" ")
    }
}

/// An InfluxQL identifier, double-quoted.
pub(crate) fn quote_ident(s: &str) -> String {
    format!("\"{}\"", s.replace('\\', "\\\\").replace('"', "\\\""))
}

/// The dashboards the panels are laid out on, as the Ubuntu teams look at
/// them. A collector puts its panels on one of them ([`Panels`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Board {
    /// Upload queues, proposed-migration, autopkgtest, sponsoring.
    Queues,
    /// The archive team's reports, command-not-found, versions.
    Archive,
    /// cdimage images.
    Images,
    /// Bugs and contributors.
    People,
}

impl Board {
    /// Every dashboard, in the order of the Grafana dashboard list.
    pub const ALL: [Board; 4] = [Board::Queues, Board::Archive, Board::Images, Board::People];

    pub fn uid(self) -> &'static str {
        match self {
            Board::Queues => "ubuntu-metrics-queues",
            Board::Archive => "ubuntu-metrics-archive",
            Board::Images => "ubuntu-metrics-images",
            Board::People => "ubuntu-metrics-people",
        }
    }

    pub fn title(self) -> &'static str {
        match self {
            Board::Queues => "Ubuntu: queues and migration",
            Board::Archive => "Ubuntu: archive health",
            Board::Images => "Ubuntu: images",
            Board::People => "Ubuntu: bugs and contributors",
        }
    }

    pub fn description(self) -> &'static str {
        match self {
            Board::Queues => {
                "Upload queues, proposed-migration (britney), autopkgtest and sponsoring queues."
            }
            Board::Archive => {
                "The archive team's reports on the devel series, command-not-found indexes and the desktop versions report."
            }
            Board::Images => {
                "Daily and DVD images on cdimage: age and size per flavor, series and architecture."
            }
            Board::People => {
                "Release-management bugs per team and the size of the Ubuntu developer teams on Launchpad."
            }
        }
    }
}

/// A collector's panels: one titled row on one dashboard.
#[derive(Debug, Clone)]
pub struct Panels {
    pub board: Board,
    /// The row's title.
    pub title: Text,
    pub panels: Vec<Panel>,
}
