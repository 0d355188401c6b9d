"""pigeon.proto is sans-IO: no module under it imports asyncio, socket or ssl (CONTRIBUTING.md, rule 1)."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pigeon.proto
from pigeon.testing.source import parse_source

FORBIDDEN = {"asyncio", "socket", "ssl", "selectors", "time"}
PROTO_DIR = Path(pigeon.proto.__file__).parent


def test_no_io_imports_in_source() -> None:
    files = sorted(PROTO_DIR.rglob("*.py"))  # pigeon.proto.imap too
    assert files
    for path in files:
        tree = parse_source(path)
        for node in ast.walk(tree):
            if isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom):
                names = [node.module or ""]
            else:
                continue
            for name in names:
                assert name.split(".")[0] not in FORBIDDEN, f"{path.name} imports {name}"


def test_importing_proto_loads_no_io_modules() -> None:
    code = (
        "import sys; import pigeon.proto.server, pigeon.testing.transcript; "
        "import pigeon.proto.imap.reader, pigeon.proto.imap.response, pigeon.proto.imap.search, "
        "pigeon.proto.imap.fetchrender, pigeon.proto.imap.state; "
        "print(','.join(m for m in ('asyncio', 'socket', 'ssl') if m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == ""
