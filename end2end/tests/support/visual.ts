// How pages are compared with their committed baselines (`toHaveScreenshot`).
// Measured here (Debian's Chromium, six consecutive runs): the pages render
// pixel for pixel the same every run once the values that change (times,
// nonces, session ids) are masked. Playwright's per-pixel colour tolerance
// (0.2) absorbs anti-aliasing; 50 differing pixels more are allowed, far less
// than a changed word.

/** The whole page, compared with the committed baseline. */
export const SCREENSHOT = { fullPage: true, maxDiffPixels: 50 } as const;
