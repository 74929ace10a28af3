# Gatehouse. Quick start: `make dev` to run, `make test` to test.
SHELL := /bin/bash
# end2end/node_modules/.bin first: cargo-leptos takes the wasm-opt it finds on
# PATH, and it must be npm's binaryen (Debian's 108 breaks the externref table
# of today's wasm-bindgen output: the release bundle would not hydrate).
export PATH := $(CURDIR)/end2end/node_modules/.bin:$(HOME)/.cargo/bin:$(PATH)

IDP_PORT ?= 8080
# The dev IdP (oidc-provider), Playwright and wasm-opt live here.
NODE_MODULES := end2end/node_modules/.package-lock.json

.PHONY: dev serve idp test test-structure test-idp test-compose test-deploy test-rust test-wasm-release test-e2e bench setup lint fmt

setup:
	@scripts/setup.sh

## dev: the dev identity provider + the app with live reload on http://localhost:3000
dev: setup
	@scripts/dev.sh

## serve: release build of the app alone (start an IdP with `make idp`, or point OIDC_ISSUER_URL at yours)
serve: setup
	cargo leptos build --release --split
	LEPTOS_SITE_ROOT=target/site target/release/gatehouse

## idp: the dev identity provider alone, in the foreground
idp: $(NODE_MODULES)
	IDP_PORT=$(IDP_PORT) node end2end/idp/server.mjs

$(NODE_MODULES): end2end/package-lock.json
	cd end2end && npm ci --no-audit --no-fund --loglevel=error
	@touch $@

## test: everything — the dev IdP's self-test, unit, integration (real dev IdP over HTTP), end-to-end (real Chromium)
test: setup test-structure test-idp test-compose test-deploy test-rust test-wasm-release test-e2e

# Each test target installs what it needs (setup runs once per make call), so
# any of them works alone on a fresh clone, and none relies on what an earlier
# target or an earlier run left in target/: test-rust serves static files from
# public/ and builds nothing with cargo-leptos; test-e2e builds its own site.
## imports point one way (no circle among src/ modules); the README's Layout names every file
test-structure:
	python3 scripts/import-cycles.py
	python3 scripts/layout-check.py
	python3 scripts/config-doc-check.py

test-idp: setup
	node end2end/idp/selftest.mjs

## the compose file's schema and interpolation (no Docker engine needed)
test-compose: setup
	docker-compose -f docker-compose.yaml config -q

## the Kubernetes manifests: strict schema validation against pinned Kubernetes
## versions, and kustomization.yaml lists every file (no cluster needed; the
## validator is installed into a venv under ~/.cache the first time)
test-deploy:
	scripts/k8s-check.sh

test-rust: setup
	cargo test --features ssr --no-fail-fast

## the release wasm (what `make serve` ships) must build too: deep view types
## can overflow rustc's query depth only under the size-optimised profile
test-wasm-release: setup
	cargo build --lib --target wasm32-unknown-unknown --profile wasm-release --no-default-features --features hydrate

test-e2e: setup
	cargo leptos build --split
	cd end2end && npx playwright test

## bench: performance against a bare-axum baseline measured in the same run;
## writes bench/results.json and bench/results.md (see README "Performance")
bench:
	@scripts/setup.sh --bench
	cargo leptos build --release --split
	# cargo bench rebuilds target/release/gatehouse without cargo-leptos' settings
	# (it would look for gatehouse_bg.wasm): benchmark cargo-leptos' own build.
	cp target/release/gatehouse target/gatehouse-bench
	cargo bench --features ssr --bench bff

## lint: formatting, clippy, and no import circle among src/ modules
lint: test-structure
	cargo fmt --all -- --check
	cargo clippy --all-features -- -D warnings

fmt:
	cargo fmt --all
