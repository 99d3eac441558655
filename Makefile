# Two commands do all the set-up: `make run` and `make test`.
PYTHON ?= python3
VENV := .venv
AWSCLI_VENV := .venv-awscli
PORT ?= 8800
DATA_DIR ?= $(CURDIR)/data

.PHONY: run test install awscli lint bench clean system-deps

# System packages the sandbox and the tests use: Debian's python3 (+ pip, for MicroVM image builds) runs python3.11 functions (other
# python3.X come from pyenv, uv or runtime_paths), nodejs the nodejsN.x of its major version, libseccomp2 compiles the seccomp filters,
# dig and wrk drive the UDP test and benches, curl the README's examples and the awslambdaric test, iproute2 (ip) the MicroVM
# build-network test, nftables the functions' networks (net/), postgresql the database the VPC test reaches from a function,
# chromium and chromium-driver the dashboard's browser tests.
# Installed only when root with apt (CI is), and said so first.
SYSTEM_PACKAGES := python3 python3-venv python3-pip nodejs libseccomp2 make gcc dnsutils wrk curl iproute2 nftables postgresql chromium chromium-driver
system-deps:
	@if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
		missing=$$(for p in $(SYSTEM_PACKAGES); do dpkg -s $$p >/dev/null 2>&1 || echo $$p; done); \
		if [ -n "$$missing" ]; then \
			echo "Installing system packages as root with apt-get:" $$missing; \
			apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $$missing >/dev/null; \
		fi; \
	fi

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(VENV)/bin/pip install -q -U pip
	$(VENV)/bin/pip install -q -e '.[test]'
	touch $@

# The AWS SDK for Python functions get, as AWS's Python runtimes ship one (with SnapStart's runtime hooks,
# snapshot-restore-py): outside the function's code, after it and its layers on sys.path. Pure Python, so one copy per oldest version it supports: python/3.10 serves python3.10 and
# later, python/3.9 (boto3 1.42, the last for 3.9) python3.9. `lamina serve` finds it here.
PYTHON_SDK := boto3==1.44.18 snapshot-restore-py==1.0.0
PYTHON39_SDK := boto3==1.42.97 snapshot-restore-py==1.0.0
SDK_DIR := $(VENV)/share/lamina/sdk
$(SDK_DIR)/.installed: $(VENV)/.installed Makefile
	rm -rf $(SDK_DIR)/python
	$(VENV)/bin/pip install -q --no-compile --only-binary=:all: --python-version 3.10 --target $(SDK_DIR)/python/3.10 \
		$(PYTHON_SDK)
	$(VENV)/bin/pip install -q --no-compile --only-binary=:all: --python-version 3.9 --target $(SDK_DIR)/python/3.9 \
		$(PYTHON39_SDK)
	rm -rf $(SDK_DIR)/python/*/bin
	touch $@

# The AWS SDK for JavaScript v3 for Node.js functions (AWS's nodejs18.x and later runtimes include v3): the clients of
# the services Lamina offers (Lambda, SQS, EventBridge, Scheduler, CloudWatch Logs) and the credential providers,
# pinned in sdk/nodejs/package-lock.json, installed with `npm ci` into $(SDK_DIR)/nodejs/node_modules (after the
# function's own node_modules and its layers' on NODE_PATH). Without npm there is none (said so; a function can ship
# its own copy in the zip or a layer).
$(SDK_DIR)/.installed-nodejs: sdk/nodejs/package.json sdk/nodejs/package-lock.json
	rm -rf $(SDK_DIR)/nodejs
	@if command -v npm >/dev/null; then \
		mkdir -p $(SDK_DIR)/nodejs && cp sdk/nodejs/package.json sdk/nodejs/package-lock.json $(SDK_DIR)/nodejs/ && \
		npm ci --prefix $(SDK_DIR)/nodejs --omit=dev --no-audit --no-fund --loglevel=error && touch $@; \
	else \
		echo "npm not found: Node.js functions get no AWS SDK for JavaScript (install npm, then make install)"; \
	fi

install: $(VENV)/.installed $(SDK_DIR)/.installed $(SDK_DIR)/.installed-nodejs

# awscli v1 pins its own botocore, so it lives in a venv of its own (used by tests/compat).
$(AWSCLI_VENV)/.installed:
	$(PYTHON) -m venv $(AWSCLI_VENV)
	$(AWSCLI_VENV)/bin/pip install -q awscli
	touch $@

# The AWS CLI for your own use: .venv-awscli/bin/aws (README, "With the AWS CLI").
awscli: $(AWSCLI_VENV)/.installed

run: system-deps install
	$(VENV)/bin/lamina serve --port $(PORT) --data-dir $(DATA_DIR) --example

# Static checks: ruff, the import-layer contracts in pyproject.toml (the layering docs/architecture.md describes), mypy on src.
lint: install
	$(VENV)/bin/ruff check src tests bench
	$(VENV)/bin/lint-imports
	$(VENV)/bin/mypy

test: system-deps install $(AWSCLI_VENV)/.installed lint
	$(VENV)/bin/python -m pytest -q -p no:cacheprovider --durations=25 tests

bench: install
	$(VENV)/bin/python bench/invoke.py

clean:
	rm -rf $(VENV) $(AWSCLI_VENV) build src/*.egg-info
