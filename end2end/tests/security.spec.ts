// The browser enforces what the BFF promises: the Content-Security-Policy lets
// the app hydrate and run with no violation while refusing any other inline
// script, and a cross-site form post (the kind Leptos server functions accept,
// which a browser sends without a preflight) is refused with 403.
import { expect, test, type Page } from '@playwright/test';

import { clickWhenHydrated, signIn } from './support/auth';
import { APP_URL, IDP_URL } from './support/env';

type Violation = { directive: string; blocked: string };

/** Records every CSP violation the page reports, from before its first script. */
async function recordViolations(page: Page): Promise<() => Promise<Violation[]>> {
  await page.addInitScript(() => {
    const seen: Violation[] = [];
    (window as unknown as { __csp: Violation[] }).__csp = seen;
    document.addEventListener('securitypolicyviolation', (e) => {
      seen.push({ directive: e.effectiveDirective, blocked: e.blockedURI });
    });
  });
  const logged: Violation[] = [];
  page.on('console', (message) => {
    if (message.text().includes('Content Security Policy')) logged.push({ directive: 'console', blocked: message.text() });
  });
  return async () => [
    ...logged,
    ...(await page.evaluate(() => (window as unknown as { __csp?: Violation[] }).__csp ?? [])),
  ];
}

test('the app hydrates and runs under its CSP, and an injected inline script does not run', async ({ page }) => {
  const violations = await recordViolations(page);
  await signIn(page, { appOrigin: APP_URL, idpOrigin: IDP_URL });
  for (const path of ['/', '/notes', '/sessions']) {
    await page.goto(path);
    // The bundle was fetched (connect-src); the console listener keeps any
    // violation reported on this page after we navigate away.
    await page.waitForFunction(() => performance.getEntriesByType('resource')
      .some((e) => e.name.endsWith('.wasm') && (e as PerformanceResourceTiming).responseEnd > 0));
    expect(await violations(), path).toEqual([]);
  }
  await page.goto('/profile');
  // Only the hydrated app answers this button: the wasm compiled and ran.
  await clickWhenHydrated(
    page,
    () => page.getByTestId('fetch-userinfo').click(),
    () => expect(page.locator('table[data-testid=userinfo-diff]')).toBeVisible({ timeout: 3_000 }),
  );
  // The avatar comes from the IdP's origin, which img-src allows.
  await expect.poll(() => page.locator('img.avatar').first()
    .evaluate((img: HTMLImageElement) => img.complete && img.naturalWidth > 0)).toBe(true);
  expect(await violations()).toEqual([]);

  // What an injection would do: add a script without the nonce.
  const ran = await page.evaluate(() => {
    const script = document.createElement('script');
    script.textContent = 'window.__injected = true;';
    document.body.appendChild(script);
    return (window as unknown as { __injected?: boolean }).__injected === true;
  });
  expect(ran).toBe(false);
  await expect.poll(async () => (await violations()).map((v) => v.directive)).toContain('script-src-elem');
});

test('a cross-site form post to a server function or to sign-out gets 403', async ({ page }) => {
  await signIn(page, { appOrigin: APP_URL, idpOrigin: IDP_URL });
  await page.goto('/sessions');
  const action = await page.locator('form:has([data-testid=end-others])').getAttribute('action');
  expect(action).toMatch(/^\/api\//);

  // A page on another site with plain HTML forms aimed at the app.
  const attacker = 'http://attacker.test';
  await page.route(`${attacker}/**`, (route) => route.fulfill({
    contentType: 'text/html',
    body: `<!doctype html><title>win a prize</title>
      <form id="sfn" method="post" action="${APP_URL}${action}"><button>claim</button></form>
      <form id="logout" method="post" action="${APP_URL}/auth/logout" enctype="text/plain">
        <input name="a" value="b"><button>claim</button></form>`,
  }));
  for (const form of ['sfn', 'logout']) {
    await page.goto(`${attacker}/`);
    const answer = page.waitForResponse((r) => r.url().startsWith(APP_URL) && r.request().method() === 'POST');
    await page.locator(`#${form} button`).click();
    const response = await answer;
    expect((await response.request().allHeaders())['origin'], form).toBe(attacker);
    expect(response.status(), form).toBe(403);
    expect((await response.json()).error, form).toBe('csrf');
  }
  // Still signed in, with every session in place.
  const user = await page.request.get(`${APP_URL}/auth/user`, { headers: { 'X-CSRF': '1' } });
  expect(user.status()).toBe(200);
});
