"""atheris entry point: the whole ServerSession (see fuzz_targets.session_target).

    .venv/bin/python tests/fuzz/atheris_session.py tests/fuzz/corpus/session -max_total_time=600

Needs `pip install atheris` (wheels exist for CPython 3.11 on x86-64 Linux);
without it this script says so and exits 0, and `make fuzz` falls back to the
long hypothesis run.
"""

import sys

import fuzz_atheris

fuzz_atheris.main("session_target", sys.argv)
