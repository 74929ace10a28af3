// 1. The public home page and the sign-up entry point.
import { expect, test } from '@playwright/test';

import { onOrigin } from './support/auth';
import { APP_URL, IDP_URL } from './support/env';

test('home offers "Sign in" and "Create account" when signed out', async ({ page }) => {
  await page.goto('/');
  const signIn = page.locator('a[href="/auth/login"]').first();
  const signUp = page.locator('a[href="/auth/signup"]').first();
  await expect(signIn).toHaveText('Sign in');
  await expect(signIn).toHaveAttribute('rel', 'external');
  await expect(signUp).toHaveText('Create account');
  await expect(signUp).toHaveAttribute('rel', 'external');
  await expect(page.getByTestId('user-menu')).toHaveCount(0);
});

test('"Create account" reaches the IdP sign-up form (prompt=create)', async ({ page }) => {
  await page.goto('/');
  const authRequest = page.waitForRequest((r) => r.url().startsWith(`${IDP_URL}/realms/demo/protocol/openid-connect/auth`));
  await page.locator('a[href="/auth/signup"]').first().click();
  // Pushed (RFC 9126, the dev IdP offers PAR): the browser carries only the
  // request_uri; the IdP's sign-up form below shows prompt=create arrived.
  const sent = new URL((await authRequest).url()).searchParams;
  expect([...sent.keys()].sort()).toEqual(['client_id', 'request_uri']);
  await expect(page).toHaveURL(onOrigin(IDP_URL));
  await expect(page.getByRole('heading', { name: 'Create an account' })).toBeVisible();
  await expect(page.locator('input[name=email]')).toBeVisible();
  await expect(page.locator('input[name=username]')).toBeVisible();
  await expect(page.locator('input[name=password]')).toBeVisible();
  expect(page.url().startsWith(APP_URL)).toBe(false);
});
