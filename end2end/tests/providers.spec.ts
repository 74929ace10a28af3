// Several identity providers behind one app (OIDC_PROVIDERS): "Sign in"
// opens a chooser, the chosen provider's login form follows, and the user is
// back in the app signed in; sign-out goes through that provider. A private
// app and two dev IdPs on their own ports, so the shared pair is untouched.
import { expect, test } from '@playwright/test';

import { ALICE, onOrigin, submitIdpLogin } from './support/auth';
import { issuerFor } from './support/env';
import { startApp, startIdp, type Managed } from './support/processes';
import { SCREENSHOT } from './support/visual';

const APP_PORT = 3201;
const FIRST_PORT = 8281;
const SECOND_PORT = 8282;
const APP = `http://localhost:${APP_PORT}`;
const SECOND = `http://localhost:${SECOND_PORT}`;

const running: Managed[] = [];

test.beforeAll(async () => {
  test.setTimeout(180_000); // two IdPs and an app, each allowed 60 s to start
  running.push(await startIdp({ idpPort: FIRST_PORT, appPort: APP_PORT }));
  running.push(await startIdp({ idpPort: SECOND_PORT, appPort: APP_PORT }));
  running.push(await startApp({
    appPort: APP_PORT,
    idpPort: FIRST_PORT,
    env: {
      OIDC_LABEL: 'Company Keycloak',
      OIDC_PROVIDERS: 'partner',
      OIDC_PARTNER_ISSUER_URL: issuerFor(SECOND_PORT),
      OIDC_PARTNER_CLIENT_ID: 'gatehouse',
      OIDC_PARTNER_CLIENT_SECRET: 'gatehouse-dev-secret',
      OIDC_PARTNER_LABEL: 'Partner IdP',
    },
  }));
});

test.afterAll(async () => {
  await Promise.all(running.map((p) => p.stop()));
});

test('"Sign in" offers each provider; the chosen one signs the user in and out', async ({ page }) => {
  await page.goto(`${APP}/`);
  await page.locator('a[href="/auth/login"]').first().click();

  const chooser = page.locator('main.chooser-page');
  await expect(chooser.locator('h1')).toHaveText('Sign in with');
  await expect(chooser.getByRole('link')).toHaveText(['Company Keycloak', 'Partner IdP', 'Back to Home']);
  await expect(page).toHaveScreenshot('chooser.png', SCREENSHOT);

  await chooser.getByRole('link', { name: 'Partner IdP' }).click();
  await submitIdpLogin(page, { appOrigin: APP, idpOrigin: SECOND });
  await expect(page.getByTestId('user-menu')).toContainText(ALICE.name);

  // Sign-out ends the session at the provider it came from.
  const endSession = page.waitForRequest(
    (r) => r.url().startsWith(`${issuerFor(SECOND_PORT)}/protocol/openid-connect/logout`),
  );
  await page.getByRole('button', { name: 'Sign out' }).first().click();
  await endSession;
  await page.waitForURL(onOrigin(APP));
  await expect(page.locator('a[href="/auth/login"]').first()).toHaveText('Sign in');
});
