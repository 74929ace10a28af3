use leptos::prelude::*;

use crate::{
    components::{
        api_client::{self, Method},
        claims_table::{ClaimsDiffTable, ClaimsTable},
        guard::RequireLogin,
        time::format_utc,
        user_menu::{Avatar, SignOutButton},
    },
    types::{ClaimDiff, ClaimRow, UserView},
};

/// `/profile`: needs a session; anonymous visitors go to the login and come back.
#[component]
pub fn ProfilePage() -> impl IntoView {
    view! {
        <RequireLogin return_to="/profile" error_prefix="Your profile could not be loaded: " let:user>
            <Profile user/>
        </RequireLogin>
    }
}

#[component]
fn Profile(user: UserView) -> impl IntoView {
    let id_rows = StoredValue::new(user.id_token_claims.clone());
    let fetch = Action::new_local(|_: &()| fetch_userinfo());
    let verified = match user.email_verified {
        Some(true) => view! { <span class="badge ok">"verified"</span> }.into_any(),
        Some(false) => view! { <span class="badge warn">"not verified"</span> }.into_any(),
        None => ().into_any(),
    };
    let times = user.session.clone();
    view! {
        <section class="profile" data-testid="profile">
            <div class="profile-head">
                <Avatar user=user.clone() class="avatar large"/>
                <div>
                    <h1 data-testid="profile-name">{user.name.clone()}</h1>
                    <p class="muted">{user.preferred_username.clone().map(|u| format!("@{u}"))}</p>
                    <p data-testid="profile-email">
                        {user.email.clone().unwrap_or_else(|| "no email".into())} " " {verified}
                    </p>
                </div>
            </div>
            <h2>"Roles"</h2>
            <ul class="roles" data-testid="profile-roles">
                {if user.roles.is_empty() {
                    view! { <li class="muted">"none"</li> }.into_any()
                } else {
                    user.roles.iter().map(|r| view! { <li class="role">{r.clone()}</li> }).collect_view().into_any()
                }}
            </ul>
            <h2>"Session"</h2>
            <dl class="times">
                <dt>"Signed in"</dt><dd>{format_utc(times.created_at)}</dd>
                <dt>"Ends if idle until"</dt><dd>{format_utc(times.idle_expires_at)}</dd>
                <dt>"Ends at the latest"</dt><dd>{format_utc(times.absolute_expires_at)}</dd>
                <dt>"Access token expires (held by the server)"</dt>
                <dd>{times.access_token_expires_at.map(format_utc).unwrap_or_else(|| "unknown".into())}</dd>
            </dl>
            <h2>"ID token claims"</h2>
            <p class="muted">"What the identity provider asserted at sign-in, verified by the server. The token itself never left it."</p>
            <ClaimsTable rows=user.id_token_claims.clone()/>
            <h2>"Userinfo, fetched now"</h2>
            <p class="muted">"The server asks the identity provider's userinfo endpoint with the session's access token, and shows what differs."</p>
            <button class="button" data-testid="fetch-userinfo" on:click=move |_| { fetch.dispatch_local(()); }>
                {move || if fetch.pending().get() { "Fetching…" } else { "Fetch from the identity provider" }}
            </button>
            {move || fetch.value().get().map(|result| match result {
                Ok(rows) => view! { <ClaimsDiffTable diffs=ClaimDiff::compare(&id_rows.get_value(), &rows)/> }.into_any(),
                Err(e) => view! { <p class="error" data-testid="userinfo-error">{e}</p> }.into_any(),
            })}
            <div class="profile-foot"><SignOutButton/></div>
        </section>
    }
}

/// `GET /auth/userinfo` from the browser (through [`api_client`], which sends
/// the anti-forgery header).
async fn fetch_userinfo() -> Result<Vec<ClaimRow>, String> {
    let body: serde_json::Value =
        api_client::call_json(Method::Get, "/auth/userinfo", None).await?;
    match body.get("claims").and_then(|c| c.as_object()) {
        Some(claims) => Ok(ClaimRow::rows(claims)),
        None => Err("The server's answer was malformed.".into()),
    }
}
