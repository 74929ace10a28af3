// Signing in through the dev IdP's login form, as a person would.
import { expect, type Page } from '@playwright/test';

export const ALICE = {
  username: 'alice', password: 'alice', name: 'Alice Liddell', email: 'alice@example.com', roles: ['admin', 'user'],
};

function escapeRegExp(s: string): string {
  return s.replace(/[.*+?^${}()|[\]\\]/g, '\\$&');
}

/** Matches any URL on `origin` (scheme://host:port), nothing else. */
export function onOrigin(origin: string): RegExp {
  return new RegExp(`^${escapeRegExp(origin)}(/|$)`);
}

/** The IdP's login form is showing (on the given IdP origin). */
export async function expectIdpLoginForm(page: Page, idpOrigin: string): Promise<void> {
  await expect(page).toHaveURL(onOrigin(idpOrigin));
  await expect(page.locator('input[name=username]')).toBeVisible();
  await expect(page.locator('input[name=password]')).toBeVisible();
  await expect(page.locator('button[type=submit]')).toBeVisible();
}

/** Fills and submits the IdP login form, then waits to be back on the app. */
export async function submitIdpLogin(
  page: Page,
  { appOrigin, idpOrigin, username = ALICE.username, password = ALICE.password }:
  { appOrigin: string; idpOrigin: string; username?: string; password?: string },
): Promise<void> {
  await expectIdpLoginForm(page, idpOrigin);
  await page.locator('input[name=username]').fill(username);
  await page.locator('input[name=password]').fill(password);
  await page.locator('button[type=submit]').click();
  await page.waitForURL(onOrigin(appOrigin));
}

/** From the app's home page: "Sign in" → IdP → alice/alice → back, signed in. */
export async function signIn(
  page: Page,
  { appOrigin, idpOrigin }: { appOrigin: string; idpOrigin: string },
): Promise<void> {
  await page.goto(`${appOrigin}/`);
  await page.locator('a[href="/auth/login"]').first().click();
  await submitIdpLogin(page, { appOrigin, idpOrigin });
  await expect(page.getByTestId('user-menu')).toContainText(ALICE.name);
}

/**
 * Leptos hydrates after the wasm loads (and, on a lazy route, after the page's
 * chunk loads); until then, buttons with only a client-side handler do
 * nothing, and a form button submits the plain form instead — which already
 * acts on the server. Wait for the hydrate entry's `data-hydrated-at` mark
 * (set after asynchronous hydration, lazy chunks included); then click once
 * and wait for the expected effect. The mark belongs to the document, so call
 * this after a full page load (`goto`, `reload`, a redirect), as every caller
 * does: after a client-side navigation the first page's mark is still there
 * while the new route's chunk may not be.
 */
export async function clickWhenHydrated(
  page: Page,
  click: () => Promise<void>,
  effect: () => Promise<void>,
): Promise<void> {
  await page.waitForFunction(() => document.documentElement.dataset.hydratedAt !== undefined, null, { timeout: 30_000 });
  // Once, not retried: a retried click could hide a click the app lost.
  await click();
  await effect();
}
