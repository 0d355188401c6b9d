"""policy/message.py: a disk error reading the spooled message back is a StoreError."""

from __future__ import annotations

import pytest

from pigeon.policy.message import SpoolMessage
from pigeon.vocab.errors import StoreError


class FailingSpool:
    queue_id = "Q1"
    size = 10

    def head(self, limit: int) -> bytes:
        raise OSError(5, "Input/output error")

    def reader(self, start: int):
        raise OSError(5, "Input/output error")


def test_a_failing_read_is_a_storage_fault_not_an_oserror():
    message = SpoolMessage(FailingSpool(), header_limit=1000, eight_bit=False)  # type: ignore[arg-type]
    with pytest.raises(StoreError) as failed:
        message.headers()
    assert failed.value.storage_fault and "Input/output error" in str(failed.value)
