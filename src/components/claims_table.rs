//! Claims as readable tables.

use leptos::prelude::*;

use crate::types::{ClaimDiff, ClaimRow};

#[component]
pub fn ClaimsTable(rows: Vec<ClaimRow>) -> impl IntoView {
    view! {
        <table class="claims" data-testid="id-token-claims">
            <thead><tr><th>"Claim"</th><th>"Value"</th></tr></thead>
            <tbody>
                {rows
                    .into_iter()
                    .map(|r| view! { <tr><td><code>{r.name}</code></td><td class="value">{r.value}</td></tr> })
                    .collect_view()}
            </tbody>
        </table>
    }
}

/// The ID token's claims beside the IdP's userinfo answer, with differences marked.
#[component]
pub fn ClaimsDiffTable(diffs: Vec<ClaimDiff>) -> impl IntoView {
    view! {
        <table class="claims diff" data-testid="userinfo-diff">
            <thead><tr><th>"Claim"</th><th>"ID token"</th><th>"Userinfo (now)"</th><th>""</th></tr></thead>
            <tbody>
                {diffs
                    .into_iter()
                    .map(|d| {
                        let status = d.status();
                        let class = format!("status-{}", status.replace(' ', "-"));
                        view! {
                            <tr class=class>
                                <td><code>{d.name}</code></td>
                                <td class="value">{d.id_token.unwrap_or_default()}</td>
                                <td class="value">{d.userinfo.unwrap_or_default()}</td>
                                <td class="status">{status}</td>
                            </tr>
                        }
                    })
                    .collect_view()}
            </tbody>
        </table>
    }
}
