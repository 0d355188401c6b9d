"""A listener's address, the value of every `*listen` key (a module of its own so
that the sections in their own modules, `[pop3]`..., can use it without
importing `pigeon.config.schema`, which imports them)."""

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
