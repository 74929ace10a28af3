#!/usr/bin/env bash
# `make dev`: the dev identity provider in the background, the app in the
# foreground with live reload. Ctrl-C stops both.
set -euo pipefail
cd "$(dirname "$0")/.."
IDP_PORT="${IDP_PORT:-8080}"

node end2end/idp/server.mjs &
idp_pid=$!
trap 'kill $idp_pid 2>/dev/null || true' EXIT INT TERM

for _ in $(seq 1 50); do
  curl -fsS "http://127.0.0.1:${IDP_PORT}/dev/health" >/dev/null 2>&1 && break
  kill -0 $idp_pid 2>/dev/null || { echo "the dev identity provider failed to start" >&2; exit 1; }
  sleep 0.2
done

echo
echo "  Gatehouse:          ${APP_BASE_URL:-http://localhost:3000}"
echo "  Dev IdP (dev only): http://localhost:${IDP_PORT}/realms/demo   users: alice/alice (admin), bob/bob"
echo
# --split: the signed-in pages are lazy routes (src/app.rs); without it their
# wasm imports stay unresolved and the front end never hydrates.
cargo leptos watch --split
