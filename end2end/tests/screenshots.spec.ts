// 8. What the pages look like, compared with committed baselines
// (`screenshots.spec.ts-snapshots/`; the error page's is in
// `idp-down.spec.ts`, which is where the IdP is down). Values that change
// from run to run (times, nonces, session ids) are masked. After a change
// to how a page looks: `npx playwright test screenshots idp-down
// --update-snapshots`, look at the new PNGs, and commit them.
import { expect, test, type Page } from '@playwright/test';

import { clickWhenHydrated, signIn } from './support/auth';
import { APP_URL, IDP_URL } from './support/env';
import { SCREENSHOT } from './support/visual';

/** Claims whose values differ on every sign-in. */
const CHANGING_CLAIMS = /^(at_hash|auth_time|exp|iat|jti|nonce|sid|updated_at)$/;

async function stylesApplied(page: Page): Promise<void> {
  await page.waitForLoadState('load');
  // The stylesheet loaded and applies (the topbar is a flex row).
  await expect.poll(() => page.evaluate(() => {
    const bar = document.querySelector('header.topbar');
    return bar ? getComputedStyle(bar).display : null;
  })).toBe('flex');
}

test('home, signed out, looks like its baseline', async ({ page }) => {
  await page.goto('/');
  await expect(page.locator('a[href="/auth/login"]').first()).toBeVisible();
  await stylesApplied(page);
  await expect(page).toHaveScreenshot('home.png', SCREENSHOT);
});

test('profile, signed in, with the userinfo diff, looks like its baseline', async ({ page }) => {
  await signIn(page, { appOrigin: APP_URL, idpOrigin: IDP_URL });
  await page.goto('/profile');
  await expect(page.getByTestId('profile')).toBeVisible();
  await clickWhenHydrated(
    page,
    () => page.getByTestId('fetch-userinfo').click(),
    () => expect(page.locator('table[data-testid=userinfo-diff]')).toBeVisible({ timeout: 3_000 }),
  );
  await stylesApplied(page);
  await expect.poll(() => page.locator('img.avatar').evaluateAll((imgs) => imgs.every((i) => (i as HTMLImageElement).complete && (i as HTMLImageElement).naturalWidth > 0))).toBe(true);
  const changing = page.locator('table.claims tbody tr')
    .filter({ has: page.locator('td:first-child code', { hasText: CHANGING_CLAIMS }) })
    .locator('td.value');
  await expect(page).toHaveScreenshot('profile.png', {
    ...SCREENSHOT,
    mask: [page.locator('dl.times dd'), changing],
  });
});
