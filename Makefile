# spendguard - every developer and CI entry point.
#   make run    local stack on 127.0.0.1:9000 (embedded DynamoDB-compatible engine)
#   make test   unit + integration tests (in-process engine; see README for others)

SHELL := /bin/bash
CARGO ?= cargo
ROLE ?= user
FN ?= quota
EVENT ?= events/quota-get-my-quotas.json
LOCAL_DATA ?= .local-data
TOOLS := $(CURDIR)/.tools

.PHONY: run reset token test ci fmt fmt-check lint watch invoke build deploy bench test-external

run:
	$(CARGO) run -q -p spendguard-local -- serve

reset:
	rm -rf "$(LOCAL_DATA)"
	@echo "local data wiped"

# make token USER=alice ROLE=user|admin|service  (prints only the token)
token:
	@$(CARGO) run -q -p spendguard-local -- token --user "$(USER)" --role "$(ROLE)"

test:
	$(CARGO) test --workspace --locked

fmt:
	$(CARGO) fmt --all

fmt-check:
	$(CARGO) fmt --all -- --check

lint:
	$(CARGO) clippy --workspace --all-targets --locked -- -D warnings

ci: fmt-check lint test

# --- cargo-lambda (only these targets need it; it compiles for ~15 minutes) ---
CARGO_LAMBDA := $(shell command -v cargo-lambda 2>/dev/null)

.cargo-lambda:
ifeq ($(CARGO_LAMBDA),)
	$(CARGO) install cargo-lambda --locked
endif

watch: .cargo-lambda
	cargo lambda watch

# make invoke FN=usage-ingest EVENT=events/sqs-usage-batch.json
invoke: .cargo-lambda
	cargo lambda invoke "$(FN)" --data-file "$(EVENT)"
