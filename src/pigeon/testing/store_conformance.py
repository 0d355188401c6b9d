"""The queue-store conformance suite: the contract of queue/api.py, checked.

`check_store(factory, nodes=(a, b), break_next_commit=None)` (re-exported by
pigeon.testing.conformance, CONTRIBUTING.md rule 12) runs every check below
against any backend, using nothing but the interfaces of queue/api.py.
`factory(place, node)` returns a new, *unopened* `QueueBackend` for node
`node`: `place` is a fresh empty directory per check (a file backend keeps
its files there; another may name a fresh namespace after it), and two
calls with the same `place` give two store objects over the same data. A
crash is simulated by dropping a store (close(), which only finishes
commits already acknowledged) and opening a fresh one over the same place.
Most checks use node `a`; the claim checks use `b` too. The optional
`break_next_commit(store)` makes the next content write of that store fail
as a full disk would (the one backend-specific hook). A failure raises
AssertionError naming the check; commits wait at most COMMIT_TIMEOUT s.

What is checked (each a promise the SMTP side, the manager or an operator
relies on):
  * commit_survives_a_crash: committed messages (one small, one big) come
    back after a crash with content and envelope intact, 'incoming' and due.
  * failed_commit_records_nothing: a commit refused (wrong queue ID, a
    discarded or already committed spool, a closed store) fails its future
    with StoreError and leaves nothing, also after a crash; a committed
    spool takes no more writes. full_disk_records_nothing (with the hook):
    a commit whose storage failed is `disk_full`, leaves nothing, tells
    `health`; the next commit lands.
  * discard_leaves_nothing / abandoned_spools_vanish: a discarded spool, or
    one never committed before a crash, leaves nothing (small or big).
  * spool_basics: queue IDs differ, `size` and `head()` report what was
    written, `new_spool(envelope)` gives the envelope the spool's queue ID.
  * fields_on_top_and_hold: prepended fields come first in the committed
    content (small or big), `reader()` streams what was written; a commit
    made with `hold` is 'hold' and never due.
  * concurrent_commits: commits from many threads all land, each once.
  * group_commit: many pending commits take fewer durable batches than
    messages (`stats()`), the hot path's promise.
  * claims_are_exclusive: a claim takes only entries in the states named,
    once; two nodes claiming the same entries at once split them.
  * recovery_releases_only_this_nodes_claims: after a crash, recover()
    makes this node's claims 'incoming' (reported in `reactivated`), leaves
    the other node's alone, and is idempotent.
  * due_is_fair: due() gives incoming and deferred mail half the slots
    each, interleaved, oldest first, slots one cannot use to the other;
    never future, active or held entries; next_retry() is the earliest
    deferred attempt.
  * update_and_move: update() writes envelope, state and next attempt;
    move() moves only from the states named, keeps or sets next_attempt,
    ignores unknown ids; an unknown state is ValueError.
  * remove_many_is_durable: removed entries and their content are gone,
    also after a crash; unknown ids are ignored.
  * content_streams: `content(id).open()` streams exactly the message
    (binary, every octet value, big), independent streams, `size` right;
    unknown content raises StoreError when used.
  * queries: counts() has every state, list() orders by queue ID and
    filters by state, entry() and states() answer for existing ids only.
  * storage_status: a healthy store probes fine and is not degraded.
"""

from __future__ import annotations

import concurrent.futures
import tempfile
import threading
import time
from collections.abc import Callable
from functools import partial
from pathlib import Path
from typing import cast

from pigeon.queue.api import QueueBackend
from pigeon.queue.model import RecipientStatus
from pigeon.testing.store_kit import (
    BIG,
    COMMIT_TIMEOUT,
    BreakCommit,
    Ctx,
    StoreFactory,
    commit_sample,
    fails,
    gone,
    read_content,
    refused,
    sample_content,
    sample_envelope,
)
from pigeon.vocab.errors import StoreError
from pigeon.vocab.states import STATES, QueueState

__all__ = ["CHECKS", "COMMIT_TIMEOUT", "BreakCommit", "StoreFactory", "check_store"]

# --- intake ------------------------------------------------------------------------------


def check_commit_survives_a_crash(ctx: Ctx) -> None:
    with ctx.store() as store:
        small, big = commit_sample(store, 3), commit_sample(store, 4, size=BIG)
        wanted = {small: store.load(small).to_dict(), big: store.load(big).to_dict()}
    with ctx.store() as store:  # a fresh store over the same data: "after the crash"
        store.recover()
        for n, qid in ((3, small), (4, big)):
            assert read_content(store, qid) == sample_content(n, BIG if qid == big else 0), (
                "content changed"
            )
            assert store.load(qid).to_dict() == wanted[qid], "envelope changed"
        assert sorted(store.due(time.time(), 10)) == sorted([small, big]), "not due"
        assert store.counts()[QueueState.INCOMING] == 2
        assert store.states([small, big]) == {small: QueueState.INCOMING, big: QueueState.INCOMING}


def check_failed_commit_records_nothing(ctx: Ctx) -> None:
    with ctx.store() as store:
        wrong = store.new_spool()
        wrong.write(sample_content(1))
        assert refused(store.commit_async(wrong, sample_envelope("0OTHERQUEUEID00"))), (
            "wrong queue ID"
        )
        assert refused(store.commit_async(wrong, sample_envelope(wrong.queue_id))), "recommitted"
        dropped = store.new_spool()
        dropped.write(sample_content(2, BIG))
        dropped.discard()
        assert refused(store.commit_async(dropped, sample_envelope(dropped.queue_id)))
        done = commit_sample(store, 3)
        # (a committed spool object is the caller's again: no write, no second commit)
        spool = store.new_spool()
        spool.write(b"x\r\n")
        store.commit_async(spool, sample_envelope(spool.queue_id)).result(COMMIT_TIMEOUT)
        assert fails(lambda: spool.write(b"more")), "a committed spool took more content"
        assert refused(store.commit_async(spool, sample_envelope(spool.queue_id))), (
            "committed twice"
        )
        spool.discard()  # a no-op now
        assert read_content(store, spool.queue_id) == b"x\r\n", "discard after commit lost content"
        late = store.new_spool()
        late.write(sample_content(4))
    assert refused(store.commit_async(late, sample_envelope(late.queue_id))), (
        "closed store committed"
    )
    with ctx.store() as store:
        store.recover()
        for qid in (wrong.queue_id, dropped.queue_id, late.queue_id):
            assert gone(store, qid), f"a refused commit left something: {qid}"
        assert {e.queue_id for e in store.list()} == {done, spool.queue_id}


def check_full_disk_records_nothing(ctx: Ctx) -> None:
    if ctx.break_next_commit is None:
        return  # the backend offers no way to break a write
    with ctx.store() as store:
        first = commit_sample(store, 1)
        ctx.break_next_commit(store)
        spool = store.new_spool()
        spool.write(sample_content(2))
        fut = store.commit_async(spool, sample_envelope(spool.queue_id, 2))
        assert fails(lambda: fut.result(COMMIT_TIMEOUT)), "a failed write was acknowledged"
        err = fut.exception()
        assert isinstance(err, StoreError) and err.disk_full and err.storage_fault, repr(err)
        assert store.health.degraded, "the storage fault was not reported"
        assert gone(store, spool.queue_id)
        last = commit_sample(store, 3)
    with ctx.store() as store:
        store.recover()
        assert [e.queue_id for e in store.list()] == [first, last]
        assert gone(store, spool.queue_id), "a failed commit came back after a crash"


def check_discard_leaves_nothing(ctx: Ctx) -> None:
    with ctx.store() as store:
        spools = [store.new_spool(), store.new_spool()]
        spools[0].write(b"partial message\r\n")
        spools[1].write(sample_content(1, BIG))
        for spool in spools:
            spool.discard()
            spool.discard()  # idempotent
            assert fails(partial(spool.write, b"more")), "a discarded spool took more content"
            assert gone(store, spool.queue_id)
        assert store.list() == [], "discard left an entry"
    with ctx.store() as store:
        store.recover()
        assert store.list() == [] and all(gone(store, s.queue_id) for s in spools)


def check_abandoned_spools_vanish(ctx: Ctx) -> None:
    with ctx.store() as store:
        small, big = store.new_spool(), store.new_spool()
        small.write(b"half a message")
        big.write(sample_content(1, BIG))
    # The process "died" before committing or discarding them.
    with ctx.store() as store:
        store.recover()
        assert store.list() == [], "an abandoned spool became an entry"
        assert all(gone(store, s.queue_id) for s in (small, big))
        assert all(v == 0 for v in store.counts().values())


def check_spool_basics(ctx: Ctx) -> None:
    with ctx.store() as store:
        draft = sample_envelope("")
        spool = store.new_spool(draft)
        assert draft.queue_id == spool.queue_id, "new_spool(envelope) did not set its queue ID"
        data = sample_content(5, BIG)
        for i in range(0, len(data), 10000):
            spool.write(data[i : i + 10000])
        assert spool.size == len(data)
        assert spool.head(40) == data[:40] and spool.head() == data[:65536]
        ids = {store.new_spool().queue_id for _ in range(200)}
        assert len(ids) == 200 and spool.queue_id not in ids, "queue IDs repeat"
        store.commit(spool, draft)
        assert store.content(spool.queue_id).size == len(data)


def check_fields_on_top_and_hold(ctx: Ctx) -> None:
    fields = [b"Authentication-Results: mx; spf=pass\r\n", b"X-Check: 1\r\n\tfolded\r\n"]
    with ctx.store() as store:
        ids = {}
        for size in (0, BIG):
            data = sample_content(6, size)
            spool = store.new_spool()
            spool.write(data)
            with spool.reader(10) as tail:
                assert tail.read() == data[10:], "reader() does not stream what was written"
            for field in fields:
                spool.prepend(field)
            assert spool.size == len(data) + sum(map(len, fields))
            store.commit(spool, sample_envelope(spool.queue_id, 6), hold=size == 0)
            ids[size] = spool.queue_id
            assert read_content(store, spool.queue_id) == b"".join(fields) + data
        states = store.states(list(ids.values()))
        assert states == {ids[0]: QueueState.HOLD, ids[BIG]: QueueState.INCOMING}
        assert store.due(time.time() + 1, 10) == [ids[BIG]], "a message on hold is due"


def check_concurrent_commits(ctx: Ctx, threads: int = 16, per_thread: int = 20) -> None:
    ids: list[str] = []
    lock = threading.Lock()
    with ctx.store() as store:

        def worker(t: int) -> None:
            for i in range(per_thread):
                qid = commit_sample(store, t * per_thread + i)
                with lock:
                    ids.append(qid)

        with concurrent.futures.ThreadPoolExecutor(threads) as pool:
            list(pool.map(worker, range(threads)))
        total = threads * per_thread
        assert len(set(ids)) == total, "duplicate queue IDs"
        assert {e.queue_id for e in store.list()} == set(ids), "a commit did not land"
        assert store.stats()["commits"] >= total


def check_group_commit(ctx: Ctx, n: int = 200) -> None:
    with ctx.store() as store:
        before = store.stats()
        futures = []
        for i in range(n):
            spool = store.new_spool()
            spool.write(sample_content(i))
            futures.append(store.commit_async(spool, sample_envelope(spool.queue_id, i)))
        for f in futures:
            f.result(COMMIT_TIMEOUT)
        after = store.stats()
        commits = after["commits"] - before["commits"]
        batches = after["batches"] - before["batches"]
        assert commits == n, f"{commits} commits for {n} messages"
        assert batches < n, f"no group commit: {batches} batches for {n} messages"
        assert store.counts()[QueueState.INCOMING] == n


# --- the manager's side ----------------------------------------------------------------


def check_claims_are_exclusive(ctx: Ctx) -> None:
    a, b = ctx.nodes
    with ctx.store(a) as store, ctx.store(b) as other:
        assert store.node == a and other.node == b
        ids = [commit_sample(store, n) for n in range(30)]
        assert store.claim(ids[:10]) == ids[:10], "claim did not take incoming entries in order"
        assert store.claim(ids[:10]) == [] and other.claim(ids[:10]) == [], "claimed twice"
        assert all(s == QueueState.ACTIVE for s in store.states(ids[:10]).values())
        assert not set(store.due(time.time() + 1, 100)) & set(ids[:10]), "an active entry is due"
        assert store.move(ids[10:12], QueueState.HOLD, from_states=(QueueState.INCOMING,))
        assert store.claim(ids[10:12]) == [], "a held entry was claimed"
        assert store.claim(ids[12:14], from_states=(QueueState.DEFERRED,)) == []
        assert store.claim(["0NOSUCHENTRY000"]) == []
        # Two nodes race for the same 16 entries: each goes to exactly one.
        race, got = ids[14:], {}
        start = threading.Barrier(2)

        def grab(s: QueueBackend) -> list[str]:
            start.wait(COMMIT_TIMEOUT)
            out: list[str] = []
            for qid in race:
                out += s.claim([qid])
            return out

        with concurrent.futures.ThreadPoolExecutor(2) as pool:
            for name, fut in zip((a, b), [pool.submit(grab, s) for s in (store, other)]):
                got[name] = fut.result(COMMIT_TIMEOUT)
        assert not set(got[a]) & set(got[b]), "both nodes claimed one entry"
        assert sorted(got[a] + got[b]) == sorted(race), "an entry was claimed by nobody"


def check_recovery_releases_only_this_nodes_claims(ctx: Ctx) -> None:
    a, b = ctx.nodes
    with ctx.store(a) as store, ctx.store(b) as other:
        mine = [commit_sample(store, n) for n in range(3)]
        theirs = [commit_sample(store, n) for n in range(3, 5)]
        idle = commit_sample(store, 5)
        assert store.claim(mine) == mine and other.claim(theirs) == theirs
    with ctx.store(a) as store:  # node a restarts after a crash
        report = store.recover()
        assert sorted(report.reactivated) == sorted(mine), report.reactivated
        assert all(s == QueueState.INCOMING for s in store.states(mine).values())
        assert set(mine) <= set(store.due(time.time(), 100)), "released claims not due"
        assert store.states(theirs) == dict.fromkeys(theirs, QueueState.ACTIVE), "stole b's"
        assert store.states([idle]) == {idle: QueueState.INCOMING}
        assert store.recover().reactivated == [], "recover() is not idempotent"
        assert store.claim(mine[:1]) == mine[:1]  # a's again, then b restarts
    with ctx.store(b) as other:
        assert sorted(other.recover().reactivated) == sorted(theirs)
        assert other.states(theirs) == dict.fromkeys(theirs, QueueState.INCOMING)
        assert other.states(mine[:1]) == {mine[0]: QueueState.ACTIVE}, "b released a's claim"


def check_due_is_fair(ctx: Ctx) -> None:
    t0 = time.time() - 1000
    with ctx.store() as store:
        assert store.next_retry() is None
        new = [commit_sample(store, n, at=t0 + n) for n in range(6)]
        old = [commit_sample(store, n, at=t0 - 100) for n in range(10, 16)]
        for i, qid in enumerate(old):  # deferred, due since t0 + i
            store.update(store.load(qid), QueueState.DEFERRED, t0 + i)
        later = commit_sample(store, 20)
        store.update(store.load(later), QueueState.DEFERRED, time.time() + 3600)
        held = commit_sample(store, 21, at=t0 - 500)
        store.move([held], QueueState.HOLD, from_states=(QueueState.INCOMING,))
        busy = commit_sample(store, 22, at=t0 - 500)
        store.claim([busy])
        now = time.time()
        assert store.due(now, 4) == [new[0], old[0], new[1], old[1]], store.due(now, 4)
        assert store.due(now, 5) == [new[0], old[0], new[1], old[1], new[2]], "odd slot"
        assert sorted(store.due(now, 100)) == sorted(new + old), "wrong entries due"
        assert store.due(now, 0) == []
        assert store.next_retry() == t0, "next_retry is not the earliest deferred attempt"
        # Slots one state cannot use go to the other.
        store.move(old[1:], QueueState.HOLD, from_states=(QueueState.DEFERRED,))
        assert store.due(now, 4) == [new[0], old[0], new[1], new[2]]
        assert store.due(t0 + 2.5, 10) == [new[0], old[0], new[1], new[2]], "future entries due"


def check_update_and_move(ctx: Ctx) -> None:
    with ctx.store() as store:
        ids = [commit_sample(store, n) for n in range(4)]
        env = store.load(ids[0])
        env.recipients[0].status = RecipientStatus.DELIVERED
        env.recipients[1].status = RecipientStatus.DEFERRED
        env.recipients[1].diagnostic = "dsn=4.4.1 connect failed"
        env.attempts, env.delay_warned = 2, True
        when = time.time() + 600
        store.update(env, QueueState.DEFERRED, when)
        assert store.load(ids[0]).to_dict() == env.to_dict(), "update() did not keep the envelope"
        entry = store.entry(ids[0])
        assert entry is not None and entry.state == QueueState.DEFERRED
        assert abs(entry.next_attempt - when) < 1e-3
        moved = store.move(
            [ids[2], "0NOSUCHENTRY000", ids[0], ids[1]],
            QueueState.HOLD,
            from_states=(QueueState.DEFERRED, QueueState.INCOMING),
        )
        assert moved == [ids[2], ids[0], ids[1]], moved
        assert store.move([ids[3]], QueueState.HOLD, from_states=(QueueState.HOLD,)) == []
        entry = store.entry(ids[0])
        assert entry is not None and abs(entry.next_attempt - when) < 1e-3, "next_attempt lost"
        soon = time.time() - 5
        assert store.move([ids[0]], QueueState.DEFERRED, soon, from_states=(QueueState.HOLD,))
        entry = store.entry(ids[0])
        assert entry is not None and abs(entry.next_attempt - soon) < 1e-3
        assert store.due(time.time(), 10) == [ids[3], ids[0]]
        for bad in ("nonsense", "ACTIVE "):
            # (a bug in the caller: not a QueueState)
            move = partial(store.move, [ids[3]], cast(QueueState, bad))
            assert fails(partial(move, from_states=(QueueState.INCOMING,)), ValueError), bad
        assert fails(lambda: store.load("0NOSUCHENTRY000")), "load() of a missing entry"


def check_remove_many_is_durable(ctx: Ctx) -> None:
    with ctx.store() as store:
        ids = [commit_sample(store, n, size=BIG if n == 0 else 0) for n in range(5)]
        store.claim(ids[:1])
        store.remove_many([ids[0], "0NOSUCHENTRY000", ids[2], ids[3]])
        store.remove_many([])
        for qid in (ids[0], ids[2], ids[3]):
            assert gone(store, qid), f"{qid} not removed"
    with ctx.store() as store:
        store.recover()
        assert [e.queue_id for e in store.list()] == [ids[1], ids[4]], "removal not durable"
        assert all(gone(store, q) for q in (ids[0], ids[2], ids[3]))
        assert read_content(store, ids[1]) == sample_content(1)


def check_content_streams(ctx: Ctx) -> None:
    with ctx.store() as store:
        big = commit_sample(store, 7, size=BIG)
        want = sample_content(7, BIG)
        content = store.content(big)
        assert content.size == len(want)
        with content.open() as one, content.open() as two:
            first = one.read(1000)
            assert two.read() == want, "a second stream is not independent"
            chunks = [first]
            while chunk := one.read(65536):
                chunks.append(chunk)
        assert b"".join(chunks) == want, "content changed or has extra octets"
        empty = store.new_spool()
        store.commit(empty, sample_envelope(empty.queue_id))
        assert (
            read_content(store, empty.queue_id) == b"" and store.content(empty.queue_id).size == 0
        )
        missing = store.content("0NOSUCHENTRY000")  # cheap: fails only when used
        for use in (missing.open, lambda: missing.size):
            assert fails(use), "content of a missing entry was readable"


def check_queries(ctx: Ctx) -> None:
    with ctx.store() as store:
        assert store.counts() == {s.value: 0 for s in STATES}, store.counts()
        ids = [commit_sample(store, n) for n in range(5)]
        store.move(ids[1:3], QueueState.HOLD, from_states=(QueueState.INCOMING,))
        listed = store.list()
        assert [e.queue_id for e in listed] == sorted(ids), "list() not in queue ID order"
        assert [e.queue_id for e in store.list(QueueState.HOLD)] == ids[1:3]
        counts = store.counts()
        assert counts[QueueState.HOLD] == 2 and counts[QueueState.INCOMING] == 3
        assert set(counts) == {s.value for s in STATES}
        entry = store.entry(ids[0])
        assert entry is not None and entry.envelope is not None
        assert entry.envelope.to_dict() == store.load(ids[0]).to_dict()
        assert store.entry("0NOSUCHENTRY000") is None
        found = store.states([ids[1], "0NOSUCHENTRY000", ids[0]])
        assert found == {ids[1]: QueueState.HOLD, ids[0]: QueueState.INCOMING}


def check_storage_status(ctx: Ctx) -> None:
    with ctx.store() as store:
        store.probe()
        assert not store.health.degraded
        assert store.space.room_for(0)
        assert {"commits", "batches", "failed", "max_batch"} <= set(store.stats())


CHECKS: tuple[Callable[[Ctx], None], ...] = (
    check_commit_survives_a_crash,
    check_failed_commit_records_nothing,
    check_full_disk_records_nothing,
    check_discard_leaves_nothing,
    check_abandoned_spools_vanish,
    check_spool_basics,
    check_fields_on_top_and_hold,
    check_concurrent_commits,
    check_group_commit,
    check_claims_are_exclusive,
    check_recovery_releases_only_this_nodes_claims,
    check_due_is_fair,
    check_update_and_move,
    check_remove_many_is_durable,
    check_content_streams,
    check_queries,
    check_storage_status,
)


def check_store(
    factory: StoreFactory,
    *,
    nodes: tuple[str, str] = ("node-a", "node-b"),
    break_next_commit: BreakCommit | None = None,
) -> None:
    """Run every check, each in its own temporary directory (see the module doc)."""
    for check in CHECKS:
        with tempfile.TemporaryDirectory(prefix="pigeon-store-") as tmp:
            try:
                check(Ctx(factory, Path(tmp) / "queue", nodes, break_next_commit))
            except AssertionError as e:
                raise AssertionError(f"{check.__name__}: {e}") from e
            except Exception as e:
                raise AssertionError(f"{check.__name__}: raised {e!r}") from e
