// Authorization in the browser: the notes page works through the API with
// the session alone; bob (role user) gets a real 403 page at /admin; alice
// (admin) sees the users and ends bob's sessions from there.
import { expect, test, type Page } from '@playwright/test';

import { clickWhenHydrated, signIn, submitIdpLogin } from './support/auth';
import { APP_URL, IDP_URL } from './support/env';
import { SCREENSHOT } from './support/visual';

async function signInAs(page: Page, username: string, returnTo: string): Promise<void> {
  await page.goto(`${APP_URL}/auth/login?return_to=${returnTo}`);
  await submitIdpLogin(page, { appOrigin: APP_URL, idpOrigin: IDP_URL, username, password: username });
}

test('the notes page adds and deletes notes through /api/notes', async ({ page }) => {
  const apiCalls: string[] = [];
  page.on('request', (r) => {
    if (r.url().startsWith(`${APP_URL}/api/notes`)) apiCalls.push(`${r.method()} ${r.headers()['x-csrf'] ?? '-'}`);
  });
  await signIn(page, { appOrigin: APP_URL, idpOrigin: IDP_URL });
  await page.goto(`${APP_URL}/notes`);
  await expect(page.getByTestId('notes')).toBeVisible();
  await expect(page.getByTestId('notes-everyone')).toBeVisible(); // alice is an admin

  const text = `A note written at ${Date.now()}`;
  const notes = page.getByTestId('note').filter({ hasText: text });
  await clickWhenHydrated(
    page,
    async () => {
      await page.getByTestId('note-text').fill(text);
      await page.getByTestId('note-add').click();
    },
    async () => expect(notes).toHaveCount(1, { timeout: 2_000 }),
  );
  await page.reload();
  await expect(notes).toHaveCount(1);
  await notes.getByTestId('note-delete').click();
  await expect(notes).toHaveCount(0);

  expect(apiCalls).toContain('POST 1');
  expect(apiCalls).toContain('DELETE 1');
  expect(apiCalls.every((c) => c.endsWith(' 1')), 'every API call carries X-CSRF: 1').toBe(true);
});

test('bob gets a 403 page at /admin, alice ends his sessions there', async ({ browser }) => {
  const bobContext = await browser.newContext();
  const aliceContext = await browser.newContext();
  try {
    const bob = await bobContext.newPage();
    await signInAs(bob, 'bob', '/admin');
    await expect(bob.getByTestId('forbidden')).toContainText('Not allowed');
    const again = await bob.goto(`${APP_URL}/admin`);
    expect(again?.status()).toBe(403);
    await expect(bob.getByTestId('forbidden')).toBeVisible();
    await expect(bob.locator('nav a[href="/admin"]')).toHaveCount(0);
    await expect(bob).toHaveScreenshot('admin-403.png', SCREENSHOT);

    const alice = await aliceContext.newPage();
    await signInAs(alice, 'alice', '/admin');
    await expect(alice.getByTestId('admin')).toBeVisible();
    await expect(alice.locator('nav a[href="/admin"]')).toHaveCount(1);
    const bobRow = alice.getByTestId('admin-user').filter({ hasText: 'Bob Builder' });
    await expect(bobRow.getByTestId('admin-session-count')).not.toContainText(/^0/);
    await clickWhenHydrated(
      alice,
      async () => bobRow.getByTestId('end-user-sessions').click(),
      async () => expect(alice.getByTestId('admin-result')).toContainText('Ended', { timeout: 2_000 }),
    );
    await expect(bobRow.getByTestId('admin-session-count')).toContainText(/^0/);

    const bobUser = await bob.request.get(`${APP_URL}/auth/user`, { headers: { 'X-CSRF': '1' } });
    expect(bobUser.status()).toBe(401);
  } finally {
    await bobContext.close();
    await aliceContext.close();
  }
});
