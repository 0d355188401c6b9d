"""atheris entry point: imap_targets.imap_mime_target (see atheris_session.py for usage).

.venv/bin/python tests/fuzz/atheris_imap_mime.py tests/fuzz/corpus/imap_mime -max_total_time=600
"""

import sys

import fuzz_atheris

fuzz_atheris.main("imap_mime_target", sys.argv)
