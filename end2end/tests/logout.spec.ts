// 5. Sign out: local session ended, IdP session ended (RP-initiated logout).
import { expect, test } from '@playwright/test';

import { expectIdpLoginForm, signIn } from './support/auth';
import { APP_URL, IDP_URL, ISSUER } from './support/env';

test('"Sign out" ends both sessions and comes back to the app home, signed out', async ({ page }) => {
  await signIn(page, { appOrigin: APP_URL, idpOrigin: IDP_URL });

  const endSession = page.waitForRequest((r) => r.url().startsWith(`${ISSUER}/protocol/openid-connect/logout`));
  const back = page.waitForRequest((r) => r.url().startsWith(`${APP_URL}/auth/logged-out?`));
  await page.getByRole('button', { name: 'Sign out' }).first().click();
  // The IdP sends the browser back with the state the end-session request carried.
  const sent = new URL((await endSession).url()).searchParams.get('state');
  expect(sent).toBeTruthy();
  expect(new URL((await back).url()).searchParams.get('state')).toBe(sent);
  await page.waitForURL(`${APP_URL}/`);
  await expect(page.locator('a[href="/auth/login"]').first()).toHaveText('Sign in');
  await expect(page.getByTestId('user-menu')).toHaveCount(0);

  const user = await page.request.get('/auth/user', { headers: { 'X-CSRF': '1' } });
  expect(user.status()).toBe(401);

  // The IdP session is gone too: signing in asks for the password again.
  await page.locator('a[href="/auth/login"]').first().click();
  await expectIdpLoginForm(page, IDP_URL);
});
