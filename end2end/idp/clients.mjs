// The clients the dev identity provider registers, and the API it issues
// machine-to-machine tokens for. server.mjs builds its provider from these;
// the self-test compares them with the Keycloak realm in
// deploy/keycloak/realm-demo.json (see realm-agreement.mjs), so the two
// cannot drift apart unnoticed.

import { createHash, createPublicKey } from 'node:crypto';
import { readFileSync } from 'node:fs';

export const CLIENT_ID = 'gatehouse';
// The same app as a private_key_jwt client (RFC 7523, OIDC Core §9): it signs
// client assertions with dev-client-key.pem (public, like the dev secret:
// for development only) and sends no secret. The Keycloak realm has it too
// (inline JWKS; realm-agreement.mjs compares the two).
export const KEY_CLIENT_ID = 'gatehouse-key';
const keyClientPublic = createPublicKey(readFileSync(new URL('./dev-client-key.pem', import.meta.url))).export({ format: 'jwk' });
export const KEY_CLIENT_JWK = {
  ...keyClientPublic,
  // The RFC 7638 thumbprint, the `kid` the app puts in its assertions' header.
  kid: createHash('sha256').update(JSON.stringify({ e: keyClientPublic.e, kty: 'RSA', n: keyClientPublic.n })).digest('base64url'),
  use: 'sig',
  alg: 'RS256',
};
// The same with a P-256 key (dev-client-key-ec.pem), signing ES256 (not in
// the Keycloak realm).
export const EC_KEY_CLIENT_ID = 'gatehouse-key-ec';
const ecKeyClientPublic = createPublicKey(readFileSync(new URL('./dev-client-key-ec.pem', import.meta.url))).export({ format: 'jwk' });
export const EC_KEY_CLIENT_JWK = {
  ...ecKeyClientPublic,
  kid: createHash('sha256').update(JSON.stringify({
    crv: ecKeyClientPublic.crv, kty: 'EC', x: ecKeyClientPublic.x, y: ecKeyClientPublic.y,
  })).digest('base64url'),
  use: 'sig',
  alg: 'ES256',
};
// The RSA key again, signing PS256 (RSASSA-PSS, RFC 7518 §3.5) only (not in
// the Keycloak realm).
export const PS_KEY_CLIENT_ID = 'gatehouse-key-ps';
export const PS_KEY_CLIENT_JWK = { ...KEY_CLIENT_JWK, alg: 'PS256' };
export const CLIENT_SECRET = 'gatehouse-dev-secret';
export const M2M_CLIENT_ID = 'gatehouse-m2m';
export const M2M_CLIENT_SECRET = 'gatehouse-m2m-secret';
export const API_SCOPES = 'notes:read notes:write';
// A second API (resource indicators, RFC 8707): the app asks for its tokens
// with `resource` on the refresh grant. Not in the Keycloak realm (Keycloak
// does not implement RFC 8707).
export const REPORTS_SCOPES = 'reports:read';
export const REGISTERED_REDIRECT_URI = 'http://localhost:3000/auth/callback';
export const REGISTERED_POST_LOGOUT_URI = 'http://localhost:3000/auth/logged-out';

// oidc-provider client metadata of both clients.
export function clientMetadata({ backchannelLogoutUri }) {
  return [
    {
      client_id: CLIENT_ID,
      client_secret: CLIENT_SECRET,
      client_name: 'Gatehouse',
      application_type: 'web',
      token_endpoint_auth_method: 'client_secret_basic',
      grant_types: ['authorization_code', 'refresh_token'],
      response_types: ['code'],
      redirect_uris: [REGISTERED_REDIRECT_URI],
      post_logout_redirect_uris: [REGISTERED_POST_LOGOUT_URI],
      backchannel_logout_uri: backchannelLogoutUri,
      backchannel_logout_session_required: true,
      id_token_signed_response_alg: 'RS256',
      // Every ID token says when the user signed in (Keycloak always does):
      // the app's step-up for /admin compares it with ADMIN_MAX_AUTH_AGE.
      require_auth_time: true,
    },
    {
      client_id: M2M_CLIENT_ID,
      client_secret: M2M_CLIENT_SECRET,
      client_name: 'Gatehouse machine-to-machine',
      token_endpoint_auth_method: 'client_secret_basic',
      grant_types: ['client_credentials'],
      response_types: [],
      redirect_uris: [],
    },
    keyClient(KEY_CLIENT_ID, 'Gatehouse (private_key_jwt)', KEY_CLIENT_JWK),
    keyClient(EC_KEY_CLIENT_ID, 'Gatehouse (private_key_jwt, ES256)', EC_KEY_CLIENT_JWK),
    keyClient(PS_KEY_CLIENT_ID, 'Gatehouse (private_key_jwt, PS256)', PS_KEY_CLIENT_JWK),
  ];
}

// The browser client again, authenticating with `private_key_jwt` signed by
// the key `jwk` names (its `alg` is the only one accepted), with no secret.
function keyClient(clientId, clientName, jwk) {
  return {
    client_id: clientId,
    client_name: clientName,
    application_type: 'web',
    token_endpoint_auth_method: 'private_key_jwt',
    token_endpoint_auth_signing_alg: jwk.alg,
    jwks: { keys: [jwk] },
    grant_types: ['authorization_code', 'refresh_token'],
    response_types: ['code'],
    redirect_uris: [REGISTERED_REDIRECT_URI],
    post_logout_redirect_uris: [REGISTERED_POST_LOGOUT_URI],
    id_token_signed_response_alg: 'RS256',
    require_auth_time: true,
  };
}
