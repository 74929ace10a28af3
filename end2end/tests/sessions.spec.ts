// /sessions: the signed-in user's sessions in two browsers; ending the other
// one from the page signs that browser out, and so does "End all other
// sessions" (with a third browser). The list counts every session of the user, so this test runs
// its own app + IdP pair: on the suite's shared app, sessions that other
// tests signed in would be in it too.
import { expect, test, type Page } from '@playwright/test';

import { clickWhenHydrated, signIn } from './support/auth';
import { startApp, startIdp, type Managed } from './support/processes';

const APP_PORT = 3202;
const IDP_PORT = 8283;
const APP = `http://localhost:${APP_PORT}`;
const IDP = `http://localhost:${IDP_PORT}`;

let idp: Managed | undefined;
let app: Managed | undefined;

test.afterEach(async () => {
  await app?.stop();
  await idp?.stop();
  app = undefined;
  idp = undefined;
});

async function userStatus(page: Page): Promise<number> {
  return (await page.request.get(`${APP}/auth/user`, { headers: { 'X-CSRF': '1' } })).status();
}

test('/sessions lists both browsers; "End" and "End all other sessions" sign the other one out', async ({ browser }) => {
  test.setTimeout(120_000);
  idp = await startIdp({ appPort: APP_PORT, idpPort: IDP_PORT });
  app = await startApp({ appPort: APP_PORT, idpPort: IDP_PORT });
  const laptop = await browser.newContext();
  const phone = await browser.newContext();
  const tablet = await browser.newContext();
  try {
    const laptopPage = await laptop.newPage();
    const phonePage = await phone.newPage();
    await signIn(laptopPage, { appOrigin: APP, idpOrigin: IDP });
    await laptopPage.goto(`${APP}/sessions`);
    const rows = laptopPage.getByTestId('session-row');
    await expect(rows).toHaveCount(1);

    await signIn(phonePage, { appOrigin: APP, idpOrigin: IDP });
    await laptopPage.reload();
    await expect(rows).toHaveCount(2);
    await expect(laptopPage.locator('[data-testid=session-row][data-current=true]')).toContainText('this browser');

    // End the other browser's session (the row that is not this one).
    const other = laptopPage.locator('[data-testid=session-row][data-current=false]');
    await clickWhenHydrated(
      laptopPage,
      () => other.getByRole('button', { name: 'End' }).click(),
      () => expect(rows).toHaveCount(1),
    );
    expect(await userStatus(phonePage)).toBe(401);
    expect(await userStatus(laptopPage)).toBe(200);

    // A third browser signs in; "End all other sessions" ends it.
    const tabletPage = await tablet.newPage();
    await signIn(tabletPage, { appOrigin: APP, idpOrigin: IDP });
    await laptopPage.reload();
    await expect(rows).toHaveCount(2);
    await clickWhenHydrated(
      laptopPage,
      () => laptopPage.getByTestId('end-others').click(),
      () => expect(rows).toHaveCount(1),
    );
    await expect(rows).toHaveAttribute('data-current', 'true');
    expect(await userStatus(tabletPage)).toBe(401);
    expect(await userStatus(laptopPage)).toBe(200);
  } finally {
    await laptop.close();
    await phone.close();
    await tablet.close();
  }
});
