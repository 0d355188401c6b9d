"""pigeon.testing.sandbox: its mounts stay in its own namespace, even when unshare is slow.

The sandbox enters the holder's mount namespace with nsenter. Entering it
before the holder's `unshare` has run enters the caller's namespace, and the
overlay on /etc and the tmpfs over /root then land on the machine itself:
that happened once on a loaded machine. A holder that waits before it
unshares reproduces the race every time.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from pigeon.testing.sandbox import Sandbox, require_sandbox

pytestmark = pytest.mark.e2e


def _mounts_on_etc() -> int:
    return sum(
        1
        for line in Path("/proc/self/mountinfo").read_text().splitlines()
        if line.split()[4] == "/etc"
    )


def test_a_slow_unshare_does_not_put_the_sandbox_mounts_on_the_machine(tmp_path):
    tools = require_sandbox()
    slow = tmp_path / "slow-unshare"
    slow.write_text(f'#!/bin/sh\nsleep 1\nexec {tools["unshare"]} "$@"\n')
    slow.chmod(0o755)
    before = _mounts_on_etc()
    box = Sandbox()
    box.tools = dict(box.tools, unshare=str(slow))
    box.start()
    try:
        assert _mounts_on_etc() == before, "the sandbox mounted /etc on the machine"
        inside = box.run(["sh", "-c", "grep -c ' /etc ' /proc/self/mountinfo"])
        assert int(inside.stdout) == before + 1  # its overlay, inside only
        box.run(["sh", "-c", "mkdir -p /etc/pigeon && touch /etc/pigeon/sandbox-probe"])
        assert not os.path.exists("/etc/pigeon/sandbox-probe")
    finally:
        box.close()
    assert _mounts_on_etc() == before
