"""`ListenAddress`: one listener's address, the value of every `*listen` key.

Its own module so that a section's dataclass module (`pigeon.config.imap`,
`pigeon.config.pop3`) can name it without importing `pigeon.config.schema`,
which imports every section (no import circle, tests/unit/test_layers.py).
`pigeon.config.schema` re-exports it.
"""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["ListenAddress"]


@dataclass(frozen=True, slots=True)
class ListenAddress:
    """One listener: host (IPv4/IPv6 literal or name) and TCP port."""

    host: str
    port: int

    def __str__(self) -> str:
        return f"[{self.host}]:{self.port}" if ":" in self.host else f"{self.host}:{self.port}"
