"""The index of mail waiting for a next hop (qmgr/waiting.py): pure bookkeeping."""

from __future__ import annotations

import pytest

from pigeon.qmgr.waiting import NexthopWaiters, waits_for_hop


def test_waiting_statuses_are_network_and_routing_ones():
    assert waits_for_hop("4.4.1") and waits_for_hop("4.4.2")
    assert not waits_for_hop("4.2.2") and not waits_for_hop("4.7.1")


def test_waiters_by_hop_oldest_first_bounded_and_forgotten():
    w = NexthopWaiters(limit=3)
    for q in "abcd":
        w.add("hop1", q)
    w.add("hop2", "x")
    assert len(w) == 4  # "a" fell off hop1's list
    assert list(w.probes(lambda h: h == "hop2", lambda q: q == "b")) == [("hop1", "c")]
    w.forget("c")
    assert w.take("hop1") == ["b", "d"] and w.take("hop1") == []
    w.forget("x")
    assert not w


@pytest.mark.parametrize("busy", [True, False])
def test_a_busy_hop_gets_no_probe(busy):
    w = NexthopWaiters()
    w.add("hop", "q1")
    assert list(w.probes(lambda h: busy, lambda q: False)) == ([] if busy else [("hop", "q1")])
