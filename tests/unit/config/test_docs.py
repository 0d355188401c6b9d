"""docs/config.md agrees with the code: its examples load, every key is documented."""

from __future__ import annotations

import dataclasses
import re
import tomllib
from pathlib import Path

import pytest

from pigeon.config import load as load_module
from pigeon.config import load_config

DOC = Path(__file__).resolve().parents[3] / "docs" / "config.md"
TEXT = DOC.read_text(encoding="utf-8")
TOML_BLOCKS = re.findall(r"```toml\n(.*?)```", TEXT, re.S)


def test_there_is_a_complete_example():
    assert any("[log]" in block and "[limits]" in block for block in TOML_BLOCKS)


@pytest.mark.parametrize("block", TOML_BLOCKS)
def test_examples_load(block, tmp_path):
    path = tmp_path / "example.toml"
    path.write_text(block, encoding="utf-8")
    load_config(path)


def test_complete_example_sets_every_key():
    complete = max(TOML_BLOCKS, key=len)
    data = tomllib.loads(complete)
    for section, (cls, _) in load_module._SECTIONS.items():
        assert set(data[section]) == {f.name for f in dataclasses.fields(cls)}, section
    assert set(load_module._TOP) <= set(data)


def test_every_key_has_a_table_row():
    for section, (cls, _) in load_module._SECTIONS.items():
        for field in dataclasses.fields(cls):
            assert f"| `{field.name}` |" in TEXT, f"{section}.{field.name}"
    for key in load_module._TOP:
        assert f"| `{key}` |" in TEXT, key
    assert "| `mailboxes` |" in TEXT
