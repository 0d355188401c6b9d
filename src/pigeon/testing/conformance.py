"""Conformance suites for pigeon's extension points (CONTRIBUTING.md, rule 12).

`check_delivery_agent(factory, nexthop=...)` runs the delivery-agent contract
(pigeon.delivery.api) against any agent: `factory()` returns a fresh agent
(with an `aclose()` coroutine if it holds resources; it is called after
each check). Each check builds its own message, handed to the agent as a
`MessageContent` (pigeon/queue/api.py; missing content is one whose
`open()` raises StoreError); a failure raises `AssertionError` naming the
check. Checked:
  * one_result_per_recipient: exactly one RecipientResult per recipient of
    the request (matched by address), whatever the order; the status class
    matches the outcome (2.x.x delivered, 4.x.x deferred, 5.x.x bounced);
    the action is an RFC 3464 one.
  * many_recipients: 50 recipients in one request (the manager's default
    chunk) get 50 results.
  * empty_content and missing_content: an empty content file, or none at
    all, is a result (of any outcome), never an exception.
  * null_sender_and_dsn_params: the null reverse-path, RET/ENVID and
    NOTIFY/ORCPT parameters are accepted.
  * concurrent_requests: ten deliver() calls at once all complete.

`check_store(factory)` runs the queue-store contract against any store:
`factory(root: Path)` must return an *unopened* store rooted at `root` with
the `QueueStore` API (open/close, new_spool, commit_async/commit, recover,
due, load, content_path, set_state, mark_active, update, remove, counts,
list, stats). Each check gets a fresh temporary directory; a failure raises
`AssertionError` naming the check.

What is checked (each a promise the SMTP side or the manager relies on):
  * commit_then_recover: a committed message survives close/reopen/recover
    with its content and envelope intact and is due at once.
  * discard_leaves_nothing: a discarded spool leaves no file and no entry;
    discard is idempotent and a discarded spool cannot be committed.
  * abandoned_spool_removed: a spool never committed (the process "crashed")
    is removed by the next recover() and never shows up in the queue.
  * orphan_content_removed: a content file without an entry written under
    this database (a commit that never finished, so it was never
    acknowledged: its preamble carries the store's `store_id`) is removed
    by recover().
  * lost_database_rebuilt: with queue.db deleted, the next open() and
    recover() rebuild every entry from its content file, content intact;
    nothing is deleted (the database lost track, Rule 5 of queue/store.py).
  * active_reset_on_recover: an entry left 'active' is 'incoming' again.
  * concurrent_commits: many threads committing at once all land, each once.
  * group_commit_batches: with 200 concurrent commits, `stats()["batches"]`
    (fsync groups / DB transactions) is smaller than the number of messages.
  * remove_deletes: remove() drops entry and content.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import json
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from pigeon import msgfile
from pigeon.delivery.api import (
    DeliveryRecipient,
    DeliveryRequest,
    Outcome,
    RecipientResult,
)
from pigeon.msgfile import read_message
from pigeon.proto.params import MailParams, RcptParams
from pigeon.queue.model import Envelope, Recipient
from pigeon.testing.fakes import BytesContent
from pigeon.vocab import Nexthop

StoreFactory = Callable[[Path], Any]


def _envelope(qid: str, n: int = 0) -> Envelope:
    return Envelope(
        qid,
        f"sender{n}@example.test",
        [Recipient(f"rcpt{n}@example.test")],
        received_at=time.time() - 1,
        size=0,
    )


def _content(n: int) -> bytes:
    return f"Received: by test\r\nSubject: message {n}\r\n\r\n".encode() + b"body line\r\n" * (
        n % 7 + 1
    )


def _commit_one(store, n: int = 0) -> str:
    spool = store.new_spool()
    spool.write(_content(n))
    store.commit(spool, _envelope(spool.queue_id, n))
    return spool.queue_id


def _files_named(root: Path, name: str) -> list[Path]:
    return [p for p in root.rglob("*") if p.name == name]


def check_commit_then_recover(factory: StoreFactory, root: Path) -> None:
    store = factory(root)
    store.open()
    qid = _commit_one(store, 3)
    store.close()
    store = factory(root)
    store.open()
    try:
        store.recover()
        assert read_message(store.content_path(qid)) == _content(3), "content changed"
        env = store.load(qid)
        assert env.to_dict() == _envelope(qid, 3).to_dict() | {"received_at": env.received_at}
        assert store.due(time.time(), 10) == [qid], "committed message not due"
        assert store.counts()["incoming"] == 1
    finally:
        store.close()


def check_discard_leaves_nothing(factory: StoreFactory, root: Path) -> None:
    store = factory(root)
    store.open()
    try:
        spool = store.new_spool()
        spool.write(b"partial message\r\n")
        spool.discard()
        spool.discard()  # idempotent
        try:
            store.commit(spool, _envelope(spool.queue_id))
        except Exception:
            pass
        else:
            raise AssertionError("a discarded spool was committed")
        assert not _files_named(root, spool.queue_id), "discard left a file behind"
        assert store.list() == [], "discard left an entry"
    finally:
        store.close()


def check_abandoned_spool_removed(factory: StoreFactory, root: Path) -> None:
    store = factory(root)
    store.open()
    spool = store.new_spool()
    spool.write(b"half a message")
    store.close()  # as if the process died here
    store = factory(root)
    store.open()
    try:
        store.recover()
        assert not _files_named(root, spool.queue_id), "abandoned spool survived recover()"
        assert store.list() == []
    finally:
        store.close()


def check_orphan_content_removed(factory: StoreFactory, root: Path) -> None:
    store = factory(root)
    store.open()
    try:
        keep = _commit_one(store)
        orphan = store.content_path("0ORPHAN0000000X")
        raw = json.dumps(_envelope("0ORPHAN0000000X").to_dict()).encode()
        orphan.write_bytes(
            msgfile.encode(store.store_id, raw) + b"committed file, row never written\r\n"
        )
        store.recover()
        assert not orphan.exists(), "content without an entry survived recover()"
        assert store.content_path(keep).exists(), "recover() removed committed content"
        assert [e.queue_id for e in store.list()] == [keep]
    finally:
        store.close()


def check_lost_database_rebuilt(factory: StoreFactory, root: Path) -> None:
    store = factory(root)
    store.open()
    ids = [_commit_one(store, n) for n in range(3)]
    store.close()
    for name in ("queue.db", "queue.db-wal", "queue.db-shm"):
        (root / name).unlink(missing_ok=True)
    store = factory(root)
    store.open()
    try:
        store.recover()
        assert sorted(e.queue_id for e in store.list("incoming")) == sorted(ids), (
            "entries not rebuilt from their content files"
        )
        for n, qid in enumerate(ids):
            assert read_message(store.content_path(qid)) == _content(n), "content changed"
            env = store.load(qid)
            assert [r.address for r in env.recipients] == [f"rcpt{n}@example.test"]
            assert env.size == len(_content(n))
    finally:
        store.close()


def check_active_reset_on_recover(factory: StoreFactory, root: Path) -> None:
    store = factory(root)
    store.open()
    try:
        qid = _commit_one(store)
        store.mark_active([qid])
        assert store.due(time.time(), 10) == [], "an active entry is due"
        store.recover()
        assert store.counts()["active"] == 0
        assert store.due(time.time(), 10) == [qid]
    finally:
        store.close()


def check_concurrent_commits(
    factory: StoreFactory, root: Path, threads: int = 16, per_thread: int = 25
) -> None:
    store = factory(root)
    store.open()
    ids: list[str] = []
    lock = threading.Lock()
    try:

        def worker(t: int) -> None:
            for i in range(per_thread):
                qid = _commit_one(store, t * per_thread + i)
                with lock:
                    ids.append(qid)

        with concurrent.futures.ThreadPoolExecutor(threads) as pool:
            list(pool.map(worker, range(threads)))
        total = threads * per_thread
        assert len(set(ids)) == total, "duplicate queue IDs"
        assert {e.queue_id for e in store.list()} == set(ids), "a commit did not land"
        assert store.stats()["commits"] >= total
    finally:
        store.close()


def check_group_commit_batches(factory: StoreFactory, root: Path, n: int = 200) -> None:
    store = factory(root)
    store.open()
    try:
        before = store.stats()
        futures = []
        for i in range(n):
            spool = store.new_spool()
            spool.write(_content(i))
            futures.append(store.commit_async(spool, _envelope(spool.queue_id, i)))
        for f in futures:
            f.result(timeout=120)
        after = store.stats()
        commits = after["commits"] - before["commits"]
        batches = after["batches"] - before["batches"]
        assert commits == n, f"{commits} commits for {n} messages"
        assert batches < n, f"no group commit: {batches} batches for {n} messages"
        assert store.counts()["incoming"] == n
    finally:
        store.close()


def check_remove_deletes(factory: StoreFactory, root: Path) -> None:
    store = factory(root)
    store.open()
    try:
        qid = _commit_one(store)
        store.remove(qid)
        assert not store.content_path(qid).exists()
        assert store.list() == [] and store.due(time.time(), 10) == []
    finally:
        store.close()


CHECKS = (
    check_commit_then_recover,
    check_discard_leaves_nothing,
    check_abandoned_spool_removed,
    check_orphan_content_removed,
    check_lost_database_rebuilt,
    check_active_reset_on_recover,
    check_concurrent_commits,
    check_group_commit_batches,
    check_remove_deletes,
)


def check_store(factory: StoreFactory) -> None:
    """Run every store check, each in its own temporary directory."""
    for check in CHECKS:
        with tempfile.TemporaryDirectory(prefix="pigeon-store-") as tmp:
            try:
                check(factory, Path(tmp) / "queue")
            except AssertionError as e:
                raise AssertionError(f"{check.__name__}: {e}") from e


# --- delivery agents ------------------------------------------------------------------

AgentFactory = Callable[[], Any]
_ACTIONS = frozenset({"delivered", "relayed", "failed", "delayed"})
_CLASS = {Outcome.DELIVERED: "2", Outcome.DEFERRED: "4", Outcome.BOUNCED: "5"}


def _request(
    content: Path,
    nexthop: Nexthop,
    rcpts: list[str],
    *,
    sender: str = "a@src.test",
    params: MailParams = MailParams(),
    rparams: RcptParams = RcptParams(),
) -> DeliveryRequest:
    data = content.read_bytes() if content.exists() else None  # None: unreadable
    return DeliveryRequest(
        "0CONFORMANCE000",
        sender,
        params,
        tuple(DeliveryRecipient(r, rparams) for r in rcpts),
        BytesContent(data),
        len(data or b""),
        False,
        False,
        nexthop,
    )


def _check_results(req: DeliveryRequest, results: Any) -> list[RecipientResult]:
    assert isinstance(results, list), f"deliver() returned {type(results).__name__}, not list"
    assert all(isinstance(r, RecipientResult) for r in results), "not RecipientResult"
    got = sorted(r.address for r in results)
    want = sorted(r.address for r in req.recipients)
    assert got == want, f"results for {got}, recipients {want}"
    for r in results:
        outcome = Outcome(r.outcome)
        assert r.status[:1] == _CLASS[outcome], f"{r.address}: status {r.status} vs {outcome}"
        assert r.action in _ACTIONS, f"{r.address}: action {r.action!r}"
    return results


async def _deliver(
    factory: AgentFactory, *requests: DeliveryRequest
) -> list[list[RecipientResult]]:
    agent = factory()
    try:
        out = await asyncio.gather(*(agent.deliver(r) for r in requests))
    finally:
        aclose = getattr(agent, "aclose", None)
        if aclose is not None:
            await aclose()
    return [_check_results(req, res) for req, res in zip(requests, out)]


def _message(tmp: Path, data: bytes = b"Subject: conformance\r\n\r\nhello\r\n") -> Path:
    path = tmp / "content"
    path.write_bytes(data)
    return path


async def check_one_result_per_recipient(factory: AgentFactory, tmp: Path, nh: Nexthop) -> None:
    rcpts = [f"u{i}@{nh.domain}" for i in range(3)]
    await _deliver(factory, _request(_message(tmp), nh, list(reversed(rcpts))))


async def check_many_recipients(factory: AgentFactory, tmp: Path, nh: Nexthop) -> None:
    await _deliver(factory, _request(_message(tmp), nh, [f"u{i}@{nh.domain}" for i in range(50)]))


async def check_empty_content(factory: AgentFactory, tmp: Path, nh: Nexthop) -> None:
    await _deliver(factory, _request(_message(tmp, b""), nh, [f"empty@{nh.domain}"]))


async def check_missing_content(factory: AgentFactory, tmp: Path, nh: Nexthop) -> None:
    await _deliver(factory, _request(tmp / "no-such-file", nh, [f"missing@{nh.domain}"]))


async def check_null_sender_and_dsn_params(factory: AgentFactory, tmp: Path, nh: Nexthop) -> None:
    await _deliver(
        factory,
        _request(
            _message(tmp),
            nh,
            [f"dsn@{nh.domain}"],
            sender="",
            params=MailParams(ret="HDRS", envid="conformance-1"),
            rparams=RcptParams(("FAILURE", "SUCCESS"), ("rfc822", f"orig@{nh.domain}")),
        ),
    )


async def check_concurrent_requests(factory: AgentFactory, tmp: Path, nh: Nexthop) -> None:
    content = _message(tmp)
    await _deliver(factory, *(_request(content, nh, [f"c{i}@{nh.domain}"]) for i in range(10)))


AGENT_CHECKS = (
    check_one_result_per_recipient,
    check_many_recipients,
    check_empty_content,
    check_missing_content,
    check_null_sender_and_dsn_params,
    check_concurrent_requests,
)


def check_delivery_agent(
    factory: AgentFactory, *, nexthop: Nexthop = Nexthop("discard", "example.test")
) -> None:
    """Run every delivery-agent check (see the module docstring) against `factory()`.

    Runs its own event loop per check (asyncio.run): call it from sync code.
    """
    for check in AGENT_CHECKS:
        with tempfile.TemporaryDirectory(prefix="pigeon-agent-") as tmp:
            try:
                asyncio.run(check(factory, Path(tmp), nexthop))
            except AssertionError as e:
                raise AssertionError(f"{check.__name__}: {e}") from e
            except Exception as e:
                raise AssertionError(f"{check.__name__}: deliver() raised {e!r}") from e
