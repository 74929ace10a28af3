//! The JSON log line (`LOG_FORMAT=json`): one object per event, in the shape
//! of tracing-subscriber's `json().flatten_event(true)`, which it replaces:
//! `timestamp`, `level`, the event's fields, `target`, and inside a request
//! `span` (the innermost: its fields and `name`) and `spans` (all of them,
//! from the outermost). Our own so that the request's id is there when
//! `access.rs` leaves the request's span out (traces off), and so that the
//! request line is written without `tracing` in the same shape.
//!
//! Numbers are written as the text line writes them (two decimals for a
//! fraction); one that is not finite is `null`. Every string is escaped as
//! JSON requires, and control characters beyond it too (DEL, C1 codes), so
//! nothing a request or an IdP sends can forge a line or reach a terminal.

use std::fmt::{self, Write};

use tracing::{
    field::{Field, Visit},
    Event, Subscriber,
};
use tracing_subscriber::{
    fmt::{
        format::{JsonFields, Writer},
        FmtContext, FormatEvent, FormattedFields,
    },
    registry::LookupSpan,
};

use super::{
    line::{write_f64, write_i64, Digits, Timestamp},
    request,
};

/// The event format (`fmt::layer().fmt_fields(JsonFields::new())
/// .event_format(JsonLine)`): spans' fields are kept as JSON objects.
#[derive(Clone, Copy, Debug, Default)]
pub struct JsonLine;

impl<S> FormatEvent<S, JsonFields> for JsonLine
where
    S: Subscriber + for<'a> LookupSpan<'a>,
{
    fn format_event(
        &self,
        ctx: &FmtContext<'_, S, JsonFields>,
        mut writer: Writer<'_>,
        event: &Event<'_>,
    ) -> fmt::Result {
        let meta = event.metadata();
        start(
            &mut writer,
            time::OffsetDateTime::now_utc(),
            meta.level().as_str(),
        )?;
        let mut visitor = Visitor {
            out: writer.by_ref(),
            result: Ok(()),
        };
        event.record(&mut visitor);
        visitor.result?;
        writer.write_str(",\"target\":")?;
        string(&mut writer, meta.target())?;
        // Each span as an object: the request's (no span, `access.rs`),
        // then the ones in scope, outermost first.
        let mut spans = Vec::new();
        if let Some(id) = request::current_request() {
            let mut span = String::new();
            request_span(&mut span, id.to_str().unwrap_or("-"))?;
            spans.push(span);
        }
        if let Some(scope) = ctx.event_scope() {
            for span in scope.from_root() {
                let extensions = span.extensions();
                let fields = extensions
                    .get::<FormattedFields<JsonFields>>()
                    .map_or("", |f| f.as_str());
                spans.push(with_name(fields, span.name())?);
            }
        }
        if let Some(innermost) = spans.last() {
            write!(
                writer,
                ",\"span\":{innermost},\"spans\":[{}]",
                spans.join(",")
            )?;
        }
        writer.write_str("}\n")
    }
}

/// `{"timestamp":"…","level":"…"`: every line's start.
fn start(out: &mut impl Write, at: time::OffsetDateTime, level: &str) -> fmt::Result {
    out.write_str("{\"timestamp\":\"")?;
    out.write_str(Timestamp::at(at).as_str())?;
    out.write_str("\",\"level\":\"")?;
    out.write_str(level)?;
    out.write_char('"')
}

/// A request's span as its line shows it: `{"id":"…","name":"request"}`.
fn request_span(out: &mut impl Write, id: &str) -> fmt::Result {
    out.write_str("{\"id\":")?;
    string(out, id)?;
    out.write_str(",\"name\":\"request\"}")
}

/// A span's fields (a JSON object, as `JsonFields` keeps them) with its
/// name added, as tracing-subscriber wrote a span.
fn with_name(fields: &str, name: &str) -> Result<String, fmt::Error> {
    let inner = fields
        .trim()
        .strip_prefix('{')
        .and_then(|f| f.strip_suffix('}'))
        .unwrap_or("")
        .trim();
    let mut span = String::from("{");
    if !inner.is_empty() {
        span.push_str(inner);
        span.push(',');
    }
    span.push_str("\"name\":");
    string(&mut span, name)?;
    span.push('}');
    Ok(span)
}

/// The line `access.rs` writes for each request: what the event
/// `info!(method, path, status, ms, "request")` with target
/// [`request::TARGET`], in the request's span, is written as by [`JsonLine`].
pub(super) fn request_line(out: &mut String, request: &request::Answered<'_>) -> fmt::Result {
    start(out, request.at, "INFO")?;
    out.write_str(",\"message\":\"request\",\"method\":")?;
    string(out, request.method)?;
    out.write_str(",\"path\":")?;
    string(out, request.path)?;
    out.write_str(",\"status\":")?;
    out.write_str(Digits::new(request.status.into()).as_str())?;
    out.write_str(",\"ms\":")?;
    number(out, request.ms)?;
    out.write_str(",\"target\":\"")?;
    out.write_str(request::TARGET)?;
    out.write_str("\",\"span\":")?;
    let mut span = String::new();
    request_span(&mut span, request.id)?;
    write!(out, "{span},\"spans\":[{span}]}}")?;
    out.write_char('\n')
}

/// `s` as a JSON string. Control characters (C0, DEL, C1) are escaped.
fn string(out: &mut impl Write, s: &str) -> fmt::Result {
    out.write_char('"')?;
    let mut plain = 0;
    for (at, c) in s.char_indices() {
        let escape = match c {
            '"' => "\\\"",
            '\\' => "\\\\",
            '\n' => "\\n",
            '\r' => "\\r",
            '\t' => "\\t",
            c if c.is_control() => "",
            _ => continue,
        };
        out.write_str(&s[plain..at])?;
        if escape.is_empty() {
            write!(out, "\\u{:04x}", u32::from(c))?;
        } else {
            out.write_str(escape)?;
        }
        plain = at + c.len_utf8();
    }
    out.write_str(&s[plain..])?;
    out.write_char('"')
}

/// A number as the text line writes it; `null` when not finite (JSON has
/// no NaN nor infinity).
fn number(out: &mut impl Write, value: f64) -> fmt::Result {
    if value.is_finite() {
        write_f64(out, value)
    } else {
        out.write_str("null")
    }
}

/// Writes `,"key":value` for each field.
struct Visitor<'w> {
    out: Writer<'w>,
    result: fmt::Result,
}

impl Visitor<'_> {
    fn field(&mut self, field: &Field, value: impl FnOnce(&mut Writer<'_>) -> fmt::Result) {
        if self.result.is_err() {
            return;
        }
        let name = field.name();
        self.result = self
            .out
            .write_char(',')
            .and_then(|()| string(&mut self.out, name.strip_prefix("r#").unwrap_or(name)))
            .and_then(|()| self.out.write_char(':'))
            .and_then(|()| value(&mut self.out));
    }
}

impl Visit for Visitor<'_> {
    fn record_str(&mut self, field: &Field, value: &str) {
        self.field(field, |out| string(out, value));
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
        self.field(field, |out| number(out, value));
    }

    fn record_debug(&mut self, field: &Field, value: &dyn fmt::Debug) {
        self.field(field, |out| string(out, &format!("{value:?}")));
    }
}

#[cfg(test)]
mod tests {
    use axum::http::HeaderValue;

    use crate::server::telemetry::{
        captured::{json_without_time, logged, Captured},
        request::in_request,
    };

    /// `LOG_FORMAT=json` keeps the shape of tracing-subscriber's own JSON
    /// (`json().flatten_event(true)`), which it replaced.
    #[test]
    fn json_lines_read_as_tracing_subscribers_did() {
        let log = || {
            let outer = tracing::info_span!("request", id = "x-1");
            let _outer = outer.enter();
            let inner = tracing::info_span!("idp", endpoint = "token", n = 3u64);
            let _inner = inner.enter();
            tracing::warn!(
                a = "s",
                b = 7u64,
                c = -2i64,
                d = true,
                e = 0.5,
                f = ?vec![1, 2],
                g = %"shown",
                "the message {}",
                1
            );
            drop(_inner);
            tracing::error!("no fields");
        };
        let ours = logged(true, log);
        let out = Captured::default();
        let theirs = tracing_subscriber::fmt::layer()
            .json()
            .flatten_event(true)
            .with_writer(out.clone());
        {
            use tracing_subscriber::prelude::*;
            tracing::subscriber::with_default(tracing_subscriber::registry().with(theirs), log);
        }
        let theirs = out.text();
        let lines = |text: &str| {
            text.lines()
                .map(|l| json_without_time(&format!("{l}\n")))
                .collect::<Vec<_>>()
        };
        assert_eq!(lines(&ours), lines(&theirs), "{ours}\n{theirs}");
        assert_eq!(lines(&ours).len(), 2);
    }

    /// Whatever a value holds, a JSON line is one line of valid JSON that
    /// gives the value back, and no escape sequence reaches a terminal.
    #[test]
    fn hostile_values_stay_one_valid_json_line() {
        let hostile = "a\nb\u{1b}[31mc\u{9b}d\"e\\f\u{7f}\u{2028}";
        let text = logged(true, || {
            in_request(Some(HeaderValue::from_static("r")), || {
                tracing::warn!(value = hostile, debug = ?hostile, "x{hostile}");
            })
        });
        for raw in ['\u{1b}', '\u{9b}', '\u{7f}'] {
            assert!(!text.contains(raw), "{text:?}");
        }
        let line = json_without_time(&text);
        assert_eq!(line["value"], hostile);
        assert_eq!(line["message"], format!("x{hostile}"));
        assert_eq!(line["debug"], format!("{hostile:?}"));
        assert_eq!(line["spans"][0]["id"], "r");
    }
}
