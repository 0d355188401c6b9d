"""The check path compiled by mypyc (setup.py, pigeon/compiled.py): built
where the build can, the same behaviour in plain Python, old builds caught."""

from __future__ import annotations

import importlib
import importlib.machinery
import os
import subprocess
import sys
from pathlib import Path

import pytest

from pigeon.compiled import MODULES, compiled, source_path, stale

REPO = Path(__file__).resolve().parents[2]
PURE = os.environ.get("PIGEON_PURE") == "1"


def _import_all() -> list[str]:
    for name in MODULES:
        importlib.import_module(name)
    return compiled()


def test_every_module_of_the_check_path_is_compiled_where_the_build_can() -> None:
    if PURE:
        pytest.skip("PIGEON_PURE=1: plain Python asked for")
    done = _import_all()
    if not done and os.environ.get("CI") != "true":
        pytest.skip("installed as plain Python (no mypy or no C compiler at build time)")
    # CI installs with gcc and mypy: every module must have been compiled.
    assert done == list(MODULES)


def test_pigeon_pure_runs_the_sources_even_where_extensions_exist() -> None:
    code = (
        "import importlib, pigeon.compiled as c\n"
        "for m in c.MODULES: importlib.import_module(m)\n"
        "import sys\n"
        "print(c.compiled(), all(sys.modules[m].__file__.endswith('.py') for m in c.MODULES))\n"
    )
    env = dict(os.environ, PIGEON_PURE="1")
    out = subprocess.run(
        [sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True
    )
    assert out.stdout.split() == ["[]", "True"]


def test_the_policy_tests_pass_in_plain_python_too() -> None:
    """The main run tests the extensions; this runs the checks' tests on the sources."""
    if PURE or not _import_all():
        pytest.skip("this run is plain Python already")
    env = dict(os.environ, PIGEON_PURE="1")
    run = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "tests/unit/policy"],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-2000:]
    assert " passed" in run.stdout


def test_an_extension_older_than_its_source_is_stale(tmp_path: Path) -> None:
    name = "pigeon.policy.mailauth.dkimfast"
    source = source_path(name, tmp_path)
    source.parent.mkdir(parents=True)
    source.write_text("# the source\n")
    extension = source.with_name(source.stem + importlib.machinery.EXTENSION_SUFFIXES[0])
    extension.write_bytes(b"not really an extension")
    os.utime(source, (1_000_000, 1_000_000))
    os.utime(extension, (2_000_000, 2_000_000))
    assert stale(tmp_path) == []  # built after the last edit
    os.utime(source, (3_000_000, 3_000_000))
    assert stale(tmp_path) == [name]
