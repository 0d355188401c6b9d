"""queue/schedule.py: the fairness of the store's due() between new and deferred mail."""

from __future__ import annotations

import pytest

from pigeon.queue.schedule import split_slots


@pytest.mark.parametrize(
    "free,inc,dfr,want",
    [
        (10, 100, 100, (5, 5)),  # both busy: half each
        (10, 2, 100, (2, 8)),  # incoming cannot use its half: deferred takes it
        (10, 100, 3, (7, 3)),
        (10, 0, 0, (0, 0)),
        (1, 5, 5, (1, 0)),  # the odd slot goes to new mail
        (0, 5, 5, (0, 0)),
        (9, 100, 100, (5, 4)),
    ],
)
def test_split_slots(free, inc, dfr, want):
    assert split_slots(free, inc, dfr) == want
