# syntax=docker/dockerfile:1
# The llm-proxy operator (subcommands run, crd, render). Build from the repository root:
#   docker build -f docker/llm-proxy-operator.Dockerfile -t llm-proxy-operator:0.1.0 .
# Runs as uid/gid 1000 (the operator chart's podSecurityContext); it writes nothing to disk.

ARG RUST_VERSION=1.95
FROM rust:${RUST_VERSION}-bookworm AS builder
WORKDIR /src
COPY . .
RUN --mount=type=cache,target=/usr/local/cargo/registry \
    --mount=type=cache,target=/src/target \
    cargo build --release --locked -p llm-proxy-operator --bin llm-proxy-operator \
    && install -D -m 0755 target/release/llm-proxy-operator /out/llm-proxy-operator

FROM debian:bookworm-slim
ARG VERSION=0.1.0
# Accepted for symmetry with the proxy image; a no-op.
ARG POSTGRES_SUPPORT=true
LABEL org.opencontainers.image.title="llm-proxy-operator" \
      org.opencontainers.image.version="${VERSION}" \
      org.opencontainers.image.licenses="Apache-2.0" \
      org.opencontainers.image.source="https://github.com/llm-proxy-operator/llm-proxy-operator"
COPY --from=builder /out/llm-proxy-operator /usr/local/bin/llm-proxy-operator
USER 1000:1000
EXPOSE 8080
# No HEALTHCHECK: Kubernetes probes /healthz and /readyz on port 8080 (see the operator chart).
ENTRYPOINT ["/usr/local/bin/llm-proxy-operator"]
CMD ["run"]
