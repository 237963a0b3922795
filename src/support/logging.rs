//! Log formats. On a terminal or in a pipe, tracing's default format; under
//! systemd ([`Journald`]), each line of an event with the `<N>` syslog
//! priority prefix that journald turns into the entry's priority. Either way every
//! line goes through [`Redacting`]: whatever logged it (this program or a
//! library's trace), the secrets of the URLs it quotes are taken out.

use std::fmt;
use tracing::{Event, Level, Subscriber};
use tracing_subscriber::fmt::format::Writer;
use tracing_subscriber::fmt::{FmtContext, FormatEvent, FormatFields};
use tracing_subscriber::registry::LookupSpan;

pub struct Journald;

impl<S, N> FormatEvent<S, N> for Journald
where
    S: Subscriber + for<'a> LookupSpan<'a>,
    N: for<'a> FormatFields<'a> + 'static,
{
    fn format_event(
        &self,
        ctx: &FmtContext<'_, S, N>,
        mut writer: Writer<'_>,
        event: &Event<'_>,
    ) -> fmt::Result {
        let prio = match *event.metadata().level() {
            Level::ERROR => 3,
            Level::WARN => 4,
            Level::INFO => 6,
            _ => 7,
        };
        // The whole record first: journald reads each line as an entry of
        // its own, so every line carries the record's priority (a
        // multi-line error's reason is then an error too, for
        // `journalctl -p err`).
        let mut text = String::new();
        let mut record = Writer::new(&mut text);
        if let Some(scope) = ctx.event_scope() {
            for span in scope.from_root() {
                write!(record, "{}", span.name())?;
                if let Some(fields) = span
                    .extensions()
                    .get::<tracing_subscriber::fmt::FormattedFields<N>>()
                    && !fields.is_empty()
                {
                    write!(record, "{{{fields}}}")?;
                }
                write!(record, ": ")?;
            }
        }
        ctx.field_format().format_fields(record.by_ref(), event)?;
        for line in text.trim_end_matches(['\n', '\r']).split('\n') {
            writeln!(writer, "<{prio}>{}", line.trim_end_matches('\r'))?;
        }
        Ok(())
    }
}

/// A `MakeWriter` whose writers pass every write (the formatter writes one
/// event per write) through [`crate::support::text::redact_url`].
#[derive(Clone, Copy, Default)]
pub struct Redacting<M>(pub M);

/// The writer of [`Redacting`].
pub struct RedactingWriter<W>(W);

impl<W: std::io::Write> std::io::Write for RedactingWriter<W> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let text = String::from_utf8_lossy(buf);
        self.0
            .write_all(crate::support::text::redact_url(&text).as_bytes())?;
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        self.0.flush()
    }
}

impl<'a, M: tracing_subscriber::fmt::MakeWriter<'a>> tracing_subscriber::fmt::MakeWriter<'a>
    for Redacting<M>
{
    type Writer = RedactingWriter<M::Writer>;

    fn make_writer(&'a self) -> Self::Writer {
        RedactingWriter(self.0.make_writer())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_logged_line_is_redacted() {
        let buf = crate::support::test_support::Captured::default();
        let out = buf.clone();
        let subscriber = tracing_subscriber::fmt()
            .with_writer(Redacting(move || buf.clone()))
            .with_ansi(false)
            .finish();
        tracing::subscriber::with_default(subscriber, || {
            tracing::warn!(
                url = "http://h/x?access_token=S1",
                "failed: http://u:S2@h/?sig=S3"
            );
        });
        let text = out.text();
        assert!(text.contains("access_token=<redacted>"), "{text}");
        for s in ["S1", "S2", "S3"] {
            assert!(!text.contains(s), "{text}");
        }
    }

    /// Under journald each line is an entry: every line of a multi-line
    /// record carries the record's priority, so `journalctl -p err` shows
    /// an error's reason too (issue 23, defect 9).
    #[test]
    fn every_line_of_a_journald_record_has_its_priority() {
        let buf = crate::support::test_support::Captured::default();
        let out = buf.clone();
        let subscriber = tracing_subscriber::fmt()
            .with_writer(move || buf.clone())
            .with_ansi(false)
            .event_format(Journald)
            .finish();
        tracing::subscriber::with_default(subscriber, || {
            let span = tracing::info_span!("collector", name = "sponsoring");
            let _in = span.enter();
            tracing::error!(
                "configuration error in /etc/ubuntu-metrics/config.toml:\ndaemon.run_timeout: invalid time span \"banana\"\r\n"
            );
            tracing::warn!("one line");
            tracing::info!("two\nlines");
        });
        let text = out.text();
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(
            lines,
            [
                "<3>collector{name=\"sponsoring\"}: configuration error in /etc/ubuntu-metrics/config.toml:",
                "<3>daemon.run_timeout: invalid time span \"banana\"",
                "<4>collector{name=\"sponsoring\"}: one line",
                "<6>collector{name=\"sponsoring\"}: two",
                "<6>lines",
            ],
            "{text}"
        );
    }
}
