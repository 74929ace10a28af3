// Environment of the dev identity provider, parsed once at start-up.
// A bad value is reported as one line naming the variable, then exit 1.

export class ConfigError extends Error {}

function integer(env, name, fallback, { min, max }) {
  const raw = env[name];
  if (raw === undefined || raw === '') return fallback;
  if (!/^\d+$/.test(raw.trim())) {
    throw new ConfigError(`${name}="${raw}" is not a whole number (expected ${min}..${max})`);
  }
  const value = Number(raw.trim());
  if (!Number.isSafeInteger(value) || value < min || value > max) {
    throw new ConfigError(`${name}=${raw} is out of range (expected ${min}..${max})`);
  }
  return value;
}

function httpUrl(env, name, fallback, { allowQuery = true } = {}) {
  const raw = env[name];
  if (raw === undefined || raw === '') return fallback;
  let url;
  try {
    url = new URL(raw);
  } catch {
    throw new ConfigError(`${name}="${raw}" is not an absolute URL (expected e.g. http://localhost:8080/...)`);
  }
  if (url.protocol !== 'http:' && url.protocol !== 'https:') {
    throw new ConfigError(`${name}="${raw}" must use http or https`);
  }
  if (url.hash || raw.includes('#')) {
    throw new ConfigError(`${name}="${raw}" must not have a #fragment`);
  }
  if (!allowQuery && (url.search || raw.includes('?'))) {
    throw new ConfigError(`${name}="${raw}" must not have a ?query`);
  }
  return raw;
}

// A strict on/off switch: only "1" turns it on; "" or "0" (or unset) keep it
// off; anything else is an error rather than a guess.
function flag(env, name) {
  const raw = env[name];
  if (raw === undefined || raw === '' || raw === '0') return false;
  if (raw === '1') return true;
  throw new ConfigError(`${name}="${raw}" must be 1 (on) or 0 (off)`);
}

export function loadConfig(env = process.env) {
  const port = integer(env, 'IDP_PORT', 8080, { min: 1, max: 65535 });
  const listenHost = (env.IDP_LISTEN_HOST ?? '').trim() || '127.0.0.1';
  const issuer = httpUrl(env, 'IDP_ISSUER', `http://localhost:${port}/realms/demo`, { allowQuery: false });
  const accessTokenTtl = integer(env, 'IDP_ACCESS_TOKEN_TTL', 300, { min: 1, max: 7 * 24 * 3600 });
  const backchannelLogoutUri = httpUrl(
    env,
    'IDP_BACKCHANNEL_LOGOUT_URI',
    'http://localhost:3000/auth/backchannel-logout',
  );
  const apiAudience = httpUrl(env, 'IDP_API_AUDIENCE', 'http://localhost:3000/api');
  const reportsAudience = httpUrl(env, 'IDP_REPORTS_AUDIENCE', 'http://localhost:3000/reports');
  const exposeTokensForTests = flag(env, 'IDP_EXPOSE_TOKENS_FOR_TESTS');
  // An IdP that does not implement RFC 9207 (no `iss` in the authorization
  // response, not advertised in discovery), for the mix-up tests.
  const noIssParameter = flag(env, 'IDP_NO_ISS');

  // The provider is mounted under the issuer's path (Keycloak's /realms/<realm>).
  const { pathname } = new URL(issuer);
  const mountPath = pathname.endsWith('/') ? pathname.slice(0, -1) : pathname;
  if (mountPath.startsWith('/dev/') || mountPath === '/dev') {
    throw new ConfigError(`IDP_ISSUER="${issuer}" must not live under /dev, which holds the test hooks`);
  }

  return {
    port,
    listenHost,
    issuer,
    mountPath,
    accessTokenTtl,
    backchannelLogoutUri,
    apiAudience,
    reportsAudience,
    exposeTokensForTests,
    noIssParameter,
  };
}
