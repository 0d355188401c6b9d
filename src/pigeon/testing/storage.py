"""Fakes for the queue store's seams (CONTRIBUTING.md, rule 14).

Contract:
  * `FaultyDisk` is a `pigeon.queue.files.Disk` (the system calls that make
    queue content durable: open, write_all, fsync, fsync_dir) that does the
    real call unless told otherwise, and records every call in `calls`
    as (name, argument) in order. Give it to `QueueStore(root, disk=...)`.
  * `fail(name, error, when=..., times=1)`: the next `times` calls of `name`
    whose argument satisfies `when` (default: any) raise `error` instead
    of running. The argument is the path for open and fsync_dir, the
    list of buffers for write_all, the descriptor for fsync.
  * `gate(name, when=...)`: the first matching call waits (at most
    `Gate.TIMEOUT` seconds, then fails the test's commit with an error)
    until `release()`; `entered` is set when it starts waiting. Tests use
    it to hold the committer inside a batch while they queue the next one.
  * Thread-safe: the committer and its fsync pool call it concurrently.
  * `content_bytes(store, queue_id)`: the whole message, read the way every
    reader outside the store reads it (`ContentStore.content().open()`).
  * `content_file(store, queue_id)`: where the SQLite store keeps that
    content (its documented layout, queue/store.py), for tests that plant,
    damage or remove files the way a crash or an operator would.
  * `BytesContent(data)` is a `MessageContent` (queue/api.py) held in
    memory, for code that reads queued content (reports, agents) tested
    without a store; its streams have no fileno(), like any content that
    is not a local file.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pigeon.queue.api import ContentStore
from pigeon.queue.files import Disk
from pigeon.queue.store import QueueStore
from pigeon.testing.fakes import BytesContent  # noqa: F401 (re-exported)

__all__ = ["BytesContent", "FaultyDisk", "Gate", "content_bytes", "content_file"]


def content_file(store: QueueStore, queue_id: str) -> Path:
    """The msg/ file of `queue_id` in a SQLite store (see the contract)."""
    return store.root / "msg" / queue_id


def content_bytes(store: ContentStore, queue_id: str) -> bytes:
    """The message of `queue_id` (StoreError when it cannot be read)."""
    with store.content(queue_id).open() as fh:
        return fh.read()


@dataclass
class Gate:
    """A call held until `release()` (see the contract)."""

    TIMEOUT = 30.0
    when: Callable[[Any], bool]
    entered: threading.Event = field(default_factory=threading.Event)
    opened: threading.Event = field(default_factory=threading.Event)

    def release(self) -> None:
        self.opened.set()

    def wait(self) -> None:
        self.entered.set()
        if not self.opened.wait(self.TIMEOUT):
            raise OSError(110, "gate never released (test bug)")


@dataclass
class _Fault:
    name: str
    error: OSError
    when: Callable[[Any], bool]
    times: int


class FaultyDisk(Disk):
    """A Disk with a failure switch per call (see the contract)."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, Any]] = []
        self._faults: list[_Fault] = []
        self._gates: dict[str, list[Gate]] = {}
        self._lock = threading.Lock()

    def fail(
        self,
        name: str,
        error: OSError,
        *,
        when: Callable[[Any], bool] = lambda arg: True,
        times: int = 1,
    ) -> None:
        with self._lock:
            self._faults.append(_Fault(name, error, when, times))

    def gate(self, name: str, *, when: Callable[[Any], bool] = lambda arg: True) -> Gate:
        gate = Gate(when)
        with self._lock:
            self._gates.setdefault(name, []).append(gate)
        return gate

    def names(self) -> list[str]:
        """The names of the calls so far, in order."""
        with self._lock:
            return [name for name, _ in self.calls]

    def _enter(self, name: str, arg: Any) -> None:
        with self._lock:
            self.calls.append((name, arg))
            gate = next((g for g in self._gates.get(name, []) if g.when(arg)), None)
            if gate is not None:
                self._gates[name].remove(gate)
            fault = next((f for f in self._faults if f.name == name and f.when(arg)), None)
            if fault is not None:
                fault.times -= 1
                if fault.times <= 0:
                    self._faults.remove(fault)
        if gate is not None:
            gate.wait()
        if fault is not None:
            raise fault.error

    def open(self, path: str, flags: int, mode: int) -> int:
        self._enter("open", path)
        return super().open(path, flags, mode)

    def write_all(self, fd: int, parts: Sequence[bytes | bytearray | memoryview]) -> None:
        self._enter("write_all", parts)
        super().write_all(fd, parts)

    def fsync(self, fd: int) -> None:
        self._enter("fsync", fd)
        super().fsync(fd)

    def fsync_dir(self, path: Path) -> None:
        self._enter("fsync_dir", os.fspath(path))
        super().fsync_dir(path)
