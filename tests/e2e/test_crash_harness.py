"""Crash safety under load (issue 6, part 1), CI size: `bench/crash_harness.py`
with 20+ SIGKILL cycles, short cycles, a few hundred messages.

The harness (see its docstring) sends numbered messages from concurrent
clients to local (Maildir) and remote (a fake peer behind a transport)
recipients, SIGKILLs pigeon at random moments, restarts it, and finally
matches every delivered copy against the client-side log of 250s. The only
pass is 0 lost, 0 truncated, duplicates only for deliveries in flight at a
kill. The long run is `make crash`.
"""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import pytest

pytestmark = [pytest.mark.e2e, pytest.mark.slow]

HARNESS = Path(__file__).resolve().parents[2] / "bench" / "crash_harness.py"


def load_harness():
    spec = importlib.util.spec_from_file_location("crash_harness", HARNESS)
    module = importlib.util.module_from_spec(spec)
    assert spec.loader is not None
    sys.modules[spec.name] = module  # dataclasses look their module up
    spec.loader.exec_module(module)
    return module


@pytest.mark.parametrize("workers", [1, 2])
def test_twenty_sigkill_cycles_lose_nothing_acknowledged(tmp_path, workers):
    # workers=2: the kill hits the main process; its worker dies with it.
    harness = load_harness().Harness(
        tmp_path,
        cycles=20,
        clients=6,
        messages=800,
        seed=20260601,
        cycle_time=0.8,
        drain_timeout=90.0,
        verbose=False,
        workers=workers,
    )
    summary = harness.run()
    print(summary.text())
    assert summary.cycles >= 20
    assert summary.acked >= 200, summary.text()
    assert summary.lost == 0, summary.text()
    assert summary.truncated == 0, summary.text()
    assert summary.duplicates_not_in_flight == 0, summary.text()
    assert summary.ok, summary.text()
    # The kills really landed where they should: inside DATA and inside deliveries.
    assert summary.kills_with_active_entries > 0, summary.text()
