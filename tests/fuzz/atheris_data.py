"""atheris entry point: fuzz_targets.data_target (see atheris_session.py for usage).

.venv/bin/python tests/fuzz/atheris_data.py tests/fuzz/corpus/data -max_total_time=600
"""

import sys

import fuzz_atheris

fuzz_atheris.main("data_target", sys.argv)
