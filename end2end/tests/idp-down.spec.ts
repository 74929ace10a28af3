// 6. The IdP is down, comes back, or restarts with new keys: the app keeps
// serving public pages, explains a failed sign-in, and recovers without a
// restart. Each test runs its own app + IdP pair on other ports, so the
// suite's shared pair is never disturbed.
import { expect, test, type Page } from '@playwright/test';

import {
  ALICE, expectIdpLoginForm, signIn, submitIdpLogin,
} from './support/auth';
import { startApp, startIdp, type Managed } from './support/processes';
import { SCREENSHOT } from './support/visual';

const APP_PORT = 3200;
const IDP_PORT = 8280;
const APP = `http://localhost:${APP_PORT}`;
const IDP = `http://localhost:${IDP_PORT}`;
const ports = { appPort: APP_PORT, idpPort: IDP_PORT };

let idp: Managed | undefined;
let app: Managed | undefined;
let idpLogs = '';

async function stopIdp(): Promise<void> {
  if (!idp) return;
  await idp.stop();
  idpLogs += idp.output();
  idp = undefined;
}

test.beforeEach(() => {
  test.setTimeout(120_000);
  idpLogs = '';
});

test.afterEach(async ({}, testInfo) => {
  if (testInfo.status !== testInfo.expectedStatus) {
    await testInfo.attach('app.log', { body: app?.output() ?? '', contentType: 'text/plain' });
    await testInfo.attach('idp.log', { body: idpLogs + (idp?.output() ?? ''), contentType: 'text/plain' });
    // CI keeps only the console: put the app's last lines there too.
    console.error(`--- app log (last 4000 chars) ---\n${(app?.output() ?? '').slice(-4000)}`);
  }
  await app?.stop();
  app = undefined;
  await stopIdp();
});

async function expectUnreachablePage(page: Page): Promise<void> {
  await page.goto(`${APP}/`);
  await page.locator('a[href="/auth/login"]').first().click();
  const errorPage = page.locator('main.error-page[data-reason=idp_unreachable]');
  await expect(errorPage).toBeVisible();
  await expect(errorPage.locator('h1')).toHaveText('Identity provider unreachable');
  expect(new URL(page.url()).origin).toBe(APP);
}

/** `/readyz` turns 200 (the IdP answers the app), on a slow machine too. */
async function expectReady(page: Page): Promise<void> {
  await expect.poll(async () => (await page.request.get(`${APP}/readyz`)).status(), { timeout: 30_000 }).toBe(200);
}

async function expectPublicHome(page: Page): Promise<void> {
  const home = await page.goto(`${APP}/`);
  expect(home?.status()).toBe(200);
  await expect(page.locator('a[href="/auth/login"]').first()).toHaveText('Sign in');
  await expect(page.locator('a[href="/auth/signup"]').first()).toHaveText('Create account');
}

test('IdP down: public pages render, "Sign in" explains, and it recovers when the IdP starts', async ({ page }) => {
  app = await startApp(ports);
  await expectPublicHome(page);
  const notReady = await page.request.get(`${APP}/readyz`);
  expect(notReady.status()).toBe(503);

  await expectUnreachablePage(page);
  await expect(page.getByRole('link', { name: 'Try again' })).toBeVisible();
  await expect(page).toHaveScreenshot('error.png', SCREENSHOT);
  const anonymous = await page.request.get(`${APP}/auth/user`, { headers: { 'X-CSRF': '1' } });
  expect(anonymous.status()).toBe(401);

  // The IdP comes up on the same port; the app is not restarted.
  idp = await startIdp(ports);
  await page.getByRole('link', { name: 'Try again' }).click();
  await expectIdpLoginForm(page, IDP);
  await submitIdpLogin(page, { appOrigin: APP, idpOrigin: IDP });
  await expect(page.getByTestId('user-menu')).toContainText(ALICE.name);
  expect((await page.request.get(`${APP}/readyz`)).status()).toBe(200);
  expect(app.child.exitCode).toBeNull();
});

test('IdP restarted (new signing key, sessions lost): sign-in works again without restarting the app', async ({ page, browser }) => {
  idp = await startIdp(ports);
  app = await startApp(ports);
  await signIn(page, { appOrigin: APP, idpOrigin: IDP });

  await stopIdp();
  idp = await startIdp(ports);
  await expectReady(page);

  const fresh = await browser.newContext();
  try {
    const other = await fresh.newPage();
    await signIn(other, { appOrigin: APP, idpOrigin: IDP });
    await expect(other.getByTestId('user-menu')).toContainText(ALICE.name);
  } finally {
    await fresh.close();
  }
  expect(app.child.exitCode).toBeNull();
});

// The app has already discovered the IdP when it goes down: login must still
// notice (it re-checks the IdP before sending the browser there) and /readyz
// must say so.
test('IdP goes down after the app discovered it: "Sign in" shows the unreachable page', async ({ page }) => {
  idp = await startIdp(ports);
  app = await startApp(ports);
  await expectReady(page);
  await stopIdp();

  await expectPublicHome(page);
  await expectUnreachablePage(page);

  // The IdP comes back (new process, new signing key): the app notices
  // without a restart, and the login verifies the new key.
  idp = await startIdp(ports);
  await expectReady(page);
  await page.getByRole('link', { name: 'Try again' }).click();
  await submitIdpLogin(page, { appOrigin: APP, idpOrigin: IDP });
  await expect(page.getByTestId('user-menu')).toContainText(ALICE.name, { timeout: 30_000 });
});

test('IdP goes down after the app discovered it: /readyz says not ready', async ({ request }) => {
  idp = await startIdp(ports);
  app = await startApp(ports);
  await expect.poll(async () => (await request.get(`${APP}/readyz`)).status(), { timeout: 30_000 }).toBe(200);
  await stopIdp();

  const ready = await request.get(`${APP}/readyz`);
  expect(ready.status()).toBe(503);
  expect((await ready.json()).idp.ok).toBe(false);
});
