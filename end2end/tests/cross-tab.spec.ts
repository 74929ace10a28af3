// Every tab knows at once: signing out in one tab makes another open tab of
// the same browser show the signed-out state within 2 s, without a reload.
import { expect, test } from '@playwright/test';

import { signIn } from './support/auth';
import { APP_URL, IDP_URL } from './support/env';

test('sign-out in one tab shows "session ended" in another within 2 s', async ({ context }) => {
  const first = await context.newPage();
  await signIn(first, { appOrigin: APP_URL, idpOrigin: IDP_URL });

  const second = await context.newPage();
  const watching = second.waitForRequest(`${APP_URL}/auth/events`);
  await second.goto(`${APP_URL}/profile`);
  await watching;
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
