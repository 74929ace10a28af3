// Ports, URLs and environments shared by the config and the tests.
import path from 'node:path';
import { fileURLToPath } from 'node:url';

export const END2END_DIR = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..', '..');
export const REPO_ROOT = path.resolve(END2END_DIR, '..');
export const APP_BINARY = path.join(REPO_ROOT, 'target', 'debug', 'gatehouse');
export const IDP_SERVER = path.join(END2END_DIR, 'idp', 'server.mjs');

// The pair started by playwright.config.ts for the whole suite.
export const APP_PORT = 3100;
export const IDP_PORT = 8180;
export const APP_URL = `http://localhost:${APP_PORT}`;
export const IDP_URL = `http://localhost:${IDP_PORT}`;
export const ISSUER = `${IDP_URL}/realms/demo`;

export const SESSION_COOKIE = 'gatehouse_session';

export const CHROMIUM_LAUNCH_OPTIONS = {
  executablePath: '/usr/bin/chromium',
  args: ['--no-sandbox', '--disable-gpu', '--disable-background-networking', '--disable-component-update'],
};

export function issuerFor(idpPort: number): string {
  return `http://localhost:${idpPort}/realms/demo`;
}

export function appEnv({ appPort, idpPort }: { appPort: number; idpPort: number }): Record<string, string> {
  return {
    APP_BASE_URL: `http://localhost:${appPort}`,
    LEPTOS_SITE_ADDR: `127.0.0.1:${appPort}`,
    OIDC_ISSUER_URL: issuerFor(idpPort),
    SESSION_STORE: 'memory',
    APP_DATABASE_URL: 'sqlite::memory:',
    LEPTOS_SITE_ROOT: 'target/site',
    // The suite signs in from one address far more often than a person would.
    AUTH_RATE_LIMIT_PER_MINUTE: '600',
  };
}

export function idpEnv(
  { idpPort, appPort, exposeTokens = false }: { idpPort: number; appPort: number; exposeTokens?: boolean },
): Record<string, string> {
  return {
    IDP_PORT: String(idpPort),
    IDP_BACKCHANNEL_LOGOUT_URI: `http://localhost:${appPort}/auth/backchannel-logout`,
    IDP_API_AUDIENCE: `http://localhost:${appPort}/api`,
    IDP_EXPOSE_TOKENS_FOR_TESTS: exposeTokens ? '1' : '0',
  };
}
