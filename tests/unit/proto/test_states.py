"""The state table covers every verb in every command state."""

from __future__ import annotations

from pigeon.proto.commands import KNOWN
from pigeon.proto.reply import Reply
from pigeon.proto.states import COMMAND_STATES, REFUSALS, TABLE, VERB_FLAGS, State, lookup


def test_every_pair_is_decided_exactly_once() -> None:
    for state in COMMAND_STATES:
        for verb in KNOWN:
            key = (state, verb)
            assert (key in TABLE) != (key in REFUSALS), key
            assert isinstance(lookup(state, verb), (State, Reply))


def test_flags_cover_known_verbs() -> None:
    assert set(VERB_FLAGS) == set(KNOWN)


def test_rset_before_helo_keeps_greeted() -> None:
    assert lookup(State.GREETED, "RSET") is State.GREETED
    assert lookup(State.RCPT, "RSET") is State.READY
