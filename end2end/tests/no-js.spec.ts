// Without JavaScript the protected pages still work as plain HTTP: an
// anonymous visit to /profile is a real redirect (302/303) to the login, so
// the browser lands on the IdP's form and comes back to /profile signed in.
// (A 200 "Redirecting to sign in…" page with a Location header would leave a
// browser without JavaScript, or one whose lazy route has not hydrated yet,
// on that page.)
import { expect, test } from '@playwright/test';

import { ALICE, expectIdpLoginForm, submitIdpLogin } from './support/auth';
import { APP_URL, IDP_URL } from './support/env';

test.use({ javaScriptEnabled: false });

test('anonymous /profile without JavaScript lands on the IdP login and comes back', async ({ page }) => {
  const response = await page.request.get(`${APP_URL}/profile`, { maxRedirects: 0 });
  expect([302, 303]).toContain(response.status());
  expect(response.headers().location).toBe('/auth/login?return_to=/profile');

  await page.goto(`${APP_URL}/profile`);
  await expectIdpLoginForm(page, IDP_URL);
  await submitIdpLogin(page, { appOrigin: APP_URL, idpOrigin: IDP_URL });
  await expect(page).toHaveURL(`${APP_URL}/profile`);
  await expect(page.getByTestId('profile-email')).toContainText(ALICE.email);
});
