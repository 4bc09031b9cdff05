# spendguard - every developer and CI entry point.
#   make run        local stack on 127.0.0.1:9000 (embedded DynamoDB-compatible engine),
#                   web console at / (built first when web/ changed; needs Node.js)
#   make test       unit + integration tests (in-process engine; see README for others),
#                   then the console's tests (make web-test)
#   make ci         fmt-check, lint, cfn-lint, test (what .ci/run runs)
#   make build      release Lambda artifacts: target/lambda/<function>/bootstrap
#   make deploy     sam build && sam deploy --guided (see README, Deploy)
#   make fuzz       schemathesis against the local stack with docs/openapi.yaml
#   make fuzz-targets  cargo fuzz (libFuzzer) on the body and event parsers, FUZZ_SECONDS each
#   make soak       seeded fault schedules for SOAK_MINUTES (default 30), zero violations expected

SHELL := /bin/bash
CARGO ?= cargo
PYTHON ?= python3
ROLE ?= user
FN ?= quota
EVENT ?= events/quota-get-my-quotas.json
LOCAL_DATA ?= .local-data

# The Lambda functions: one package and binary each (infra/template.yaml).
LAMBDA_FUNCTIONS := quota credits redemption usage-ingest reservation-expiry
TEMPLATE := infra/template.yaml

.PHONY: run web web-test screenshots reset token test ci fmt fmt-check lint cfn-lint watch invoke build deploy \
	tools .cargo-lambda .cfn-lint .sam .schemathesis bench coldstart test-external fuzz fuzz-ci fuzz-targets soak

run: web
	$(CARGO) run -q -p spendguard-local -- serve

# --- Web console (web/: Vue 3 + Vite) ---
# Built into web/dist when anything under web/ is newer than the last build:
# `npm ci` from the committed lock file (when the lock changed), then the build.
# Without Node.js the API still serves; the banner says how to get the console.
WEB_STAMP := web/dist/.built
NODE_OK = command -v node >/dev/null 2>&1 && command -v npm >/dev/null 2>&1

web:
	@if ! $(NODE_OK); then \
		echo "console: Node.js not found; the API serves without the web console (install Node.js >= 20.19, then make web)"; \
		exit 0; fi; \
	if [ -f "$(WEB_STAMP)" ] && [ -z "$$(find web -path web/node_modules -prune -o -path web/dist -prune \
		-o -path web/e2e/.tmp -prune -o -type f -newer "$(WEB_STAMP)" -print -quit)" ]; then exit 0; fi; \
	cd web && { [ node_modules/.package-lock.json -nt package-lock.json ] || npm ci --no-audit --no-fund; } \
		&& npm run build && touch dist/.built

# Vitest unit tests, then the end-to-end tests in Debian's Chromium against a
# local stack of their own (free port, temporary data).
# Without Node.js they are skipped, except where SPENDGUARD_WEB_REQUIRED=1 (CI).
web-test: web
	@if ! $(NODE_OK); then echo "web-test: Node.js not found: skipped" >&2; \
		[ "$${SPENDGUARD_WEB_REQUIRED:-}" != 1 ] || exit 1; exit 0; fi; \
	$(CARGO) build -q -p spendguard-local --locked && cd web && npm test && npm run e2e

# The same end-to-end run, keeping its screenshots in docs/screenshots/ (README).
screenshots: web
	$(CARGO) build -q -p spendguard-local --locked
	cd web && SPENDGUARD_SCREENSHOTS=docs npm run e2e

reset:
	rm -rf "$(LOCAL_DATA)"
	@echo "local data wiped"

# make token USER=alice ROLE=user|admin|service  (prints only the token)
token:
	@$(CARGO) run -q -p spendguard-local -- token --user "$(USER)" --role "$(ROLE)"

test:
	$(CARGO) test --workspace --locked
	$(MAKE) web-test

fmt:
	$(CARGO) fmt --all

fmt-check:
	$(CARGO) fmt --all -- --check

lint:
	$(CARGO) clippy --workspace --all-targets --locked -- -D warnings

ci: fmt-check cfn-lint lint test

# Every benchmark in one Markdown table, on stdout and in BENCHMARKS.md:
# DynamoDB cost per operation, cold start and size, throughput, latency, scale
# on paper (tests/benches/report). SPENDGUARD_BENCH_SCALE=0.1 for a quicker run
# (the throughput and latency counts; 1 = 100,000 events per throughput row).
# The cold-start probe's own table goes to stderr; its medians into the report.
COLDSTART_TSV ?= target/bench/coldstart.tsv
bench:
	CARGO="$(CARGO)" COLDSTART_TSV="$(COLDSTART_TSV)" scripts/coldstart.sh >&2
	SPENDGUARD_BENCH_COLDSTART="$(CURDIR)/$(COLDSTART_TSV)" \
		$(CARGO) bench -q -p spendguard-tests --bench report --locked

# Cold starts of the four functions (release, stripped) against a bare
# lambda_runtime and an SDK hello world: size, init time, RSS at init
# (COLDSTART_RUNS=21 by default; bench/coldstart/).
coldstart:
	CARGO="$(CARGO)" scripts/coldstart.sh

# Randomized fault schedules with fresh seeds (tests/harness/chaos.rs) for
# SOAK_MINUTES; SOAK_SEED=<n> replays one failing seed, SOAK_LANES runs in
# parallel. Prints operations, faults by kind, invariant checks, violations.
# Then each cargo fuzz target for SOAK_FUZZ_SECONDS (0 skips them).
SOAK_MINUTES ?= 30
SOAK_LANES ?= 4
SOAK_FUZZ_SECONDS ?= 120
soak:
	SOAK_MINUTES=$(SOAK_MINUTES) SOAK_LANES=$(SOAK_LANES) SOAK_SEED=$(SOAK_SEED) \
		$(CARGO) test -p spendguard-tests --test integration --locked -- \
		--ignored --exact chaos::soak --nocapture
	@if [ "$(SOAK_FUZZ_SECONDS)" -gt 0 ]; then $(MAKE) fuzz-targets FUZZ_SECONDS=$(SOAK_FUZZ_SECONDS); fi

# The integration suite, unchanged, against a second engine (moto, single-threaded).
test-external:
	scripts/test-against-moto.sh

# --- Python tools, pinned, in a project-local virtualenv (.tools/, git-ignored) ---
# Installed on first use from PyPI, so a fresh machine needs nothing by hand.
# A pin change reinstalls (one stamp file per tool and version).
TOOLS ?= $(CURDIR)/.tools
VENV := $(TOOLS)/venv
VENV_BIN := $(VENV)/bin
CFN_LINT_VERSION := 1.58.0
# Prebuilt cargo-lambda; brings the Zig toolchain (ziglang) it cross-links with.
CARGO_LAMBDA_VERSION := 1.9.2
AWS_SAM_CLI_VERSION := 1.170.0
# Schema-driven fuzzer of `make fuzz` (its CLI flags change between versions).
SCHEMATHESIS_VERSION := 4.32.5
# Tools from the venv come first on PATH (cargo finds `cargo-lambda`, and
# cargo-lambda finds Zig through the venv's python).
WITH_TOOLS := PATH="$(VENV_BIN):$$PATH" SAM_CLI_TELEMETRY=0

# `python3 -m venv` needs ensurepip; where a distribution ships Python without
# it (Debian without python3-venv), make the venv without pip and install into
# it with the interpreter's own pip (`pip --python`, pip >= 22.3).
$(VENV_BIN)/python:
	@mkdir -p "$(TOOLS)"
	@$(PYTHON) -m venv "$(VENV)" 2>/dev/null || { \
		echo "python3 -m venv without ensurepip: creating the venv without pip"; \
		rm -rf "$(VENV)" && $(PYTHON) -m venv --without-pip "$(VENV)"; }

# $(call pip_install,requirement)
define pip_install
	@if "$(VENV_BIN)/python" -m pip --version >/dev/null 2>&1; then \
		"$(VENV_BIN)/python" -m pip install --quiet --disable-pip-version-check --no-input "$(1)"; \
	else \
		$(PYTHON) -m pip --python "$(VENV_BIN)/python" install --quiet --disable-pip-version-check --no-input "$(1)"; \
	fi
endef

$(VENV)/.cfn-lint-$(CFN_LINT_VERSION): | $(VENV_BIN)/python
	@echo "installing cfn-lint $(CFN_LINT_VERSION) into $(VENV)"
	$(call pip_install,cfn-lint==$(CFN_LINT_VERSION))
	@touch "$@"

$(VENV)/.cargo-lambda-$(CARGO_LAMBDA_VERSION): | $(VENV_BIN)/python
	@echo "installing cargo-lambda $(CARGO_LAMBDA_VERSION) into $(VENV)"
	$(call pip_install,cargo-lambda==$(CARGO_LAMBDA_VERSION))
	@touch "$@"

$(VENV)/.aws-sam-cli-$(AWS_SAM_CLI_VERSION): | $(VENV_BIN)/python
	@echo "installing aws-sam-cli $(AWS_SAM_CLI_VERSION) into $(VENV)"
	$(call pip_install,aws-sam-cli==$(AWS_SAM_CLI_VERSION))
	@touch "$@"

$(VENV)/.schemathesis-$(SCHEMATHESIS_VERSION): | $(VENV_BIN)/python
	@echo "installing schemathesis $(SCHEMATHESIS_VERSION) into $(VENV)"
	$(call pip_install,schemathesis==$(SCHEMATHESIS_VERSION))
	@touch "$@"

.cfn-lint: $(VENV)/.cfn-lint-$(CFN_LINT_VERSION)
.schemathesis: $(VENV)/.schemathesis-$(SCHEMATHESIS_VERSION)
.cargo-lambda: $(VENV)/.cargo-lambda-$(CARGO_LAMBDA_VERSION)
.sam: $(VENV)/.aws-sam-cli-$(AWS_SAM_CLI_VERSION)

# Every tool of the project (deploy installs the SAM CLI on its own).
tools: .cfn-lint .cargo-lambda

cfn-lint: .cfn-lint
	$(WITH_TOOLS) cfn-lint $(TEMPLATE)

# docs/openapi.yaml against a fresh local stack (free port, temporary data):
# every operation with admin, user and service tokens, positive and negative
# data, all checks; bounded (FUZZ_EXAMPLES per operation and phase).
FUZZ_EXAMPLES ?= 100
fuzz: .schemathesis
	$(WITH_TOOLS) FUZZ_EXAMPLES=$(FUZZ_EXAMPLES) scripts/fuzz.sh

# CI's bounded run of the same (.ci/run): a few cases per operation and phase.
FUZZ_CI_EXAMPLES ?= 20
fuzz-ci:
	$(MAKE) fuzz FUZZ_EXAMPLES=$(FUZZ_CI_EXAMPLES)

# cargo fuzz targets of the body and event parsers (fuzz/, a workspace of its
# own): each runs FUZZ_SECONDS with libFuzzer (nightly, or the default
# toolchain with RUSTC_BOOTSTRAP=1; scripts/fuzz-targets.sh). cargo-fuzz is
# built once from crates.io, pinned, into .tools/cargo.
CARGO_FUZZ_VERSION := 0.13.2
CARGO_FUZZ := $(TOOLS)/cargo/bin/cargo-fuzz
FUZZ_SECONDS ?= 30
$(TOOLS)/cargo/.cargo-fuzz-$(CARGO_FUZZ_VERSION):
	@echo "installing cargo-fuzz $(CARGO_FUZZ_VERSION) into $(TOOLS)/cargo"
	$(CARGO) install --locked --quiet --root "$(TOOLS)/cargo" cargo-fuzz --version $(CARGO_FUZZ_VERSION)
	@touch "$@"

fuzz-targets: $(TOOLS)/cargo/.cargo-fuzz-$(CARGO_FUZZ_VERSION)
	PATH="$(TOOLS)/cargo/bin:$$PATH" FUZZ_SECONDS=$(FUZZ_SECONDS) scripts/fuzz-targets.sh $(FUZZ_TARGETS)

# --- Lambda artifacts (cargo-lambda) ---
# LAMBDA_ARCH=arm64 (what the template deploys) or x86-64. Left empty, arm64
# when the Rust target aarch64-unknown-linux-gnu is installed or rustup can add
# it, else x86-64 with a warning (such artifacts run only on x86_64 functions).
LAMBDA_ARCH ?=
ARM64_TARGET := aarch64-unknown-linux-gnu

build: .cargo-lambda
	@arch="$(LAMBDA_ARCH)"; \
	if [ -z "$$arch" ]; then \
		if rustup target list --installed 2>/dev/null | grep -qx "$(ARM64_TARGET)" \
			|| timeout 300 rustup target add "$(ARM64_TARGET)"; then arch=arm64; \
		else arch=x86-64; \
			echo "WARNING: Rust target $(ARM64_TARGET) unavailable: building x86_64 artifacts" >&2; \
		fi; \
	fi; \
	echo "cargo lambda build --release --$$arch ($(LAMBDA_FUNCTIONS))"; \
	$(WITH_TOOLS) nice $(CARGO) lambda build --release --locked --$$arch \
		$(addprefix --package ,$(LAMBDA_FUNCTIONS))
	@for fn in $(LAMBDA_FUNCTIONS); do \
		test -x "target/lambda/$$fn/bootstrap" || { echo "no bootstrap for $$fn" >&2; exit 1; }; \
		echo "target/lambda/$$fn/bootstrap: $$(file -b target/lambda/$$fn/bootstrap 2>/dev/null | cut -d, -f1-2)"; \
	done

# SAM builds each function with cargo-lambda itself (BuildMethod
# rust-cargolambda, still a beta feature of the SAM CLI), then --guided asks
# for the stack name, region and parameters and offers to save them to
# samconfig.toml for the next `make deploy`.
# Then the web console: web/dist to the console bucket, config.json (issuer,
# client id, API base URL) from the stack's outputs, CloudFront invalidated.
deploy: .sam .cargo-lambda web
	$(WITH_TOOLS) sam build --beta-features --template-file $(TEMPLATE)
	$(WITH_TOOLS) sam deploy --guided --template-file .aws-sam/build/template.yaml \
		--capabilities CAPABILITY_IAM
	$(WITH_TOOLS) python scripts/deploy-console.py

watch: .cargo-lambda
	$(WITH_TOOLS) $(CARGO) lambda watch

# make invoke FN=usage-ingest EVENT=events/sqs-usage-batch.json
# Sends to the Lambda Invoke API on 127.0.0.1:9000: `make run` serves it for every
# function (and `make watch`, cargo-lambda's own emulator, on the same port).
INVOKE_ADDRESS ?= 127.0.0.1
INVOKE_PORT ?= 9000
invoke: .cargo-lambda
	$(WITH_TOOLS) $(CARGO) lambda invoke "$(FN)" --data-file "$(EVENT)" \
		--invoke-address $(INVOKE_ADDRESS) --invoke-port $(INVOKE_PORT)
