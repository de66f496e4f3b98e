# The two commands a newcomer needs: `make run` and `make test`. Everything else is optional.
SHELL := bash
.SHELLFLAGS := -euo pipefail -c
CARGO ?= cargo
NEXTEST_PROFILE ?= $(if $(CI),ci,default)
export TOOLS_DIR ?= $(CURDIR)/.cache/tools

.PHONY: help run test test-rust test-docs test-charts build lint fmt crds e2e clean bench bench-gate bench-operator

help: ## list the targets
	@grep -E '^[a-z0-9-]+:.*## ' $(MAKEFILE_LIST) | sed 's/:.*## /\t/'

run: ## run the proxy on its embedded defaults (SQLite under ./data, in-memory event bus)
	scripts/run-dev.sh

test: test-rust test-docs test-charts ## every test: Rust (with private PostgreSQL and Redis), docs, charts, CRDs, ArgoCD health check

test-rust: ## all Rust tests, with throwaway PostgreSQL and Redis servers started and stopped by scripts/test-services.sh
	scripts/test-services.sh $(CARGO) nextest run --workspace --profile $(NEXTEST_PROFILE)
	$(CARGO) test --workspace --doc --quiet

test-docs: ## every test docs/security.md names as the proof of a control still exists
	python3 scripts/check_security_doc.py

test-charts: ## helm lint/template/validate of both charts, CRs against the CRD, ArgoCD health check (fetches helm and kubernetes-validate into .cache/tools)
	bash scripts/test-charts.sh

crds: ## regenerate the committed CRD from the Rust types
	$(CARGO) run --quiet -p llm-proxy-operator -- crd > crds/llmproxies.llm-proxy.io.yaml
	cp crds/llmproxies.llm-proxy.io.yaml charts/llm-proxy-operator/files/crds/llmproxies.llm-proxy.io.yaml

e2e: ## opt-in tests against a real cluster (needs KUBECONFIG; kind or k3d)
	@test -n "$${KUBECONFIG:-}" || { echo "set KUBECONFIG to a disposable cluster"; exit 1; }
	$(CARGO) nextest run --workspace --run-ignored ignored-only

build: ## release binaries: llm-proxy, llm-proxy-operator
	$(CARGO) build --workspace --release --bins

lint: ## rustfmt and clippy; warnings are errors
	$(CARGO) fmt --all --check
	$(CARGO) clippy --workspace --all-targets -- -D warnings

fmt: ## format the code
	$(CARGO) fmt --all

clean: ## remove build output and fetched tools
	$(CARGO) clean
	rm -rf .cache

BENCH_BIN = $(or $(CARGO_TARGET_DIR),target)/release

bench: ## wall-clock benchmark: direct vs pass-through vs llm-proxy, in-memory and with Redis (BENCH_QUICK=1 ~1 min; BENCH_REDIS_URL or redis-server on PATH); writes bench/results/latest.{json,md}
	$(CARGO) build --release -p llm-proxy -p llm-proxy-bench --bins
	$(BENCH_BIN)/bench run
	$(BENCH_BIN)/bench report bench/results/latest.json > docs/benchmarks.md
	$(MAKE) --no-print-directory bench-operator

bench-operator: ## operator scale: the operator binary vs the fake API server with 1,000 LlmProxies; writes bench/results/operator-scale.json and docs/operator-benchmarks.md (compared with bench/results/operator-scale-baseline.json)
	$(CARGO) build --release -p llm-proxy-operator -p llm-proxy-operator-bench --bins
	$(BENCH_BIN)/operator-scale run --operator $(BENCH_BIN)/llm-proxy-operator
	$(BENCH_BIN)/operator-scale report bench/results/operator-scale.json --baseline bench/results/operator-scale-baseline.json > docs/operator-benchmarks.md

bench-gate: ## callgrind instructions per request vs bench/baseline.json (> 10% growth fails; BENCH_GATE_UPDATE=1 rewrites it)
	@command -v valgrind >/dev/null || { [ "$$(id -u)" = 0 ] && apt-get install -y valgrind; } || { echo "bench-gate needs valgrind"; exit 1; }
	$(CARGO) build --release -p llm-proxy-bench --bins
	$(BENCH_BIN)/bench gate
