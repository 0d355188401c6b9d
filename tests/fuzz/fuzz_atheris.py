"""Shared runner for the atheris entry points (tests/fuzz/atheris_*.py).

Instruments pigeon.proto (and the fuzz targets), then runs libFuzzer on one
target of fuzz_targets. A crash is any exception escaping the target (an
AssertionError is a broken property); libFuzzer writes the input to
crash-<sha1> in the current directory: add it to tests/fuzz/corpus/<target>/
once fixed, so test_corpus_seed keeps checking it.
"""

from __future__ import annotations

import sys


def main(target_name: str, argv: list[str]) -> None:
    try:
        import atheris
    except ImportError:
        print("atheris is not installed (pip install atheris); skipping", file=sys.stderr)
        sys.exit(0)
    with atheris.instrument_imports(include=["pigeon", "fuzz_targets", "imap_targets"]):
        import fuzz_targets
        import imap_targets
    target = getattr(fuzz_targets, target_name, None) or getattr(imap_targets, target_name)
    atheris.Setup(argv, target)
    atheris.Fuzz()
