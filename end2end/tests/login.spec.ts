// 2. Sign-in through the IdP, and 4. return_to after an anonymous /profile visit.
import { expect, test } from '@playwright/test';

import {
  ALICE, expectIdpLoginForm, onOrigin, submitIdpLogin,
} from './support/auth';
import { APP_URL, IDP_URL } from './support/env';

test('"Sign in" → IdP; a wrong password stays there; alice/alice comes back signed in', async ({ page }) => {
  await page.goto('/');
  await page.locator('a[href="/auth/login"]').first().click();
  await expectIdpLoginForm(page, IDP_URL);

  await page.locator('input[name=username]').fill('alice');
  await page.locator('input[name=password]').fill('not-alice');
  await page.locator('button[type=submit]').click();
  await expect(page.getByText('Invalid username or password.')).toBeVisible();
  await expectIdpLoginForm(page, IDP_URL);

  await submitIdpLogin(page, { appOrigin: APP_URL, idpOrigin: IDP_URL });
  await expect(page).toHaveURL(`${APP_URL}/`);
  const menu = page.getByTestId('user-menu');
  await expect(menu).toBeVisible();
  await expect(menu).toHaveAttribute('href', '/profile');
  await expect(menu.locator('.user-name')).toHaveText(ALICE.name);
  await expect(menu.locator('img.avatar, span.avatar.initials')).toHaveCount(1);
  await expect(menu.locator('img.avatar, span.avatar.initials')).toBeVisible();
  await expect(page.getByRole('button', { name: 'Sign out' }).first()).toBeVisible();
  await expect(page.getByText(`Welcome back, ${ALICE.name}`)).toBeVisible();
  await expect(page.locator('a[href="/auth/login"]')).toHaveCount(0);
});

test('anonymous /profile → IdP login → back on /profile (return_to)', async ({ page }) => {
  const loginRequest = page.waitForRequest((r) => r.url().startsWith(`${APP_URL}/auth/login`));
  await page.goto('/profile');
  expect(new URL((await loginRequest).url()).searchParams.get('return_to')).toBe('/profile');
  await expectIdpLoginForm(page, IDP_URL);

  await submitIdpLogin(page, { appOrigin: APP_URL, idpOrigin: IDP_URL });
  await expect(page).toHaveURL(`${APP_URL}/profile`);
  await expect(page.getByTestId('profile-name')).toHaveText(ALICE.name);
  await expect(page).toHaveURL(onOrigin(APP_URL));
});
