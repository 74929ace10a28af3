// 3. The profile page: ID-token claims, and userinfo fetched through the BFF.
import { expect, test } from '@playwright/test';

import { ALICE, clickWhenHydrated, signIn } from './support/auth';
import { APP_URL, IDP_URL, ISSUER } from './support/env';

test('/profile shows the signed-in user, claims, and the userinfo diff', async ({ page }) => {
  await signIn(page, { appOrigin: APP_URL, idpOrigin: IDP_URL });
  await page.goto('/profile');

  const profile = page.getByTestId('profile');
  await expect(profile).toBeVisible();
  await expect(page.getByTestId('profile-name')).toHaveText(ALICE.name);
  const email = page.getByTestId('profile-email');
  await expect(email).toContainText(ALICE.email);
  await expect(email.locator('.badge')).toHaveText('verified');

  const picture = profile.locator('img.avatar');
  await expect(picture).toHaveAttribute('src', `${ISSUER}/avatars/alice.svg`);
  // The picture really loads from the IdP.
  await expect.poll(() => picture.evaluate((img: HTMLImageElement) => img.complete && img.naturalWidth > 0)).toBe(true);

  const roles = page.getByTestId('profile-roles').locator('li');
  await expect(roles).toHaveText(ALICE.roles);

  const claims = page.locator('table[data-testid=id-token-claims]');
  await expect(claims).toBeVisible();
  const claimValue = (name: string) => claims.locator('tbody tr').filter({ has: page.locator('td:first-child', { hasText: new RegExp(`^${name}$`) }) }).locator('td.value');
  await expect(claimValue('sub')).toHaveText(/^[0-9a-f-]{36}$/);
  await expect(claimValue('iss')).toHaveText(ISSUER);
  await expect(claimValue('email')).toHaveText(ALICE.email);

  const diff = page.locator('table[data-testid=userinfo-diff]');
  const button = page.getByTestId('fetch-userinfo');
  await clickWhenHydrated(
    page,
    () => button.click(),
    () => expect(diff.or(page.getByTestId('userinfo-error'))).toBeVisible({ timeout: 3_000 }),
  );
  await expect(page.getByTestId('userinfo-error')).toHaveCount(0);
  await expect(diff).toBeVisible();

  const diffRow = (name: string) => diff.locator('tbody tr').filter({ has: page.locator('td:first-child', { hasText: new RegExp(`^${name}$`) }) });
  await expect(diffRow('updated_at').locator('td.status')).toHaveText('userinfo only');
  await expect(diffRow('locale').locator('td.status')).toHaveText('userinfo only');
  await expect(diffRow('sub').locator('td.status')).toHaveText('same');
  await expect(diffRow('email').locator('td.status')).toHaveText('same');
  // Every row carries one of the four statuses.
  for (const status of await diff.locator('tbody td.status').allTextContents()) {
    expect(['same', 'differs', 'ID token only', 'userinfo only']).toContain(status.trim());
  }
});
