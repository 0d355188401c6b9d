"""atheris entry point: imap_targets.imap_reader_target (see atheris_session.py for usage).

.venv/bin/python tests/fuzz/atheris_imap_reader.py tests/fuzz/corpus/imap_reader -max_total_time=600
"""

import sys

import fuzz_atheris

fuzz_atheris.main("imap_reader_target", sys.argv)
