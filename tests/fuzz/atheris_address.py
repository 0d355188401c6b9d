"""atheris entry point: fuzz_targets.address_target (see atheris_session.py for usage).

.venv/bin/python tests/fuzz/atheris_address.py tests/fuzz/corpus/address -max_total_time=600
"""

import sys

import fuzz_atheris

fuzz_atheris.main("address_target", sys.argv)
