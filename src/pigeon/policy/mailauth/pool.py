"""Several checker processes behind one front: the checks of messages that
arrive together run at the same time.

Why: sessions tend to move in step (a group commit answers a batch of them
at once, and their next messages end together), so their checks reach the
checker process together and queue there: with one process the last of ten
waits for nine others (docs/benchmarks.md, "Issue 13"). More processes
on more cores check them at once. `[mail_auth] checkers` says how many;
the default is one: on a two-core machine, where the server and the
client of the benchmark take the cores, two measured slower than one (the
server's answers coalesce less), so this is for machines with cores to
spare.

Contract:
  * `CheckerPool(members)`: `members` are `RemoteChecks`
    (policy/mailauth/remote.py), each the server's end of its own checker
    process. The pool has their interface: `configure(config)` tells every
    one; `examine(...)` hands the message to the ready member with the
    fewest checks in flight (the first on a tie), or, when none is ready
    yet, to the first member, which checks inline until its process is
    (remote.py: a message never waits for a process to start, and is never
    accepted unchecked because of one); a member without a process is
    started in the background meanwhile (`RemoteChecks.prepare`); `await wait_ready(timeout)` is
    True when every member is ready within `timeout`; `answered` is the
    sum of theirs; `close()` ends them all.
  * Each member replaces its own process when it fails (remote.py), so one
    process's trouble neither stops nor slows the others.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence

from pigeon.config.mailauth import CheckPolicies
from pigeon.config.schema import Config
from pigeon.policy.api import Message, SessionFacts
from pigeon.policy.mailauth.examine import Examined, Examiner
from pigeon.policy.mailauth.remote import RemoteChecks

__all__ = ["CheckerPool"]


class CheckerPool:
    """configure(), examine(), wait_ready(), close(): see the module contract."""

    def __init__(self, members: Sequence[RemoteChecks]) -> None:
        if not members:
            raise ValueError("a checker pool needs at least one member")
        self.members = tuple(members)

    @property
    def answered(self) -> int:
        return sum(m.answered for m in self.members)

    def configure(self, config: Config) -> None:
        for member in self.members:
            member.configure(config)

    def _choose(self) -> RemoteChecks:
        best: RemoteChecks | None = None
        for member in self.members:
            load = member.in_flight
            if load is None:
                member.prepare()  # not ready: started (or connected) meanwhile
                continue
            if best is None or load < (best.in_flight or 0):
                best = member
        return best if best is not None else self.members[0]

    async def examine(
        self,
        session: SessionFacts,
        message: Message,
        headers: Sequence[tuple[str, str]],
        policies: CheckPolicies,
        *,
        fallback: Examiner,
    ) -> Examined:
        return await self._choose().examine(session, message, headers, policies, fallback=fallback)

    async def wait_ready(self, timeout: float) -> bool:
        results = await asyncio.gather(*(m.wait_ready(timeout) for m in self.members))
        return all(results)

    def close(self) -> None:
        for member in self.members:
            member.close()
