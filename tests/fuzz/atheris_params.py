"""atheris entry point: fuzz_targets.params_target (see atheris_session.py for usage).

.venv/bin/python tests/fuzz/atheris_params.py tests/fuzz/corpus/params -max_total_time=600
"""

import sys

import fuzz_atheris

fuzz_atheris.main("params_target", sys.argv)
