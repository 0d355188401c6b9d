# pigeon: two commands on a fresh machine (Python 3.11+ and make):
#   make serve   create .venv, install pigeon, run it on embedded defaults
#   make test    same set-up, then the whole test suite
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed-stamp
ARGS   ?=
PYTEST_ARGS ?=

.PHONY: serve test test-fast screenshots style lint bench bench-full bench-accept bench-relay bench-imap bench-cluster venv clean fuzz crash

# The modules setup.py compiles with mypyc (src/pigeon/compiled.py): an edit
# of one builds them again, or its old extension would run instead.
COMPILED := $(shell sed -n 's/^    "pigeon\.\(.*\)",$$/\1/p' src/pigeon/compiled.py | tr . / | sed 's|.*|src/pigeon/&.py|')

$(STAMP): pyproject.toml setup.py $(COMPILED)
	@$(PYTHON) -c 'import sys; sys.exit(0 if sys.version_info >= (3, 11) else "pigeon needs Python 3.11 or newer")'
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q -e '.[test]'
	@touch $(STAMP)

venv: $(STAMP)

serve: $(STAMP)
	$(BIN)/pigeon serve $(ARGS)

test: $(STAMP) lint
	$(BIN)/python -m pytest --durations=30 $(PYTEST_ARGS)

style: $(STAMP)
	$(BIN)/ruff check src tests bench contrib setup.py
	$(BIN)/ruff format --check src tests bench contrib setup.py

# Style and types (CONTRIBUTING.md): ruff lint and format, mypy (strict on the
# protocol cores, the shared vocabulary, the interfaces and the public API).
lint: style
	$(BIN)/mypy

# The inner loop: unit, in-memory transcript, property and fuzz-property tests
# (no servers started, no Debian peers needed); under a minute.
test-fast: $(STAMP)
	$(BIN)/python -m pytest -q tests/unit tests/fuzz $(PYTEST_ARGS)

# The web console's screenshots in docs/images/console (docs/console.md): the
# browser tests run against a live pigeon in Debian's headless Chromium, and
# their `shot(name, docs=True)` pictures are written there too (each < 150 KB).
# Every page's screenshot is in artifacts/screenshots after any test run.
screenshots: $(STAMP)
	PIGEON_DOC_SCREENSHOTS=1 $(BIN)/python -m pytest -q tests/e2e/browser $(PYTEST_ARGS)

# The benchmark suite (bench/suite.py, docs/benchmarks.md): inbound, connections,
# latency, relay and queue scale, pigeon vs a private Postfix vs smtp-sink; quick
# mode, a few minutes. bench-full: 5x the load, 10,000 idle sessions, 1M queue.
bench: $(STAMP)
	$(BIN)/python bench/suite.py $(ARGS)

bench-full: $(STAMP)
	$(BIN)/python bench/suite.py --full $(ARGS)

# smtp-source -> server (acceptance only, Postfix discarding), the older benchmark
bench-accept: $(STAMP)
	$(BIN)/python bench/accept_rate.py $(ARGS)

# smtp-source -> server -> smtp-sink, pigeon vs a private Postfix (docs/benchmarks.md)
bench-relay: $(STAMP)
	$(BIN)/python bench/relay_rate.py $(ARGS)

# 1, 2, 3 nodes on one throw-away PostgreSQL vs the embedded store, relaying to
# smtp-sink (issue 17; also the "cluster" part of `make bench`)
bench-cluster: $(STAMP)
	$(BIN)/python bench/cluster_rate.py $(ARGS)

# pigeon's IMAP vs a private Dovecot on one 100,000-message Maildir (issue 14;
# also the "imap" part of `make bench`)
bench-imap: $(STAMP)
	$(BIN)/python bench/imap_vs_dovecot.py $(ARGS)

# Long fuzz run (docs/security.md): hypothesis with FUZZ_EXAMPLES examples per
# property, then every atheris entry point for FUZZ_SECONDS each (skipped with
# a note when atheris is not installed: pip install atheris). New inputs go to
# $(FUZZ_WORK); crashes are written as crash-* in the current directory.
FUZZ_EXAMPLES ?= 20000
FUZZ_SECONDS  ?= 300
FUZZ_WORK     ?= /tmp/pigeon-fuzz
fuzz: $(STAMP)
	PIGEON_FUZZ_EXAMPLES=$(FUZZ_EXAMPLES) $(BIN)/python -m pytest -q tests/fuzz -p no:cacheprovider
	@for t in session command address params data imap_reader imap_mime; do \
	  mkdir -p $(FUZZ_WORK)/$$t; \
	  echo "atheris: $$t ($(FUZZ_SECONDS)s)"; \
	  (cd tests/fuzz && ../../$(BIN)/python atheris_$$t.py $(FUZZ_WORK)/$$t corpus/$$t \
	     -max_total_time=$(FUZZ_SECONDS) -print_final_stats=1) || exit 1; \
	done

# Crash harness (bench/crash_harness.py): SIGKILL under load, 0 lost or fail.
crash: $(STAMP)
	$(BIN)/python bench/crash_harness.py $(or $(ARGS),--cycles 20 --clients 8 --messages 3000)

clean:
	rm -rf $(VENV) build *.egg-info src/*.egg-info .pytest_cache .mypy_cache
	find src -name '*.so' -delete
