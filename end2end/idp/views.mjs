// HTML of the dev identity provider: plain server-rendered pages with inline
// styles and no external assets, so they work offline and without JavaScript
// (except the logout page, which auto-submits its confirmation form).

export function esc(value) {
  return String(value ?? '')
    .replaceAll('&', '&amp;')
    .replaceAll('<', '&lt;')
    .replaceAll('>', '&gt;')
    .replaceAll('"', '&quot;')
    .replaceAll("'", '&#39;');
}

const STYLE = `
  *{box-sizing:border-box}
  body{margin:0;font:16px/1.5 system-ui,-apple-system,"Segoe UI",Roboto,sans-serif;background:#f3f4f6;color:#111827}
  .dev{background:#b91c1c;color:#fff;text-align:center;font-size:13px;font-weight:600;padding:6px 12px;letter-spacing:.02em}
  main{max-width:380px;margin:48px auto;padding:0 16px}
  .card{background:#fff;border-radius:10px;box-shadow:0 1px 3px rgba(0,0,0,.12);padding:28px}
  h1{font-size:22px;margin:0 0 4px}
  .sub{color:#6b7280;margin:0 0 20px;font-size:14px}
  label{display:block;font-size:14px;font-weight:600;margin:14px 0 4px}
  input{width:100%;padding:9px 11px;border:1px solid #d1d5db;border-radius:6px;font:inherit}
  input:focus{outline:2px solid #2563eb;outline-offset:1px;border-color:#2563eb}
  button{margin-top:20px;width:100%;padding:10px;border:0;border-radius:6px;background:#2563eb;color:#fff;font:inherit;font-weight:600;cursor:pointer}
  button:hover{background:#1d4ed8}
  .error{background:#fef2f2;border:1px solid #fecaca;color:#991b1b;border-radius:6px;padding:9px 11px;margin:0 0 8px;font-size:14px}
  .alt{margin:18px 0 0;font-size:14px;text-align:center;color:#6b7280}
  .hint{margin:14px 0 0;font-size:13px;color:#6b7280;text-align:center}
  a{color:#2563eb}
  code{background:#f3f4f6;padding:1px 4px;border-radius:4px}
  pre{white-space:pre-wrap;word-break:break-word;font-size:13px;margin:4px 0}
`;

export function page(title, body, { head = '' } = {}) {
  return `<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<meta name="robots" content="noindex">
<title>${esc(title)} · Gatehouse dev IdP</title>
<style>${STYLE}</style>${head}
</head>
<body>
<div class="dev" role="note">Development identity provider — not for production</div>
<main><div class="card">
${body}
</div></main>
</body>
</html>`;
}

function errorBox(error) {
  return error ? `<p class="error" role="alert">${esc(error)}</p>` : '';
}

export function loginPage({
  action, signupUrl, abortUrl, clientId, username = '', error,
}) {
  return page('Sign in', `
<h1>Sign in</h1>
<p class="sub">to continue to <strong>${esc(clientId)}</strong></p>
${errorBox(error)}
<form method="post" action="${esc(action)}" autocomplete="off" novalidate>
  <label for="username">Username</label>
  <input id="username" name="username" autocomplete="username" autocapitalize="none" spellcheck="false" value="${esc(username)}"${username ? '' : ' autofocus'}>
  <label for="password">Password</label>
  <input id="password" name="password" type="password" autocomplete="current-password"${username ? ' autofocus' : ''}>
  <button type="submit">Sign in</button>
</form>
<p class="alt">No account? <a href="${esc(signupUrl)}">Create one</a> · <a href="${esc(abortUrl)}">Cancel</a></p>
<p class="hint">Dev users: <code>alice</code>/<code>alice</code> (admin), <code>bob</code>/<code>bob</code></p>
`);
}

export function signupPage({
  action, loginUrl, abortUrl, clientId, values = {}, error,
}) {
  return page('Create an account', `
<h1>Create an account</h1>
<p class="sub">for <strong>${esc(clientId)}</strong></p>
${errorBox(error)}
<form method="post" action="${esc(action)}" autocomplete="off" novalidate>
  <label for="username">Username</label>
  <input id="username" name="username" autocomplete="username" autocapitalize="none" spellcheck="false" value="${esc(values.username)}" autofocus>
  <label for="password">Password</label>
  <input id="password" name="password" type="password" autocomplete="new-password">
  <label for="name">Full name</label>
  <input id="name" name="name" autocomplete="name" value="${esc(values.name)}">
  <label for="email">Email</label>
  <input id="email" name="email" type="email" autocomplete="email" value="${esc(values.email)}">
  <button type="submit">Create account</button>
</form>
<p class="alt">Already registered? <a href="${esc(loginUrl)}">Sign in</a> · <a href="${esc(abortUrl)}">Cancel</a></p>
`);
}

export function messagePage(title, message) {
  return page(title, `<h1>${esc(title)}</h1><p>${esc(message)}</p>`);
}

export function errorPage(out) {
  const rows = Object.entries(out)
    .map(([key, value]) => `<pre><strong>${esc(key)}</strong>: ${esc(value)}</pre>`)
    .join('');
  return page('Error', `<h1>Something went wrong</h1><p class="sub">The identity provider rejected the request.</p>${rows}`);
}

// The provider's own confirmation form, plus `logout=yes` (end the whole IdP
// session, not only this client's part) and a script that submits it at once.
export function logoutPage(form) {
  const confirmed = form.replace(
    '</form>',
    '<input type="hidden" name="logout" value="yes"/><noscript><button type="submit">Sign out</button></noscript></form>',
  );
  return page('Signing out', `
<h1>Signing out…</h1>
<p class="sub">Ending your session at the identity provider.</p>
${confirmed}
<script>document.forms[0].submit();</script>
`);
}

export function postLogoutPage(clientName) {
  return page('Signed out', `
<h1>You are signed out</h1>
<p>Your session at the identity provider has ended${clientName ? ` (${esc(clientName)})` : ''}. You can close this tab.</p>
`);
}

const PALETTE = ['#2563eb', '#7c3aed', '#db2777', '#ea580c', '#16a34a', '#0891b2', '#4f46e5', '#b45309'];

export function avatarSvg(name, seed) {
  const initials = name
    .split(/\s+/)
    .filter(Boolean)
    .slice(0, 2)
    .map((part) => [...part][0].toUpperCase())
    .join('') || '?';
  let hash = 0;
  for (const ch of seed) hash = (hash * 31 + ch.codePointAt(0)) >>> 0;
  const color = PALETTE[hash % PALETTE.length];
  return `<svg xmlns="http://www.w3.org/2000/svg" width="128" height="128" viewBox="0 0 128 128" role="img" aria-label="${esc(name)}">
<rect width="128" height="128" rx="64" fill="${color}"/>
<text x="64" y="64" dy=".35em" text-anchor="middle" font-family="system-ui,Segoe UI,Roboto,sans-serif" font-size="52" font-weight="600" fill="#fff">${esc(initials)}</text>
</svg>
`;
}
