"""STARTTLS (RFC 3207) and AUTH (RFC 4954) for ServerSession, kept sans-IO.

`ServerSession` inherits these command handlers from `SecureCommands`; the
attributes they use (`config`, `state`, `_buf`, `_reply`, `_decide`, ...)
belong to the session (server.py). Split out to keep each module readable.

STARTTLS contract (the driver side is pigeon.net.smtpd):
  * Offered only when `SessionConfig.starttls` is set and the session is not
    already under TLS; otherwise 502 5.5.1 (not offered) or 503 5.5.1 (TLS
    already active, RFC 3207 §4.2: no second STARTTLS). Not allowed before
    EHLO/HELO (503 5.5.1) nor inside a mail transaction (503 5.5.1).
  * Rule 1 (CVE-2011-0411): after "220 2.0.0 Ready to start TLS" every octet
    still in the receive buffer (pipelined after the STARTTLS line) is
    dropped and counted in `StartTlsRequested.discarded`; while the handshake
    runs no input is processed and `receive_data` should not be called.
  * Rule 2 (RFC 3207 §4.2): `tls_started(info)` resets the session to the
    greeted state: the EHLO name, ESMTP mode, any transaction and any
    authentication are forgotten; the client must say EHLO again.
    No reply is sent after the handshake (the client speaks first).
  * `tls_started(info)` before `start()` marks an implicit-TLS session
    (RFC 8314 §3, port 465): STARTTLS is then never offered.
  * `tls_failed(reason)` closes the session without a reply (the stream is
    in an unknown state); ConnectionClosing carries the reason.

AUTH contract:
  * Offered (EHLO keyword "AUTH mech ...") only under TLS: over plaintext
    the password would travel in the clear (RFC 4954 §4, RFC 8314 §3). AUTH
    over plaintext gets 538 5.7.11 for every mechanism.
  * Sequencing: EHLO first (503), never inside a transaction (503), never
    twice (503 5.5.1, RFC 4954 §4). Unknown mechanism 504 5.5.4.
  * Framing: the initial response ("=" is the empty one), 334 challenges,
    "*" cancels with 501 5.0.0, undecodable base64 is 501 5.5.2. Response
    lines are bounded like MAIL/RCPT lines (`max_command_line_with_params`,
    2048 octets; RFC 4954 §4 allows 12288, which only GSSAPI-sized
    mechanisms need).
  * Decisions: `AuthKeysRequested` (SCRAM, answered with `respond_keys`)
    and `AuthRequested` (answered with `respond`). A 421 answer closes the
    session. An AuthRequested whose SCRAM proof failed (`verified` False)
    is never accepted, whatever the driver answers.
"""

from __future__ import annotations

import base64
import binascii
from collections.abc import Callable
from typing import TYPE_CHECKING

from pigeon.proto import reply as R
from pigeon.proto.events import (
    Authenticated,
    AuthKeysRequested,
    AuthRequested,
    Event,
    StartTlsRequested,
    TlsInfo,
)
from pigeon.proto.reply import Reply
from pigeon.proto.sasl import (
    Challenge,
    Credentials,
    Malformed,
    Mechanism,
    NeedKeys,
    Step,
    new_mechanism,
)
from pigeon.proto.scram import ScramKeys
from pigeon.proto.states import State

if TYPE_CHECKING:
    from pigeon.proto.commands import Command
    from pigeon.proto.settings import SessionConfig


class SecureCommands:
    """Mixin for ServerSession: STARTTLS, AUTH and the state they keep."""

    if TYPE_CHECKING:
        # What the mixin uses of ServerSession (pigeon/proto/server.py).
        config: SessionConfig
        state: State
        _buf: bytearray
        _now: float
        _pending: Event | None
        helo_name: str | None
        esmtp: bool

        @property
        def closed(self) -> bool: ...

        def _reply(self, reply: Reply, *, count: bool = True) -> None: ...

        def _close(self, reason: str, *, abort_reply: Reply | None = None) -> None: ...

        def _reset_transaction(self, *, emit: bool) -> None: ...

        def _set_ready(self) -> None: ...

        def _emit(self, event: Event) -> None: ...

        def _decide(self, event: Event) -> None: ...

        def _internal_error(self, exc: Exception) -> None: ...

    def _init_secure(self, nonce: Callable[[], bytes] | None) -> None:
        self.tls: TlsInfo | None = None
        self.auth_user: str | None = None
        self.auth_mechanism: str | None = None
        self._tls_pending = False
        self._sasl: Mechanism | None = None
        self._sasl_final = False
        self._sasl_user: tuple[str, str] | None = None
        self._sasl_nonce = nonce

    # --- STARTTLS ----------------------------------------------------------------

    def tls_started(self, info: TlsInfo, now: float | None = None) -> None:
        """The driver finished the TLS handshake (see the module docstring)."""
        if now is not None:
            self._now = now
        if self.state is State.CONNECTED and not self._tls_pending:
            self.tls = info  # implicit TLS: the session begins inside TLS
            return
        if not self._tls_pending:
            raise RuntimeError("tls_started() without a StartTlsRequested")
        self._tls_pending = False
        if self.closed:
            return
        self.tls = info
        self._buf.clear()
        self._reset_transaction(emit=False)
        self.state = State.GREETED
        self.helo_name = None
        self.esmtp = False
        self.auth_user = self.auth_mechanism = None
        self._set_ready()

    def tls_failed(self, reason: str) -> None:
        """The handshake failed: close without a reply."""
        self._tls_pending = False
        self._close(f"TLS handshake failed: {reason}")

    def _cmd_starttls(self, cmd: Command, nxt: State | Reply) -> None:
        if not self.config.starttls:
            self._reply(R.NOT_IMPLEMENTED)
        elif self.tls is not None:
            self._reply(R.TLS_ALREADY_ACTIVE)
        elif isinstance(nxt, Reply):
            self._reply(nxt)
        elif cmd.arg:
            self._reply(R.SYNTAX_ERROR)
        else:
            self._reply(R.STARTTLS_READY, count=False)
            discarded = len(self._buf)
            self._buf.clear()  # Rule 1
            self._tls_pending = True
            self._emit(StartTlsRequested(discarded))

    # --- AUTH --------------------------------------------------------------------

    def _auth_offered(self) -> bool:
        cfg = self.config
        return bool(cfg.auth_mechanisms) and self.tls is not None

    def _secure_extensions(self) -> list[str]:
        ext = []
        if self.config.starttls and self.tls is None:
            ext.append("STARTTLS")  # RFC 3207
        if self._auth_offered() and self.auth_user is None:
            ext.append("AUTH " + " ".join(self.config.auth_mechanisms))  # RFC 4954
        return ext

    def _cmd_auth(self, cmd: Command, nxt: State | Reply) -> None:
        cfg = self.config
        name, _, initial = cmd.arg.partition(" ")
        name = name.upper()
        if not cfg.auth_mechanisms:
            self._reply(R.NOT_IMPLEMENTED)
        elif isinstance(nxt, Reply):
            self._reply(nxt)
        elif self.auth_user is not None:
            self._reply(R.AUTH_ALREADY)
        elif not name or " " in initial.strip(" "):
            self._reply(R.SYNTAX_ERROR)
        elif self.tls is None:
            self._reply(R.AUTH_ENCRYPTION_REQUIRED)
        elif name not in cfg.auth_mechanisms:
            self._reply(R.AUTH_BAD_MECHANISM)
        else:
            data: bytes | None = None
            initial = initial.strip(" ")
            if initial:
                data = b"" if initial == "=" else _b64decode(initial)
                if data is None:
                    self._reply(R.AUTH_BAD_BASE64)
                    return
            self._sasl = new_mechanism(name, nonce=self._sasl_nonce)
            self._sasl_step(self._sasl.start(data))

    def _sasl_step(self, step: Step) -> None:
        mech = self._sasl
        assert mech is not None
        if isinstance(step, Challenge):
            self._reply(R.auth_challenge(base64.b64encode(step.data).decode("ascii")), count=False)
        elif isinstance(step, NeedKeys):
            self._decide(AuthKeysRequested(mech.name, step.username))
        elif isinstance(step, Credentials):
            self._decide(
                AuthRequested(mech.name, step.username, step.authzid, step.password, step.verified)
            )
        else:
            assert isinstance(step, Malformed)
            self._sasl = None
            self._reply(R.AUTH_BAD_BASE64)

    def _sasl_line(self, line: bytes | Reply) -> None:
        """One client response inside an AUTH exchange."""
        if isinstance(line, Reply):  # too long, bad line ending, NUL
            self._sasl_abort()
            self._reply(line)
            return
        if line == b"*":
            self._sasl_abort()
            self._reply(R.AUTH_CANCELLED)
            return
        if self._sasl_final:  # the answer to our "v=" (SCRAM)
            user = self._sasl_user
            self._sasl_abort()
            if line or user is None:
                self._reply(R.AUTH_BAD_BASE64)
            else:
                self._auth_success(*user)
            return
        data = _b64decode(line.decode("ascii", "replace"))
        if data is None:
            self._sasl_abort()
            self._reply(R.AUTH_BAD_BASE64)
            return
        assert self._sasl is not None
        self._sasl_step(self._sasl.step(data))

    def _sasl_abort(self) -> None:
        self._sasl = None
        self._sasl_final = False
        self._sasl_user = None

    def respond_keys(self, keys: ScramKeys | None, *, now: float | None = None) -> None:
        """Answer AuthKeysRequested with the user's stored keys (None: unknown user)."""
        if now is not None:
            self._now = now
        ev = self._pending
        if not isinstance(ev, AuthKeysRequested):
            if self.closed:
                return
            raise RuntimeError("respond_keys() without an AuthKeysRequested pending")
        self._pending = None
        if self.closed or self._sasl is None:
            return
        try:
            self._sasl_step(self._sasl.keys(keys))
        except Exception as exc:
            self._internal_error(exc)
        self._set_ready()

    def _answer_auth(self, ev: AuthRequested, reply: Reply | None) -> None:
        mech = self._sasl
        if ev.verified is False and (reply is None or reply.positive):
            reply = R.AUTH_FAILED  # a failed SCRAM proof is never accepted
        if reply is not None and not reply.positive:
            self._sasl_abort()
            self._reply(reply)
            if reply.code == 421:
                self._close("too many authentication failures")
            return
        final = mech.success_data() if mech is not None else None
        if final:
            self._sasl_final = True
            self._sasl_user = (ev.username, ev.mechanism)
            self._reply(R.auth_challenge(base64.b64encode(final).decode("ascii")), count=False)
            return
        self._sasl_abort()
        self._auth_success(ev.username, ev.mechanism)

    def _auth_success(self, username: str, mechanism: str) -> None:
        self.auth_user, self.auth_mechanism = username, mechanism
        self._reply(R.AUTH_OK)
        self._emit(Authenticated(username, mechanism))

    # --- MAIL ----------------------------------------------------------------------

    def _mail_refusal(self) -> Reply | None:
        """530 when this listener wants AUTH (RFC 6409 §4.3, RFC 4954 §6) and it has not happened."""
        if self.config.auth_required and self.auth_user is None:
            if self.tls is None:
                return R.TLS_REQUIRED
            return R.AUTH_REQUIRED
        return None

    def _auth_param(self, given: str | None) -> str | None:
        """The AUTH= value to record (RFC 4954 §5).

        Unauthenticated clients: as if AUTH=<> was given. Authenticated ones:
        their own identity when they name it or give none; anything else is
        not trusted and becomes <>.
        """
        if self.auth_user is None:
            return "<>" if given is not None else None
        if given is None or given == self.auth_user:
            return self.auth_user
        return "<>"


def _b64decode(text: str) -> bytes | None:
    try:
        return base64.b64decode(text.encode("ascii"), validate=True)
    except (binascii.Error, ValueError, UnicodeEncodeError):
        return None
