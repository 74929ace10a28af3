#!/usr/bin/env bash
# Installs whatever this machine lacks to build, run and test Gatehouse, and
# nothing it already has. Safe to run again; `make dev` and `make test` call it.
# Each slow step says what it does and how long it takes on the 2-core machine
# this was measured on, then how long it took.
set -euo pipefail
cd "$(dirname "$0")/.."

CARGO_LEPTOS_VERSION=0.3.10          # 0.3.11 needs a newer rustc than 1.95
# How long `cargo binstall` may try before we compile instead (a network that
# silently drops packets would otherwise hang setup).
BINSTALL_TIMEOUT="${BINSTALL_TIMEOUT:-120}"
export PATH="$HOME/.cargo/bin:$PATH"
say() { printf '\033[1;34m[setup]\033[0m %s\n' "$*"; }
# Ctrl-C stops setup, even when the program it interrupted exits normally
# (cargo binstall does, with its own code) rather than by the signal.
trap 'say "interrupted"; exit 130' INT
# took START: the time since START (a $SECONDS value), e.g. "22 min 20 s".
took() {
  local s=$((SECONDS - $1))
  if [ "$s" -ge 60 ]; then echo "$((s / 60)) min $((s % 60)) s"; else echo "$s s"; fi
}
# apt_install PACKAGE... (and apt-get install options)
apt_install() {
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq "$@" >/dev/null
}

# install_tool CRATE VERSION "COMPILE TIME" [cargo install options...]
# Installs CRATE at exactly VERSION: a prebuilt binary through cargo-binstall
# when it is installed (setup does not install it) and can fetch one;
# otherwise (no binstall, no release binary, GitHub unreachable) compiled by
# `cargo install CRATE --version VERSION --force [options]`. binstall's own
# compile fallback is off, so that this `cargo install`, with our options, is
# the only compile path. (A bare version after @ is exact for binstall, as
# --version is for cargo install.)
install_tool() {
  local crate=$1 version=$2 compile_time=$3 start=$SECONDS
  shift 3
  if cargo binstall -V >/dev/null 2>&1; then
    say "cargo binstall $crate $version: downloading a prebuilt binary (seconds; gives up after ${BINSTALL_TIMEOUT} s)"
    # --foreground: binstall stays in the terminal's process group, so Ctrl-C
    # stops it (and setup) instead of being held until the timeout.
    local rc=0
    timeout --foreground --kill-after=10 "$BINSTALL_TIMEOUT" \
      cargo binstall --no-confirm --force --disable-strategies compile "$crate@$version" || rc=$?
    if [ "$rc" -eq 0 ]; then
      say "  $crate $version installed in $(took "$start")"
      return
    elif [ "$rc" -eq 124 ]; then
      say "  cargo binstall gave up after ${BINSTALL_TIMEOUT} s: compiling instead"
    else
      say "  cargo binstall could not fetch a $crate $version binary (exit $rc): compiling instead"
    fi
    start=$SECONDS
  fi
  say "compiling $crate $version ($compile_time on 2 cores; cargo binstall would take seconds)"
  cargo install "$crate" --version "$version" --force "$@"
  say "  $crate $version compiled in $(took "$start")"
}

# Debian packages: Chromium for the browser tests, redis-server and
# PostgreSQL's server for the multi-instance tests (the tests start their own
# server in a temporary directory; the cluster and service the package sets
# up are not used), docker-compose (1.29, Python) to validate
# docker-compose.yaml — no Docker engine is needed or installed. wasm-opt comes
# from npm's binaryen (end2end/package.json), not Debian's: binaryen 108 breaks
# the externref table wasm-bindgen emits, and the release bundle fails to start.
need_apt=()
command -v chromium >/dev/null || need_apt+=(chromium)
command -v redis-server >/dev/null || need_apt+=(redis-server)
compgen -G '/usr/lib/postgresql/*/bin/initdb' >/dev/null || need_apt+=(postgresql)
# `make bench` (scripts/setup.sh --bench) also needs the load generator and brotli.
if [ "${1:-}" = "--bench" ]; then
  command -v wrk >/dev/null || need_apt+=(wrk)
  command -v brotli >/dev/null || need_apt+=(brotli)
fi
SUDO=""; [ "$(id -u)" -eq 0 ] || SUDO="sudo"
if [ ${#need_apt[@]} -gt 0 ]; then
  start=$SECONDS
  say "apt-get install ${need_apt[*]} (about 30 s)"
  apt_install "${need_apt[@]}"
  say "  done in $(took "$start")"
fi
if ! command -v docker-compose >/dev/null; then
  start=$SECONDS
  say "apt-get install docker-compose, without the Docker engine it recommends (about 5 s)"
  apt_install --no-install-recommends docker-compose
  say "  done in $(took "$start")"
fi

if ! rustup target list --installed | grep -qx wasm32-unknown-unknown; then
  start=$SECONDS
  say "rustup target add wasm32-unknown-unknown (a few seconds)"
  rustup target add wasm32-unknown-unknown
  say "  done in $(took "$start")"
fi

# wasm-bindgen-cli must match the wasm-bindgen crate in Cargo.lock exactly.
# (Compiled without --locked: its own lockfile names a crate the registry lacks.)
wbg_version=$(awk '/^name = "wasm-bindgen"$/ { getline; gsub(/version = |"/, ""); print; exit }' Cargo.lock)
if [ "$(wasm-bindgen --version 2>/dev/null | awk '{print $2}')" != "$wbg_version" ]; then
  install_tool wasm-bindgen-cli "$wbg_version" "2 to 5 minutes"
fi

# cargo-leptos: installed only when missing or at another version.
if [ "$(cargo leptos --version 2>/dev/null | awk '{print $2}')" != "$CARGO_LEPTOS_VERSION" ]; then
  install_tool cargo-leptos "$CARGO_LEPTOS_VERSION" "22 to 25 minutes" --locked
fi

# npm packages for the dev IdP and Playwright (never `npx playwright install`:
# the tests use Debian's /usr/bin/chromium).
if [ ! -d end2end/node_modules ] || [ end2end/package-lock.json -nt end2end/node_modules/.package-lock.json ]; then
  start=$SECONDS
  say "npm ci in end2end/ (about 5 s)"
  (cd end2end && npm ci --no-audit --no-fund --loglevel=error)
  say "  done in $(took "$start")"
fi
