// The signed-in pages are lazy routes (src/app.rs) built into their own wasm
// chunks by `cargo leptos --split`: the first load of `/` must not fetch them,
// and each page, opened directly, must fetch its chunk and hydrate without an
// error (hydrating a lazy route synchronously panics; a build without
// `--split` leaves the chunk imports unresolved).
import { expect, test, type Page } from '@playwright/test';

import { signIn } from './support/auth';
import { APP_URL, IDP_URL } from './support/env';

/** The wasm files this page fetched, by file name. */
function wasmFetched(page: Page): string[] {
  const names: string[] = [];
  page.on('request', (request) => {
    const path = new URL(request.url()).pathname;
    if (path.endsWith('.wasm')) names.push(path.split('/').pop() ?? path);
  });
  return names;
}

async function hydrated(page: Page): Promise<void> {
  await page.waitForFunction(() => document.documentElement.dataset.hydratedAt !== undefined, null, { timeout: 15_000 });
}

test('the first load carries no page chunk; each signed-in page loads its own and hydrates cleanly', async ({ page }) => {
  const errors: string[] = [];
  page.on('console', (message) => { if (message.type() === 'error') errors.push(message.text()); });
  page.on('pageerror', (error) => errors.push(error.message));
  await signIn(page, { appOrigin: APP_URL, idpOrigin: IDP_URL });

  const fetched = wasmFetched(page);
  await page.goto('/');
  await hydrated(page);
  expect(fetched).toEqual(['gatehouse.wasm']);

  for (const [path, route, testId] of [
    ['/profile', 'profile_route', 'profile'],
    ['/sessions', 'sessions_route', 'sessions'],
    ['/notes', 'notes_route', 'notes'],
    ['/admin', 'admin_route', 'admin'],
  ]) {
    fetched.length = 0;
    await page.goto(path);
    await hydrated(page);
    expect(fetched, path).toContain('gatehouse.wasm');
    expect(fetched.some((name) => name.startsWith(`split___${route}_view`)), `${path} fetched ${fetched}`).toBe(true);
    await expect(page.getByTestId(testId)).toBeVisible();
  }
  expect(errors).toEqual([]);
});
