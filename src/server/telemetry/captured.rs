//! Lines logged in a test, captured: the log formats' tests write through
//! the layers `init` installs, into memory.

use std::sync::{Arc, Mutex};

use serde_json::Value;
use tracing::Subscriber;
use tracing_subscriber::{fmt::MakeWriter, prelude::*};

/// Everything written, in order.
#[derive(Clone, Default)]
pub struct Captured(Arc<Mutex<Vec<u8>>>);

impl Captured {
    pub fn text(&self) -> String {
        String::from_utf8(self.0.lock().unwrap().clone()).unwrap()
    }
}

impl std::io::Write for Captured {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl<'a> MakeWriter<'a> for Captured {
    type Writer = Self;

    fn make_writer(&'a self) -> Self {
        self.clone()
    }
}

/// A subscriber writing `init`'s lines (JSON with `json`) to `out`.
pub fn subscriber(json: bool, out: &Captured) -> Box<dyn Subscriber + Send + Sync> {
    let registry = tracing_subscriber::registry();
    if json {
        Box::new(registry.with(super::json_lines(out.clone())))
    } else {
        Box::new(registry.with(super::text_lines(out.clone())))
    }
}

/// What `log` logs, as the text lines.
pub fn logged_text(log: impl FnOnce()) -> String {
    logged(false, log)
}

/// What `log` logs, as the text or, with `json`, the JSON lines.
pub fn logged(json: bool, log: impl FnOnce()) -> String {
    let out = Captured::default();
    tracing::subscriber::with_default(subscriber(json, &out), log);
    out.text()
}

/// A JSON line as a value, its timestamp checked (RFC 3339) and left out.
pub fn json_without_time(line: &str) -> Value {
    assert_eq!(line.matches('\n').count(), 1, "{line}");
    let mut value: Value = serde_json::from_str(line).unwrap_or_else(|e| panic!("{e}: {line}"));
    let at = value["timestamp"].as_str().unwrap();
    assert!(
        time::OffsetDateTime::parse(at, &time::format_description::well_known::Rfc3339).is_ok(),
        "{line}"
    );
    value.as_object_mut().unwrap().remove("timestamp");
    value
}
