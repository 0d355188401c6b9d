"""qmgr/scheduler.py on a fake clock: integer times, no event loop, no store, no waiting.

Each test drives the Scheduler the way the runner does (begin a round, take
fresh mail, scan, fail a store call, finish deliveries) and checks what it
decides: what may start, when to wake, when the storage retry round comes,
what the sweep requeues, which deferred mail comes back for a next hop.
"""

from __future__ import annotations

import pytest

from pigeon.qmgr.results import Settlement
from pigeon.qmgr.scheduler import BACKOFF_CAP, Scheduler
from pigeon.qmgr.settings import QmgrSettings
from pigeon.queue.model import Envelope, Recipient
from pigeon.vocab import Nexthop

HOP = Nexthop("smtp", "remote.test")
OTHER = Nexthop("smtp", "other.test")


def sched(**kw) -> Scheduler:
    kw.setdefault("run_interval", 60)
    kw.setdefault("store_retry", 1)
    kw.setdefault("probe_interval", 30)
    return Scheduler(QmgrSettings(**kw))


def env(qid: str) -> Envelope:
    return Envelope(qid, "s@src.test", [Recipient("r@remote.test")])


def settlement(qid: str) -> Settlement:
    return Settlement(env(qid), [], None, False, 0, 0)  # type: ignore[arg-type]


# --- the active window and the fast path ------------------------------------------------


def test_fresh_mail_starts_up_to_the_window_oldest_first():
    s = sched(concurrency=3)
    for q in "ABCDE":
        s.submit(env(q))
    batch = s.take_fresh()
    assert list(batch) == ["A", "B", "C"]
    s.started(batch)
    assert s.free_slots() == 0 and s.take_fresh() == {}
    assert [e.queue_id for e in s.fresh] == ["D", "E"]  # they wait in memory
    s.finished("A")
    assert list(s.take_fresh()) == ["D"]


def test_fresh_mail_already_owned_is_skipped():
    s = sched()
    s.started(["A"])  # a scan took it first
    s.requeue.add("B")  # a failed write left it to requeue
    s.unsaved["C"] = settlement("C")  # its outcome waits to be written
    for q in "ABCD":
        s.submit(env(q))
    assert list(s.take_fresh()) == ["D"]
    assert not s.fresh


def test_the_fifo_is_bounded_and_overflow_asks_for_a_scan():
    s = sched(fresh_limit=2)
    s.scan_needed = False
    s.submit(env("A"))
    s.submit(env("B"))
    assert not s.scan_needed
    s.submit(env("C"))  # its row waits in the database
    assert s.scan_needed and [e.queue_id for e in s.fresh] == ["A", "B"]


def test_a_scan_drops_the_fifo_and_skips_what_is_owned():
    s = sched(concurrency=10)
    s.submit(env("A"))
    s.started(["X"])
    s.requeue.add("R")
    free, busy = s.begin_scan()
    assert (free, busy) == (9, frozenset({"X", "R"}))
    assert not s.fresh and not s.scan_needed  # due() finds the FIFO's rows
    s.end_scan(["A", "B"], full=False, next_retry=500)
    assert s.inflight == {"X", "A", "B"} and s.next_retry == 500 and not s.scan_needed


def test_a_scan_that_filled_every_slot_asks_for_another():
    s = sched(concurrency=2)
    s.begin_scan()
    s.end_scan(["A", "B"], full=True, next_retry=None)
    assert s.scan_needed


# --- when to look, when to wake -------------------------------------------------------


def test_idle_sleeps_until_run_interval_then_scans_and_sweeps():
    s = sched(run_interval=60)
    s.begin_scan()
    s.end_scan([], full=False, next_retry=None)
    assert s.sleep_time(1000) == 60
    s.timed_out()
    assert s.scan_needed and s.sweep_needed and s.sleep_time(1060) == 0


def test_wakes_for_the_cached_retry_time_and_scans_then():
    s = sched(run_interval=60)
    s.begin_scan()
    s.end_scan([], full=False, next_retry=1030)
    assert s.sleep_time(1000) == 30
    s.begin_round(1029, degraded=False, quiet=3)
    assert not s.scan_needed
    s.begin_round(1030, degraded=False, quiet=3)
    assert s.scan_needed and s.sleep_time(1030) == 0


def test_a_deferral_lowers_the_cached_retry_even_during_a_scan():
    s = sched()
    s.note_retry(2000)
    s.begin_scan()
    s.note_retry(1500)  # written while the scan read
    s.end_scan([], full=False, next_retry=1800)  # the scan did not see it
    assert s.next_retry == 1500


def test_a_full_window_sleeps_until_a_delivery_ends_not_for_the_retry_time():
    s = sched(concurrency=1, run_interval=60)
    s.begin_scan()
    s.end_scan(["A"], full=False, next_retry=1010)
    s.submit(env("B"))
    assert s.sleep_time(1000) == 60  # the finishing delivery wakes the runner
    s.finished("A")
    assert s.sleep_time(1000) == 0  # B can start now


def test_nudge_and_submit_mean_work_now():
    s = sched()
    s.begin_scan()
    s.end_scan([], full=False, next_retry=None)
    assert s.sleep_time(0) == 60
    s.nudge()
    assert s.sleep_time(0) == 0
    s.begin_scan()
    s.submit(env("A"))
    assert s.sleep_time(0) == 0


# --- the storage back-off -------------------------------------------------------------


def test_storage_failures_back_off_doubling_to_the_cap_and_hold_all_work():
    s = sched(store_retry=1)
    now, rounds = 100, []
    for _ in range(7):
        s.storage_failed(now)
        assert s.held(now) and s.sleep_time(now) == s.storage_due - now
        rounds.append(s.storage_due - now)
        now = s.storage_due
        assert s.storage_round_due(now)
        s.begin_storage_round()
    assert rounds == [1, 2, 4, 8, 16, 16, 16]
    assert BACKOFF_CAP == 16


def test_failures_during_one_wait_do_not_push_the_round_back():
    s = sched(store_retry=1)
    s.storage_failed(100)
    s.storage_failed(100.5)  # another call failed meanwhile
    assert s.storage_due == 101 and s.held_until == 101


def test_a_round_that_writes_everything_resets_the_delay_and_sweeps():
    s = sched(store_retry=1)
    for t in (100, 101, 103):
        s.storage_failed(t)
        s.begin_storage_round()
    assert s.storage_delay == 8
    s.storage_writes_ok()
    assert s.storage_delay == 1 and s.sweep_needed
    assert s.held(106) and not s.held(107)  # the last round was due at 107
    s.storage_failed(110)
    assert s.storage_due == 111


def test_degraded_storage_gets_a_round_to_notice_the_recovery():
    s = sched(store_retry=1)
    s.begin_round(100, degraded=True, quiet=3)
    assert s.storage_due == 103 and not s.held(100)  # a probe, no hold
    s.begin_round(101, degraded=True, quiet=3)
    assert s.storage_due == 103  # not pushed back
    s.begin_storage_round()
    s.recheck_storage(103, quiet=3)
    assert s.storage_due == 106


def test_the_sweep_waits_for_the_hold_then_requeues_what_nobody_owns():
    s = sched()
    s.sweep_needed = True
    s.storage_failed(100)
    assert not s.sweep_due(100)
    assert s.sweep_due(101)
    s.started(["A"])
    s.unsaved["B"] = settlement("B")
    assert s.lost(["A", "B", "C", "D"]) == ["C", "D"]
    assert s.to_requeue() == ["C", "D"]
    s.finished("A")
    s.requeue.add("A")  # a requeue asked while it was in flight...
    s.started(["A"])  # ...and it runs again: a delivery owns it
    assert s.to_requeue() == ["C", "D"]
    s.requeued(["C", "D"])
    assert not s.requeue and s.scan_needed


@pytest.mark.parametrize(
    "age,back",
    [(None, 1), (0, 1), (2, 1), (8, 2), (40, 10), (1000, 16)],
)
def test_maildir_faults_come_back_soon_then_after_a_quarter_of_their_age(age, back):
    s = sched(store_retry=1)
    since = None if age is None else 5000 - age
    assert s.mailbox_retry_at(5000, since) == 5000 + back


# --- next hops ---------------------------------------------------------------------------


def test_a_hop_that_is_back_makes_its_waiting_mail_due_now():
    s = sched()
    for q in ("A", "B", "C"):
        s.waits_for(HOP, q)
    s.waits_for(OTHER, "X")
    assert s.hop_is_back(HOP, "B") == ["A", "C"]  # B itself got through
    assert s.has_waiting_work() and s.sleep_time(0) == 0
    ids = s.waiting_due(0)
    assert ids == ["A", "C"]
    s.waiting_moved(ids, ["A"], 0)  # C was delivered or held meanwhile
    assert not s.due_now and s.scan_needed and s.next_retry == 0
    assert s.hop_is_back(OTHER, "Y") == ["X"]


def test_one_probe_per_idle_hop_every_probe_interval():
    s = sched(probe_interval=30)
    s.waits_for(HOP, "A")
    s.waits_for(HOP, "B")
    s.waits_for(OTHER, "X")
    s.begin_scan()  # the start-up scan is over: nothing else to do
    for t in (1, 2, 3):
        s.dests.record(HOP, t, reached=False, reason="refused")
    assert s.dests.is_dead(HOP, 10)
    assert s.waiting_due(10) == []  # the first look only starts the clock
    assert s.sleep_time(10) == 30
    assert s.dests.acquire(OTHER)  # a delivery in flight: no probe for OTHER
    assert s.waiting_due(39) == []  # not yet
    assert s.waiting_due(40) == ["A"]  # one message, the oldest
    assert not s.dests.is_dead(HOP, 40)  # the probe gets an attempt
    s.waiting_moved(["A"], ["A"], 40)
    assert s.next_probe == 70


def test_no_waiting_mail_no_probe_timer():
    s = sched()
    s.waits_for(HOP, "A")
    s.waiting_due(0)
    assert s.next_probe == 30
    s.removed("A")
    s.waiting_due(5)
    assert s.next_probe is None and not s.has_waiting_work()
