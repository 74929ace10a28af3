#!/usr/bin/env bash
# Installs whatever this machine lacks to build, run and test Gatehouse, and
# nothing it already has. Safe to run again; `make dev` and `make test` call it.
set -euo pipefail
cd "$(dirname "$0")/.."

CARGO_LEPTOS_VERSION=0.3.10          # 0.3.11 needs a newer rustc than 1.95
export PATH="$HOME/.cargo/bin:$PATH"
say() { printf '\033[1;34m[setup]\033[0m %s\n' "$*"; }

# Debian packages: Chromium for the browser tests, redis-server for the
# multi-instance tests, docker-compose (1.29, Python) to validate
# docker-compose.yaml — no Docker engine is needed or installed. wasm-opt comes
# from npm's binaryen (end2end/package.json), not Debian's: binaryen 108 breaks
# the externref table wasm-bindgen emits, and the release bundle fails to start.
need_apt=()
command -v chromium >/dev/null || need_apt+=(chromium)
command -v redis-server >/dev/null || need_apt+=(redis-server)
# `make bench` (scripts/setup.sh --bench) also needs the load generator and brotli.
if [ "${1:-}" = "--bench" ]; then
  command -v wrk >/dev/null || need_apt+=(wrk)
  command -v brotli >/dev/null || need_apt+=(brotli)
fi
SUDO=""; [ "$(id -u)" -eq 0 ] || SUDO="sudo"
if [ ${#need_apt[@]} -gt 0 ]; then
  say "apt-get install ${need_apt[*]}"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq "${need_apt[@]}" >/dev/null
fi
if ! command -v docker-compose >/dev/null; then
  say "apt-get install docker-compose (without the Docker engine it recommends)"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends docker-compose >/dev/null
fi

if ! rustup target list --installed | grep -qx wasm32-unknown-unknown; then
  say "rustup target add wasm32-unknown-unknown"
  rustup target add wasm32-unknown-unknown
fi

# wasm-bindgen-cli must match the wasm-bindgen crate in Cargo.lock exactly.
# (Installed without --locked: its own lockfile names a crate the registry lacks.)
wbg_version=$(awk '/^name = "wasm-bindgen"$/ { getline; gsub(/version = |"/, ""); print; exit }' Cargo.lock)
if [ "$(wasm-bindgen --version 2>/dev/null | awk '{print $2}')" != "$wbg_version" ]; then
  say "cargo install wasm-bindgen-cli $wbg_version"
  cargo install wasm-bindgen-cli --version "$wbg_version" --force
fi

# cargo-leptos (about 30 minutes to build on 2 cores: only when missing).
if [ "$(cargo leptos --version 2>/dev/null | awk '{print $2}')" != "$CARGO_LEPTOS_VERSION" ]; then
  say "cargo install cargo-leptos $CARGO_LEPTOS_VERSION (this takes a while)"
  cargo install cargo-leptos --version "$CARGO_LEPTOS_VERSION" --locked --force
fi

# npm packages for the dev IdP and Playwright (never `npx playwright install`:
# the tests use Debian's /usr/bin/chromium).
if [ ! -d end2end/node_modules ] || [ end2end/package-lock.json -nt end2end/node_modules/.package-lock.json ]; then
  say "npm ci (end2end)"
  (cd end2end && npm ci --no-audit --no-fund --loglevel=error)
fi
