"""Three nodes, 10,000 messages, one node SIGKILLed midway (issue 17, item 4).

Three `pigeon serve` nodes share one database (the session's throw-away
cluster, pigeon.testing.postgres) and relay everything to smtp-sink, which
records every copy it accepted. A load of persistent SMTP sessions spread
over the three (pigeon.testing.clusterload) sends 10,000 unique messages,
each retried until a node said 250. Once half are acknowledged, the third
node is killed with SIGKILL while it holds claims (deliveries under way);
its claims come back to the others when their lease (`queue.lease`, 5 s
here; qmgr/leases.py) expires, and the sessions it had go to the others.

What must hold:
  * all 10,000 are acknowledged and delivered: none lost;
  * copies more than one are reported, and bounded by what was in flight
    at the kill, one recipient each:
      - the killed node's claims, read from the database at the kill: a
        delivery the sink finished but whose outcome the node never wrote
        is made again by the node that takes the entry over;
      - the messages the load was sending to it whose answer never came
        (`report.ambiguous`): the node may have committed one without
        answering, and the client sends it again elsewhere.
    Each duplicated id must be one of those, and no id has more copies
    than 1 + the ways it was in flight.

"At the kill" is exact: the node is stopped (SIGSTOP) first, its claims
are read while it can change nothing, then SIGKILL ends it. When it holds
no claim at that moment it is continued and tried again (bounded), so the
takeover is always exercised.
"""

from __future__ import annotations

import os
import signal
import time

import pytest
from cluster_helpers import claimed_ids, kill_with_children, queue_rows, start_nodes, wait_delivered

from pigeon.testing.clusterload import ClusterLoad
from pigeon.testing.live import free_port
from pigeon.testing.sink import SmtpSink

pytestmark = [pytest.mark.e2e, pytest.mark.slow]

COUNT = 10_000  # the floor
NODES = ("kill-a", "kill-b", "kill-c")
CONNECTIONS = 2  # client sessions per node


def stop_while_claiming(node, name: str, dsn: str, tries: int = 200) -> list[str]:
    """SIGSTOP `node` at a moment it holds claims; its claims' load ids."""
    for _ in range(tries):
        os.kill(node.pid, signal.SIGSTOP)
        claims = claimed_ids(dsn, name)
        if claims:
            return claims
        os.kill(node.pid, signal.SIGCONT)
        time.sleep(0.05)
    return []


def test_sigkill_of_one_node_of_three_loses_nothing(tmp_path, postgres):
    hop = free_port()
    with SmtpSink("127.0.0.1", hop) as sink:
        dsn, nodes = start_nodes(tmp_path, postgres, NODES, hop, lease="5s")
        victim, name = nodes[2], NODES[2]
        load = ClusterLoad(
            [("127.0.0.1", n.port) for n in nodes],
            "user@down.test",
            count=COUNT,
            connections=CONNECTIONS,
            timeout=60.0,
        )
        with load:
            assert load.wait_acked(COUNT // 2, timeout=600), load.report.summary()
            claims = stop_while_claiming(victim, name, dsn)
            kill_with_children(victim)
            acked_at_kill = load.acked_count()
            assert claims, "the node never held a claim: nothing was in flight to take over"
            done = load.wait_done(timeout=900)
        report = load.stop()
        logs = "".join(n.log()[-3000:] for n in nodes)
        assert done, report.summary() + logs
        assert not report.rejected, f"5xx answers: {report.rejected[:5]}"

        got = wait_delivered(sink.dump_dir, load.ids(), dsn, timeout=300)
        lost = sorted(set(load.ids()) - set(got))
        assert len(report.acked) == COUNT
        assert not lost, f"{len(lost)} messages lost: {lost[:10]}\n{logs}"
        assert not queue_rows(dsn), "the killed node's claims were not taken over"

        claimed, unanswered = set(claims), set(report.ambiguous)
        extra = {i: n - 1 for i, n in got.items() if n > 1}
        unexplained = {i: n for i, n in extra.items() if n > (i in claimed) + (i in unanswered)}
        print(
            f"\nkill: {report.summary()}; killed after {acked_at_kill} acknowledged, holding "
            f"{len(claims)} claims, {len(unanswered)} messages unanswered; delivered "
            f"{sum(got.values())} copies of {len(got)} messages: duplicates "
            f"{sum(extra.values())} (bound {len(claimed | unanswered)}; from claims "
            f"{len(set(extra) & claimed)}, from unanswered {len(set(extra) & unanswered)})"
        )
        assert not unexplained, f"duplicates not in flight at the kill: {unexplained}"
