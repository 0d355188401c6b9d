"""The modules the build compiles with mypyc, and plain Python on request.

Why: the inbound checks (SPF, DKIM, DMARC) are pure Python, and on a busy
two-core machine their CPU is what the server loses with them on
(docs/benchmarks.md, issue 13). Compiled by mypyc (part of mypy) from the
same typed source, the check path takes about a third less CPU.

Contract:
  * `MODULES`: the modules of the check path that setup.py compiles to C
    extensions when the build can (mypy and a C compiler present, and no
    PIGEON_PURE=1 at build time); otherwise they stay plain Python, which
    behaves the same. Python imports an extension in place of the .py file
    beside it.
  * `compiled()`: those of `MODULES` this process loaded from an extension.
  * `stale(root)`: those whose extension under `root` (src/ of an editable
    install) is older than its source: an edit not yet rebuilt (`make
    venv`), whose extension would run instead of the edit.
  * `prefer_sources()`: from now on `MODULES` load from their .py files even
    where an extension exists. `pigeon/__init__.py` calls it when
    PIGEON_PURE=1 is in the environment: to run an edit without a rebuild,
    or to compare with plain Python (tests/unit/test_compiled.py runs the
    checks' tests that way).
  * No imports of pigeon here: setup.py reads `MODULES` before pigeon is
    installed.
"""

from __future__ import annotations

import importlib.abc
import importlib.machinery
import importlib.util
import sys
from collections.abc import Sequence
from pathlib import Path
from types import ModuleType

MODULES = (
    "pigeon.policy.message",
    "pigeon.policy.mailauth.authres",
    "pigeon.policy.mailauth.dkimfast",
    "pigeon.policy.mailauth.dmarc",
    "pigeon.policy.mailauth.examine",
    "pigeon.policy.mailauth.findings",
    "pigeon.policy.mailauth.outcome",
    "pigeon.policy.mailauth.verify",
)

_SRC = Path(__file__).resolve().parent.parent  # src/ (or site-packages/)


def source_path(module: str, root: Path = _SRC) -> Path:
    return root.joinpath(*module.split(".")).with_suffix(".py")


def compiled() -> list[str]:
    suffixes = tuple(importlib.machinery.EXTENSION_SUFFIXES)
    return [
        name
        for name in MODULES
        if name in sys.modules
        and str(getattr(sys.modules[name], "__file__", "")).endswith(suffixes)
    ]


def stale(root: Path = _SRC) -> list[str]:
    out = []
    for name in MODULES:
        source = source_path(name, root)
        if not source.exists():
            continue
        edited = source.stat().st_mtime
        built = [source.with_name(source.stem + s) for s in importlib.machinery.EXTENSION_SUFFIXES]
        if any(b.exists() and b.stat().st_mtime < edited for b in built):
            out.append(name)
    return out


class _SourcesFirst(importlib.abc.MetaPathFinder):
    """Finds `MODULES` as their .py files, before the path finder sees an extension."""

    def find_spec(
        self,
        fullname: str,
        path: Sequence[str] | None,
        target: ModuleType | None = None,
    ) -> importlib.machinery.ModuleSpec | None:
        if fullname not in MODULES:
            return None
        source = source_path(fullname)
        if not source.exists():
            return None
        return importlib.util.spec_from_file_location(fullname, source)


def prefer_sources() -> None:
    if not any(isinstance(finder, _SourcesFirst) for finder in sys.meta_path):
        sys.meta_path.insert(0, _SourcesFirst())
