# The two commands a newcomer needs: `make run` and `make test`. Everything else is optional.
SHELL := bash
.SHELLFLAGS := -euo pipefail -c
CARGO ?= cargo
NEXTEST_PROFILE ?= $(if $(CI),ci,default)
export TOOLS_DIR ?= $(CURDIR)/.cache/tools

.PHONY: help run test test-rust build lint fmt clean

help: ## list the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | sed 's/:.*## /\t/'

run: ## run the proxy on its embedded defaults (SQLite under ./data, in-memory event bus)
	scripts/run-dev.sh

test: test-rust ## every test: Rust (with private PostgreSQL and Redis), charts, CRDs

test-rust: ## all Rust tests, with throwaway PostgreSQL and Redis servers started and stopped by scripts/test-services.sh
	scripts/test-services.sh $(CARGO) nextest run --workspace --profile $(NEXTEST_PROFILE)
	$(CARGO) test --workspace --doc --quiet

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
