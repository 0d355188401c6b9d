"""One IMAP session's state and its command dispatch (the driver, connection.py, feeds it bytes).

Contract:
  * State (RFC 9051 §3) is the sans-IO core's `pigeon.proto.imap.state.Session`
    (`self.proto`): which commands each state allows (elsewhere the answer is
    its `Refusal`, BAD or NO, and the session goes on; passwords before TLS
    are NO [PRIVACYREQUIRED]; writes to an EXAMINEd mailbox NO [READ-ONLY]),
    the capability list, what ENABLE turned on.
  * The reader (pigeon.proto.imap.reader) turns octets into events; each is
    acted on before the next is read, so a mode change (IDLE, AUTHENTICATE,
    STARTTLS) applies to the very next line even when pipelined. What the
    reader refuses (grammar, a literal over `[imap] max_literal`, a line
    too long) gets its BAD/NO here; a non-synchronizing literal that is too
    big gets BAD and BYE (RFC 7888 §4): its octets are never read.
  * Mailbox I/O (pigeon.mailstore, blocking) runs in a worker thread
    (`io()`); one command at a time per session, so its Folder handle is
    only ever used by one thread at once. The exception: the check that the
    selected folder is up to date (`Folder.up_to_date`: a few stat calls)
    runs on the loop, and only a folder that may have changed is synced in
    a thread.
  * The selected mailbox is a `Folder` handle: its view is the session's
    (sequence numbers change only at `sync()`), and is brought up to date
    (`sync_and_tell()`) after every command but FETCH, STORE and SEARCH,
    which must not be followed by EXPUNGE responses (RFC 9051 §7.5.1), and
    at NOOP, CHECK, IDLE: the client gets EXPUNGE, EXISTS and FETCH (FLAGS)
    for what other sessions and programs changed (RFC 9051 §7). These come
    before the command's tagged answer (`tagged()` holds it while a command
    runs), so the client knows the mailbox as it is when the command ends.
  * Memory: a session keeps a handful of fields; the messages live in the
    Folder state every session of that Maildir shares.
"""

from __future__ import annotations

import asyncio
import bisect
import logging
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, TypeVar

from pigeon.mailstore.errors import FolderError
from pigeon.proto.imap import response as R
from pigeon.proto.imap.commands import Command
from pigeon.proto.imap.reader import (
    AuthResponse,
    Bad,
    CommandReader,
    Continue,
    IdleDone,
    LineTooLong,
    TooBig,
)
from pigeon.proto.imap.state import Refusal, State
from pigeon.proto.imap.state import Session as ProtoState
from pigeon.proto.sasl import MECHANISMS

if TYPE_CHECKING:
    from pigeon.mailstore.mailbox import Changes, Folder, UserMail

__all__ = ["Handlers", "ImapSession", "msn_of"]

log = logging.getLogger("pigeon.imap")

T = TypeVar("T")

#: Commands after which no EXPUNGE may be sent (RFC 9051 §7.5.1; their UID forms may).
_NO_EXPUNGE_AFTER = frozenset({"FETCH", "STORE", "SEARCH"})


Handler = Callable[["ImapSession", Command], Awaitable[None]]


@dataclass(frozen=True)
class Handlers:
    """What the session runs: the commands by name, and the lines of an IDLE or AUTHENTICATE."""

    commands: Mapping[str, Handler]
    capabilities: Callable[[ImapSession], list[str]]
    idle_done: Callable[[ImapSession, bool], Awaitable[None]]
    auth_response: Callable[[ImapSession, AuthResponse], Awaitable[None]]


class ImapSession:
    """One session (module contract)."""

    __slots__ = (
        "conn",
        "handlers",
        "reader",
        "proto",
        "account",
        "user",
        "folder",
        "idling",
        "idle_started",
        "idle_tag",
        "tls_requested",
        "auth",
        "login",
        "executing",
        "_watch",
        "_news",
        "_held",
    )

    def __init__(self, conn: Any, handlers: Handlers) -> None:
        self.conn = conn  # readers.imap.connection.ImapConnection
        self.handlers = handlers
        self.reader = CommandReader(conn.settings.imap.max_literal)
        settings = conn.settings
        self.proto = ProtoState(
            tls=conn.role == "imaps",
            now=conn.clock(),
            autologout=settings.imap.autologout,
            preauth_timeout=settings.imap.login_timeout,
            mechanisms=tuple(m for m in settings.mechanisms if m in MECHANISMS),
            starttls_available=settings.tls is not None,
        )
        self.account = ""  # the account's name once logged in
        self.user: UserMail | None = None
        self.folder: Folder | None = None
        self.idling = False
        self.idle_started = 0.0
        self.idle_tag = ""
        self.tls_requested = False
        self.auth: Any = None  # an AUTHENTICATE exchange in progress (cmd_auth.py)
        self.login: Any = None  # readers.login.ReaderLogin, made at the first login
        self.executing = False
        self._watch: Any = None  # mailstore.notify.Watch of the selected Maildir
        self._news = False
        #: A running command's tagged answer, kept for after the updates.
        self._held: list[bytes] | None = None

    # --- what the driver asks --------------------------------------------------------

    @property
    def logged_in(self) -> bool:
        return self.proto.state in (State.AUTHENTICATED, State.SELECTED)

    @property
    def readonly(self) -> bool:
        return self.proto.readonly

    @property
    def condstore(self) -> bool:
        return self.proto.condstore

    @property
    def utf8(self) -> bool:
        return self.proto.utf8

    @property
    def rev2(self) -> bool:
        return self.proto.rev2

    @property
    def between_commands(self) -> bool:
        """Nothing half-read or running (the stop's BYE may go now; an IDLE counts)."""
        return not self.executing and not self.reader.in_command and self.auth is None

    def has_news(self) -> bool:
        return self._news

    async def idle_news(self) -> None:
        """Woken during IDLE (new mail announced, or the slow poll): tell the client."""
        await self.sync_and_tell()

    def write(self, data: bytes) -> None:
        self.conn.write(data)

    def tagged(self, tag: str, status: str, text: str, code: str | None = None) -> None:
        """The tagged answer; during a command, written after its updates (run_command)."""
        line = R.tagged(tag, status, text, code)
        if self._held is not None:
            self._held.append(line)
        else:
            self.write(line)

    async def io(self, fn: Callable[..., T], *args: Any) -> T:
        """Blocking mailbox work, off the event loop (module contract)."""
        return await asyncio.to_thread(fn, *args)

    def greet(self) -> None:
        caps = " ".join(self.handlers.capabilities(self))
        self.write(
            R.untagged_status(
                "OK", f"{self.conn.settings.hostname} IMAP ready", f"CAPABILITY {caps}"
            )
        )

    async def close(self) -> None:
        self.stop_watching()
        folder, self.folder = self.folder, None
        if folder is not None:
            folder.close()
        self.proto.logout()

    # --- input -----------------------------------------------------------------------

    async def receive(self, data: bytes) -> None:
        """Octets from the client: act on every event they complete (module contract)."""
        self.reader.receive(data)
        conn = self.conn
        while not conn.closing and not self.tls_requested:
            event = self.reader.next_event()
            if event is None:
                break
            self.executing = True
            try:
                await self._event(event)
            finally:
                self.executing = False
            await conn.flush()

    async def _event(self, event: Any) -> None:
        if isinstance(event, Command):
            await self.run_command(event)
        elif isinstance(event, Continue):
            self.write(R.continuation(event.text))
        elif isinstance(event, Bad):
            self.tagged(event.tag, "BAD", event.text)
        elif isinstance(event, LineTooLong):
            self.tagged(event.tag, "BAD", "command line too long")
        elif isinstance(event, TooBig):
            if event.close:  # RFC 7888 §4: its octets are on their way; we will not read them
                self.tagged(event.tag, "BAD", "literal too big", "TOOBIG")
                self.conn.bye("literal too big, closing")
            else:
                self.tagged(event.tag, event.status, "literal too big", "TOOBIG")
        elif isinstance(event, IdleDone):
            await self.handlers.idle_done(self, event.ok)
        elif isinstance(event, AuthResponse):
            await self.handlers.auth_response(self, event)

    async def run_command(self, command: Command) -> None:
        handler = self.handlers.commands.get(command.name)
        refusal = self.proto.check(command)
        if refusal is None and handler is None:
            refusal = Refusal("BAD", f"unknown command {command.name}")
        if refusal is not None or handler is None:
            assert refusal is not None
            self.tagged(command.tag, refusal.status, refusal.text, refusal.code)
            return
        self._held = []
        try:
            try:
                await handler(self, command)
            except FolderError as exc:  # what the store refuses that a handler did not word
                self.tagged(command.tag, "NO", str(exc), "CANNOT")
            except OSError as exc:  # the disk, not the client: NO, and the session goes on
                log.error("IMAP %s for %s failed: %s", command.name, self.account, exc)
                self.tagged(command.tag, "NO", "server error, try again later", "SERVERBUG")
            # RFC 9051 §7: the updates come before the command's tagged answer.
            if (
                self.folder is not None
                and not self.idling
                and (command.uid or command.name not in _NO_EXPUNGE_AFTER)
            ):
                await self.sync_and_tell()
        finally:
            held, self._held = self._held, None
            self.write(b"".join(held))

    # --- the selected mailbox --------------------------------------------------------

    def select(self, folder: Folder, readonly: bool) -> None:
        self.deselect()
        self.folder = folder
        self.proto.selected(readonly)
        self._news = False
        self._watch_maildir(folder.path)

    def deselect(self) -> None:
        self.stop_watching()
        folder, self.folder = self.folder, None
        if folder is not None:
            folder.close()
        self.proto.unselected()

    def _watch_maildir(self, path: str) -> None:
        from pigeon.mailstore import notify

        loop = asyncio.get_running_loop()

        def woken() -> None:  # called in the delivering thread: hand over only
            loop.call_soon_threadsafe(self._woken)

        self._watch = notify.watch(path, woken)

    def _woken(self) -> None:
        self._news = True
        if self.idling:
            self.conn.stream.wake()

    def stop_watching(self) -> None:
        watch, self._watch = self._watch, None
        if watch is not None:
            watch.cancel()

    async def sync_and_tell(self) -> None:
        """Rescan the selected mailbox and tell the client what changed (module contract)."""
        folder = self.folder
        if folder is None:
            return
        self._news = False
        if folder.up_to_date():  # the common case: no trip to a thread
            return
        before = folder.messages
        changes = await self.io(folder.sync)
        if changes:
            self.write(self.updates(before, changes))

    def updates(self, before: list[Any], changes: Changes) -> bytes:
        """EXPUNGE, EXISTS, FETCH (FLAGS) for `changes` (RFC 9051 §7.5.1, §7.4.1, §7.5.2)."""
        folder = self.folder
        assert folder is not None
        out = [self.expunge_lines(before, changes.expunged)]
        if changes.added or changes.expunged:
            out.append(b"* %d EXISTS\r\n" % len(folder.messages))
        if changes.flag_changes:
            messages = folder.messages
            for uid in changes.flag_changes:
                msn = msn_of(messages, uid)
                if msn is not None:
                    out.append(self.flags_response(msn, messages[msn - 1]))
        return b"".join(out)

    @staticmethod
    def expunge_lines(before: list[Any], gone: list[int]) -> bytes:
        """`* n EXPUNGE` for each UID gone, numbered as the client sees them one by one."""
        out = []
        for done, uid in enumerate(sorted(gone)):
            msn = msn_of(before, uid)
            if msn is not None:
                out.append(b"* %d EXPUNGE\r\n" % (msn - done))
        return b"".join(out)

    def flags_response(self, msn: int, info: Any, *, uid: bool = True) -> bytes:
        items: list[tuple[str, R.Value]] = [("FLAGS", R.flags(sorted(info.flags)))]
        if uid:
            items.append(("UID", info.uid))
        if self.condstore:
            items.append(("MODSEQ", [info.modseq]))
        return R.fetch_response(msn, items, self.utf8)


def msn_of(messages: list[Any], uid: int) -> int | None:
    """The sequence number of `uid` in `messages` (ascending by UID), or None."""
    i = bisect.bisect_left(messages, uid, key=lambda m: m.uid)
    if i < len(messages) and messages[i].uid == uid:
        return i + 1
    return None
