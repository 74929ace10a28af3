// 8. Full-page screenshots for a human to look at (the error page's is taken
// by idp-down.spec.ts, which is where the IdP is down).
import fs from 'node:fs';
import path from 'node:path';

import { expect, test, type Page } from '@playwright/test';

import { clickWhenHydrated, signIn } from './support/auth';
import { APP_URL, IDP_URL, SCREENSHOT_DIR } from './support/env';

async function stylesApplied(page: Page): Promise<void> {
  await page.waitForLoadState('load');
  // The stylesheet loaded and applies (the topbar is a flex row).
  await expect.poll(() => page.evaluate(() => {
    const bar = document.querySelector('header.topbar');
    return bar ? getComputedStyle(bar).display : null;
  })).toBe('flex');
}

async function save(page: Page, name: string): Promise<void> {
  fs.mkdirSync(SCREENSHOT_DIR, { recursive: true });
  await page.screenshot({ path: path.join(SCREENSHOT_DIR, `${name}.png`), fullPage: true });
}

test('screenshot: home, signed out', async ({ page }) => {
  await page.goto('/');
  await expect(page.locator('a[href="/auth/login"]').first()).toBeVisible();
  await stylesApplied(page);
  await save(page, 'home');
});

test('screenshot: profile, signed in, with the userinfo diff', async ({ page }) => {
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
  await save(page, 'profile');
});
