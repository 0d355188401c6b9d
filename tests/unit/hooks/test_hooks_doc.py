"""docs/hooks.md agrees with the code: its configuration examples load, its
plugins compile (tests/e2e/test_hooks.py runs them against a live pigeon)."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from pigeon.config import load_config

DOC = Path(__file__).resolve().parents[3] / "docs" / "hooks.md"
TEXT = DOC.read_text(encoding="utf-8")


@pytest.mark.parametrize("block", re.findall(r"```toml\n(.*?)```", TEXT, re.S))
def test_configuration_examples_load(block, tmp_path):
    path = tmp_path / "pigeon.toml"
    path.write_text(block, encoding="utf-8")
    assert load_config(path).plugins


@pytest.mark.parametrize("block", re.findall(r"```python\n(.*?)```", TEXT, re.S))
def test_plugin_examples_compile_and_name_their_file(block):
    assert re.match(r"# \w+\.py\n", block)
    compile(block, "<docs/hooks.md>", "exec")
