// Step-up on /admin, seen by a person (RFC 9470, OIDC Core max_age): the
// admin's sign-in ages past ADMIN_MAX_AUTH_AGE (8 s here, in an app of this
// test's own); an admin action is then refused with "Confirm it's you", which
// asks the IdP for the password again and comes back to /admin; opening
// /admin with an old sign-in goes straight to the IdP and back.
import { expect, test } from '@playwright/test';

import { clickWhenHydrated, signIn, submitIdpLogin } from './support/auth';
import { startApp, startIdp, type Managed } from './support/processes';

const APP_PORT = 3203;
const IDP_PORT = 8284;
const APP = `http://localhost:${APP_PORT}`;
const IDP = `http://localhost:${IDP_PORT}`;
const MAX_AGE_MS = 8_000;

let idp: Managed | undefined;
let app: Managed | undefined;

test.afterEach(async () => {
  await app?.stop();
  await idp?.stop();
  app = undefined;
  idp = undefined;
});

test('"Confirm it\'s you" on /admin: an old sign-in is asked for the password again and lands back on /admin', async ({ page }) => {
  test.setTimeout(90_000);
  idp = await startIdp({ appPort: APP_PORT, idpPort: IDP_PORT });
  app = await startApp({ appPort: APP_PORT, idpPort: IDP_PORT, env: { ADMIN_MAX_AUTH_AGE: '8s' } });
  await signIn(page, { appOrigin: APP, idpOrigin: IDP });

  // Fresh: the admin page opens.
  await page.goto(`${APP}/admin`);
  const alice = page.getByTestId('admin-user').filter({ hasText: 'alice' });
  await expect(alice).toHaveCount(1);

  // The sign-in ages past the limit while the page is open: the action is
  // refused, nothing is ended, and the page offers the step-up.
  await page.waitForTimeout(MAX_AGE_MS + 1_000);
  const stepUp = page.getByTestId('step-up');
  await clickWhenHydrated(
    page,
    async () => alice.getByTestId('end-user-sessions').click(),
    async () => expect(stepUp).toContainText("Confirm it's you"),
  );
  await expect(page.getByTestId('admin-result')).toHaveCount(0);

  // Confirming asks the IdP for the password (max_age), then returns here.
  const login = page.waitForRequest((r) => r.url().startsWith(`${APP}/auth/login?`));
  await stepUp.getByRole('link', { name: "Confirm it's you" }).click();
  const asked = new URL((await login).url());
  expect(asked.searchParams.get('return_to')).toBe('/admin');
  expect(asked.searchParams.get('max_age')).toBe('8');
  await submitIdpLogin(page, { appOrigin: APP, idpOrigin: IDP });
  await expect(page).toHaveURL(`${APP}/admin`);
  await expect(alice).toHaveCount(1);
  await expect(page.getByTestId('step-up')).toHaveCount(0);

  // Opening /admin with an old sign-in goes straight to the IdP and back.
  await page.waitForTimeout(MAX_AGE_MS + 1_000);
  await page.goto(`${APP}/admin`);
  await submitIdpLogin(page, { appOrigin: APP, idpOrigin: IDP });
  await expect(page).toHaveURL(`${APP}/admin`);
  await expect(alice).toHaveCount(1);
});
