"""Build of pigeon: everything is in pyproject.toml but the compiled checks.

Contract:
  * The modules of the inbound checks' path (`MODULES` in
    src/pigeon/compiled.py: DKIM verification, the SPF/DKIM/DMARC findings
    and verdict, the Authentication-Results field, the header parse they
    share) are compiled to C extensions with mypyc (part of mypy) when the
    build can: the same typed source, about a third less CPU per message
    (docs/benchmarks.md, "Thirteenth session").
  * It never stops an install: without mypy, when mypyc refuses, without a
    C compiler (the extensions are optional), or with PIGEON_PURE=1 in the
    environment, pigeon installs as plain Python, which behaves the same.
  * An editable install (`pip install -e .`, `make venv`) builds the
    extensions into src/ beside the sources; `make clean` removes them.
    After an edit of one of those sources, `make venv` builds again (the
    Makefile's stamp depends on them); until then the tests refuse to run
    (tests/conftest.py) and PIGEON_PURE=1 runs the edit as plain Python.
"""

from __future__ import annotations

import os
import runpy
import sys
from pathlib import Path

from setuptools import setup

HERE = Path(__file__).resolve().parent
_COMPILED = runpy.run_path(str(HERE / "src" / "pigeon" / "compiled.py"))
MODULES, source_path = _COMPILED["MODULES"], _COMPILED["source_path"]


# The steps that build; pip also runs this file for metadata only (egg_info,
# dist_info), where type-checking and compiling would only cost time.
BUILDS = {"build", "build_ext", "bdist_wheel", "editable_wheel", "develop", "install"}


def compiled_extensions() -> list:
    if os.environ.get("PIGEON_PURE") == "1" or not BUILDS & set(sys.argv[1:]):
        return []
    try:
        from mypyc.build import mypycify
    except ImportError:
        print("pigeon: mypy is not installed, the checks stay plain Python", file=sys.stderr)
        return []
    paths = [str(source_path(name, Path("src"))) for name in MODULES]
    try:
        extensions = mypycify(paths, opt_level="3")
    except (Exception, SystemExit) as exc:  # mypyc exits on a type error
        print(f"pigeon: mypyc failed ({exc}), the checks stay plain Python", file=sys.stderr)
        return []
    for extension in extensions:
        extension.optional = True  # no C compiler: skipped, plain Python
    return extensions


setup(ext_modules=compiled_extensions())
