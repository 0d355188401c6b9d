"""qmgr/clusterlimit.py: cluster-wide slots kept ("parked") for the node's
next delivery to the same destination, given back when idle or old, and
never reused once their database session is gone.

The slot table here is an in-memory `ClusterSlots` (qmgr/ports.py) that
counts its calls; the PostgreSQL one (store/pg/slots.py) is tested in
test_cluster_leases.py against a real server."""

from __future__ import annotations

import asyncio

from pigeon.qmgr import clusterlimit
from pigeon.qmgr.clusterlimit import ClusterLimit


class Table:
    """Slots shared by several nodes: (destination, number) -> owner."""

    def __init__(self) -> None:
        self.owner: dict[tuple[str, int], str] = {}


class Slots:
    """One node's view of the table, counting its 'database' calls."""

    def __init__(self, table: Table, name: str) -> None:
        self.table, self.name = table, name
        self.acquires = self.releases = 0
        self.session = 0

    def try_acquire(self, destination: str, limit: int):
        self.acquires += 1
        for n in range(limit):
            if (destination, n) not in self.table.owner:
                self.table.owner[destination, n] = self.name
                return (destination, n, self.session)
        return None

    def release(self, slot) -> None:
        self.releases += 1
        if slot[2] == self.session:
            self.table.owner.pop(slot[:2], None)

    def is_held(self, slot) -> bool:
        return slot[2] == self.session

    def drop_connection(self) -> None:
        """The server ended the session: every slot it held is free."""
        self.session += 1
        for key, who in list(self.table.owner.items()):
            if who == self.name:
                del self.table.owner[key]


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


async def _use(limit: ClusterLimit, dest: str = "smtp:[remote.test]") -> None:
    async with limit.hold(dest):
        await asyncio.sleep(0)


def test_back_to_back_deliveries_reuse_one_slot_without_the_database():
    slots, clock = Slots(Table(), "a"), Clock()
    limit = ClusterLimit(slots, 2, clock)

    async def scenario() -> None:
        for _ in range(50):
            await _use(limit)
            clock.now += 0.001
        assert slots.acquires == 1 and slots.releases == 0
        assert limit.parked() == 1

    asyncio.run(scenario())


def test_a_parked_slot_goes_back_once_idle():
    table = Table()
    slots = Slots(table, "a")
    limit = ClusterLimit(slots, 1)  # the real clock: the reaper runs on the loop

    async def scenario() -> None:
        await _use(limit)
        assert table.owner, "parked: still held"
        await asyncio.sleep(clusterlimit.PARK_IDLE * 3)
        assert limit.parked() == 0
        assert not table.owner, "an idle parked slot was given back"
        assert slots.releases == 1

    asyncio.run(scenario())


def test_a_slot_held_longer_than_keep_max_goes_back_so_other_nodes_get_a_turn():
    table, clock = Table(), Clock()
    a, b = Slots(table, "a"), Slots(table, "b")
    la, lb = ClusterLimit(a, 1, clock), ClusterLimit(b, 1, clock)

    async def scenario() -> None:
        await _use(la)
        clock.now += clusterlimit.KEEP_MAX / 2
        await _use(la)  # reused: not yet KEEP_MAX old
        assert a.acquires == 1 and a.releases == 0
        clock.now += clusterlimit.KEEP_MAX
        await _use(la)  # reused once more, then given back: too old to park
        assert a.releases == 1 and not table.owner
        await _use(lb)  # node b finds it free at once
        assert b.acquires == 1 and table.owner

    asyncio.run(scenario())


def test_a_parked_slot_of_a_dropped_connection_is_not_reused():
    table = Table()
    a, b = Slots(table, "a"), Slots(table, "b")
    la, lb = ClusterLimit(a, 1), ClusterLimit(b, 1)  # real clocks: b's slot goes back when idle

    async def scenario() -> None:
        await _use(la)
        a.drop_connection()  # the server freed the parked slot
        async with lb.hold("smtp:[remote.test]"):
            # Node b holds the only slot: node a must wait, not reuse its stale one.
            waiter = asyncio.ensure_future(_use(la))
            await asyncio.sleep(clusterlimit.POLL_MIN * 2)
            assert not waiter.done(), "a stale parked slot let two nodes in at once"
        await asyncio.wait_for(waiter, 5)
        assert a.acquires >= 2

    asyncio.run(scenario())


def test_parked_slots_count_against_the_limit():
    table, clock = Table(), Clock()
    a, b = Slots(table, "a"), Slots(table, "b")
    la, lb = ClusterLimit(a, 2, clock), ClusterLimit(b, 2, clock)

    async def scenario() -> None:
        async with la.hold("d"), la.hold("d"):
            pass
        assert la.parked() == 2
        got = await asyncio.to_thread(b.try_acquire, "d", 2)
        assert got is None, "a parked slot is still held"
        # Node a's own deliveries take the parked ones, no database call.
        async with la.hold("d"), la.hold("d"):
            assert a.acquires == 2
        assert lb.parked() == 0

    asyncio.run(scenario())
