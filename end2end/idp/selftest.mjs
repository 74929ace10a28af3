#!/usr/bin/env node
// Self-test of the dev identity provider: starts server.mjs on a free port
// with a stand-in for the app's back-channel logout endpoint, walks the
// flows the app relies on over real HTTP, stops the server, and prints
// "N passed, N failed". Exits non-zero on any failure.
//
//   node end2end/idp/selftest.mjs
//
// It ends by checking that the Keycloak realm of `docker compose up`
// (deploy/keycloak/realm-demo.json, or SELFTEST_REALM_FILE) agrees with this
// IdP: see realm-agreement.mjs.

import { spawn } from 'node:child_process';
import {
  createHash, createPublicKey, randomBytes, verify,
} from 'node:crypto';
import http from 'node:http';
import { fileURLToPath } from 'node:url';

import { checkRealmAgreement } from './realm-agreement.mjs';

const SERVER = fileURLToPath(new URL('./server.mjs', import.meta.url));
const CLIENT = { id: 'gatehouse', secret: 'gatehouse-dev-secret' };
const M2M = { id: 'gatehouse-m2m', secret: 'gatehouse-m2m-secret' };
const APP = 'http://localhost:45678';
const REDIRECT_URI = `${APP}/auth/callback`;
const TTL = 120;

let passed = 0;
let failed = 0;

function check(name, ok, detail) {
  if (ok) {
    passed += 1;
    console.log(`ok - ${name}`);
  } else {
    failed += 1;
    console.log(`not ok - ${name}${detail === undefined ? '' : `: ${typeof detail === 'string' ? detail : JSON.stringify(detail)}`}`);
  }
  return ok;
}

function must(name, ok, detail) {
  if (!check(name, ok, detail)) throw new Error(`cannot go on after: ${name}`);
}

// -- helpers ----------------------------------------------------------------

const b64url = (buf) => Buffer.from(buf).toString('base64url');

function decodeJwt(jwt) {
  const [header, payload, signature] = jwt.split('.');
  return {
    header: JSON.parse(Buffer.from(header, 'base64url')),
    payload: JSON.parse(Buffer.from(payload, 'base64url')),
    signingInput: `${header}.${payload}`,
    signature: Buffer.from(signature, 'base64url'),
  };
}

function verifyRs256(jwt, jwks) {
  const { header, payload, signingInput, signature } = decodeJwt(jwt);
  if (header.alg !== 'RS256') return { ok: false, reason: `alg ${header.alg}` };
  const jwk = jwks.keys.find((k) => k.kid === header.kid);
  if (!jwk) return { ok: false, reason: `no key ${header.kid}` };
  const key = createPublicKey({ key: jwk, format: 'jwk' });
  return { ok: verify('sha256', Buffer.from(signingInput), key, signature), payload, header };
}

async function freePort() {
  return new Promise((resolve, reject) => {
    const srv = http.createServer();
    srv.listen(0, '127.0.0.1', () => {
      const { port } = srv.address();
      srv.close(() => resolve(port));
    });
    srv.on('error', reject);
  });
}

const sleep = (ms) => new Promise((r) => { setTimeout(r, ms); });

// A path-aware cookie jar, enough for one host.
class CookieJar {
  #cookies = new Map(); // `${name};${path}` -> { name, value, path }

  store(response) {
    for (const header of response.headers.getSetCookie()) {
      const [pair, ...attrs] = header.split(';').map((s) => s.trim());
      const eq = pair.indexOf('=');
      const name = pair.slice(0, eq);
      const value = pair.slice(eq + 1);
      let path = '/';
      let expired = value === '';
      for (const attr of attrs) {
        const [k, v = ''] = attr.split('=');
        if (k.toLowerCase() === 'path') path = v;
        if (k.toLowerCase() === 'max-age' && Number(v) <= 0) expired = true;
        if (k.toLowerCase() === 'expires' && Date.parse(v) < Date.now()) expired = true;
      }
      const key = `${name};${path}`;
      if (expired) this.#cookies.delete(key);
      else this.#cookies.set(key, { name, value, path });
    }
  }

  header(url) {
    const { pathname } = new URL(url);
    return [...this.#cookies.values()]
      .filter((c) => pathname === c.path || pathname.startsWith(c.path.endsWith('/') ? c.path : `${c.path}/`) || c.path === '/')
      .sort((a, b) => b.path.length - a.path.length)
      .map((c) => `${c.name}=${c.value}`)
      .join('; ');
  }

  clear() {
    this.#cookies.clear();
  }
}

function formFields(html) {
  const fields = {};
  for (const m of html.matchAll(/<input\b[^>]*>/g)) {
    const name = /name="([^"]*)"/.exec(m[0])?.[1];
    const value = /value="([^"]*)"/.exec(m[0])?.[1] ?? '';
    if (name) fields[name] = value;
  }
  return fields;
}

function formAction(html) {
  return /<form\b[^>]*action="([^"]+)"/.exec(html)?.[1]?.replaceAll('&amp;', '&');
}

// -- the run ----------------------------------------------------------------

async function main() {
  // Stand-in for the app's back-channel logout endpoint.
  const logoutTokens = [];
  const rp = http.createServer((req, res) => {
    let body = '';
    req.on('data', (c) => { body += c; });
    req.on('end', () => {
      if (req.method === 'POST' && req.url === '/auth/backchannel-logout') {
        logoutTokens.push(new URLSearchParams(body).get('logout_token'));
        res.writeHead(200).end();
      } else {
        res.writeHead(404).end();
      }
    });
  });
  await new Promise((r) => { rp.listen(0, '127.0.0.1', r); });
  const rpPort = rp.address().port;

  // Invalid environment: one clear line, exit 1.
  for (const [name, value] of [['IDP_PORT', 'abc'], ['IDP_ACCESS_TOKEN_TTL', '-5'], ['IDP_ISSUER', 'not a url'], ['IDP_EXPOSE_TOKENS_FOR_TESTS', 'yes']]) {
    const child = spawn(process.execPath, [SERVER], {
      env: { ...process.env, [name]: value }, stdio: ['ignore', 'pipe', 'pipe'],
    });
    let stderr = '';
    child.stderr.on('data', (c) => { stderr += c; });
    const code = await new Promise((r) => { child.on('exit', r); });
    const lines = stderr.split('\n').filter((l) => l && !l.startsWith('oidc-provider WARNING'));
    check(`bad ${name}=${value} exits 1 with one error line`, code === 1 && lines.length === 1 && lines[0].includes(name), { code, stderr });
  }

  const port = await freePort();
  const base = `http://localhost:${port}`;
  const issuer = `${base}/realms/demo`;
  const child = spawn(process.execPath, [SERVER], {
    cwd: '/',
    env: {
      ...process.env,
      IDP_PORT: String(port),
      IDP_ACCESS_TOKEN_TTL: String(TTL),
      IDP_BACKCHANNEL_LOGOUT_URI: `http://localhost:${rpPort}/auth/backchannel-logout`,
      IDP_EXPOSE_TOKENS_FOR_TESTS: '',
    },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let output = '';
  child.stdout.on('data', (c) => { output += c; });
  child.stderr.on('data', (c) => { output += c; });
  const exited = new Promise((r) => { child.on('exit', (code, signal) => r({ code, signal })); });

  try {
    // Up to 30 s: a fresh machine's first start of node and oidc-provider
    // (modules read from a cold disk) took over 10 s once. Every try that
    // is not a 200 waits, whether refused or answered.
    let healthy = false;
    for (let i = 0; i < 300 && !healthy; i += 1) {
      try {
        healthy = (await fetch(`${base}/dev/health`)).status === 200;
      } catch {
        // not listening yet
      }
      if (!healthy) await sleep(100);
    }
    must('server starts and /dev/health is 200', healthy, output);
    check('banner says it is a development IdP, not for production', /DEVELOPMENT IDENTITY PROVIDER/.test(output) && /NOT FOR PRODUCTION/.test(output));
    check('banner shows issuer and users', output.includes(issuer) && output.includes('alice / alice') && output.includes('bob / bob'));
    check('token test hook is off by default: GET /dev/issued-tokens is 404, banner silent',
      (await fetch(`${base}/dev/issued-tokens`)).status === 404 && !output.includes('IDP_EXPOSE_TOKENS_FOR_TESTS'));

    await runFlows({ base, issuer, logoutTokens, output: () => output });
  } catch (err) {
    check('flows ran to the end', false, err.stack ?? String(err));
  } finally {
    child.kill('SIGTERM');
    const timer = sleep(5000).then(() => ({ timeout: true }));
    const result = await Promise.race([exited, timer]);
    check('SIGTERM stops the server cleanly (exit 0)', result.code === 0, result);
    if (result.timeout) child.kill('SIGKILL');
    check('log has one line per request, without tokens', /GET \/realms\/demo\/protocol\/openid-connect\/auth 303/.test(output) && !/code=|id_token_hint=|eyJ/.test(output));
    if (process.env.SELFTEST_VERBOSE) console.log(output);
    rp.close();
  }

  console.log(`\n${passed} passed, ${failed} failed`);
  process.exit(failed === 0 ? 0 : 1);
}

async function runFlows({ base, issuer, logoutTokens }) {
  const jar = new CookieJar();
  // What this run saw the IdP do, for the Keycloak realm agreement at the end.
  const live = {
    issuer, idTokens: {}, userinfo: {},
  };
  const basic = (c) => `Basic ${Buffer.from(`${encodeURIComponent(c.id)}:${encodeURIComponent(c.secret)}`).toString('base64')}`;

  async function request(url, { method = 'GET', form, headers = {} } = {}) {
    const absolute = new URL(url, base).href;
    const h = { ...headers };
    const cookie = jar.header(absolute);
    if (cookie) h.cookie = cookie;
    let body;
    if (form) {
      body = new URLSearchParams(form).toString();
      h['content-type'] = 'application/x-www-form-urlencoded';
    }
    const res = await fetch(absolute, {
      method, headers: h, body, redirect: 'manual',
    });
    jar.store(res);
    const text = await res.text();
    return {
      status: res.status, headers: res.headers, text, url: absolute, location: res.headers.get('location') && new URL(res.headers.get('location'), absolute).href,
    };
  }

  const token = (client, form) => request(`${issuer}/protocol/openid-connect/token`, {
    method: 'POST', form, headers: { authorization: basic(client) },
  }).then((r) => ({ ...r, json: JSON.parse(r.text) }));

  function authorizeUrl(extra = {}) {
    const verifier = b64url(randomBytes(32));
    const params = {
      client_id: CLIENT.id,
      response_type: 'code',
      scope: 'openid profile email offline_access',
      redirect_uri: REDIRECT_URI,
      state: b64url(randomBytes(12)),
      nonce: b64url(randomBytes(12)),
      code_challenge: b64url(createHash('sha256').update(verifier).digest()),
      code_challenge_method: 'S256',
      ...extra,
    };
    for (const [k, v] of Object.entries(params)) if (v === undefined) delete params[k];
    return { url: `${issuer}/protocol/openid-connect/auth?${new URLSearchParams(params)}`, verifier, params };
  }

  // Follows redirects while they stay on the IdP; returns the last response
  // (an IdP page, or the redirect that leaves the IdP).
  async function follow(res) {
    let current = res;
    for (let i = 0; i < 10 && current.location && current.location.startsWith(base); i += 1) {
      current = await request(current.location);
    }
    return current;
  }

  // -- discovery -------------------------------------------------------------
  await request(`${base}/dev/stats/reset`, { method: 'POST' });
  const disco = JSON.parse((await request(`${issuer}/.well-known/openid-configuration`)).text);
  live.disco = disco;
  check('discovery issuer equals the issuer string', disco.issuer === issuer, disco.issuer);
  const oidc = `${issuer}/protocol/openid-connect`;
  check('Keycloak endpoint layout', disco.authorization_endpoint === `${oidc}/auth`
    && disco.token_endpoint === `${oidc}/token`
    && disco.userinfo_endpoint === `${oidc}/userinfo`
    && disco.end_session_endpoint === `${oidc}/logout`
    && disco.jwks_uri === `${oidc}/certs`
    && disco.revocation_endpoint === `${oidc}/revoke`
    && disco.introspection_endpoint === `${oidc}/token/introspect`, disco);
  check('authorization_response_iss_parameter_supported', disco.authorization_response_iss_parameter_supported === true);
  check('backchannel_logout_supported', disco.backchannel_logout_supported === true && disco.backchannel_logout_session_supported === true);
  check('code_challenge_methods_supported is [S256]', JSON.stringify(disco.code_challenge_methods_supported) === '["S256"]');
  check('id_token_signing_alg_values_supported is [RS256]', JSON.stringify(disco.id_token_signing_alg_values_supported) === '["RS256"]');
  check('prompt_values_supported includes create', disco.prompt_values_supported?.includes('create'));
  check('scopes_supported', ['openid', 'profile', 'email', 'offline_access'].every((s) => disco.scopes_supported.includes(s)));
  // RFC 9126: the app pushes its authorization requests when this is named.
  check('pushed_authorization_request_endpoint (PAR), not required', disco.pushed_authorization_request_endpoint === `${oidc}/ext/par/request`
    && !disco.require_pushed_authorization_requests, disco.pushed_authorization_request_endpoint);
  {
    const { params } = authorizeUrl();
    const pushed = await request(disco.pushed_authorization_request_endpoint, {
      method: 'POST', form: params, headers: { authorization: basic(CLIENT) },
    });
    const answer = JSON.parse(pushed.text);
    check('PAR: a pushed request with client_secret_basic gets 201 and a request_uri', pushed.status === 201
      && answer.request_uri?.startsWith('urn:ietf:params:oauth:request_uri:') && answer.expires_in > 0, pushed.text);
    const unauthenticated = await request(disco.pushed_authorization_request_endpoint, { method: 'POST', form: params });
    check('PAR: an unauthenticated push is refused', unauthenticated.status === 401, unauthenticated.status);
  }
  const jwks = JSON.parse((await request(disco.jwks_uri)).text);
  check('JWKS has an RS256 key with a kid', jwks.keys.length === 1 && jwks.keys[0].kty === 'RSA' && jwks.keys[0].kid && !jwks.keys[0].d);

  // -- rejected authorization requests --------------------------------------
  for (const bad of ['http://evil.example.com/auth/callback', 'http://localhost:45678/elsewhere', 'http://localhost.evil.example/auth/callback', 'https://10.0.0.1:3000/auth/callback']) {
    const r = await request(authorizeUrl({ redirect_uri: bad }).url);
    check(`redirect_uri ${bad} is rejected on the IdP`, r.status === 400 && !r.location && r.text.includes('invalid_redirect_uri'), { status: r.status, location: r.location });
  }
  {
    const r = await request(authorizeUrl({ code_challenge: undefined, code_challenge_method: undefined }).url);
    const loc = r.location && new URL(r.location);
    const noPkce = check('authorization without PKCE is refused', loc?.origin === APP && loc.searchParams.get('error') === 'invalid_request', r.location);
    const p = await request(authorizeUrl({ code_challenge_method: 'plain' }).url);
    const noPlain = check('PKCE plain is refused', new URL(p.location ?? 'http://x').searchParams.get('error') === 'invalid_request', p.location);
    live.pkceRequired = Boolean(noPkce && noPlain);
  }

  // -- login: wrong password, then right ------------------------------------
  const first = authorizeUrl();
  let r = await follow(await request(first.url));
  must('authorize leads to the IdP login page', r.status === 200 && r.url.startsWith(`${issuer}/interaction/`), { status: r.status, url: r.url });
  const loginUrl = formAction(r.text);
  check('login form has username, password and one submit button',
    /<input[^>]*name="username"/.test(r.text) && /<input[^>]*name="password"/.test(r.text)
    && (r.text.match(/<button[^>]*type="submit"/g) ?? []).length === 1, r.text);
  r = await request(loginUrl, { method: 'POST', form: { username: 'alice', password: 'wrong' } });
  check('wrong password re-renders the login form with an error', r.status === 200 && !r.location
    && r.text.includes('Invalid username or password.') && /name="password"/.test(r.text), r.status);
  r = await request(loginUrl, { method: 'POST', form: { username: 'alice', password: 'alice' } });
  r = await follow(r);
  const callback = r.location && new URL(r.location);
  must('right password redirects to the app callback', callback && callback.origin === APP && callback.pathname === '/auth/callback', r.location ?? r.text);
  check('callback carries code, state and iss', callback.searchParams.get('code')
    && callback.searchParams.get('state') === first.params.state
    && callback.searchParams.get('iss') === issuer, callback.href);

  // -- code exchange -----------------------------------------------------------
  const badAuth = await token({ id: CLIENT.id, secret: 'nope' }, {
    grant_type: 'authorization_code', code: callback.searchParams.get('code'), redirect_uri: REDIRECT_URI, code_verifier: first.verifier,
  });
  check('wrong client secret is refused (401 invalid_client)', badAuth.status === 401 && badAuth.json.error === 'invalid_client', badAuth.json);
  const tokens = await token(CLIENT, {
    grant_type: 'authorization_code', code: callback.searchParams.get('code'), redirect_uri: REDIRECT_URI, code_verifier: first.verifier,
  });
  must('code exchange with client_secret_basic succeeds', tokens.status === 200 && tokens.json.id_token && tokens.json.access_token, tokens.json);
  check('refresh token issued for offline_access', typeof tokens.json.refresh_token === 'string', Object.keys(tokens.json));
  check(`access token lifetime is IDP_ACCESS_TOKEN_TTL (${TTL}s)`, tokens.json.expires_in === TTL, tokens.json.expires_in);
  check('granted scope includes offline_access', tokens.json.scope?.split(' ').includes('offline_access'), tokens.json.scope);
  const idt = verifyRs256(tokens.json.id_token, jwks);
  check('ID token signature verifies with the JWKS (RS256)', idt.ok, idt.reason);
  const claims = idt.payload;
  live.idTokens.alice = claims;
  check('ID token iss, aud, nonce', claims.iss === issuer && claims.aud === CLIENT.id && claims.nonce === first.params.nonce, claims);
  check('ID token has name, email, picture, sid', claims.name === 'Alice Liddell' && claims.email === 'alice@example.com'
    && claims.email_verified === true && claims.picture?.startsWith(issuer) && typeof claims.sid === 'string'
    && claims.given_name === 'Alice' && claims.family_name === 'Liddell' && claims.preferred_username === 'alice', claims);
  check('ID token has realm_access.roles [admin, user]', JSON.stringify(claims.realm_access?.roles) === '["admin","user"]', claims.realm_access);
  check('ID token says when the user signed in (auth_time, as Keycloak always does)',
    Number.isInteger(claims.auth_time) && claims.auth_time <= claims.iat && claims.iat - claims.auth_time < 60, claims);
  check('ID token lacks updated_at and locale', !('updated_at' in claims) && !('locale' in claims), claims);
  const avatar = await request(claims.picture);
  check('picture is served by the IdP as SVG', avatar.status === 200 && avatar.headers.get('content-type') === 'image/svg+xml' && avatar.text.includes('<svg') && avatar.text.includes('AL'), avatar.status);
  check('unknown avatar is 404', (await request(`${issuer}/avatars/nobody.svg`)).status === 404);

  // -- userinfo ------------------------------------------------------------------
  const ui = await request(`${oidc}/userinfo`, { headers: { authorization: `Bearer ${tokens.json.access_token}` } });
  const userinfo = JSON.parse(ui.text);
  live.userinfo.alice = userinfo;
  check('userinfo returns the user with realm_access', ui.status === 200 && userinfo.sub === claims.sub
    && userinfo.email === 'alice@example.com' && JSON.stringify(userinfo.realm_access?.roles) === '["admin","user"]', userinfo);
  check('userinfo adds updated_at and locale', typeof userinfo.updated_at === 'number' && userinfo.locale === 'en-GB', userinfo);
  const noTok = await request(`${oidc}/userinfo`, { headers: { authorization: 'Bearer nope' } });
  check('userinfo with a bad token is 401', noTok.status === 401, noTok.status);

  // -- refresh + rotation --------------------------------------------------------
  const refreshed = await token(CLIENT, { grant_type: 'refresh_token', refresh_token: tokens.json.refresh_token });
  check('refresh grant works', refreshed.status === 200 && refreshed.json.access_token && refreshed.json.access_token !== tokens.json.access_token, refreshed.json);
  check('refresh token is rotated', refreshed.json.refresh_token && refreshed.json.refresh_token !== tokens.json.refresh_token);
  const refreshed2 = await token(CLIENT, { grant_type: 'refresh_token', refresh_token: refreshed.json.refresh_token });
  check('rotated refresh token works once more', refreshed2.status === 200 && refreshed2.json.refresh_token, refreshed2.json);
  const ui2 = await request(`${oidc}/userinfo`, { headers: { authorization: `Bearer ${refreshed2.json.access_token}` } });
  check('refreshed access token works at userinfo', ui2.status === 200, ui2.status);

  const introspect = await request(`${oidc}/token/introspect`, {
    method: 'POST', form: { token: refreshed2.json.access_token }, headers: { authorization: basic(CLIENT) },
  });
  check('introspection says the access token is active', JSON.parse(introspect.text).active === true, introspect.text);

  // -- machine-to-machine client ----------------------------------------------------
  const m2m = await token(M2M, { grant_type: 'client_credentials', scope: 'notes:read' });
  const m2mJwt = m2m.json.access_token && verifyRs256(m2m.json.access_token, jwks);
  live.m2mAccessToken = m2mJwt?.ok ? m2mJwt.payload : undefined;
  check('client_credentials gives an RS256 JWT for the API audience with notes:read', m2m.status === 200 && m2mJwt?.ok
    && m2mJwt.payload.aud === 'http://localhost:3000/api' && m2mJwt.payload.scope === 'notes:read'
    && m2mJwt.payload.iss === issuer && m2mJwt.payload.client_id === M2M.id, { json: m2m.json, payload: m2mJwt?.payload });
  const m2mCode = await token(M2M, { grant_type: 'authorization_code', code: 'x', redirect_uri: REDIRECT_URI });
  check('m2m client cannot use the authorization code grant', m2mCode.status === 400 && ['unauthorized_client', 'invalid_request'].includes(m2mCode.json.error), m2mCode.json);

  // -- stats -----------------------------------------------------------------------
  let stats = JSON.parse((await request(`${base}/dev/stats`)).text);
  check('/dev/stats counts token requests by grant type', stats.token_requests.authorization_code === 3
    && stats.token_requests.refresh_token === 2 && stats.token_requests.client_credentials === 1, stats);

  // -- another loopback port, with the existing IdP session -------------------------------
  {
    const other = authorizeUrl({ redirect_uri: 'http://127.0.0.1:51234/auth/callback' });
    const res = await follow(await request(other.url));
    const loc = res.location && new URL(res.location);
    check('127.0.0.1 on any port is accepted; existing IdP session skips the login page',
      loc?.origin === 'http://127.0.0.1:51234' && loc.searchParams.get('code'), res.location ?? res.status);
  }

  // -- RP-initiated logout + back-channel logout -------------------------------------
  const logoutState = 'bye123';
  r = await request(`${oidc}/logout?${new URLSearchParams({
    id_token_hint: tokens.json.id_token, post_logout_redirect_uri: `${APP}/auth/logged-out`, state: logoutState,
  })}`);
  check('logout page auto-submits the confirmation form', r.status === 200 && /<script>[^<]*submit\(\)/.test(r.text) && formFields(r.text).logout === 'yes', r.text);
  const confirm = await request(formAction(r.text), { method: 'POST', form: formFields(r.text) });
  check('logout confirmation redirects to post_logout_redirect_uri with state', confirm.status === 303 && confirm.location === `${APP}/auth/logged-out?state=${logoutState}`, { status: confirm.status, location: confirm.location });
  check('one back-channel logout token delivered to the app', logoutTokens.length === 1, logoutTokens.length);
  if (logoutTokens.length) {
    const lt = verifyRs256(logoutTokens[0], jwks);
    if (lt.ok) live.logoutTokenSid = lt.payload.sid;
    check('logout token is signed, carries sid/sub/events and no nonce', lt.ok && lt.payload.sid === claims.sid
      && lt.payload.sub === claims.sub && lt.payload.aud === CLIENT.id && lt.payload.iss === issuer
      && lt.payload.events?.['http://schemas.openid.net/event/backchannel-logout'] && !('nonce' in lt.payload), lt.payload);
  }
  stats = JSON.parse((await request(`${base}/dev/stats`)).text);
  check('/dev/stats counts back-channel logouts', stats.backchannel_logouts_sent === 1, stats);
  {
    const loose = await request(`${oidc}/logout?${new URLSearchParams({ id_token_hint: tokens.json.id_token, post_logout_redirect_uri: 'http://evil.example.com/' })}`);
    check('non-loopback post_logout_redirect_uri is refused', loose.status === 400 && loose.text.includes('post_logout_redirect_uri'), loose.status);
    const elsewhere = await request(`${oidc}/logout?${new URLSearchParams({ id_token_hint: tokens.json.id_token, post_logout_redirect_uri: `${APP}/` })}`);
    check('a loopback post_logout_redirect_uri other than /auth/logged-out is refused', elsewhere.status === 400 && elsewhere.text.includes('post_logout_redirect_uri'), elsewhere.status);
  }

  // After logout, signing in asks for the password again.
  const again = authorizeUrl();
  r = await follow(await request(again.url));
  check('after logout, the IdP asks for the password again', r.status === 200 && /name="password"/.test(r.text) && r.url.startsWith(`${issuer}/interaction/`), { status: r.status, location: r.location });

  // -- sign-up (prompt=create) ----------------------------------------------------------
  const signup = authorizeUrl({ prompt: 'create' });
  r = await follow(await request(signup.url));
  check('prompt=create shows the sign-up form', r.status === 200 && ['username', 'password', 'name', 'email'].every((n) => new RegExp(`<input[^>]*name="${n}"`).test(r.text))
    && (r.text.match(/<button[^>]*type="submit"/g) ?? []).length === 1, r.status);
  const signupAction = formAction(r.text);
  r = await request(signupAction, {
    method: 'POST', form: { username: 'alice', password: 'x', name: 'Another Alice', email: 'a2@example.com' },
  });
  check('duplicate username is refused with a visible error', r.status === 200 && r.text.includes('already taken'), r.status);
  r = await follow(await request(signupAction, {
    method: 'POST', form: { username: 'carol', password: 'carol', name: 'Carol Danvers', email: 'carol@example.com' },
  }));
  const cb2 = r.location && new URL(r.location);
  must('sign-up logs the new user in and returns to the app', cb2?.origin === APP && cb2.searchParams.get('code') && cb2.searchParams.get('state') === signup.params.state, r.location ?? r.text);
  const carol = await token(CLIENT, {
    grant_type: 'authorization_code', code: cb2.searchParams.get('code'), redirect_uri: REDIRECT_URI, code_verifier: signup.verifier,
  });
  const carolClaims = carol.json.id_token && decodeJwt(carol.json.id_token).payload;
  check('new user has role user, email_verified false, and a refresh token', carolClaims?.preferred_username === 'carol'
    && carolClaims.name === 'Carol Danvers' && carolClaims.email_verified === false
    && JSON.stringify(carolClaims.realm_access?.roles) === '["user"]' && carol.json.refresh_token, carolClaims ?? carol.json);
  const carolAvatar = await request(carolClaims?.picture ?? `${issuer}/avatars/carol.svg`);
  check('new user has an avatar', carolAvatar.status === 200 && carolAvatar.text.includes('CD'));

  // New user can sign in with the password (fresh browser).
  jar.clear();
  const carolLogin = authorizeUrl();
  r = await follow(await request(carolLogin.url));
  r = await follow(await request(formAction(r.text), { method: 'POST', form: { username: 'carol', password: 'carol' } }));
  check('new user can sign in with the password', r.location?.startsWith(`${APP}/auth/callback?code=`), r.location ?? r.status);

  // Bob: email_verified false, single role.
  jar.clear();
  const bobLogin = authorizeUrl({ scope: 'openid profile email' });
  r = await follow(await request(bobLogin.url));
  r = await follow(await request(formAction(r.text), { method: 'POST', form: { username: 'bob', password: 'bob' } }));
  const bobCode = new URL(r.location).searchParams.get('code');
  const bob = await token(CLIENT, {
    grant_type: 'authorization_code', code: bobCode, redirect_uri: REDIRECT_URI, code_verifier: bobLogin.verifier,
  });
  const bobClaims = decodeJwt(bob.json.id_token).payload;
  live.idTokens.bob = bobClaims;
  check('bob: Bob Builder, email_verified false, roles [user]', bobClaims.name === 'Bob Builder' && bobClaims.email === 'bob@example.com'
    && bobClaims.email_verified === false && JSON.stringify(bobClaims.realm_access.roles) === '["user"]', bobClaims);
  check('no offline_access requested: no refresh token', !('refresh_token' in bob.json), Object.keys(bob.json));

  // A code used twice is refused (and, per RFC 6749 §4.1.2, what it gave is revoked).
  const replay = await token(CLIENT, {
    grant_type: 'authorization_code', code: bobCode, redirect_uri: REDIRECT_URI, code_verifier: bobLogin.verifier,
  });
  check('authorization code cannot be used twice', replay.status === 400 && replay.json.error === 'invalid_grant', replay.json);
  const bobUi = await request(`${oidc}/userinfo`, { headers: { authorization: `Bearer ${bob.json.access_token}` } });
  check('code reuse revokes the tokens it issued', bobUi.status === 401, bobUi.status);

  // Cancel on the login page returns access_denied to the app.
  jar.clear();
  const cancel = authorizeUrl();
  r = await follow(await request(cancel.url));
  const abortHref = /href="([^"]*\/abort)"/.exec(r.text)?.[1];
  r = await follow(await request(abortHref));
  check('cancel returns error=access_denied to the app', r.location && new URL(r.location).searchParams.get('error') === 'access_denied', r.location);

  // Reusing an already-rotated refresh token is refused.
  const reuse = await token(CLIENT, { grant_type: 'refresh_token', refresh_token: tokens.json.refresh_token });
  live.rotatedRefreshRefused = check('an already-rotated refresh token is refused', reuse.status === 400 && reuse.json.error === 'invalid_grant', reuse.json);

  await request(`${base}/dev/stats/reset`, { method: 'POST' });
  stats = JSON.parse((await request(`${base}/dev/stats`)).text);
  check('POST /dev/stats/reset zeroes the counters', stats.token_requests.authorization_code === 0
    && stats.token_requests.refresh_token === 0 && stats.token_requests.client_credentials === 0
    && stats.backchannel_logouts_sent === 0, stats);

  // -- the Keycloak realm of `docker compose up` agrees with this IdP ------------------
  live.accepts = {
    // An allowed redirect_uri gets a redirect; a refused one a 400 page on the IdP.
    redirectUri: async (uri) => {
      const res = await request(authorizeUrl({ redirect_uri: uri }).url);
      return res.status === 303 && Boolean(res.location);
    },
    postLogoutUri: async (uri) => {
      const res = await request(`${oidc}/logout?${new URLSearchParams({ client_id: CLIENT.id, post_logout_redirect_uri: uri })}`);
      return res.status === 200;
    },
  };
  await checkRealmAgreement(check, live);
}

main().catch((err) => {
  console.error(err);
  process.exit(1);
});
