// Playwright configuration for the Gatehouse end-to-end suite.
//
//   cd end2end && npx playwright test        (after `cargo leptos build --split`)
//
// Starts the dev identity provider (port 8180) and the debug build of the app
// (port 3100) unless they are already running (outside CI). Uses Debian's
// Chromium: `npx playwright install` is never needed.
import { defineConfig } from '@playwright/test';

import {
  APP_BINARY, APP_PORT, APP_URL, CHROMIUM_LAUNCH_OPTIONS, IDP_PORT, REPO_ROOT, appEnv, idpEnv,
} from './tests/support/env';

export default defineConfig({
  testDir: 'tests',
  outputDir: 'test-results',
  // After the web servers start: fail fast on a build whose wasm/JS is missing.
  globalSetup: './tests/support/global-setup.ts',
  // One core per browser and one for the app and the IdP: run serially.
  workers: 1,
  fullyParallel: false,
  forbidOnly: !!process.env.CI,
  retries: 0,
  timeout: 60_000,
  expect: { timeout: 10_000 },
  reporter: 'list',
  use: {
    baseURL: APP_URL,
    browserName: 'chromium',
    launchOptions: CHROMIUM_LAUNCH_OPTIONS,
    trace: 'retain-on-failure',
    screenshot: 'only-on-failure',
    actionTimeout: 10_000,
    navigationTimeout: 20_000,
  },
  projects: [{ name: 'chromium' }],
  webServer: [
    {
      name: 'dev IdP',
      command: 'node idp/server.mjs',
      url: `http://127.0.0.1:${IDP_PORT}/dev/health`,
      env: idpEnv({ idpPort: IDP_PORT, appPort: APP_PORT, exposeTokens: true }),
      reuseExistingServer: !process.env.CI,
      timeout: 30_000,
      stdout: 'ignore',
      stderr: 'pipe',
    },
    {
      name: 'Gatehouse',
      // Fail fast with a useful message when the app has not been built.
      command: `test -x '${APP_BINARY}' || { echo 'target/debug/gatehouse is missing: run "cargo leptos build --split" in the repository root first' >&2; exit 1; }; exec '${APP_BINARY}'`,
      cwd: REPO_ROOT,
      url: `http://127.0.0.1:${APP_PORT}/healthz`,
      env: appEnv({ appPort: APP_PORT, idpPort: IDP_PORT }),
      reuseExistingServer: !process.env.CI,
      timeout: 120_000,
      stdout: 'ignore',
      stderr: 'pipe',
    },
  ],
});
