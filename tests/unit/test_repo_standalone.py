"""The repository stands alone: comments and docs cite RFCs and files it holds.

A reader with only this repository must be able to follow every citation.
The conventions the code cites are in CONTRIBUTING.md ("CONTRIBUTING.md,
rule N"), the design in docs/architecture.md; a style guide kept outside the
repository (by section number) must never be cited again.
"""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
TEXT = ("*.py", "*.md", "*.c", "Makefile", "*.service", "*.toml")
SKIP = {".venv", ".cache", ".git", "corpus", "__pycache__", "build"}


def _files():
    for pattern in TEXT:
        for path in ROOT.rglob(pattern):
            if not SKIP & set(path.relative_to(ROOT).parts):
                yield path


def test_no_citation_of_an_outside_style_guide():
    bad = [
        f"{p.relative_to(ROOT)}:{n}"
        for p in _files()
        for n, line in enumerate(p.read_text(errors="replace").splitlines(), 1)
        if re.search(r"\bSTYLE\s*(\d|:|\))|\.\./shared", line)
    ]
    assert bad == []


def test_every_cited_contributing_rule_exists():
    rules = set(re.findall(r"^(\d+)\. \*\*", (ROOT / "CONTRIBUTING.md").read_text(), re.M))
    cited = set()
    for path in _files():
        for group in re.findall(
            r"CONTRIBUTING\.md, rules? ([\d and,]+)", path.read_text(errors="replace")
        ):
            cited |= set(re.findall(r"\d+", group))
    assert cited and cited <= rules, cited - rules
