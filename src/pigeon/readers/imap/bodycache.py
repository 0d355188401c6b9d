"""BODYSTRUCTURE and ENVELOPE computed once per message, kept in a bounded cache every session shares.

    cache = BodyCache(limit=8 * 1024 * 1024)
    value = cache.get(key)             # or None
    cache.put(key, value, cost)

Contract:
  * A message file never changes its content once delivered (Maildir: only
    its name changes, with its flags), so its parsed structure is keyed by
    what identifies the content: the Maildir and the message's unique base
    name (the part before ":2,"). A new flag does not invalidate it.
  * Bounded: the values' costs (their encoded length) add up to at most
    `limit` octets; the least recently used go first. Nothing here is
    per session (the issue's memory bound per idle session).
  * Thread-safe (one lock): the FETCH work of many sessions runs in worker
    threads.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from typing import Any

__all__ = ["BodyCache", "DEFAULT_LIMIT"]

#: Octets of parsed structures kept (a BODYSTRUCTURE is a few hundred octets).
DEFAULT_LIMIT = 8 * 1024 * 1024


class BodyCache:
    """A least-recently-used map bounded by the values' total cost (module contract)."""

    def __init__(self, limit: int = DEFAULT_LIMIT) -> None:
        self.limit = limit
        self.used = 0
        self._items: OrderedDict[Any, tuple[Any, int]] = OrderedDict()
        self._lock = threading.Lock()
        self.hits = 0
        self.misses = 0

    def get(self, key: Any) -> Any:
        with self._lock:
            found = self._items.get(key)
            if found is None:
                self.misses += 1
                return None
            self._items.move_to_end(key)
            self.hits += 1
            return found[0]

    def put(self, key: Any, value: Any, cost: int) -> None:
        if cost > self.limit:
            return
        with self._lock:
            old = self._items.pop(key, None)
            if old is not None:
                self.used -= old[1]
            self._items[key] = (value, cost)
            self.used += cost
            while self.used > self.limit:
                _, (_, dropped) = self._items.popitem(last=False)
                self.used -= dropped

    def __len__(self) -> int:
        return len(self._items)
