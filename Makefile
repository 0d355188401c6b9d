# pigeon: two commands on a fresh machine (Python 3.11+ and make):
#   make serve   create .venv, install pigeon, run it on embedded defaults
#   make test    same set-up, then the whole test suite
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed-stamp
ARGS   ?=
PYTEST_ARGS ?=

.PHONY: serve test bench bench-relay venv clean

$(STAMP): pyproject.toml
	@$(PYTHON) -c 'import sys; sys.exit(0 if sys.version_info >= (3, 11) else "pigeon needs Python 3.11 or newer")'
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q -e '.[test]'
	@touch $(STAMP)

venv: $(STAMP)

serve: $(STAMP)
	$(BIN)/pigeon serve $(ARGS)

test: $(STAMP)
	$(BIN)/python -m pytest $(PYTEST_ARGS)

bench: $(STAMP)
	$(BIN)/python bench/accept_rate.py $(ARGS)

# smtp-source -> server -> smtp-sink, pigeon vs a private Postfix (docs/benchmarks.md)
bench-relay: $(STAMP)
	$(BIN)/python bench/relay_rate.py $(ARGS)

clean:
	rm -rf $(VENV) build *.egg-info src/*.egg-info .pytest_cache
