# syntax=docker/dockerfile:1
# The llm-proxy data plane (subcommands server, dispatcher, migrate, version). Build from the repository root:
#   docker build -f docker/llm-proxy.Dockerfile -t llm-proxy:0.1.0 .
# Runs as uid/gid 1000 (the charts' podSecurityContext) with /app/data, the SQLite and audit directory, owned
# by that user. A read-only root filesystem works: the charts mount /app/data and /tmp.

ARG RUST_VERSION=1.95
FROM rust:${RUST_VERSION}-bookworm AS builder
WORKDIR /src
COPY . .
RUN --mount=type=cache,target=/usr/local/cargo/registry \
    --mount=type=cache,target=/src/target \
    cargo build --release --locked -p llm-proxy --bin llm-proxy \
    && install -D -m 0755 target/release/llm-proxy /out/llm-proxy \
    && install -d -o 1000 -g 1000 -m 0750 /out/app/data

FROM debian:bookworm-slim
ARG VERSION=0.1.0
# Accepted for compatibility with the upstream build (`--build-arg POSTGRES_SUPPORT=true`); a no-op here,
# because PostgreSQL support is always compiled in.
ARG POSTGRES_SUPPORT=true
LABEL org.opencontainers.image.title="llm-proxy" \
      org.opencontainers.image.version="${VERSION}" \
      org.opencontainers.image.licenses="Apache-2.0" \
      org.opencontainers.image.source="https://github.com/llm-proxy-operator/llm-proxy-operator"
COPY --from=builder /out/llm-proxy /usr/local/bin/llm-proxy
COPY --from=builder --chown=1000:1000 /out/app /app
WORKDIR /app
USER 1000:1000
EXPOSE 8080
# No HEALTHCHECK: the slim image has no HTTP client and the binary has no probe subcommand. Kubernetes uses
# the charts' /live and /ready probes; with plain Docker use `curl localhost:8080/health` from the host.
ENTRYPOINT ["/usr/local/bin/llm-proxy"]
CMD ["server"]
