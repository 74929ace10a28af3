// The idle timeout, seen by a person: a warning before it, "Stay signed in"
// keeps the session, and ignoring it ends the session with a clear message.
// Runs its own app with SESSION_IDLE_TIMEOUT=10s (the warning shows in the
// last 5 s: half the timeout, as it is shorter than two minutes).
import { expect, test } from '@playwright/test';

import { signIn } from './support/auth';
import { startApp, startIdp, type Managed } from './support/processes';

const APP_PORT = 3300;
const IDP_PORT = 8380;
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

test('idle warning: "Stay signed in" keeps the session; ignoring it ends the session', async ({ page }) => {
  test.setTimeout(90_000);
  idp = await startIdp({ appPort: APP_PORT, idpPort: IDP_PORT });
  app = await startApp({ appPort: APP_PORT, idpPort: IDP_PORT, env: { SESSION_IDLE_TIMEOUT: '10s' } });
  await signIn(page, { appOrigin: APP, idpOrigin: IDP });
  await page.goto(`${APP}/profile`);

  const warning = page.getByTestId('idle-warning');
  await expect(warning).toBeVisible({ timeout: 9_000 });
  await warning.getByRole('button', { name: 'Stay signed in' }).click();
  await expect(warning).toBeHidden();

  // Still signed in 6 s later, past the deadline the click pushed back.
  await page.waitForTimeout(6_000);
  await expect(page.getByTestId('session-ended')).toHaveCount(0);

  // Ignore the next warning: the session ends and the page says so.
  await expect(warning).toBeVisible({ timeout: 9_000 });
  await expect(page.getByTestId('session-ended')).toBeVisible({ timeout: 9_000 });
  await expect(page.getByTestId('session-ended')).toContainText('Your session has ended');
  const user = await page.request.get(`${APP}/auth/user`, { headers: { 'X-CSRF': '1' } });
  expect(user.status()).toBe(401);
});
