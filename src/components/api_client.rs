//! The one way the browser calls our own JSON endpoints outside server
//! functions (`/auth/userinfo`, `/api/*`): a same-origin `fetch` with the
//! session cookie and the anti-forgery header, which is set here and in
//! [`CsrfClient`](super::csrf_client::CsrfClient) from the same constants.

use serde::de::DeserializeOwned;

/// The HTTP methods the pages use.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Method {
    Get,
    Post,
    Delete,
}

/// Calls `path` on this site (a path starting with one `/`) with the
/// anti-forgery header, and JSON `body` when given. Returns the answer's
/// body; the error is a sentence for the page: the session ended (401), the
/// API's own `message`, or what went wrong on the way.
pub async fn call(
    method: Method,
    path: &str,
    body: Option<serde_json::Value>,
) -> Result<String, String> {
    if !path.starts_with('/') || path.starts_with("//") || path.starts_with("/\\") {
        return Err(format!("Not a path on this site: {path}"));
    }
    send(method, path, body).await
}

/// [`call`], then the answer as `T`.
pub async fn call_json<T: DeserializeOwned>(
    method: Method,
    path: &str,
    body: Option<serde_json::Value>,
) -> Result<T, String> {
    let text = call(method, path, body).await?;
    serde_json::from_str(&text).map_err(|_| "The server's answer was malformed.".to_string())
}

#[cfg(feature = "hydrate")]
async fn send(
    method: Method,
    path: &str,
    body: Option<serde_json::Value>,
) -> Result<String, String> {
    use super::csrf_client::{CSRF_HEADER, CSRF_VALUE};
    use gloo_net::http::{Method as HttpMethod, RequestBuilder};

    let method = match method {
        Method::Get => HttpMethod::GET,
        Method::Post => HttpMethod::POST,
        Method::Delete => HttpMethod::DELETE,
    };
    let builder = RequestBuilder::new(path)
        .method(method)
        .header(CSRF_HEADER, CSRF_VALUE);
    let request = match body {
        Some(json) => builder.json(&json).map_err(|e| e.to_string())?,
        None => builder.build().map_err(|e| e.to_string())?,
    };
    let response = request
        .send()
        .await
        .map_err(|e| format!("The server could not be reached: {e}"))?;
    let text = response.text().await.unwrap_or_default();
    if response.status() == 401 {
        return Err("Your session has ended — sign in again.".into());
    }
    if !response.ok() {
        return Err(error_message(&text, response.status()));
    }
    Ok(text)
}

/// Only the browser calls our APIs this way; on the server there is nothing
/// to call (server functions run in-process there).
#[cfg(not(feature = "hydrate"))]
async fn send(
    _method: Method,
    _path: &str,
    _body: Option<serde_json::Value>,
) -> Result<String, String> {
    Err("This is fetched by the browser.".into())
}

/// The API's own `message`, or the status.
#[cfg_attr(not(feature = "hydrate"), allow(dead_code))]
fn error_message(body: &str, status: u16) -> String {
    serde_json::from_str::<serde_json::Value>(body)
        .ok()
        .and_then(|v| v["message"].as_str().map(str::to_string))
        .unwrap_or_else(|| format!("The request failed ({status})."))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_error_is_the_apis_message_or_the_status() {
        assert_eq!(
            error_message(r#"{"error":"x","message":"No such note."}"#, 404),
            "No such note."
        );
        assert_eq!(error_message("<html>", 502), "The request failed (502).");
    }

    #[test]
    fn only_paths_on_this_site_are_called() {
        let refused = |path: &str| {
            futures::executor::block_on(call(Method::Get, path, None))
                .unwrap_err()
                .starts_with("Not a path on this site")
        };
        assert!(refused("https://evil.example/api"));
        assert!(refused("//evil.example/api"));
        assert!(refused("/\\evil.example/api"));
        assert!(refused("api/notes"));
        assert!(!refused("/api/notes"));
    }
}
