//! Log formats. On a terminal or in a pipe, tracing's default format; under
//! systemd ([`Journald`]), one line per event with a `<N>` syslog priority
//! prefix that journald turns into the entry's priority. Either way every
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
        write!(writer, "<{prio}>")?;
        if let Some(scope) = ctx.event_scope() {
            for span in scope.from_root() {
                write!(writer, "{}", span.name())?;
                if let Some(fields) = span
                    .extensions()
                    .get::<tracing_subscriber::fmt::FormattedFields<N>>()
                    && !fields.is_empty()
                {
                    write!(writer, "{{{fields}}}")?;
                }
                write!(writer, ": ")?;
            }
        }
        ctx.field_format().format_fields(writer.by_ref(), event)?;
        writeln!(writer)
    }
}

/// A `MakeWriter` whose writers pass every write (the formatter writes one
/// event per write) through [`crate::redact::redact_url`].
#[derive(Clone, Copy, Default)]
pub struct Redacting<M>(pub M);

/// The writer of [`Redacting`].
pub struct RedactingWriter<W>(W);

impl<W: std::io::Write> std::io::Write for RedactingWriter<W> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let text = String::from_utf8_lossy(buf);
        self.0
            .write_all(crate::redact::redact_url(&text).as_bytes())?;
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
        let buf = crate::test_support::Captured::default();
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
}
