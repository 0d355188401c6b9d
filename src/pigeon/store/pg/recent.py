"""The content of messages this node committed lately, kept in memory for their delivery.

Contract:
  * `RecentContent(limit)` maps queue IDs to the exact octets committed
    for them (pigeon/store/pg/committer.py puts each small message in after
    its COMMIT); at most `limit` octets in all, the oldest dropped first;
    a message bigger than `ITEM_MAX` is never kept.
  * Why: a message accepted by a node is usually delivered by that node a
    moment later (the manager's fresh path). Reading its content back from
    the database costs round trips made while the delivery waits; the
    embedded store reads the same octets from the page cache. Content never
    changes once committed (an entry is written once, then only removed),
    so a kept copy can never be stale: it is only kept past the entry's
    removal by another node, and nobody asks for a removed entry's content
    (a delivery starts only after a successful claim).
  * `get(qid)` returns the octets or None; `drop(ids)` forgets removed
    entries. Thread-safe (committer thread, event loop, worker threads).
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Iterable

__all__ = ["ITEM_MAX", "RecentContent"]

ITEM_MAX = 256 * 1024  # one content row (committer.CHUNK): the common case
DEFAULT_LIMIT = 32 << 20


class RecentContent:
    def __init__(self, limit: int = DEFAULT_LIMIT) -> None:
        self._limit = limit
        self._items: OrderedDict[str, bytes] = OrderedDict()
        self._octets = 0
        self._lock = threading.Lock()

    def put(self, queue_id: str, data: bytes) -> None:
        if len(data) > ITEM_MAX or len(data) > self._limit:
            return
        with self._lock:
            old = self._items.pop(queue_id, None)
            if old is not None:
                self._octets -= len(old)
            self._items[queue_id] = data
            self._octets += len(data)
            while self._octets > self._limit:
                _, gone = self._items.popitem(last=False)
                self._octets -= len(gone)

    def get(self, queue_id: str) -> bytes | None:
        with self._lock:
            return self._items.get(queue_id)

    def drop(self, queue_ids: Iterable[str]) -> None:
        with self._lock:
            for qid in queue_ids:
                old = self._items.pop(qid, None)
                if old is not None:
                    self._octets -= len(old)

    def __len__(self) -> int:
        with self._lock:
            return len(self._items)
