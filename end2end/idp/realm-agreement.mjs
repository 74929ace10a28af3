// Agreement between the dev identity provider and the Keycloak realm that
// `docker compose up` imports (deploy/keycloak/realm-demo.json). Run by
// selftest.mjs once it has walked the flows: every check compares a value of
// the realm file with what the dev IdP is built from (clients.mjs, users.mjs,
// config.mjs defaults) and with what the running dev IdP actually did
// (discovery, tokens, userinfo, accepted URIs). Switching OIDC_ISSUER_URL
// between the two must not change what Gatehouse sees.
//
// SELFTEST_REALM_FILE=<path> points the checks at another realm file (used to
// show that a broken copy fails).

import { readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';

import {
  API_SCOPES, CLIENT_ID, KEY_CLIENT_ID, M2M_CLIENT_ID, clientMetadata,
} from './clients.mjs';
import { loadConfig } from './config.mjs';
import { UserDirectory, claimsFor, seedUsers } from './users.mjs';

export const DEFAULT_REALM_FILE = fileURLToPath(new URL('../../deploy/keycloak/realm-demo.json', import.meta.url));

// Realm roles Keycloak creates by itself; they are not application roles.
const builtinRoles = (realm) => new Set(['offline_access', 'uma_authorization', `default-roles-${realm}`]);
// Client scopes Keycloak creates by itself even when the file declares its own.
const BUILTIN_SCOPES = new Set(['offline_access']);

const sameSet = (a, b) => {
  const x = new Set(a ?? []);
  const y = new Set(b ?? []);
  return x.size === y.size && [...x].every((v) => y.has(v));
};
const sorted = (a) => [...(a ?? [])].sort();

function clientScopesOf(client) {
  return [...(client?.defaultClientScopes ?? []), ...(client?.optionalClientScopes ?? [])];
}

// Every mapper that applies to the client's tokens by default: its own
// (the "dedicated" scope in the admin console) and those of its default scopes.
function defaultMappers(realm, client) {
  const scopes = new Map((realm.clientScopes ?? []).map((s) => [s.name, s]));
  return [
    ...(client?.protocolMappers ?? []),
    ...(client?.defaultClientScopes ?? []).flatMap((name) => scopes.get(name)?.protocolMappers ?? []),
  ];
}

/**
 * @param {(name: string, ok: boolean, detail?: unknown) => boolean} check
 * @param {object} live what the running dev IdP published and did:
 *   issuer, disco, idTokens {username: claims}, userinfo {username: claims},
 *   m2mAccessToken (payload), pkceRequired, logoutTokenSid,
 *   rotatedRefreshRefused, accepts {redirectUri(uri), postLogoutUri(uri)} (async)
 */
export async function checkRealmAgreement(check, live, { realmFile = process.env.SELFTEST_REALM_FILE || DEFAULT_REALM_FILE } = {}) {
  let realm;
  try {
    realm = JSON.parse(readFileSync(realmFile, 'utf8'));
  } catch (err) {
    check(`realm file ${realmFile} is readable JSON`, false, err.message);
    return;
  }
  if (!check('realm file is a realm export (realm, clients, users, clientScopes)', typeof realm.realm === 'string'
    && Array.isArray(realm.clients) && Array.isArray(realm.users) && Array.isArray(realm.clientScopes), Object.keys(realm))) return;

  // What the dev IdP is built from, with its default environment (as
  // `make dev` runs it), and the clients exactly as it registers them.
  const defaults = loadConfig({});
  const [devClient, devM2m] = clientMetadata({ backchannelLogoutUri: defaults.backchannelLogoutUri });
  const directory = new UserDirectory({ avatarUrl: () => undefined });
  seedUsers(directory);
  const devUsers = directory.list();
  const apiScopes = API_SCOPES.split(' ');

  const client = realm.clients.find((c) => c.clientId === devClient.client_id);
  const m2m = realm.clients.find((c) => c.clientId === devM2m.client_id);
  const attrs = client?.attributes ?? {};
  const scopeNames = new Set([...(realm.clientScopes ?? []).map((s) => s.name), ...BUILTIN_SCOPES]);
  const builtins = builtinRoles(realm.realm);
  const appRoles = (names) => sorted((names ?? []).filter((r) => !builtins.has(r)));

  // -- realm and issuer ------------------------------------------------------
  check('realm name is the last segment of the dev IdP issuer (/realms/<realm>)',
    new URL(live.issuer).pathname === `/realms/${realm.realm}` && realm.enabled !== false,
    { realm: realm.realm, issuer: live.issuer });
  check('Keycloak on localhost:8080 has the default OIDC issuer of the dev IdP',
    `http://localhost:8080/realms/${realm.realm}` === defaults.issuer, defaults.issuer);

  // -- the browser client ----------------------------------------------------
  check(`client ${CLIENT_ID}: same id and secret, confidential (client secret)`, Boolean(client)
    && client.secret === devClient.client_secret && client.publicClient === false && client.bearerOnly !== true
    && client.enabled !== false && (client.clientAuthenticatorType ?? 'client-secret') === 'client-secret'
    && devClient.token_endpoint_auth_method === 'client_secret_basic',
    client && { secret: client.secret, publicClient: client.publicClient, auth: client.clientAuthenticatorType });
  check(`client ${CLIENT_ID}: standard flow only, refresh tokens on (dev IdP: ${devClient.grant_types.join(' + ')})`,
    client?.standardFlowEnabled === true && client.implicitFlowEnabled === false
    && client.directAccessGrantsEnabled === false && client.serviceAccountsEnabled === false
    && attrs['use.refresh.tokens'] !== 'false'
    && sameSet(devClient.grant_types, ['authorization_code', 'refresh_token']) && sameSet(devClient.response_types, ['code']),
    client && {
      standard: client.standardFlowEnabled, implicit: client.implicitFlowEnabled, direct: client.directAccessGrantsEnabled, service: client.serviceAccountsEnabled,
    });
  check(`client ${CLIENT_ID}: PKCE S256 required, as the dev IdP advertises and enforces`,
    attrs['pkce.code.challenge.method'] === 'S256'
    && JSON.stringify(live.disco.code_challenge_methods_supported) === '["S256"]' && live.pkceRequired === true,
    { realm: attrs['pkce.code.challenge.method'], disco: live.disco.code_challenge_methods_supported, pkceRequired: live.pkceRequired });
  {
    const uris = client?.redirectUris ?? [];
    const accepted = await Promise.all(uris.map((u) => live.accepts.redirectUri(u)));
    check(`client ${CLIENT_ID}: redirect URIs are exactly the dev IdP's registered ones, and it accepts them`,
      uris.length > 0 && sameSet(uris, devClient.redirect_uris) && accepted.every(Boolean),
      { realm: uris, devIdp: devClient.redirect_uris, accepted });
  }
  {
    const uris = (attrs['post.logout.redirect.uris'] ?? '').split('##').filter(Boolean);
    const accepted = await Promise.all(uris.map((u) => live.accepts.postLogoutUri(u)));
    check(`client ${CLIENT_ID}: post-logout redirect URIs are exactly the dev IdP's registered ones, and it accepts them`,
      uris.length > 0 && sameSet(uris, devClient.post_logout_redirect_uris) && accepted.every(Boolean),
      { realm: uris, devIdp: devClient.post_logout_redirect_uris, accepted });
  }
  {
    let url;
    try { url = new URL(attrs['backchannel.logout.url']); } catch { url = undefined; }
    const dev = new URL(devClient.backchannel_logout_uri);
    check(`client ${CLIENT_ID}: back-channel logout to the app's ${dev.pathname} (port ${dev.port}) with sid, no front-channel logout`,
      Boolean(url) && url.pathname === dev.pathname && url.port === dev.port && url.protocol === dev.protocol
      && attrs['backchannel.logout.session.required'] === 'true' && devClient.backchannel_logout_session_required === true
      && client.frontchannelLogout === false && live.disco.backchannel_logout_session_supported === true
      && typeof live.logoutTokenSid === 'string',
      {
        realm: attrs['backchannel.logout.url'], sessionRequired: attrs['backchannel.logout.session.required'], frontchannel: client?.frontchannelLogout, devIdp: devClient.backchannel_logout_uri,
      });
  }
  {
    const alg = attrs['id.token.signed.response.alg'] || realm.defaultSignatureAlgorithm || 'RS256';
    check(`client ${CLIENT_ID}: ID tokens signed with ${devClient.id_token_signed_response_alg}, as the dev IdP signs them`,
      alg === devClient.id_token_signed_response_alg && live.disco.id_token_signing_alg_values_supported?.includes(alg), alg);
  }
  {
    // The dev IdP's user scopes (Gatehouse asks for openid profile email offline_access).
    const wanted = live.disco.scopes_supported.filter((s) => s !== 'openid' && !apiScopes.includes(s));
    const available = clientScopesOf(client);
    check(`client ${CLIENT_ID}: the dev IdP's scopes ${wanted.join(', ')} exist and are available, offline_access on request`,
      wanted.length > 0 && wanted.every((s) => available.includes(s) && scopeNames.has(s))
      && (client?.optionalClientScopes ?? []).includes('offline_access'),
      { wanted, default: client?.defaultClientScopes, optional: client?.optionalClientScopes });
  }
  {
    const basic = (realm.clientScopes ?? []).find((s) => s.name === 'basic');
    check('client scope basic (sub in access tokens) exists and is a default scope of both clients',
      Boolean(basic?.protocolMappers?.some((m) => m.protocolMapper === 'oidc-sub-mapper' && m.config?.['access.token.claim'] === 'true'))
      && [client, m2m].every((c) => c?.defaultClientScopes?.includes('basic')),
      basic?.protocolMappers?.map((m) => m.protocolMapper));
  }
  {
    const mapper = defaultMappers(realm, client).find((m) => m.protocolMapper === 'oidc-usermodel-realm-role-mapper'
      && m.config?.['claim.name'] === 'realm_access.roles' && m.config?.multivalued === 'true'
      && ['id.token.claim', 'access.token.claim', 'userinfo.token.claim'].every((k) => m.config?.[k] === 'true'));
    const first = devUsers[0].username;
    check(`client ${CLIENT_ID}: realm roles mapper puts realm_access.roles in ID token, access token and userinfo, as the dev IdP does`,
      Boolean(mapper) && Array.isArray(live.idTokens[first]?.realm_access?.roles) && Array.isArray(live.userinfo[first]?.realm_access?.roles),
      { mapper: mapper?.config, devIdToken: live.idTokens[first]?.realm_access, devUserinfo: live.userinfo[first]?.realm_access });
  }

  // -- the browser client with private_key_jwt ----------------------------------
  // The same app as `gatehouse`, authenticating with a signed JWT instead of
  // the secret: every setting but the authentication is the browser client's.
  {
    const devKeyClient = clientMetadata({ backchannelLogoutUri: defaults.backchannelLogoutUri })
      .find((c) => c.client_id === KEY_CLIENT_ID);
    const keyClient = realm.clients.find((c) => c.clientId === KEY_CLIENT_ID);
    const keyAttrs = keyClient?.attributes ?? {};
    let keys;
    try { keys = JSON.parse(keyAttrs['jwks.string']).keys; } catch { keys = undefined; }
    const devKey = devKeyClient.jwks.keys[0];
    check(`client ${KEY_CLIENT_ID}: signed JWT (private_key_jwt, ${devKeyClient.token_endpoint_auth_signing_alg}) with exactly the dev IdP's public key, no secret`,
      Boolean(keyClient) && keyClient.clientAuthenticatorType === 'client-jwt' && !('secret' in keyClient)
      && keyAttrs['use.jwks.string'] === 'true' && keyAttrs['use.jwks.url'] !== 'true'
      && keyAttrs['token.endpoint.auth.signing.alg'] === devKeyClient.token_endpoint_auth_signing_alg
      && keys?.length === 1 && keys[0].kty === devKey.kty && keys[0].n === devKey.n && keys[0].e === devKey.e
      && keys[0].kid === devKey.kid && devKeyClient.token_endpoint_auth_method === 'private_key_jwt',
      keyClient && { auth: keyClient.clientAuthenticatorType, alg: keyAttrs['token.endpoint.auth.signing.alg'], kid: keys?.[0]?.kid, devKid: devKey.kid });
    const same = (pick) => JSON.stringify(pick(keyClient ?? {})) === JSON.stringify(pick(client ?? {}));
    const settings = (c) => ({
      redirectUris: c.redirectUris, flows: [c.standardFlowEnabled, c.implicitFlowEnabled, c.directAccessGrantsEnabled, c.serviceAccountsEnabled],
      publicClient: c.publicClient, frontchannelLogout: c.frontchannelLogout, mappers: c.protocolMappers,
      defaultScopes: c.defaultClientScopes, optionalScopes: c.optionalClientScopes,
      attributes: Object.fromEntries(Object.entries(c.attributes ?? {})
        .filter(([k]) => !['use.jwks.string', 'use.jwks.url', 'jwks.string', 'token.endpoint.auth.signing.alg'].includes(k))),
    });
    check(`client ${KEY_CLIENT_ID}: everything but the authentication as client ${CLIENT_ID} (URIs, flows, PKCE, logout, mappers, scopes), as in the dev IdP`,
      Boolean(keyClient) && same(settings)
      && sameSet(devKeyClient.redirect_uris, devClient.redirect_uris)
      && sameSet(devKeyClient.post_logout_redirect_uris, devClient.post_logout_redirect_uris),
      keyClient && settings(keyClient));
  }

  // -- the machine-to-machine client ------------------------------------------
  check(`client ${M2M_CLIENT_ID}: same id and secret, client credentials only (service account)`, Boolean(m2m)
    && m2m.secret === devM2m.client_secret && m2m.publicClient === false && m2m.enabled !== false
    && m2m.serviceAccountsEnabled === true && m2m.standardFlowEnabled === false && m2m.implicitFlowEnabled === false
    && m2m.directAccessGrantsEnabled === false && sameSet(devM2m.grant_types, ['client_credentials']),
    m2m && {
      secret: m2m.secret, service: m2m.serviceAccountsEnabled, standard: m2m.standardFlowEnabled, direct: m2m.directAccessGrantsEnabled,
    });
  check(`client ${M2M_CLIENT_ID}: notes:read by default, every API scope of the dev IdP (${API_SCOPES}) on request`,
    Boolean(m2m?.defaultClientScopes?.includes('notes:read')) && apiScopes.every((s) => clientScopesOf(m2m).includes(s))
    && live.m2mAccessToken?.scope?.split(' ').every((s) => clientScopesOf(m2m).includes(s)),
    { default: m2m?.defaultClientScopes, optional: m2m?.optionalClientScopes, devToken: live.m2mAccessToken?.scope });

  // -- API scopes and audience --------------------------------------------------
  {
    const declared = (realm.clientScopes ?? []).filter((s) => apiScopes.includes(s.name));
    check(`client scopes ${API_SCOPES} exist (openid-connect, in the token's scope claim)`,
      sameSet(declared.map((s) => s.name), apiScopes)
      && declared.every((s) => s.protocol === 'openid-connect' && s.attributes?.['include.in.token.scope'] === 'true'),
      declared.map((s) => ({ name: s.name, protocol: s.protocol, inScope: s.attributes?.['include.in.token.scope'] })));
    const audiences = declared.map((s) => (s.protocolMappers ?? []).find((m) => m.protocolMapper === 'oidc-audience-mapper'));
    check(`every API scope adds the audience ${live.m2mAccessToken?.aud} to access tokens (not ID tokens), as the dev IdP's m2m tokens carry`,
      declared.length === apiScopes.length && audiences.every((m) => m
        && m.config?.['included.custom.audience'] === live.m2mAccessToken?.aud
        && m.config?.['included.custom.audience'] === defaults.apiAudience
        && m.config?.['access.token.claim'] === 'true' && m.config?.['id.token.claim'] !== 'true'),
      { realm: audiences.map((m) => m?.config), devToken: live.m2mAccessToken?.aud, devDefault: defaults.apiAudience });
  }

  // -- roles and users ----------------------------------------------------------
  const devRoles = sorted(new Set(devUsers.flatMap((u) => u.roles)));
  check(`realm roles are the dev IdP's roles (${devRoles.join(', ')})`,
    JSON.stringify(appRoles(realm.roles?.realm?.map((r) => r.name))) === JSON.stringify(devRoles),
    realm.roles?.realm?.map((r) => r.name));
  check(`users are the dev IdP's users (${devUsers.map((u) => u.username).join(', ')})`,
    sameSet(realm.users.map((u) => u.username), devUsers.map((u) => u.username)), realm.users.map((u) => u.username));

  for (const dev of devUsers) {
    const user = realm.users.find((u) => u.username === dev.username);
    const idt = live.idTokens[dev.username] ?? claimsFor(dev, 'id_token');
    const password = user?.credentials?.find((c) => c.type === 'password');
    check(`user ${dev.username}: names, email and email_verified as the dev IdP issues them`, Boolean(user)
      && user.firstName === idt.given_name && user.lastName === idt.family_name
      && `${user.firstName} ${user.lastName}` === idt.name && user.email === idt.email
      && user.emailVerified === idt.email_verified,
      user && {
        realm: [user.firstName, user.lastName, user.email, user.emailVerified], devIdp: [idt.given_name, idt.family_name, idt.email, idt.email_verified],
      });
    check(`user ${dev.username}: the password signs in at the dev IdP; enabled, not temporary, no required actions`,
      Boolean(password) && directory.authenticate(dev.username, password.value) === dev
      && password.temporary === false && user.enabled === true && (user.requiredActions ?? []).length === 0,
      user && { temporary: password?.temporary, enabled: user.enabled, requiredActions: user.requiredActions });
    check(`user ${dev.username}: realm roles equal realm_access.roles in the dev IdP's ID token, plus default-roles-${realm.realm} (offline_access)`,
      Boolean(user) && JSON.stringify(appRoles(user.realmRoles)) === JSON.stringify(sorted(idt.realm_access?.roles))
      && (user.realmRoles ?? []).includes(`default-roles-${realm.realm}`),
      user && { realm: user.realmRoles, devIdp: idt.realm_access?.roles });
    check(`user ${dev.username}: id equals the dev IdP's sub, so a user keeps its identity across the switch`,
      Boolean(user) && user.id === idt.sub, user && { realm: user.id, devIdp: idt.sub });
  }

  // -- realm settings -------------------------------------------------------------
  check('sign-up allowed (registrationAllowed), as the dev IdP supports prompt=create',
    realm.registrationAllowed === true && live.disco.prompt_values_supported?.includes('create'),
    { realm: realm.registrationAllowed, devIdp: live.disco.prompt_values_supported });
  check(`access token lifespan is the dev IdP's default IDP_ACCESS_TOKEN_TTL (${defaults.accessTokenTtl}s)`,
    realm.accessTokenLifespan === defaults.accessTokenTtl, realm.accessTokenLifespan);
  check('refresh tokens rotate and are single-use (revokeRefreshToken, refreshTokenMaxReuse 0), as at the dev IdP',
    realm.revokeRefreshToken === true && realm.refreshTokenMaxReuse === 0 && live.rotatedRefreshRefused === true,
    { revokeRefreshToken: realm.revokeRefreshToken, refreshTokenMaxReuse: realm.refreshTokenMaxReuse, devIdp: live.rotatedRefreshRefused });
}
