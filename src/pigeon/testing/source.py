"""Parse pigeon's own source files for the tests that read the code's shape.

    tree = parse_source(path)

Contract: `parse_source(path)` is `ast.parse` of the file, with the garbage
collector held off while it runs. Why: on CPython 3.11 (before 3.11.8) a
collection during `ast.parse` that runs finalizers (a leftover event loop's
`__del__`, a ResourceWarning) changes the recursion depth under the AST
converter, which then fails with "SystemError: AST constructor recursion
depth mismatch" (CPython issue gh-106905). The parse is pure; pausing the
collector for it changes nothing else.
"""

from __future__ import annotations

import ast
import gc
from pathlib import Path

__all__ = ["parse_source"]


def parse_source(path: Path) -> ast.Module:
    source = path.read_text(encoding="utf-8")
    enabled = gc.isenabled()
    gc.disable()
    try:
        return ast.parse(source, filename=str(path))
    finally:
        if enabled:
            gc.enable()
