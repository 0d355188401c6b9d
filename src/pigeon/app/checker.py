"""The checker process: the inbound checks (SPF, DKIM, DMARC, ARC) on a core of their own.

    spawner = CheckerSpawner(config)
    sock = spawner.spawn()              # the server's end, or None (logged)
    ...
    python -c '...checker import main; main()' FD   # what runs on the other end

Contract:
  * `CheckerSpawner(config).spawn()` starts `main()` of this module with the
    server's own interpreter and pigeon from the same place, connected by a
    stream socket pair (the child's end passed as descriptor FD, nothing
    else inherited), sends it `config` at once, and returns the server's
    end; a process that cannot be started is logged and None is returned
    (the checks then run in the server, policy/mailauth/remote.py). Each
    spawn reaps the processes started before that have ended; `close()`
    reaps them all (bounded, then SIGKILL).
  * The role starts it while pigeon is still root, before the privileges are
    dropped (app/lifecycle.py), so a pigeon installed where only root can
    read starts it too. The process imports what the checks need, reads its
    first configuration, builds its checks (as root: it can read what they
    need), then, when started as root with `user` set, becomes `user`
    (pigeon.privileges.switch_user) before any check: it never handles
    mail as root.
  * The process reads frames (policy/mailauth/remote.py) from its end: each
    ("config", Config) builds a new examiner (policy/mailauth/examine.py,
    with its own DNS resolver behind a TTL cache, dns/cache.py, asked as the
    server's), and the first one, once the examiner is built (and the user
    switched), is answered with ("ready",): until then the server checks
    inline, so the messages of the first second after a start do not wait
    for this process to import and build everything (remote.py); each
    ("check", id, facts, policies, content) (remote.py) is
    answered with (id, encode(Examined)), or (id, None, error text) when the
    check raised. Answers go back as each check completes; a check waiting
    for DNS does not hold up the others.
  * It ends when its input ends: the server closed it, or the server died
    (the kernel closes the server's end). It writes nothing to files and
    logs only to its standard error (inherited from the server), for a
    failure to start; a check's error goes back to the server, which logs it.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import os
import pickle
import socket
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pigeon
from pigeon.config.mailauth import CheckPolicies
from pigeon.config.schema import Config
from pigeon.dns.cache import CachingResolver
from pigeon.dns.stub import StubResolver
from pigeon.policy.api import SessionFacts
from pigeon.policy.mailauth import build_examiner
from pigeon.policy.mailauth.eager import start
from pigeon.policy.mailauth.examine import Examiner
from pigeon.policy.mailauth.remote import Coalescer, encode, frame, read_frames
from pigeon.policy.message import MemoryMessage
from pigeon.privileges import PrivilegeError, switch_user
from pigeon.vocab.address import Address

__all__ = ["CheckerSpawner", "main"]

log = logging.getLogger(__name__)

#: What the process runs (not `-m`: pigeon.app imports this module first).
_ENTRY = "import sys; from pigeon.app.checker import main; sys.exit(main())"

#: How long `close()` waits for a process to end after its input closed.
REAP_WAIT = 2.0


class CheckerSpawner:
    """spawn(), close(): see the module contract."""

    def __init__(self, config: Config) -> None:
        self.config = config
        self._children: list[subprocess.Popen[bytes]] = []

    def spawn(self) -> socket.socket | None:
        self._children = [c for c in self._children if c.poll() is None]
        ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
        env = dict(os.environ)
        # pigeon from the same place as the server's, however it was put on the path.
        here = str(Path(pigeon.__file__).resolve().parent.parent)
        env["PYTHONPATH"] = os.pathsep.join(filter(None, [here, env.get("PYTHONPATH", "")]))
        try:
            child = subprocess.Popen(
                [sys.executable, "-c", _ENTRY, str(theirs.fileno())],
                pass_fds=(theirs.fileno(),),
                stdin=subprocess.DEVNULL,
                stdout=subprocess.DEVNULL,
                env=env,
            )
        except OSError as exc:
            log.warning("cannot start the checker process: %s", exc)
            ours.close()
            return None
        finally:
            theirs.close()
        self._children.append(child)
        try:
            # At once, not at the first message: it becomes `user` on reading it.
            ours.sendall(frame(("config", self.config)))
        except OSError as exc:
            log.warning("cannot configure the checker process: %s", exc)
            ours.close()
            return None
        log.info("checker process %d started for the inbound mail checks", child.pid)
        return ours

    def close(self) -> None:
        for child in self._children:
            try:
                child.wait(REAP_WAIT)
            except subprocess.TimeoutExpired:
                child.kill()
                child.wait()
        self._children = []


# -- the process -------------------------------------------------------------


class _Server(asyncio.Protocol):
    """The process's end: frames in, answers out (module contract)."""

    def __init__(self, ended: asyncio.Future[None]) -> None:
        self.ended = ended
        self.out = Coalescer()  # answers ready in one turn of the loop leave together
        self.buffer = bytearray()
        self.examiner: Examiner | None = None
        self.switched = False

    @property
    def transport(self) -> asyncio.Transport | None:
        return self.out.transport

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.out.transport = transport  # type: ignore[assignment]  # uvloop's is no subclass

    def connection_lost(self, exc: Exception | None) -> None:
        if not self.ended.done():
            self.ended.set_result(None)

    def data_received(self, data: bytes) -> None:
        self.buffer += data
        try:
            payloads = read_frames(self.buffer)
        except ValueError as exc:
            print(f"pigeon checker: {exc}", file=sys.stderr)
            assert self.transport is not None
            self.transport.abort()
            return
        for payload in payloads:
            request = pickle.loads(payload)  # from the server, which started us
            if request[0] == "config":
                self._configure(request[1])
            else:
                self._check(*request[1:])

    def _configure(self, config: Config) -> None:
        # Built first: the first one as root, which can read whatever it needs.
        self.examiner = build_examiner(
            config, CachingResolver(StubResolver.from_config(config.delivery))
        )
        if not self.switched:
            self.switched = True
            if os.geteuid() == 0 and config.user:
                try:
                    switch_user(config.user, config.group)
                except PrivilegeError as exc:
                    print(f"pigeon checker: {exc}", file=sys.stderr)
                    assert self.transport is not None
                    self.transport.abort()  # the server checks inline from now on
                    return
            self._send(("ready",))

    def _check(self, ident: int, facts: Any, policies: Any, content: bytes) -> None:
        if self.examiner is None:
            self._send((ident, None, "not configured"))
            return
        message = MemoryMessage(content)
        try:
            ip, helo, sender = facts
            session = SessionFacts(
                ip, helo=helo, sender=None if sender is None else Address(*sender)
            )
            wanted = CheckPolicies(*policies)
            future = start(self.examiner.examine(session, message, message.headers(), wanted))
        except Exception as exc:
            self._send((ident, None, f"{type(exc).__name__}: {exc}"))
            return
        if future.done():
            self._answer(ident, future)
        else:
            future.add_done_callback(functools.partial(self._answer, ident))

    def _answer(self, ident: int, future: asyncio.Future[Any]) -> None:
        try:
            answer: tuple[Any, ...] = (ident, encode(future.result()))
        except Exception as exc:
            answer = (ident, None, f"{type(exc).__name__}: {exc}")
        self._send(answer)

    def _send(self, answer: tuple[Any, ...]) -> None:
        self.out.send(answer)


async def _serve(fd: int) -> None:
    loop = asyncio.get_running_loop()
    ended: asyncio.Future[None] = loop.create_future()
    sock = socket.socket(fileno=fd)
    sock.setblocking(False)
    await loop.create_unix_connection(lambda: _Server(ended), sock=sock)
    await ended


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    try:
        fd = int(args[0])
    except (IndexError, ValueError):
        print("usage: pigeon.app.checker.main FD", file=sys.stderr)
        return 2
    factory: Callable[[], asyncio.AbstractEventLoop]
    try:
        import uvloop  # as the server's loop (app/lifecycle.py)

        factory = uvloop.new_event_loop
    except ImportError:
        factory = asyncio.new_event_loop
    with asyncio.Runner(loop_factory=factory) as runner:
        runner.run(_serve(fd))
    return 0


if __name__ == "__main__":
    sys.exit(main())
