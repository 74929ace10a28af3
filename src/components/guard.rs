//! Sending anonymous visitors to the login, on whichever side runs.

/// The login URL that comes back to `return_to` (a path on this site).
pub fn login_url(return_to: &str) -> String {
    format!("/auth/login?return_to={}", encode_component(return_to))
}

/// Redirects to the login: an HTTP redirect during SSR, a full navigation in
/// the browser (the login is a server route, not a client-side one).
pub fn require_login(return_to: &str) {
    let url = login_url(return_to);
    #[cfg(feature = "ssr")]
    leptos_axum::redirect(&url);
    #[cfg(feature = "hydrate")]
    if let Some(window) = web_sys::window() {
        let _ = window.location().set_href(&url);
    }
    #[cfg(not(any(feature = "ssr", feature = "hydrate")))]
    let _ = url;
}

/// Percent-encodes everything but RFC 3986 unreserved characters and `/`.
fn encode_component(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'.' | b'_' | b'~' | b'/' => {
                out.push(b as char)
            }
            _ => out.push_str(&format!("%{b:02X}")),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn login_url_encodes_the_return_path() {
        assert_eq!(login_url("/profile"), "/auth/login?return_to=/profile");
        assert_eq!(
            login_url("/a?b=c&d#e"),
            "/auth/login?return_to=/a%3Fb%3Dc%26d%23e"
        );
    }
}
