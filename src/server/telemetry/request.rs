//! The request being answered: while its answer is polled, its id is the
//! thread's current request ([`InRequest`]), which the text and JSON lines
//! write where a `request` span would have been (`access.rs` says why
//! there is no span); and an answered request as its line says it.

use std::{
    cell::Cell,
    fmt,
    future::Future,
    pin::Pin,
    task::{Context, Poll},
};

use axum::http::HeaderValue;
use time::OffsetDateTime;

/// The request line's target (it was logged from `telemetry`).
pub(super) const TARGET: &str = "gatehouse::server::telemetry";

/// One answered request, as its line says it.
pub(super) struct Answered<'a> {
    pub at: OffsetDateTime,
    pub id: &'a str,
    pub method: &'a str,
    /// Never the query string: it carries authorization codes.
    pub path: &'a str,
    pub status: u16,
    pub ms: f64,
}

thread_local! {
    /// The id of the request this thread is polling, if any.
    static CURRENT: Cell<Option<HeaderValue>> = const { Cell::new(None) };
}

/// The id of the request being answered on this thread, while
/// [`InRequest`] polls it (never with traces on: the span says it then).
pub(super) fn current_request() -> Option<HeaderValue> {
    CURRENT.with(|current| {
        let id = current.take();
        current.set(id.clone());
        id
    })
}

/// Runs `f` as part of request `id`: what it logs carries the id.
pub(super) fn in_request<T>(id: Option<HeaderValue>, f: impl FnOnce() -> T) -> T {
    let _restore = Restore(CURRENT.replace(id));
    f()
}

/// Puts the previous request back when dropped, also when `f` panics: a
/// line logged later on this thread never names a request it is not in.
struct Restore(Option<HeaderValue>);

impl Drop for Restore {
    fn drop(&mut self) {
        CURRENT.set(self.0.take());
    }
}

/// A request's answer; every poll is [`in_request`] its id (`None`: no id
/// to set, the request has its span).
pub struct InRequest<F: ?Sized> {
    id: Option<HeaderValue>,
    answer: Pin<Box<F>>,
}

impl<F: ?Sized> InRequest<F> {
    pub(super) fn new(id: Option<HeaderValue>, answer: Pin<Box<F>>) -> Self {
        Self { id, answer }
    }
}

impl<F: Future + ?Sized> Future for InRequest<F> {
    type Output = F::Output;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<F::Output> {
        // Unpin: the answer is boxed.
        let this = self.get_mut();
        if this.id.is_none() {
            return this.answer.as_mut().poll(cx);
        }
        let _restore = Restore(CURRENT.replace(this.id.take()));
        let polled = this.answer.as_mut().poll(cx);
        // Ours back for the next poll; then `_restore` puts the previous.
        this.id = CURRENT.take();
        polled
    }
}

impl<F: ?Sized> fmt::Debug for InRequest<F> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("InRequest").field("id", &self.id).finish()
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use serde_json::Value;

    use super::*;
    use crate::server::telemetry::captured::{json_without_time, logged, subscriber, Captured};

    #[test]
    fn a_request_without_a_span_is_named_on_its_lines() {
        let id = || Some(HeaderValue::from_static("abc"));
        let text = logged(false, || {
            tracing::info!("before");
            in_request(id(), || {
                tracing::warn!("inside");
                let span = tracing::info_span!("idp", endpoint = "token");
                span.in_scope(|| tracing::info!("deeper"));
            });
            tracing::info!("after");
        });
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines.len(), 4, "{text}");
        assert!(lines[0].ends_with(" INFO gatehouse::server::telemetry::request::tests: before"));
        assert!(
            lines[1].contains(" WARN request{id=abc}: gatehouse::"),
            "{text}"
        );
        assert!(lines[2].contains(" INFO request{id=abc}: idp{endpoint=token}: gatehouse::"));
        assert!(lines[3].ends_with(" INFO gatehouse::server::telemetry::request::tests: after"));

        let text = logged(true, || {
            in_request(id(), || {
                let span = tracing::info_span!("idp", endpoint = "token");
                span.in_scope(|| tracing::info!("deeper"));
            });
            tracing::info!("after");
        });
        let lines: Vec<Value> = text
            .lines()
            .map(|l| json_without_time(&format!("{l}\n")))
            .collect();
        assert_eq!(
            lines[0]["span"],
            serde_json::json!({"endpoint": "token", "name": "idp"})
        );
        assert_eq!(
            lines[0]["spans"],
            serde_json::json!([{"id": "abc", "name": "request"}, {"endpoint": "token", "name": "idp"}])
        );
        assert!(lines[1].get("span").is_none() && lines[1].get("spans").is_none());
    }

    /// A request's id is set for each poll of its answer, and for nothing
    /// else: not between polls (another request's turn), not after, not
    /// after a panic inside.
    #[tokio::test]
    async fn each_poll_of_an_answer_and_nothing_else_carries_its_id() {
        let out = Captured::default();
        let _default = tracing::subscriber::set_default(subscriber(false, &out));
        let turn = Arc::new(tokio::sync::Notify::new());
        let answer = {
            let turn = turn.clone();
            async move {
                tracing::info!("first poll");
                turn.notified().await;
                tracing::info!("second poll");
                current_request()
            }
        };
        let mut answer = InRequest::new(Some(HeaderValue::from_static("r-1")), Box::pin(answer));
        assert!(futures::poll!(&mut answer).is_pending());
        tracing::info!("between");
        assert_eq!(current_request(), None);
        turn.notify_one();
        let Poll::Ready(seen) = futures::poll!(&mut answer) else {
            panic!("the answer is ready");
        };
        assert_eq!(seen, Some(HeaderValue::from_static("r-1")));
        assert_eq!(current_request(), None);
        let panicked = std::panic::catch_unwind(|| {
            in_request(Some(HeaderValue::from_static("r-2")), || {
                panic!("in a handler")
            })
        });
        assert!(panicked.is_err());
        assert_eq!(current_request(), None);
        let text = out.text();
        let named: Vec<bool> = text
            .lines()
            .map(|l| l.contains("request{id=r-1}"))
            .collect();
        assert_eq!(named, [true, false, true], "{text}");
    }
}
