# The two commands of the README's quick start:
#   make run    install omnibot into .venv and start it on the embedded default
#   make test   install what the tests need (Python packages, Debian's chromium, postgresql, dovecot-imapd) and run the suite
#               in TEST_WORKERS processes (pytest-xdist, one test file per process at a time; TEST_WORKERS=0: one process)
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
PIP    := $(BIN)/pip --disable-pip-version-check -q
TEST_WORKERS ?= 2

.PHONY: run test install install-test bench clean

run: install
	$(BIN)/omnibot run

test: install-test
	$(BIN)/python -m pytest -n $(TEST_WORKERS) --dist loadfile $(PYTEST_ARGS)

install: $(VENV)/.installed
install-test: $(VENV)/.installed-test
	@scripts/install-test-deps.sh

$(VENV)/bin/python:
	@echo "creating $(VENV) ..."
	@$(PYTHON) -m venv $(VENV)

$(VENV)/.installed: $(VENV)/bin/python pyproject.toml
	@echo "installing omnibot into $(VENV) ..."
	@$(PIP) install -e .
	@touch $@

$(VENV)/.installed-test: $(VENV)/.installed pyproject.toml
	@echo "installing test dependencies ..."
	@$(PIP) install -e '.[test]'
	@touch $@

bench: install
	$(BIN)/python bench/webchat_load.py

clean:
	rm -rf $(VENV) data build *.egg-info
