#!/usr/bin/env node
// Gatehouse development identity provider.
//
// An OpenID Provider built on `oidc-provider`, laid out like a Keycloak realm
// (issuer http://localhost:8080/realms/demo), so the app can switch between
// it and a real Keycloak with one environment variable. Everything lives in
// memory: users, sessions, grants, signing keys. It is a test fixture and a
// local convenience, NEVER an identity provider for real users.
//
//   node end2end/idp/server.mjs          (any working directory)
//
// See README.md beside this file for the environment variables and routes.

import { generateKeyPairSync, randomBytes, randomUUID } from 'node:crypto';
import http from 'node:http';

import Provider, { errors, interactionPolicy } from 'oidc-provider';

import {
  API_SCOPES, REPORTS_SCOPES, CLIENT_ID, CLIENT_SECRET, M2M_CLIENT_ID, M2M_CLIENT_SECRET, clientMetadata,
} from './clients.mjs';
import { ConfigError, loadConfig } from './config.mjs';
import {
  UserDirectory, USERNAME_PATTERN, claimsFor, seedUsers,
} from './users.mjs';
import {
  avatarSvg, errorPage, loginPage, logoutPage, messagePage, postLogoutPage, signupPage,
} from './views.mjs';

// ---------------------------------------------------------------------------
// configuration

let config;
try {
  config = loadConfig();
} catch (err) {
  if (err instanceof ConfigError) {
    console.error(`dev IdP: invalid configuration: ${err.message}`);
    process.exit(1);
  }
  throw err;
}

const {
  port, listenHost, issuer, mountPath, accessTokenTtl, backchannelLogoutUri, apiAudience,
  reportsAudience,
  exposeTokensForTests, noIssParameter,
} = config;

const OIDC = '/protocol/openid-connect';
const LOOPBACK_HOSTS = new Set(['localhost', '127.0.0.1', '[::1]']);

const issuerUrl = issuer.endsWith('/') ? issuer.slice(0, -1) : issuer;
const users = new UserDirectory({ avatarUrl: (username) => `${issuerUrl}/avatars/${encodeURIComponent(username)}.svg` });
seedUsers(users);

// ---------------------------------------------------------------------------
// counters behind GET /dev/stats (read by the end-to-end suite)

const stats = {
  token_requests: { authorization_code: 0, refresh_token: 0, client_credentials: 0 },
  backchannel_logouts_sent: 0,
  backchannel_logouts_failed: 0,
};

function resetStats() {
  for (const key of Object.keys(stats.token_requests)) stats.token_requests[key] = 0;
  stats.backchannel_logouts_sent = 0;
  stats.backchannel_logouts_failed = 0;
}

// ---------------------------------------------------------------------------
// GET /dev/issued-tokens (only with IDP_EXPOSE_TOKENS_FOR_TESTS=1): the token
// values of the last successful token responses, so that the end-to-end suite
// can prove none of them ever reaches the browser. Off by default; when off,
// nothing is recorded and the route is a 404 like any unknown /dev path.

const ISSUED_TOKENS_KEPT = 50;
const issuedTokens = [];

function recordIssuedTokens(grantType, clientId, body) {
  if (!exposeTokensForTests || !body || typeof body !== 'object') return;
  const entry = { grant_type: grantType, client_id: clientId ?? null };
  for (const key of ['access_token', 'refresh_token', 'id_token']) {
    if (typeof body[key] === 'string') entry[key] = body[key];
  }
  if (!entry.access_token && !entry.refresh_token && !entry.id_token) return;
  issuedTokens.push(entry);
  if (issuedTokens.length > ISSUED_TOKENS_KEPT) issuedTokens.splice(0, issuedTokens.length - ISSUED_TOKENS_KEPT);
}

// ---------------------------------------------------------------------------
// signing key: a fresh RS256 key pair per process

function signingKey() {
  const { privateKey } = generateKeyPairSync('rsa', { modulusLength: 2048 });
  const jwk = privateKey.export({ format: 'jwk' });
  return {
    ...jwk, kid: `dev-${randomUUID()}`, alg: 'RS256', use: 'sig',
  };
}

// ---------------------------------------------------------------------------
// loopback redirect URIs (RFC 8252 §7.3 style: any port on a loopback host)

function parseLoopback(value) {
  if (typeof value !== 'string') return undefined;
  let url;
  try {
    url = new URL(value);
  } catch {
    return undefined;
  }
  if (url.protocol !== 'http:' && url.protocol !== 'https:') return undefined;
  if (!LOOPBACK_HOSTS.has(url.hostname)) return undefined;
  if (url.username || url.password || url.hash) return undefined;
  // Only canonical spellings, so that what we allow is what the client sent.
  if (url.href !== value) return undefined;
  return url;
}

function loopbackRedirectAllowed(value) {
  const url = parseLoopback(value);
  // `/auth/callback` (the default provider) or `/auth/callback/<name>` (one of
  // the app's OIDC_PROVIDERS: each provider has its own redirect URI).
  return Boolean(url && /^\/auth\/callback(\/[a-z0-9-]+)?$/.test(url.pathname) && url.search === '');
}

function loopbackPostLogoutAllowed(value) {
  // The app's `/auth/logged-out`, where it checks the sign-out's `state`.
  const url = parseLoopback(value);
  return Boolean(url && url.pathname === '/auth/logged-out' && url.search === '');
}

// ---------------------------------------------------------------------------
// interaction policy: the default login + consent prompts, plus `create`
// (OpenID Connect "Initiating User Registration via OpenID Connect")

function buildPolicy() {
  const policy = interactionPolicy.base();
  policy.add(new interactionPolicy.Prompt({ name: 'create', requestable: true }), 0);
  return policy;
}

// First-party clients get no consent screen: every requested OIDC scope,
// claim and resource scope is granted on the spot.
async function autoGrant(ctx) {
  const { oidc } = ctx;
  const { clientId } = oidc.client;
  const accountId = oidc.account.accountId;
  const grantId = oidc.result?.consent?.grantId || oidc.session.grantIdFor(clientId);

  let grant = grantId ? await oidc.provider.Grant.find(grantId) : undefined;
  if (grant && (grant.accountId !== accountId || grant.clientId !== clientId)) {
    grant = undefined;
  }
  grant ||= new oidc.provider.Grant({ accountId, clientId });

  const scopes = [...oidc.requestParamOIDCScopes];
  if (scopes.length) grant.addOIDCScope(scopes.join(' '));
  const claims = [...oidc.requestParamClaims];
  if (claims.length) grant.addOIDCClaims(claims);
  for (const [indicator, resourceServer] of Object.entries(oidc.resourceServers ?? {})) {
    const wanted = [...oidc.requestParamScopes].filter((scope) => resourceServer.scopes.has(scope));
    if (wanted.length) grant.addResourceScope(indicator, wanted.join(' '));
  }
  await grant.save();
  return grant;
}

// oidc-provider drops `offline_access` from an authorization request unless
// it also says prompt=consent (OIDC Core §11). This IdP has no consent screen
// for its first-party client, so, like Keycloak, it keeps the scope whenever
// the client asked for it and may use refresh tokens. This runs at the
// authorization endpoint right after the scope check, before the request is
// stored for the login interaction — and at the PAR endpoint (RFC 9126), where
// a pushed request is checked the same way before it is stored.
function keepOfflineAccess(ctx) {
  const { oidc } = ctx;
  if (oidc.route !== 'authorization' && oidc.route !== 'pushed_authorization_request') return;
  let raw = ctx.method === 'POST' ? oidc.body?.scope : ctx.query.scope;
  // A pushed request (RFC 9126) reaches the authorization endpoint as its
  // stored request object: its scope is in there, not in the query.
  const pushed = oidc.entities?.PushedAuthorizationRequest?.request;
  if (typeof pushed === 'string') {
    try {
      raw = JSON.parse(Buffer.from(pushed.split('.')[1], 'base64url').toString()).scope;
    } catch {
      raw = undefined;
    }
  }
  if (typeof raw !== 'string' || !raw.split(' ').includes('offline_access')) return;
  if (!oidc.client?.grantTypeAllowed('refresh_token')) return;
  if (!oidc.params.response_type?.split(' ').includes('code')) return;
  const scopes = new Set(oidc.params.scope?.split(' ').filter(Boolean));
  scopes.add('offline_access');
  oidc.params.scope = [...scopes].join(' ');
}

// ---------------------------------------------------------------------------
// the provider

const provider = new Provider(issuer, {
  clients: clientMetadata({ backchannelLogoutUri }),
  jwks: { keys: [signingKey()] },
  cookies: { keys: [randomBytes(32).toString('base64url')] },
  enabledJWA: {
    idTokenSigningAlgValues: ['RS256'],
  },
  responseTypes: ['code'],
  pkce: { required: () => true },
  scopes: ['openid', 'profile', 'email', 'offline_access'],
  claims: {
    acr: null,
    auth_time: null,
    iss: null,
    sid: null,
    // Keycloak puts realm roles in every token (its default "roles" scope).
    openid: ['sub', 'realm_access'],
    profile: ['name', 'given_name', 'family_name', 'preferred_username', 'picture', 'locale', 'updated_at'],
    email: ['email', 'email_verified'],
  },
  conformIdTokenClaims: false,
  discovery: {
    prompt_values_supported: ['none', 'login', 'consent', 'create'],
    service_documentation: undefined,
  },
  extraParams: {
    // Keycloak's identity-provider hint: accepted and ignored. Its validator
    // runs for every authorization request, which is where we restore
    // offline_access (see keepOfflineAccess).
    kc_idp_hint: keepOfflineAccess,
  },
  async findAccount(_ctx, sub) {
    const user = users.bySub(sub);
    if (!user) return undefined;
    return {
      accountId: user.sub,
      async claims(use) {
        return claimsFor(user, use);
      },
    };
  },
  loadExistingGrant: autoGrant,
  issueRefreshToken: async (_ctx, client, code) => client.grantTypeAllowed('refresh_token')
    && code.scopes.has('offline_access'),
  rotateRefreshToken: true,
  ttl: {
    AccessToken: (_ctx, token) => token.resourceServer?.accessTokenTTL ?? accessTokenTtl,
    AuthorizationCode: 60,
    ClientCredentials: (_ctx, token) => token.resourceServer?.accessTokenTTL ?? accessTokenTtl,
    IdToken: 3600,
    Interaction: 3600,
    RefreshToken: 14 * 24 * 3600,
    Session: 14 * 24 * 3600,
    Grant: 14 * 24 * 3600,
  },
  routes: {
    authorization: `${OIDC}/auth`,
    token: `${OIDC}/token`,
    userinfo: `${OIDC}/userinfo`,
    end_session: `${OIDC}/logout`,
    jwks: `${OIDC}/certs`,
    revocation: `${OIDC}/revoke`,
    introspection: `${OIDC}/token/introspect`,
    pushed_authorization_request: `${OIDC}/ext/par/request`,
  },
  interactions: {
    policy: buildPolicy(),
    url: (_ctx, interaction) => `${mountPath}/interaction/${interaction.uid}`,
  },
  features: {
    devInteractions: { enabled: false },
    backchannelLogout: { enabled: true },
    clientCredentials: { enabled: true },
    // DPoP (RFC 9449): a client that sends a proof gets tokens bound to its
    // key. Nonces are required (§8, §9), as strict providers do, so that
    // clients must handle `use_dpop_nonce` at the token endpoint and at
    // userinfo.
    dPoP: {
      enabled: true,
      nonceSecret: randomBytes(32),
      requireNonce: () => true,
    },
    introspection: {
      enabled: true,
      allowedPolicy: async (ctx, client, token) => !(client.clientAuthMethod === 'none'
        && token.clientId !== ctx.oidc.client.clientId),
    },
    revocation: {
      enabled: true,
      allowedPolicy: async (_ctx, client, token) => {
        if (token.clientId !== client.clientId) {
          throw new errors.InvalidRequest('client is not authorized to revoke the presented token');
        }
        return true;
      },
    },
    rpInitiatedLogout: {
      enabled: true,
      async logoutSource(ctx, form) {
        ctx.type = 'html';
        ctx.body = logoutPage(form);
      },
      async postLogoutSuccessSource(ctx) {
        ctx.type = 'html';
        ctx.body = postLogoutPage(ctx.oidc.client?.clientName);
      },
    },
    resourceIndicators: {
      enabled: true,
      // The machine client's tokens are for the app's API unless it names
      // another resource; the browser client's tokens stay opaque and are
      // good for userinfo.
      async defaultResource(ctx, client, oneOf) {
        if (oneOf) return oneOf;
        if (client.clientId === M2M_CLIENT_ID) return apiAudience;
        return undefined;
      },
      useGrantedResource: async () => false,
      async getResourceServerInfo(_ctx, resourceIndicator) {
        const scope = { [apiAudience]: API_SCOPES, [reportsAudience]: REPORTS_SCOPES }[resourceIndicator];
        if (!scope) throw new errors.InvalidTarget();
        return {
          scope,
          audience: resourceIndicator,
          accessTokenTTL: accessTokenTtl,
          accessTokenFormat: 'jwt',
          jwt: { sign: { alg: 'RS256' } },
        };
      },
    },
  },
  clientBasedCORS: () => false,
  // Back-channel logout goes to the app on loopback, which oidc-provider's
  // SSRF guard refuses by default. A dev IdP must reach it; its only outgoing
  // requests are those logout notifications to the registered URI.
  fetch: (url, options) => {
    const { dispatcher, ...rest } = options;
    return globalThis.fetch(url, rest);
  },
  async renderError(ctx, out) {
    ctx.type = 'html';
    ctx.body = errorPage(out);
  },
});

if (new URL(issuer).protocol === 'https:') {
  // Served behind a TLS-terminating proxy: trust X-Forwarded-Proto so that
  // secure cookies can be set.
  provider.proxy = true;
}

provider.Client.prototype.redirectUriAllowed = function redirectUriAllowed(value) {
  return this.redirectUris.includes(value) || loopbackRedirectAllowed(value);
};
provider.Client.prototype.postLogoutRedirectUriAllowed = function postLogoutRedirectUriAllowed(value) {
  return this.postLogoutRedirectUris.includes(value) || loopbackPostLogoutAllowed(value);
};

// Count token endpoint requests by grant type (successful or not).
const tokenPath = `${OIDC}/token`;
provider.use(async (ctx, next) => {
  await next();
  if (ctx.method === 'POST' && ctx.path === tokenPath) {
    const grantType = ctx.oidc?.body?.grant_type;
    if (typeof grantType === 'string' && Object.hasOwn(stats.token_requests, grantType)) {
      stats.token_requests[grantType] += 1;
    }
    if (ctx.status === 200) recordIssuedTokens(grantType, ctx.oidc?.client?.clientId, ctx.body);
  }
});

// IDP_NO_ISS=1: behave like an IdP without RFC 9207 (oidc-provider always
// implements it): no `iss` in authorization responses, none advertised.
if (noIssParameter) {
  provider.on('authorization.success', (_ctx, out) => {
    delete out.iss; // eslint-disable-line no-param-reassign
  });
  provider.use(async (ctx, next) => {
    await next();
    if (ctx.path.endsWith('/.well-known/openid-configuration') && ctx.body && typeof ctx.body === 'object') {
      ctx.body.authorization_response_iss_parameter_supported = false;
    }
  });
}

provider.on('backchannel.success', (_ctx, client, _accountId, sid) => {
  stats.backchannel_logouts_sent += 1;
  console.log(`back-channel logout sent to ${client.backchannelLogoutUri} (client ${client.clientId}, sid ${sid ?? '-'})`);
});
provider.on('backchannel.error', (_ctx, err, client) => {
  stats.backchannel_logouts_sent += 1;
  stats.backchannel_logouts_failed += 1;
  const reason = err.cause?.code ?? err.cause?.message ?? err.message;
  console.log(`back-channel logout to ${client.backchannelLogoutUri} FAILED: ${reason}`);
});
for (const event of [
  'authorization.error', 'grant.error', 'end_session.error', 'userinfo.error',
  'introspection.error', 'revocation.error', 'discovery.error', 'jwks.error',
]) {
  provider.on(event, (_ctx, err) => {
    console.log(`  ${event}: ${err.error ?? err.name}${err.error_description ? ` (${err.error_description})` : ''}`);
  });
}
provider.on('server_error', (_ctx, err) => {
  console.error('  server_error:', err);
});

const providerCallback = provider.callback();

// ---------------------------------------------------------------------------
// HTTP helpers

function send(res, status, body, headers = {}) {
  const buffer = Buffer.from(body);
  res.writeHead(status, { 'content-length': buffer.length, ...headers });
  res.end(buffer);
}

function sendHtml(res, status, html) {
  send(res, status, html, {
    'content-type': 'text/html; charset=utf-8',
    'cache-control': 'no-store',
    'x-frame-options': 'DENY',
    'referrer-policy': 'no-referrer',
  });
}

function sendJson(res, status, value) {
  send(res, status, JSON.stringify(value), {
    'content-type': 'application/json',
    'cache-control': 'no-store',
  });
}

async function readBody(req, limit = 64 * 1024) {
  const chunks = [];
  let size = 0;
  for await (const chunk of req) {
    size += chunk.length;
    if (size > limit) throw new Error('request body too large');
    chunks.push(chunk);
  }
  return Buffer.concat(chunks).toString('utf8');
}

async function readForm(req) {
  return new URLSearchParams(await readBody(req));
}

async function readJson(req) {
  return JSON.parse(await readBody(req));
}

// ---------------------------------------------------------------------------
// login / sign-up interactions (our own pages, not oidc-provider's dev ones)

const INTERACTION_ROUTE = /^\/interaction\/([A-Za-z0-9_-]+)(?:\/(login|signup|abort))?\/?$/;

function interactionUrls(uid) {
  const base = `${mountPath}/interaction/${uid}`;
  return {
    login: `${base}/login`, signup: `${base}/signup`, abort: `${base}/abort`,
  };
}

function finishLogin(req, res, details, user) {
  const result = { login: { accountId: user.sub } };
  // Signing in (or signing up) settles a pending prompt=create too.
  if (details.prompt.name === 'create') result.create = { accountId: user.sub };
  return provider.interactionFinished(req, res, result, { mergeWithLastSubmission: false });
}

async function autoConsent(req, res, details) {
  const { prompt: { details: missing }, params, session } = details;
  let grant = details.grantId ? await provider.Grant.find(details.grantId) : undefined;
  grant ||= new provider.Grant({ accountId: session.accountId, clientId: params.client_id });
  if (missing.missingOIDCScope) grant.addOIDCScope(missing.missingOIDCScope.join(' '));
  if (missing.missingOIDCClaims) grant.addOIDCClaims(missing.missingOIDCClaims);
  for (const [indicator, scopes] of Object.entries(missing.missingResourceScopes ?? {})) {
    grant.addResourceScope(indicator, scopes.join(' '));
  }
  const grantId = await grant.save();
  return provider.interactionFinished(req, res, { consent: { grantId } }, { mergeWithLastSubmission: true });
}

async function handleInteraction(req, res, uid, action) {
  let details;
  try {
    details = await provider.interactionDetails(req, res);
  } catch (err) {
    if (err instanceof errors.SessionNotFound) {
      sendHtml(res, 400, messagePage(
        'Sign-in expired',
        'This sign-in request has expired or was already used. Go back to the application and start again.',
      ));
      return;
    }
    throw err;
  }
  if (details.uid !== uid) {
    sendHtml(res, 400, messagePage('Sign-in mismatch', 'This page belongs to another sign-in request. Go back to the application and start again.'));
    return;
  }

  const urls = interactionUrls(uid);
  const clientId = details.params.client_id;
  const wantsSignup = details.prompt.name === 'create';

  if (action === 'abort') {
    await provider.interactionFinished(req, res, {
      error: 'access_denied',
      error_description: 'End-User aborted interaction',
    }, { mergeWithLastSubmission: false });
    return;
  }

  if (req.method === 'GET') {
    if (details.prompt.name === 'consent') {
      await autoConsent(req, res, details);
      return;
    }
    const view = action ?? (wantsSignup ? 'signup' : 'login');
    if (view === 'signup') {
      sendHtml(res, 200, signupPage({
        action: urls.signup, loginUrl: urls.login, abortUrl: urls.abort, clientId,
      }));
    } else {
      sendHtml(res, 200, loginPage({
        action: urls.login,
        signupUrl: urls.signup,
        abortUrl: urls.abort,
        clientId,
        username: details.params.login_hint ?? '',
      }));
    }
    return;
  }

  if (req.method !== 'POST' || !action || action === 'abort') {
    send(res, 405, 'method not allowed\n', { allow: 'GET', 'content-type': 'text/plain' });
    return;
  }

  const form = await readForm(req);

  if (action === 'login') {
    const username = (form.get('username') ?? '').trim().toLowerCase();
    const user = users.authenticate(username, form.get('password') ?? '');
    if (!user) {
      console.log(`  login failed for "${username.slice(0, 64)}"`);
      sendHtml(res, 200, loginPage({
        action: urls.login,
        signupUrl: urls.signup,
        abortUrl: urls.abort,
        clientId,
        username,
        error: 'Invalid username or password.',
      }));
      return;
    }
    console.log(`  login ok: ${user.username}`);
    await finishLogin(req, res, details, user);
    return;
  }

  // action === 'signup'
  const values = {
    username: (form.get('username') ?? '').trim().toLowerCase(),
    name: (form.get('name') ?? '').trim(),
    email: (form.get('email') ?? '').trim(),
  };
  const password = form.get('password') ?? '';
  let error;
  if (!USERNAME_PATTERN.test(values.username)) {
    error = 'Choose a username of 2 to 32 characters: letters, digits, dot, dash or underscore.';
  } else if (users.has(values.username)) {
    error = `The username "${values.username}" is already taken.`;
  } else if (password.length < 1) {
    error = 'Choose a password.';
  } else if (!values.name) {
    error = 'Enter your full name.';
  } else if (!/^[^\s@]+@[^\s@]+\.[^\s@]+$/.test(values.email)) {
    error = 'Enter a valid email address.';
  }
  if (error) {
    sendHtml(res, 200, signupPage({
      action: urls.signup, loginUrl: urls.login, abortUrl: urls.abort, clientId, values, error,
    }));
    return;
  }
  const user = users.add({
    username: values.username,
    password,
    name: values.name,
    email: values.email,
    emailVerified: false,
    roles: ['user'],
  });
  console.log(`  user created: ${user.username}`);
  await finishLogin(req, res, details, user);
}

// ---------------------------------------------------------------------------
// request routing

function handleDev(req, res, pathname) {
  if (pathname === '/dev/health' && (req.method === 'GET' || req.method === 'HEAD')) {
    sendJson(res, 200, { status: 'ok', issuer });
    return;
  }
  if (pathname === '/dev/stats' && req.method === 'GET') {
    sendJson(res, 200, stats);
    return;
  }
  if (exposeTokensForTests && pathname === '/dev/issued-tokens' && req.method === 'GET') {
    sendJson(res, 200, { tokens: issuedTokens });
    return;
  }
  // Test hook: replace a user's roles, as an administrator would at the IdP
  // (only with IDP_EXPOSE_TOKENS_FOR_TESTS=1). Body: {"roles": ["user"]}.
  const roles = /^\/dev\/users\/([^/]+)\/roles$/.exec(pathname);
  if (exposeTokensForTests && roles && req.method === 'PUT') {
    readJson(req).then((body) => {
      const user = users.byUsername(decodeURIComponent(roles[1]));
      if (!user || !Array.isArray(body?.roles) || !body.roles.every((r) => typeof r === 'string')) {
        sendJson(res, 400, { error: 'invalid_request' });
        return;
      }
      user.roles = [...body.roles];
      sendJson(res, 200, { username: user.username, roles: user.roles });
    }, () => sendJson(res, 400, { error: 'invalid_request' }));
    return;
  }
  if (pathname === '/dev/stats/reset' && req.method === 'POST') {
    resetStats();
    sendJson(res, 200, stats);
    return;
  }
  sendJson(res, 404, { error: 'not_found' });
}

function handleAvatar(req, res, rest) {
  const match = /^\/avatars\/([^/]+)\.svg$/.exec(rest);
  const user = match && users.byUsername(decodeURIComponent(match[1]));
  if (!user || (req.method !== 'GET' && req.method !== 'HEAD')) {
    send(res, 404, 'not found\n', { 'content-type': 'text/plain' });
    return;
  }
  send(res, 200, avatarSvg(user.name, user.username), {
    'content-type': 'image/svg+xml',
    'cache-control': 'public, max-age=300',
    'cross-origin-resource-policy': 'cross-origin',
    'x-content-type-options': 'nosniff',
  });
}

async function route(req, res) {
  const { pathname } = new URL(req.url, 'http://idp.invalid');

  if (pathname === '/dev' || pathname.startsWith('/dev/')) {
    handleDev(req, res, pathname);
    return;
  }

  const underIssuer = mountPath === '' || pathname === mountPath || pathname.startsWith(`${mountPath}/`);
  if (!underIssuer) {
    if (pathname === '/favicon.ico') {
      res.writeHead(204, { 'cache-control': 'public, max-age=86400' }).end();
      return;
    }
    if (pathname === '/' && req.method === 'GET') {
      send(res, 200, `Gatehouse DEVELOPMENT identity provider (not for production)\nissuer: ${issuer}\ndiscovery: ${issuerUrl}/.well-known/openid-configuration\n`, { 'content-type': 'text/plain; charset=utf-8' });
      return;
    }
    send(res, 404, 'not found\n', { 'content-type': 'text/plain' });
    return;
  }

  const rest = pathname.slice(mountPath.length) || '/';

  const interaction = INTERACTION_ROUTE.exec(rest);
  if (interaction) {
    await handleInteraction(req, res, interaction[1], interaction[2]);
    return;
  }
  if (rest.startsWith('/avatars/')) {
    handleAvatar(req, res, rest);
    return;
  }

  // Mount oidc-provider under the issuer path: strip the prefix and keep the
  // full URL in originalUrl, as express/koa-mount do, so that the URLs the
  // provider builds carry the prefix again.
  if (mountPath) {
    req.originalUrl = req.url;
    const stripped = req.url.slice(mountPath.length);
    req.url = stripped.startsWith('/') ? stripped : `/${stripped}`;
  }
  await providerCallback(req, res);
}

const server = http.createServer((req, res) => {
  const started = process.hrtime.bigint();
  // Log the path only: query strings can carry codes and id_token_hints.
  const path = (req.url ?? '').split('?')[0];
  res.on('finish', () => {
    const ms = Number(process.hrtime.bigint() - started) / 1e6;
    console.log(`${req.method} ${path} ${res.statusCode} ${ms.toFixed(1)}ms`);
  });
  route(req, res).catch((err) => {
    console.error(`  unhandled error on ${req.method} ${path}:`, err);
    if (!res.headersSent) {
      sendHtml(res, 500, messagePage('Server error', 'The dev identity provider hit an unexpected error; see its log.'));
    } else {
      res.destroy();
    }
  });
});

// ---------------------------------------------------------------------------
// start-up and shutdown

function banner() {
  const line = '='.repeat(78);
  const userLines = users.list().map((u) => `${u.username} / ${u.username}`.padEnd(16)
    + `${u.name} <${u.email}>  roles: ${u.roles.join(', ')}`);
  return [
    '',
    line,
    '  !!  GATEHOUSE DEVELOPMENT IDENTITY PROVIDER - NOT FOR PRODUCTION  !!',
    '  Users, passwords, sessions and signing keys are in memory, published',
    '  below, and lost on restart. Never expose it beyond your own machine.',
    line,
    `  issuer        ${issuer}`,
    `  discovery     ${issuerUrl}/.well-known/openid-configuration`,
    `  listening on  http://${listenHost.includes(':') ? `[${listenHost}]` : listenHost}:${port}`,
    `  client        ${CLIENT_ID} / ${CLIENT_SECRET}  (code + PKCE S256, refresh tokens)`,
    `                redirect URIs: http://localhost|127.0.0.1|[::1]:<any port>/auth/callback`,
    `                back-channel logout -> ${backchannelLogoutUri}`,
    `  m2m client    ${M2M_CLIENT_ID} / ${M2M_CLIENT_SECRET}  (client credentials, audience ${apiAudience})`,
    `  users         ${userLines[0]}`,
    ...userLines.slice(1).map((l) => `                ${l}`),
    '                sign-up: prompt=create',
    `  access tokens ${accessTokenTtl}s`,
    '  test hooks    GET /dev/stats, POST /dev/stats/reset, GET /dev/health',
    ...(exposeTokensForTests ? [
      '  !!  IDP_EXPOSE_TOKENS_FOR_TESTS=1: GET /dev/issued-tokens publishes the',
      '      access, refresh and ID tokens it issues. For the end-to-end suite only.',
    ] : []),
    line,
    '',
  ].join('\n');
}

server.on('error', (err) => {
  if (err.code === 'EADDRINUSE') {
    console.error(`dev IdP: cannot listen on ${listenHost}:${port}: address already in use (set IDP_PORT to another port)`);
  } else if (err.code === 'EADDRNOTAVAIL' || err.code === 'ENOTFOUND' || err.code === 'EAI_AGAIN') {
    console.error(`dev IdP: cannot listen on ${listenHost}:${port}: ${err.code} (check IDP_LISTEN_HOST)`);
  } else {
    console.error(`dev IdP: server error: ${err.message}`);
  }
  process.exit(1);
});

server.listen(port, listenHost, () => {
  console.log(banner());
});

let stopping = false;
function shutdown(signal) {
  if (stopping) return;
  stopping = true;
  console.log(`dev IdP: ${signal} received, shutting down`);
  server.close(() => {
    console.log('dev IdP: stopped');
    process.exit(0);
  });
  server.closeIdleConnections();
  setTimeout(() => {
    server.closeAllConnections();
    process.exit(0);
  }, 3000).unref();
}
process.on('SIGINT', () => shutdown('SIGINT'));
process.on('SIGTERM', () => shutdown('SIGTERM'));
