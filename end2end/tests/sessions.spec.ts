// /sessions: the signed-in user's sessions in two browsers; ending the other
// one from the page signs that browser out.
import { expect, test } from '@playwright/test';

import { signIn } from './support/auth';
import { APP_URL, IDP_URL } from './support/env';

test('/sessions lists both browsers and "End" signs the other one out', async ({ browser }) => {
  const laptop = await browser.newContext();
  const phone = await browser.newContext();
  try {
    const laptopPage = await laptop.newPage();
    const phonePage = await phone.newPage();
    await signIn(laptopPage, { appOrigin: APP_URL, idpOrigin: IDP_URL });

    // Earlier tests left Alice signed in elsewhere on the shared app: start
    // from a known state with "End all other sessions".
    await laptopPage.goto(`${APP_URL}/sessions`);
    const rows = laptopPage.getByTestId('session-row');
    await laptopPage.getByTestId('end-others').click();
    await expect(rows).toHaveCount(1);

    await signIn(phonePage, { appOrigin: APP_URL, idpOrigin: IDP_URL });
    await laptopPage.reload();
    await expect(rows).toHaveCount(2);
    await expect(laptopPage.locator('[data-testid=session-row][data-current=true]')).toContainText('this browser');

    // End the other browser's session (the row that is not this one).
    const other = laptopPage.locator('[data-testid=session-row][data-current=false]');
    await other.getByRole('button', { name: 'End' }).click();
    await expect(rows).toHaveCount(1);

    const phoneUser = await phonePage.request.get(`${APP_URL}/auth/user`, { headers: { 'X-CSRF': '1' } });
    expect(phoneUser.status()).toBe(401);
    const laptopUser = await laptopPage.request.get(`${APP_URL}/auth/user`, { headers: { 'X-CSRF': '1' } });
    expect(laptopUser.status()).toBe(200);
  } finally {
    await laptop.close();
    await phone.close();
  }
});
