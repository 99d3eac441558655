# Two commands do all the set-up: `make run` and `make test`.
PYTHON ?= python3
VENV := .venv
AWSCLI_VENV := .venv-awscli
PORT ?= 8800
DATA_DIR ?= $(CURDIR)/data

.PHONY: run test install lint bench clean

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(VENV)/bin/pip install -q -U pip
	$(VENV)/bin/pip install -q -e '.[test]'
	touch $@

install: $(VENV)/.installed

# awscli v1 pins its own botocore, so it lives in a venv of its own (used by tests/compat).
$(AWSCLI_VENV)/.installed:
	$(PYTHON) -m venv $(AWSCLI_VENV)
	$(AWSCLI_VENV)/bin/pip install -q awscli
	touch $@

run: install
	$(VENV)/bin/lamina serve --port $(PORT) --data-dir $(DATA_DIR) --example

lint: install
	$(VENV)/bin/ruff check src tests bench

test: install $(AWSCLI_VENV)/.installed lint
	$(VENV)/bin/python -m pytest -q -p no:cacheprovider tests

bench: install
	$(VENV)/bin/python bench/invoke.py

clean:
	rm -rf $(VENV) $(AWSCLI_VENV) build src/*.egg-info
