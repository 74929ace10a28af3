# Gatehouse container image: `docker build -t gatehouse .` (or `docker compose up --build`).
#
# Stage 1 builds the server binary and the hydration bundle with cargo-leptos,
# exactly as `make serve` does; stage 2 is a slim Debian with the binary, the
# site directory and nothing else, running as a non-root user.

# ---------------------------------------------------------------------------
FROM rust:1.95-bookworm AS builder

ARG CARGO_LEPTOS_VERSION=0.3.10

# No wasm-opt on PATH: cargo-leptos downloads the binaryen release it is built
# for. (Debian bookworm's binaryen 108 breaks the externref table that
# wasm-bindgen emits, and the bundle would fail to start in the browser.)

RUN rustup target add wasm32-unknown-unknown

# The tools change far less often than the code: their own layers, cached.
RUN cargo install cargo-leptos --version "${CARGO_LEPTOS_VERSION}" --locked

WORKDIR /src
COPY Cargo.toml Cargo.lock ./
# wasm-bindgen-cli must match the wasm-bindgen crate in Cargo.lock exactly.
# (Installed without --locked, as scripts/setup.sh does.)
RUN WASM_BINDGEN_VERSION="$(awk '/^name = "wasm-bindgen"$/ { getline; gsub(/version = |"/, ""); print; exit }' Cargo.lock)" \
 && test -n "${WASM_BINDGEN_VERSION}" \
 && cargo install wasm-bindgen-cli --version "${WASM_BINDGEN_VERSION}"

COPY . .
RUN cargo leptos build --release --split

# ---------------------------------------------------------------------------
FROM debian:bookworm-slim AS runtime

RUN apt-get update \
 && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends ca-certificates \
 && rm -rf /var/lib/apt/lists/* \
 && useradd --system --uid 10001 --home-dir /app --shell /usr/sbin/nologin gatehouse \
 && mkdir -p /app /data \
 && chown gatehouse:gatehouse /data

WORKDIR /app
COPY --from=builder /src/target/release/gatehouse /app/gatehouse
COPY --from=builder /src/target/site /app/site

# Leptos reads these at start-up (no Cargo.toml in the image). The SQLite
# files go to /data, the one writable directory (mount a volume there);
# docker-compose.yaml uses Redis for sessions instead.
ENV LEPTOS_OUTPUT_NAME=gatehouse \
    LEPTOS_SITE_ROOT=site \
    LEPTOS_SITE_PKG_DIR=pkg \
    LEPTOS_ENV=PROD \
    LEPTOS_SITE_ADDR=0.0.0.0:3000 \
    SESSION_STORE=sqlite:///data/sessions.db \
    APP_DATABASE_URL=sqlite:///data/gatehouse.db \
    RUST_LOG=info

USER gatehouse
EXPOSE 3000
VOLUME ["/data"]

# /healthz (process up) without curl: bash alone. Assumes the default port 3000.
HEALTHCHECK --interval=10s --timeout=3s --start-period=10s --retries=3 \
  CMD ["bash", "-c", "exec 3<>/dev/tcp/127.0.0.1/3000 && printf 'GET /healthz HTTP/1.0\\r\\nHost: localhost\\r\\n\\r\\n' >&3 && read -r status <&3 && [[ $status == *\" 200 \"* ]]"]

CMD ["/app/gatehouse"]
