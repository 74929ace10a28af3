// `make bench` (benches/bff.rs) runs this: first contentful paint and the end
// of hydration for `/` and `/profile`, median of 5 cold loads each (a fresh
// browser context, so nothing is cached), in Debian's headless Chromium.
// Prints JSON on stdout. APP_URL and IDP_URL name the running app and IdP.
import { chromium } from '@playwright/test';


// Debian's Chromium with the flags the end-to-end suite uses (tests/support/env.ts).
const LAUNCH = {
  executablePath: '/usr/bin/chromium',
  args: ['--no-sandbox', '--disable-gpu', '--disable-background-networking', '--disable-component-update'],
};

const APP_URL = process.env.APP_URL;
const IDP_URL = process.env.IDP_URL;
const RUNS = 5;

async function signIn(context) {
  const page = await context.newPage();
  await page.goto(`${APP_URL}/auth/login`);
  await page.waitForURL((u) => u.href.startsWith(IDP_URL));
  await page.fill('input[name=username]', 'alice');
  await page.fill('input[name=password]', 'alice');
  await page.click('button[type=submit]');
  await page.waitForURL((u) => u.href.startsWith(APP_URL));
  // Session cookie only; the page's cache goes with the page.
  const cookies = await context.cookies();
  await page.close();
  return cookies;
}

async function measure(browser, path, cookies) {
  const context = await browser.newContext();
  if (cookies) await context.addCookies(cookies);
  const page = await context.newPage();
  await page.goto(`${APP_URL}${path}`);
  await page.waitForFunction(() => document.documentElement.dataset.hydratedAt !== undefined, null, { timeout: 30_000 });
  const timing = await page.evaluate(() => ({
    first_contentful_paint_ms: performance.getEntriesByName('first-contentful-paint')[0]?.startTime ?? null,
    hydrated_ms: Number(document.documentElement.dataset.hydratedAt),
  }));
  await context.close();
  return timing;
}

const median = (xs) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)];

const browser = await chromium.launch(LAUNCH);
try {
  const login = await browser.newContext();
  const cookies = await signIn(login);
  await login.close();
  const result = {};
  for (const [path, withSession] of [['/', false], ['/profile', true]]) {
    const runs = [];
    for (let i = 0; i < RUNS; i += 1) runs.push(await measure(browser, path, withSession ? cookies : null));
    result[path] = {
      first_contentful_paint_ms: median(runs.map((r) => r.first_contentful_paint_ms)),
      hydrated_ms: median(runs.map((r) => r.hydrated_ms)),
      runs: RUNS,
    };
  }
  process.stdout.write(`${JSON.stringify(result)}\n`);
} finally {
  await browser.close();
}
