// 7. Token hygiene: after a full sign-in, a profile visit, a userinfo fetch and
// a sign-out, the browser holds one opaque HttpOnly cookie and nothing else,
// and no response from the app ever carried a token (with the one exception
// RP-Initiated Logout 1.0 requires: the `id_token_hint` in the Location of the
// /auth/logout redirect to the IdP's end-session endpoint).
import { expect, test, type Response } from '@playwright/test';

import { clickWhenHydrated, submitIdpLogin } from './support/auth';
import {
  APP_URL, IDP_URL, ISSUER, SESSION_COOKIE,
} from './support/env';

const JWT = /eyJ[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+\.[A-Za-z0-9_-]*/;
const END_SESSION = `${ISSUER}/protocol/openid-connect/logout`;
const LOGOUT_COOKIE = 'gatehouse_logout';

interface Seen {
  method: string;
  url: string;
  status: number;
  headers: { name: string; value: string }[];
  body?: Buffer;
  bodyError?: string;
  eventStream?: boolean;
}

interface IssuedTokens {
  grant_type: string;
  client_id: string | null;
  access_token?: string;
  refresh_token?: string;
  id_token?: string;
}

function isRedirect(status: number): boolean {
  return status >= 300 && status < 400;
}

async function record(response: Response): Promise<Seen> {
  const request = response.request();
  const seen: Seen = {
    method: request.method(),
    url: response.url(),
    status: response.status(),
    headers: await response.headersArray(),
  };
  // An event stream (`/auth/events`) never ends, so its body cannot be read
  // whole; its headers are still scanned, and it only ever sends "ended".
  const eventStream = seen.headers.some(
    (h) => h.name.toLowerCase() === 'content-type' && h.value.includes('text/event-stream'),
  );
  seen.eventStream = eventStream;
  if (!isRedirect(seen.status) && !eventStream) {
    try {
      seen.body = await response.body();
    } catch (err) {
      seen.bodyError = String(err);
    }
  }
  return seen;
}

function cookieName(setCookie: string): string {
  return setCookie.split(';', 1)[0].split('=', 1)[0].trim();
}

function cookieAttributes(setCookie: string): Map<string, string> {
  const attributes = new Map<string, string>();
  for (const part of setCookie.split(';').slice(1)) {
    const [key, ...value] = part.split('=');
    attributes.set(key.trim().toLowerCase(), value.join('=').trim());
  }
  return attributes;
}

/** The tokens the shared IdP issued to the app's client, as far back as its hook keeps them. */
async function issuedToApp(): Promise<IssuedTokens[]> {
  // The hook exists only with IDP_EXPOSE_TOKENS_FOR_TESTS=1.
  const hook = await fetch(`${IDP_URL}/dev/issued-tokens`);
  expect(hook.status, 'the dev IdP must run with IDP_EXPOSE_TOKENS_FOR_TESTS=1 (see playwright.config.ts)').toBe(200);
  return ((await hook.json()) as { tokens: IssuedTokens[] }).tokens.filter((t) => t.client_id === 'gatehouse');
}

function tokenValues(t: IssuedTokens): string[] {
  return [t.access_token, t.refresh_token, t.id_token].filter((v): v is string => Boolean(v));
}

test('no token reaches the browser: one HttpOnly cookie, empty storage, clean responses', async ({ page, context }) => {
  // What was issued before this test started is not this test's sign-in.
  const before = new Set((await issuedToApp()).flatMap(tokenValues));
  const appResponses: Promise<Seen>[] = [];
  const appUrls: string[] = [];
  const idpCookieNames = new Set<string>();
  context.on('response', (response) => {
    const url = response.url();
    if (url.startsWith(`${APP_URL}/`)) {
      appUrls.push(url);
      appResponses.push(record(response));
    } else if (url.startsWith(`${IDP_URL}/`)) {
      void response.headersArray().then((headers) => {
        for (const h of headers) if (h.name.toLowerCase() === 'set-cookie') idpCookieNames.add(cookieName(h.value));
      }).catch(() => {});
    }
  });

  // A body can only be read while its page is current, so every step lets
  // the page finish loading (the debug wasm is large) before moving on.
  const settle = async () => {
    // Not 'networkidle': the open event stream keeps the network busy.
    // Wait for the load and for the wasm bundle (hydration) instead.
    await page.waitForLoadState('load');
    await expect.poll(() => appUrls.some((u) => u.endsWith('.wasm')), { timeout: 30_000 }).toBe(true);
    await Promise.all(appResponses.slice());
  };

  // A full sign-in, a profile visit and a userinfo fetch through the BFF.
  await page.goto('/');
  await settle();
  await page.locator('a[href="/auth/login"]').first().click();
  await submitIdpLogin(page, { appOrigin: APP_URL, idpOrigin: IDP_URL });
  await expect(page.getByTestId('user-menu')).toBeVisible();
  await settle();
  await page.goto('/profile');
  await expect(page.getByTestId('profile')).toBeVisible();
  await settle();
  const diff = page.locator('table[data-testid=userinfo-diff]');
  await clickWhenHydrated(
    page,
    () => page.getByTestId('fetch-userinfo').click(),
    () => expect(diff).toBeVisible({ timeout: 3_000 }),
  );
  await settle();

  // (b) Nothing in web storage on the app's origin.
  const storage = await page.evaluate(async () => ({
    origin: window.location.origin,
    localStorage: Object.keys(window.localStorage),
    sessionStorage: Object.keys(window.sessionStorage),
    indexedDB: await window.indexedDB.databases(),
    caches: 'caches' in window ? await window.caches.keys() : [],
  }));
  expect(storage.origin).toBe(APP_URL);
  expect(storage.localStorage).toEqual([]);
  expect(storage.sessionStorage).toEqual([]);
  expect(storage.indexedDB).toEqual([]);
  expect(storage.caches).toEqual([]);

  // (a) The jar: the session cookie as the contract says; any other cookie on
  // "localhost" was set by the IdP (cookies ignore ports), not by the app.
  const jar = await context.cookies(APP_URL);
  const session = jar.find((c) => c.name === SESSION_COOKIE);
  expect(session, `${SESSION_COOKIE} in the cookie jar`).toBeDefined();
  expect(session!.httpOnly).toBe(true);
  expect(session!.sameSite).toBe('Lax');
  expect(session!.path).toBe('/');
  expect(session!.domain).toBe('localhost');
  expect(session!.secure).toBe(false);
  expect(session!.value).not.toMatch(JWT);
  const foreign = jar.filter((c) => c.name !== SESSION_COOKIE && !idpCookieNames.has(c.name));
  expect(foreign.map((c) => c.name), 'cookies set by neither the app nor the IdP').toEqual([]);

  // Sign out, so that the logout redirect is part of what is checked.
  await page.getByRole('button', { name: 'Sign out' }).first().click();
  await page.waitForURL(`${APP_URL}/`);
  await expect(page.locator('a[href="/auth/login"]').first()).toBeVisible();
  await settle();

  // The tokens the IdP issued to the app during this test (the hook keeps the
  // last ones of the shared IdP, earlier tests' too: those are scanned for as
  // well, but only this test's prove that its own sign-in was recorded).
  const issued = await issuedToApp();
  const ours = issued.filter((t) => !tokenValues(t).some((v) => before.has(v)));
  expect(ours.length, 'the app obtained tokens from the IdP during this test').toBeGreaterThan(0);
  const secrets = new Map<string, string>();
  for (const entry of issued) {
    for (const kind of ['access_token', 'refresh_token', 'id_token'] as const) {
      const value = entry[kind];
      if (value) secrets.set(value, kind);
    }
  }
  expect(ours.flatMap((t) => (['access_token', 'refresh_token', 'id_token'] as const).filter((k) => t[k])))
    .toEqual(expect.arrayContaining(['access_token', 'refresh_token', 'id_token']));
  const idTokens = new Set(ours.map((t) => t.id_token).filter(Boolean));

  function leaks(text: string): string[] {
    const found: string[] = [];
    const jwt = JWT.exec(text);
    if (jwt) found.push(`a JWT (${jwt[0].slice(0, 24)}…)`);
    for (const [value, kind] of secrets) if (text.includes(value)) found.push(`the ${kind} value`);
    return found;
  }

  const seen = await Promise.all(appResponses);
  const problems: string[] = [];
  const logoutRedirects: Seen[] = [];
  const appSetCookies: string[] = [];

  for (const r of seen) {
    const where = `${r.method} ${r.url} (${r.status})`;
    const path = new URL(r.url).pathname;
    for (const leak of leaks(r.url)) problems.push(`${where}: URL contains ${leak}`);

    const isLogoutRedirect = r.method === 'POST' && path === '/auth/logout' && r.status === 303;
    if (isLogoutRedirect) logoutRedirects.push(r);
    for (const { name, value } of r.headers) {
      const lower = name.toLowerCase();
      if (lower === 'set-cookie') appSetCookies.push(value);
      // The single allowed exception, checked precisely below.
      if (isLogoutRedirect && lower === 'location') continue;
      for (const leak of leaks(value)) problems.push(`${where}: header ${name} contains ${leak}`);
    }

    if (r.body) {
      for (const leak of leaks(r.body.toString('latin1'))) problems.push(`${where}: body contains ${leak}`);
    } else if (!isRedirect(r.status) && !r.eventStream) {
      problems.push(`${where}: body could not be read (${r.bodyError}), so it was not checked`);
    }
  }
  expect(problems).toEqual([]);
  const scannedBytes = seen.reduce((n, r) => n + (r.body?.length ?? 0), 0);
  console.log(`token hygiene: scanned ${seen.length} app responses (${scannedBytes} body bytes) for ${secrets.size} issued token values`);

  // What was scanned: documents, the app's JS, wasm and CSS, and JSON from the BFF.
  const paths = seen.map((r) => new URL(r.url).pathname);
  expect(paths).toEqual(expect.arrayContaining(['/', '/profile', '/auth/userinfo', '/auth/callback', '/auth/logout']));
  expect(paths.some((p) => p.endsWith('.js'))).toBe(true);
  expect(paths.some((p) => p.endsWith('.wasm'))).toBe(true);
  expect(paths.some((p) => p.endsWith('.css'))).toBe(true);

  // The one exception: the logout redirect carries the ID token as id_token_hint
  // (and nothing else token-like) to the IdP's end-session endpoint.
  expect(logoutRedirects).toHaveLength(1);
  const locations = logoutRedirects[0].headers.filter((h) => h.name.toLowerCase() === 'location');
  expect(locations).toHaveLength(1);
  const location = new URL(locations[0].value);
  expect(`${location.origin}${location.pathname}`).toBe(END_SESSION);
  const hint = location.searchParams.get('id_token_hint');
  expect(hint, 'id_token_hint is one of the ID tokens the IdP issued to the app').not.toBeNull();
  expect(idTokens.has(hint!)).toBe(true);
  const postLogout = location.searchParams.get('post_logout_redirect_uri');
  expect(postLogout).not.toBeNull();
  expect(new URL(postLogout!).origin).toBe(APP_URL);
  expect(new URL(postLogout!).pathname).toBe('/auth/logged-out');
  expect(location.searchParams.get('state'), 'a state to check on the way back').toMatch(/^[\w-]{43,}$/);
  // Negative control: the detector does see the token that is there.
  expect(leaks(location.href)).toEqual(expect.arrayContaining([expect.stringMatching(/^a JWT/), 'the id_token value']));
  const rest = new URLSearchParams(location.search);
  rest.delete('id_token_hint');
  expect(leaks(rest.toString())).toEqual([]);
  for (const [value, kind] of secrets) {
    if (kind !== 'id_token') expect(location.href.includes(value)).toBe(false);
  }

  // (a) again, on the wire: the app sets no cookie but the session cookie and,
  // from sign-out until the IdP sends the browser back, the pending sign-out's
  // state (removed on the way back); both HttpOnly, SameSite=Lax, Path=/,
  // without Domain. A removal (empty value, Max-Age=0) only needs the same
  // Path and no Domain to hit it.
  let sessionCookiesSet = 0;
  const logoutCookies: string[] = [];
  for (const setCookie of appSetCookies) {
    const attributes = cookieAttributes(setCookie);
    expect(attributes.get('path'), setCookie).toBe('/');
    expect(attributes.has('domain'), setCookie).toBe(false);
    if (cookieName(setCookie) === LOGOUT_COOKIE) {
      logoutCookies.push(attributes.get('max-age') === '0' ? 'removed' : 'set');
      expect(attributes.has('httponly'), setCookie).toBe(true);
      expect(attributes.get('samesite')?.toLowerCase(), setCookie).toBe('lax');
      continue;
    }
    expect(cookieName(setCookie), setCookie).toBe(SESSION_COOKIE);
    const removal = attributes.get('max-age') === '0' && setCookie.startsWith(`${SESSION_COOKIE}=;`);
    if (!removal) {
      sessionCookiesSet += 1;
      expect(attributes.has('httponly'), setCookie).toBe(true);
      expect(attributes.get('samesite')?.toLowerCase(), setCookie).toBe('lax');
      expect(attributes.has('secure'), `${setCookie} (APP_BASE_URL is http)`).toBe(false);
    }
  }
  expect(sessionCookiesSet, 'the app set its session cookie').toBeGreaterThan(0);
  expect(logoutCookies, 'the pending sign-out was set at sign-out and removed on the way back').toEqual(['set', 'removed']);
});
