"""atheris entry point: fuzz_targets.command_target (see atheris_session.py for usage).

.venv/bin/python tests/fuzz/atheris_command.py tests/fuzz/corpus/command -max_total_time=600
"""

import sys

import fuzz_atheris

fuzz_atheris.main("command_target", sys.argv)
