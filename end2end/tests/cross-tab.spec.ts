// Every tab knows at once: signing out in one tab makes another open tab of
// the same browser show the signed-out state within 2 s, without a reload.
import {
  expect, test, type BrowserContext, type Page,
} from '@playwright/test';

import { ALICE, signIn } from './support/auth';
import { APP_URL, IDP_URL } from './support/env';

/** Two tabs of one browser: the first signed in, the second on /profile,
 * watching its session (its event stream is open). */
async function twoTabs(context: BrowserContext): Promise<[Page, Page]> {
  const first = await context.newPage();
  await signIn(first, { appOrigin: APP_URL, idpOrigin: IDP_URL });
  const second = await context.newPage();
  const watching = second.waitForRequest(`${APP_URL}/auth/events`);
  await second.goto(`${APP_URL}/profile`);
  await watching;
  return [first, second];
}

test('sign-out in one tab shows "session ended" in another within 2 s', async ({ context }) => {
  const [first, second] = await twoTabs(context);
  await expect(second.getByTestId('session-ended')).toHaveCount(0);

  const before = Date.now();
  await first.getByRole('button', { name: 'Sign out' }).first().click();
  await expect(second.getByTestId('session-ended')).toBeVisible({ timeout: 2000 });
  expect(Date.now() - before).toBeLessThan(2500);
  await expect(second.getByTestId('session-ended')).toContainText('Your session has ended');
  await expect(second.getByRole('link', { name: 'Sign in again' })).toHaveAttribute(
    'href',
    '/auth/login?return_to=/profile',
  );
});

test('a tab whose session ended keeps nothing of the user on screen or in the page', async ({ context }) => {
  const [first, second] = await twoTabs(context);
  const html = async () => second.evaluate(() => document.documentElement.outerHTML);
  // Signed in, the profile shows alice (and the page carries her data).
  expect(await html()).toContain(ALICE.email);

  await first.getByRole('button', { name: 'Sign out' }).first().click();
  // Within 2 s: no name, no e-mail anywhere in the document — text,
  // attributes (the avatar's alt) or the server-rendered data scripts — no
  // "Sign out", and a way to sign in again that returns to this page.
  await expect.poll(async () => {
    const page = await html();
    return page.includes(ALICE.name) || page.includes(ALICE.email);
  }, { timeout: 2000, intervals: [100] }).toBe(false);
  await expect(second.getByRole('button', { name: 'Sign out' })).toHaveCount(0);
  await expect(second.getByTestId('user-menu')).toHaveCount(0);
  await expect(second.getByRole('link', { name: 'Sign in again' })).toHaveAttribute(
    'href',
    '/auth/login?return_to=/profile',
  );
  await expect(second.locator('a[href="/auth/login"]').first()).toBeVisible();
});
