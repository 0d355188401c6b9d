"""Run SMTP transcripts in memory, through the real driver and the real decisions.

Contract:
  * `run_in_memory(transcript)` plays `tests/transcripts/*.smtp` (format:
    pigeon.testing.transcript) against the real connection driver
    (`pigeon.net.smtpd.Connection`) over a `MemoryStream` instead of a
    socket, with the real receive pipeline built by
    `pigeon.policy.build.build_pipeline` from the configuration the
    transcript names, the real login rules (`pigeon.auth.login`) over a real
    account store, and a real queue store (`QueueStore`, fsync off) in a
    temporary directory. Only the network, the TLS handshake and the queue
    manager are absent: no socket, no thread but the store's committer.
  * The configuration is the live runner's (pigeon.testing.transcript_live:
    `LIVE_BASE_CONFIG` plus the TOML of the transcript's `!config` lines:
    hostname "localhost", local domains "localhost" (any mailbox) and
    "known.example" (only "known"), no relay networks, STARTTLS only when the
    transcript turns it on), so both runners ask the same decisions. The
    account is `transcript.TRANSCRIPT_USER` (owning "alice@localhost"). A
    transcript with `auth_required=true` plays against the submission role.
    `!config` settings without a configuration key apply to the session
    only. ETRN is answered only for trusted clients (policy/relay.py): a
    transcript that turns `enable_etrn` on connects from a relay network
    (`relay_networks = ["127.0.0.0/8"]`), and the queue run it asks for finds
    nothing (251), there being no queue manager.
  * Time is the stream's fake clock: `!wait N` moves it N seconds and fires
    the driver's timers at once. `!starttls` completes the handshake the
    driver started after its 220, reporting `transcript.MEMORY_TLS`.
  * `RunResult.messages` are the contents of the messages accepted (250
    after DATA/BDAT), as committed, without our Received: field;
    `!expect-content` compares with the last one.
  * Every wait is bounded (`STEP_LIMIT` seconds of real time per step); a
    difference from the transcript raises `TranscriptMismatch`.
"""

from __future__ import annotations

import asyncio
import atexit
import dataclasses
import shutil
import tempfile
import tomllib
from collections.abc import Coroutine
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pigeon.auth.accounts import AccountStore
from pigeon.auth.login import LoginGate
from pigeon.auth.ratelimit import FailureLimiter, LimitSettings
from pigeon.auth.service import AuthService
from pigeon.config.load import load_config
from pigeon.config.schema import Config
from pigeon.config.session import session_config
from pigeon.net.services import ConnectionContext, ReceiveServices
from pigeon.net.smtp_service import role_session_config
from pigeon.net.smtpd import Connection
from pigeon.obs.maillog import MailLog
from pigeon.policy.build import PolicyDeps, build_pipeline
from pigeon.proto.server import SessionConfig
from pigeon.queue.store import QueueStore
from pigeon.routing.resolve import Router
from pigeon.testing.memstream import MemoryStream
from pigeon.testing.transcript import (
    MEMORY_TLS,
    TRANSCRIPT_USER,
    Expect,
    ExpectClose,
    ExpectContent,
    Send,
    StartTls,
    Transcript,
    TranscriptMismatch,
    Wait,
)
from pigeon.testing.transcript_live import (
    CONFIG_KEYS,
    LIVE_BASE_CONFIG,
    live_config_toml,
    live_role,
)

__all__ = [
    "MemoryRun",
    "RunResult",
    "memory_config",
    "play_with_driver",
    "run_in_memory",
    "transcript_accounts",
]

STEP_LIMIT = 10.0  # seconds of real time the driver may take to answer one step


@dataclass
class RunResult:
    """What an in-memory run observed (for further assertions in tests)."""

    messages: list[bytes] = field(default_factory=list)
    output: bytes = b""
    closed: bool = False


def memory_config(t: Transcript, data_dir: Path) -> Config:
    """The configuration the transcript names (module contract)."""
    document = tomllib.loads(LIVE_BASE_CONFIG + live_config_toml(t))
    document.update(hostname="localhost", data_dir=str(data_dir))
    if t.config.get("enable_etrn"):
        document.setdefault("smtp", {})["etrn"] = True
        document["relay_networks"] = ["127.0.0.0/8"]
    return load_config(None, document)


def _session_config(t: Transcript, config: Config) -> SessionConfig:
    base = role_session_config(config, session_config(config), live_role(t), tls=True, auth=True)
    unmapped = {k: v for k, v in t.config.items() if not CONFIG_KEYS.get(k, ("", ""))[0]}
    unmapped.pop("auth_required", None)  # the role says it
    return dataclasses.replace(base, **unmapped)  # type: ignore[arg-type]


_accounts_dir: Path | None = None


def transcript_accounts() -> Path:
    """One account store for every run of the process (argon2id is slow on purpose)."""
    global _accounts_dir
    if _accounts_dir is None:
        _accounts_dir = Path(tempfile.mkdtemp(prefix="pigeon-transcripts-"))
        atexit.register(shutil.rmtree, _accounts_dir, True)
        with AccountStore.in_data_dir(_accounts_dir).open() as accounts:
            accounts.add(*TRANSCRIPT_USER)
    return _accounts_dir


class _MemoryTls:
    """The TLS provider of the services: the handshake is the stream's."""

    context = None


async def _no_queue_run(node: str) -> int:
    return 0  # no queue manager here: nothing waits for any node


def _without_received(content: bytes) -> bytes:
    """The content after its first header field (our Received:, folded)."""
    lines = content.split(b"\r\n")
    index = 1
    while index < len(lines) and lines[index][:1] in (b" ", b"\t"):
        index += 1
    return b"\r\n".join(lines[index:])


class MemoryRun:
    """Plays a transcript's steps against a driver over `stream` (also POP3's: testing/pop3_transcript.py)."""

    def __init__(self, t: Transcript, stream: MemoryStream, result: RunResult) -> None:
        self.t, self.stream, self.result = t, stream, result
        self.lines: list[str] = []
        self._seen = 0
        self._partial = b""

    def fail(self, lineno: int, msg: str) -> TranscriptMismatch:
        return TranscriptMismatch(f"{self.t.name}:{lineno}: {msg}")

    async def settle(self, lineno: int) -> None:
        try:
            await self.stream.settled(STEP_LIMIT)
        except TimeoutError:
            raise self.fail(lineno, f"the server did not answer within {STEP_LIMIT}s") from None
        out = bytes(self.stream.output[self._seen :])
        self._seen += len(out)
        *complete, self._partial = (self._partial + out).split(b"\r\n")
        self.lines.extend(c.decode("utf-8", "replace") for c in complete)

    async def play(self) -> None:
        stream = self.stream
        await self.settle(0)
        last = 0
        for step in self.t.steps:
            last = step.lineno
            if isinstance(step, Send):
                if stream.closed:
                    raise self.fail(step.lineno, "sending, but the server closed the connection")
                stream.send(step.data)
                await self.settle(step.lineno)
            elif isinstance(step, Wait):
                stream.advance(step.seconds)
                await self.settle(step.lineno)
            elif isinstance(step, Expect):
                if not self.lines:
                    raise self.fail(
                        step.lineno, f"expected {step.text!r}, server sent nothing more"
                    )
                got = self.lines.pop(0)
                if not step.matches(got):
                    raise self.fail(step.lineno, f"expected {step.text!r}, got {got!r}")
            elif isinstance(step, StartTls):
                if not stream.handshake_pending:
                    raise self.fail(
                        step.lineno, "!starttls, but the server did not accept STARTTLS"
                    )
                if self.lines or self._partial:
                    unread = self.lines + [self._partial.decode("utf-8", "replace")]
                    raise self.fail(
                        step.lineno, f"unread server output before the handshake {unread!r}"
                    )
                stream.handshake()
                await self.settle(step.lineno)
            elif isinstance(step, ExpectClose):
                if not stream.closed:
                    raise self.fail(step.lineno, "expected the server to close the connection")
            elif isinstance(step, ExpectContent):
                messages = self.result.messages
                if not messages:
                    raise self.fail(step.lineno, "no message was accepted")
                if messages[-1] != step.data:
                    raise self.fail(step.lineno, f"content {messages[-1]!r} != {step.data!r}")
        if self.lines or self._partial:
            unread = self.lines + [self._partial.decode("utf-8", "replace")]
            raise self.fail(last, f"unexpected server output {unread!r}")
        self.result.closed = stream.closed
        if stream.closed and not any(isinstance(s, ExpectClose) for s in self.t.steps):
            raise self.fail(last, "the server closed the connection unexpectedly")


async def _run(t: Transcript) -> RunResult:
    result = RunResult()
    with tempfile.TemporaryDirectory(prefix="pigeon-transcript-") as tmp:
        config = memory_config(t, Path(tmp))
        store = QueueStore(config.queue_dir, fsync=False)
        store.open()
        store.space.configure(
            min_free=config.queue.min_free, message_size=config.limits.message_size
        )
        limiter = FailureLimiter(LimitSettings.of(config.auth))
        auth = AuthService(
            AccountStore.in_data_dir(transcript_accounts()).open(), limiter, workers=1
        )
        stream = MemoryStream(MEMORY_TLS)
        maillog = MailLog()

        def queued(envelope: object) -> None:
            with store.content(envelope.queue_id).open() as fh:  # type: ignore[attr-defined]
                result.messages.append(_without_received(fh.read()))

        services = ReceiveServices(
            store=store,
            pipeline=build_pipeline(config, PolicyDeps(Router(config), space=store.space)),
            maillog=maillog,
            on_queued=queued,
            logins=LoginGate(auth, maillog, clock=stream.clock),
            tls=_MemoryTls(),
            on_etrn=_no_queue_run,
            greet_pause=config.timeouts.greet_pause,
            postscreen=config.postscreen,
            clock=stream.clock,
        )
        context = ConnectionContext(services, _session_config(t, config), live_role(t))
        try:
            await play_with_driver(t, stream, Connection(stream, context).run(), result)
        finally:
            auth.close()
            store.close()
        result.output = bytes(stream.output)
    return result


async def play_with_driver(
    t: Transcript, stream: MemoryStream, driver: Coroutine[Any, Any, None], result: RunResult
) -> None:
    """Run `driver` (a connection's `run()`) over `stream` while `t` is played; then
    end it: the client's side closed, the driver given STEP_LIMIT seconds."""
    task = asyncio.create_task(driver)
    task.add_done_callback(lambda _: stream.finished())
    try:
        await MemoryRun(t, stream, result).play()
    finally:
        if not task.done():
            stream.send_eof()
            try:
                await asyncio.wait_for(asyncio.shield(task), STEP_LIMIT)
            except TimeoutError:
                task.cancel()


def run_in_memory(transcript: Transcript) -> RunResult:
    """Play `transcript` in memory; raise TranscriptMismatch on a difference."""
    return asyncio.run(_run(transcript))
