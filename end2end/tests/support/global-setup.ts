// Runs once, after the web servers are up: refuse to test a broken build.
//
// `target/debug/gatehouse` is also written by a plain `cargo build` / `cargo
// test --features ssr`, which does not set LEPTOS_OUTPUT_NAME; such a binary
// serves pages that load `/pkg/.js`, so nothing hydrates and the failures
// look unrelated. Say what is wrong instead.
import { APP_URL } from './env';

export default async function globalSetup(): Promise<void> {
  const html = await (await fetch(`${APP_URL}/`)).text();
  const assets = [...html.matchAll(/<link\b[^>]*\brel="(?:modulepreload|preload|stylesheet)"[^>]*>/g)]
    .map((m) => /\bhref="([^"]+)"/.exec(m[0])?.[1])
    .filter((href): href is string => Boolean(href));
  const problems: string[] = [];
  if (!assets.some((a) => a.endsWith('.js'))) problems.push('the home page links no JavaScript bundle');
  if (!assets.some((a) => a.endsWith('.wasm'))) problems.push('the home page links no wasm module');
  for (const href of assets) {
    const res = await fetch(new URL(href, APP_URL));
    if (!res.ok) problems.push(`${href} answers ${res.status}`);
  }
  if (problems.length) {
    throw new Error(
      `The app under test at ${APP_URL} is not a complete cargo-leptos build: ${problems.join('; ')}.\n`
      + 'Rebuild with `cargo leptos build` in the repository root (a plain `cargo build`/`cargo test` '
      + 'overwrites target/debug/gatehouse without LEPTOS_OUTPUT_NAME), and stop any stale server on that port.',
    );
  }
}
