//! The text log line, made for the request path: one line per event,
//! `<time> <LEVEL> <span>{<fields>}: <target>: <message> <key>=<value>…`.
//!
//! tracing-subscriber's own text formats paint every field name through its
//! colour machinery, format each value through `Debug` and escape strings a
//! character at a time; for the one line every request logs that was about
//! 14% of a signed-in `GET /auth/user`'s instructions (callgrind,
//! `BENCH_ONLY=instructions make bench`). This one writes strings and
//! numbers as they are, and still keeps every event on one line: control
//! characters (line breaks, ANSI escapes, C1 codes) in any value arrive
//! escaped, so nothing a request or an IdP sends can forge or hide a line.

use std::fmt::{self, Write};

use tracing::{
    field::{Field, Visit},
    Event, Level, Subscriber,
};
use tracing_subscriber::{
    field::RecordFields,
    fmt::{format::Writer, FmtContext, FormatEvent, FormatFields, FormattedFields},
    registry::LookupSpan,
};

use super::request;

/// The event format (`fmt::layer().fmt_fields(Fields).event_format(Line)`).
#[derive(Clone, Copy, Debug, Default)]
pub struct Line;

/// The field format, for events and spans (`.fmt_fields(Fields)`).
#[derive(Clone, Copy, Debug, Default)]
pub struct Fields;

impl<S> FormatEvent<S, Fields> for Line
where
    S: Subscriber + for<'a> LookupSpan<'a>,
{
    fn format_event(
        &self,
        ctx: &FmtContext<'_, S, Fields>,
        mut writer: Writer<'_>,
        event: &Event<'_>,
    ) -> fmt::Result {
        let meta = event.metadata();
        writer.write_str(Timestamp::at(time::OffsetDateTime::now_utc()).as_str())?;
        writer.write_str(match *meta.level() {
            Level::ERROR => " ERROR ",
            Level::WARN => "  WARN ",
            Level::INFO => "  INFO ",
            Level::DEBUG => " DEBUG ",
            Level::TRACE => " TRACE ",
        })?;
        // A request whose span `access.rs` leaves out (traces off): the
        // same `request{id=…}` the span would have written.
        if let Some(id) = request::current_request() {
            request_prefix(&mut writer, id.to_str().unwrap_or("-"))?;
        }
        if let Some(scope) = ctx.event_scope() {
            for span in scope.from_root() {
                writer.write_str(span.name())?;
                let extensions = span.extensions();
                if let Some(fields) = extensions.get::<FormattedFields<Fields>>() {
                    if !fields.is_empty() {
                        write!(writer, "{{{fields}}}")?;
                    }
                }
                writer.write_str(": ")?;
            }
        }
        writer.write_str(meta.target())?;
        writer.write_str(":")?;
        let mut visitor = Visitor::new(writer.by_ref(), true);
        event.record(&mut visitor);
        visitor.result?;
        writer.write_char('\n')
    }
}

impl<'writer> FormatFields<'writer> for Fields {
    fn format_fields<R: RecordFields>(&self, writer: Writer<'writer>, fields: R) -> fmt::Result {
        let mut visitor = Visitor::new(writer, false);
        // A span's `otel.*` fields (name, kind, when traces are on) are
        // for OpenTelemetry (`traces.rs`), not for the line.
        visitor.skip_otel = true;
        fields.record(&mut visitor);
        visitor.result
    }
}

/// Writes `key=value` pairs (and an event's message bare), separated by
/// spaces; `leading` puts a space before the first one too.
struct Visitor<'w> {
    out: Writer<'w>,
    separate: bool,
    skip_otel: bool,
    result: fmt::Result,
}

impl<'w> Visitor<'w> {
    fn new(out: Writer<'w>, leading: bool) -> Self {
        Self {
            out,
            separate: leading,
            skip_otel: false,
            result: Ok(()),
        }
    }

    /// Starts a field: the separator, then `name=` unless it is the message.
    fn key(&mut self, field: &Field) -> fmt::Result {
        if std::mem::replace(&mut self.separate, true) {
            self.out.write_char(' ')?;
        }
        match field.name() {
            "message" => Ok(()),
            name => {
                self.out
                    .write_str(name.strip_prefix("r#").unwrap_or(name))?;
                self.out.write_char('=')
            }
        }
    }

    fn field(&mut self, field: &Field, value: impl FnOnce(&mut Writer<'w>) -> fmt::Result) {
        if self.skip_otel && field.name().starts_with("otel.") {
            return;
        }
        if self.result.is_ok() {
            self.result = self.key(field).and_then(|()| value(&mut self.out));
        }
    }
}

impl Visit for Visitor<'_> {
    fn record_str(&mut self, field: &Field, value: &str) {
        let message = field.name() == "message";
        self.field(field, |out| write_str(out, value, message));
    }

    fn record_u64(&mut self, field: &Field, value: u64) {
        self.field(field, |out| out.write_str(Digits::new(value).as_str()));
    }

    fn record_i64(&mut self, field: &Field, value: i64) {
        self.field(field, |out| write_i64(out, value));
    }

    fn record_bool(&mut self, field: &Field, value: bool) {
        self.field(field, |out| {
            out.write_str(if value { "true" } else { "false" })
        });
    }

    fn record_f64(&mut self, field: &Field, value: f64) {
        self.field(field, |out| write_f64(out, value));
    }

    fn record_debug(&mut self, field: &Field, value: &dyn fmt::Debug) {
        self.field(field, |out| write!(Escaped(out), "{value:?}"));
    }
}

/// The start of a line logged while request `id` is answered:
/// `request{id=…}: `, as its span's fields are written.
pub(super) fn request_prefix(out: &mut impl Write, id: &str) -> fmt::Result {
    out.write_str("request{id=")?;
    write_str(out, id, false)?;
    out.write_str("}: ")
}

/// The line `access.rs` writes for each request: what the event
/// `info!(method, path, status, ms, "request")` with target
/// [`request::TARGET`], in the request's span, is written as by [`Line`].
pub(super) fn request_line(out: &mut String, request: &request::Answered<'_>) -> fmt::Result {
    out.write_str(Timestamp::at(request.at).as_str())?;
    out.write_str("  INFO ")?;
    request_prefix(out, request.id)?;
    out.write_str(request::TARGET)?;
    out.write_str(": request method=")?;
    write_str(out, request.method, false)?;
    out.write_str(" path=")?;
    write_str(out, request.path, false)?;
    out.write_str(" status=")?;
    out.write_str(Digits::new(request.status.into()).as_str())?;
    out.write_str(" ms=")?;
    write_f64(out, request.ms)?;
    out.write_char('\n')
}

/// A string value: as it is, or, when a reader could split it (a space, a
/// quote, an `=`) or it holds a control character, quoted and escaped. An
/// event's `message` is written bare, its control characters escaped.
/// (Bytes from 0x80 on are checked as characters: C1 codes are two.)
fn write_str(out: &mut impl Write, value: &str, message: bool) -> fmt::Result {
    let plain = !value.is_empty()
        && value.bytes().all(|b| match b {
            0..=0x1f | 0x7f => false,
            b' ' | b'"' | b'=' => message,
            0x80.. => !value.chars().any(char::is_control),
            _ => true,
        });
    if plain {
        out.write_str(value)
    } else if message {
        Escaped(out).write_str(value)
    } else {
        write!(out, "{value:?}")
    }
}

/// A signed number's digits.
pub(super) fn write_i64(out: &mut impl Write, value: i64) -> fmt::Result {
    if value < 0 {
        out.write_char('-')?;
    }
    out.write_str(Digits::new(value.unsigned_abs()).as_str())
}

/// Two decimals, by integer arithmetic where the value allows it
/// (durations in ms are the common case).
pub(super) fn write_f64(out: &mut impl Write, value: f64) -> fmt::Result {
    if (0.0..1e12).contains(&value) {
        let hundredths = (value * 100.0).round() as u64;
        out.write_str(Digits::new(hundredths / 100).as_str())?;
        out.write_char('.')?;
        out.write_str(Digits::padded(hundredths % 100, 2).as_str())
    } else {
        write!(out, "{value}")
    }
}

/// `2026-12-03T08:42:01.123456Z`, the UTC time of the line (RFC 3339).
pub(super) struct Timestamp([u8; 27]);

impl Timestamp {
    pub(super) fn at(now: time::OffsetDateTime) -> Self {
        let mut text = *b"0000-00-00T00:00:00.000000Z";
        let (year, month, day) = now.to_calendar_date();
        let (hour, minute, second, micro) = now.to_hms_micro();
        // Each number's digits end where its zeros in `text` end.
        for (mut n, end) in [
            (year.clamp(0, 9999) as u32, 4),
            (u8::from(month).into(), 7),
            (day.into(), 10),
            (hour.into(), 13),
            (minute.into(), 16),
            (second.into(), 19),
            (micro, 26),
        ] {
            let mut at = end;
            while n > 0 {
                at -= 1;
                text[at] = b'0' + (n % 10) as u8;
                n /= 10;
            }
        }
        Self(text)
    }

    pub(super) fn as_str(&self) -> &str {
        std::str::from_utf8(&self.0).expect("ASCII digits")
    }
}

/// A number's decimal digits, made without the formatting machinery.
pub(super) struct Digits {
    buf: [u8; 20],
    start: usize,
}

impl Digits {
    pub(super) fn new(n: u64) -> Self {
        Self::padded(n, 1)
    }

    /// At least `width` digits, zeros in front.
    pub(super) fn padded(mut n: u64, width: usize) -> Self {
        let mut buf = [b'0'; 20];
        let mut start = buf.len();
        while n > 0 || buf.len() - start < width {
            start -= 1;
            buf[start] = b'0' + (n % 10) as u8;
            n /= 10;
        }
        Self { buf, start }
    }

    pub(super) fn as_str(&self) -> &str {
        std::str::from_utf8(&self.buf[self.start..]).expect("ASCII digits")
    }
}

/// Passes text through with every control character escaped (`\n`,
/// `\u{1b}`, …), so a value never breaks or recolours the line.
struct Escaped<'a, W>(&'a mut W);

impl<W: Write> Write for Escaped<'_, W> {
    fn write_str(&mut self, s: &str) -> fmt::Result {
        if !s.chars().any(char::is_control) {
            return self.0.write_str(s);
        }
        for c in s.chars() {
            if c.is_control() {
                write!(self.0, "{}", c.escape_default())?;
            } else {
                self.0.write_char(c)?;
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::server::telemetry::captured::logged_text as logged;

    #[test]
    fn a_request_line_names_its_span_fields_and_values() {
        let text = logged(|| {
            let span = tracing::info_span!("request", id = "4b1c-9e");
            let _in = span.enter();
            tracing::info!(
                method = "GET",
                path = "/auth/user",
                status = 200u16,
                ms = 0.416,
                fresh = true,
                "request"
            );
        });
        let (time, rest) = text.split_once(' ').unwrap();
        assert!(
            time::OffsetDateTime::parse(time, &time::format_description::well_known::Rfc3339)
                .is_ok(),
            "{text}"
        );
        assert_eq!(
            rest,
            " INFO request{id=4b1c-9e}: gatehouse::server::telemetry::line::tests: request \
             method=GET path=/auth/user status=200 ms=0.42 fresh=true\n"
        );
    }

    /// Whatever a value holds, one event is one line, and no escape
    /// sequence reaches the terminal or the collector.
    #[test]
    fn control_characters_never_break_or_colour_a_line() {
        let hostile = "a\nb\u{1b}[31mc\u{9b}d";
        let text = logged(|| {
            tracing::warn!(value = hostile, debug = ?hostile, shown = %hostile, "x\n{hostile}");
        });
        assert_eq!(text.matches('\n').count(), 1, "{text}");
        assert!(text.ends_with('\n'));
        for raw in ['\u{1b}', '\u{9b}'] {
            assert!(!text.contains(raw), "{text:?}");
        }
        assert!(text.contains(r#"value="a\nb\u{1b}[31mc\u{9b}d""#), "{text}");
        assert!(text.contains(r"shown=a\nb\u{1b}[31mc\u{9b}d"), "{text}");
        assert!(text.contains(r"x\na\nb"), "{text}");
    }

    #[test]
    fn a_spans_otel_fields_stay_out_of_the_line() {
        let text = logged(|| {
            let span = tracing::info_span!(
                "request",
                id = "4b1c-9e",
                otel.name = "GET auth",
                otel.kind = "server"
            );
            let _in = span.enter();
            tracing::info!(otel.note = "kept", "x");
        });
        assert!(text.contains(" INFO request{id=4b1c-9e}: "), "{text}");
        assert!(text.ends_with(": x otel.note=kept\n"), "{text}");
    }

    #[test]
    fn times_and_numbers_are_written_in_full() {
        let at = time::macros::datetime!(2026-01-02 03:04:05.000_067 UTC);
        assert_eq!(Timestamp::at(at).as_str(), "2026-01-02T03:04:05.000067Z");
        assert_eq!(Digits::new(0).as_str(), "0");
        assert_eq!(Digits::new(u64::MAX).as_str(), u64::MAX.to_string());
        let text = logged(|| tracing::info!(a = 0.05, b = 12.0, c = -3i64, d = f64::NAN, "n"));
        assert!(text.contains(": n a=0.05 b=12.00 c=-3 d=NaN\n"), "{text}");
    }

    #[test]
    fn values_a_reader_could_split_are_quoted() {
        let text = logged(|| tracing::error!(why = "a b=c", empty = "", "failed"));
        assert!(text.contains(r#": failed why="a b=c" empty="""#), "{text}");
        let text = logged(|| {
            tracing::error!(
                a_field_name_of_more_than_sixty_four_bytes_written_as_it_is_like_any_other = 1,
                b = 2
            )
        });
        assert!(
            text.ends_with(
                ": a_field_name_of_more_than_sixty_four_bytes_written_as_it_is_like_any_other=1 b=2\n"
            ),
            "{text}"
        );
    }
}
