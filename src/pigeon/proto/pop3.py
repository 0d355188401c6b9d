"""Sans-IO POP3 server (RFC 1939), with CAPA (RFC 2449), AUTH (RFC 5034), STLS (RFC 2595).

    session = Pop3Session(Pop3Settings(tls=False, stls=True))
    out = session.greeting()
    events = session.receive_data(data)      # bytes in, events out
    write(session.data_to_send())            # replies out
    events = session.accept_login(listing)   # answers to DECISION events go on

Contract:
  * States (RFC 1939 §3): AUTHORIZATION, then TRANSACTION once a login is
    accepted, then UPDATE at QUIT. Every command of another state, or
    unknown, is `-ERR` (RFC 1939 §3); `max_errors` of them close the session.
    A command line is at most MAX_LINE octets (RFC 2449 §4 asks for 255; we
    take more), a SASL response MAX_SASL_LINE: a longer one is answered
    `-ERR` once its end arrives and is never buffered whole.
  * Passwords only inside TLS (RFC 2595 §2.2, RFC 8314): before TLS, USER,
    PASS and AUTH are `-ERR [AUTH]` and CAPA lists neither USER nor SASL,
    only STLS. Inside TLS, CAPA lists USER and `SASL <mechanisms>`.
  * DECISION events pause the session: nothing more is read until the
    driver answers. `PasswordLogin` / `SaslLogin` -> `accept_login(listing)`
    (the maildrop as (size, unique id) per message, RFC 1939 §5: the
    driver has locked it) or `refuse_login(refusal)`; `SaslKeysNeeded` ->
    `respond_keys(keys)`; `RetrieveRequested` -> `retrieve_failed()`, or
    `retrieve_started()` then, once the driver has written the message
    (pigeon.proto.pop3_content.MessageEncoder), `retrieve_done()`;
    `UpdateRequested` (QUIT in TRANSACTION, RFC 1939 §6) ->
    `update_done(failures)`. Each answer returns the events of the input
    that waited. `StartTlsRequested` (informational: `+OK` is queued, the
    pipelined plaintext after STLS is dropped and counted, RFC 2595 §4 /
    CVE-2011-0411) is answered by `tls_started()` or `tls_failed()`.
  * DELE only marks; RSET unmarks; STAT and LIST leave marked messages out;
    the messages are removed only by the driver at UpdateRequested, and
    never when the connection is dropped or the auto-logout timer fires
    (RFC 1939 §3, §6). Message numbers are 1-based and never change in a
    session.
  * `ConnectionClosing` comes once: after the last reply, the driver closes.
  * Pure: no I/O, no clock (the driver owns the auto-logout timer and calls
    `timed_out()`), the SASL nonce is injectable.
"""

from __future__ import annotations

import base64
import binascii
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from pigeon.proto import sasl
from pigeon.proto.pop3_events import (
    REFUSAL_REPLIES,
    ConnectionClosing,
    Event,
    LoginRefused,
    PasswordLogin,
    RetrieveRequested,
    SaslKeysNeeded,
    SaslLogin,
    StartTlsRequested,
    UpdateRequested,
)
from pigeon.proto.scram import ScramKeys

__all__ = ["MAX_LINE", "MAX_SASL_LINE", "Pop3Session", "Pop3Settings"]

MAX_LINE = 512  # octets of a command line with its CRLF (RFC 2449 §4: at least 255)
MAX_SASL_LINE = 12 * 1024  # an AUTH line or a SASL response (base64 of MAX_FIELD fields)

AUTHORIZATION, TRANSACTION, UPDATE = "AUTHORIZATION", "TRANSACTION", "UPDATE"

_PLAINTEXT = b"-ERR [AUTH] Plaintext authentication is disabled here: use STLS first"


@dataclass(frozen=True, slots=True)
class Pop3Settings:
    tls: bool = False  # the connection is inside TLS (implicit TLS, or after STLS)
    stls: bool = False  # STLS may be offered (a certificate exists)
    mechanisms: tuple[str, ...] = ("PLAIN", "SCRAM-SHA-256")  # offered inside TLS
    implementation: str = "pigeon"
    greeting: str = "POP3 server ready"
    max_errors: int = 10  # bad commands before the session is closed
    nonce: Callable[[], bytes] | None = field(default=None, repr=False)  # SCRAM, for tests


class Pop3Session:
    """One POP3 session, sans-IO (see the module contract)."""

    def __init__(self, settings: Pop3Settings) -> None:
        self.settings = settings
        self.state = AUTHORIZATION
        self.tls = settings.tls
        self._in = bytearray()
        self._out: list[bytes] = []
        self._events: list[Event] = []
        self._waiting = False  # a DECISION is pending
        self._closed = False
        self._skipping = False  # discarding an over-long line until its end
        self._errors = 0
        self._user: str | None = None
        self._sasl: sasl.Mechanism | None = None
        self._pending_login: sasl.Credentials | None = None  # SCRAM: until the empty answer
        self._sizes: list[int] = []
        self._uids: list[str] = []
        self._deleted: set[int] = set()

    # --- I/O of the sans-IO core ------------------------------------------------------

    def greeting(self) -> bytes:
        return b"+OK " + self.settings.greeting.encode() + b"\r\n"

    def data_to_send(self) -> bytes:
        out, self._out = b"".join(self._out), []
        return out

    def receive_data(self, data: bytes) -> list[Event]:
        """Octets from the client; b"" when it closed its side."""
        if self._closed:
            return []
        if not data:
            self._close("client closed the connection")  # nothing is deleted (RFC 1939 §6)
        self._in += data
        return self._run()

    def timed_out(self) -> list[Event]:
        """The auto-logout timer fired (RFC 1939 §3): close without UPDATE."""
        if not self._closed:
            self._reply(b"-ERR Auto-logout: idle for too long")
            self._close("auto-logout")
        return self._take_events()

    @property
    def closed(self) -> bool:
        return self._closed

    @property
    def user(self) -> str | None:
        return self._user

    # --- answers to decisions -----------------------------------------------------------

    def accept_login(self, listing: Sequence[tuple[int, str]]) -> list[Event]:
        self._sasl = None
        self._sizes = [size for size, _ in listing]
        self._uids = [uid for _, uid in listing]
        self.state = TRANSACTION
        self._reply(b"+OK Logged in, %d messages (%d octets)" % self._stat())
        return self._resume()

    def refuse_login(self, refusal: LoginRefused) -> list[Event]:
        self._sasl = None
        self._user = None
        self._reply(REFUSAL_REPLIES[refusal])
        if refusal is LoginRefused.TOO_MANY_FAILURES:
            self._close("too many failed logins")
        return self._resume()

    def respond_keys(self, keys: ScramKeys | None) -> list[Event]:
        assert self._sasl is not None
        self._waiting = False
        self._sasl_step(self._sasl.keys(keys))
        return self._run()

    def retrieve_started(self, size: int | None) -> None:
        """The message can be sent: `+OK` now; the driver writes it next."""
        self._reply(b"+OK %d octets" % size if size is not None else b"+OK")

    def retrieve_done(self) -> list[Event]:
        return self._resume()

    def retrieve_failed(self) -> list[Event]:
        self._reply(b"-ERR [SYS/TEMP] The message cannot be read now")
        return self._resume()

    def update_done(self, failures: int) -> list[Event]:
        """UPDATE finished (RFC 1939 §6): say so and close."""
        left = len(self._sizes) - len(self._deleted)
        if failures:
            self._reply(b"-ERR [SYS/TEMP] %d deleted messages not removed" % failures)
        else:
            self._reply(b"+OK Bye, %d messages left" % left)
        self._close("QUIT")
        return self._resume()

    def tls_started(self) -> None:
        """STLS succeeded (RFC 2595 §4): back to a fresh AUTHORIZATION state."""
        self.tls = True
        self._user = None
        self._waiting = False

    def tls_failed(self) -> None:
        self._close("TLS handshake failed")

    # --- the command loop ---------------------------------------------------------------

    def _resume(self) -> list[Event]:
        self._waiting = False
        return self._run()

    def _run(self) -> list[Event]:
        while not self._waiting and not self._closed:
            line = self._next_line()
            if line is None:
                break
            if self._sasl is not None:
                self._sasl_response(line)
            else:
                self._command(line)
        return self._take_events()

    def _take_events(self) -> list[Event]:
        events, self._events = self._events, []
        return events

    def _next_line(self) -> bytes | None:
        end = self._in.find(b"\n")
        if end < 0:
            if len(self._in) > MAX_SASL_LINE:  # never hold an endless line whole
                del self._in[:]
                self._skipping = True
            return None
        line = bytes(self._in[:end]).removesuffix(b"\r")
        del self._in[: end + 1]
        sasl = self._sasl is not None or line[:5].upper() == b"AUTH "  # RFC 5034 §4
        if self._skipping or end + 1 > (MAX_SASL_LINE if sasl else MAX_LINE):
            self._skipping = False
            self._sasl = None
            self._error(b"-ERR Line too long")
            return None if self._closed else self._next_line()
        return line

    def _error(self, reply: bytes) -> None:
        self._reply(reply)
        self._errors += 1
        if self._errors >= self.settings.max_errors:
            self._reply(b"-ERR Too many bad commands, closing")
            self._close("too many bad commands")

    def _reply(self, line: bytes) -> None:
        self._out.append(line + b"\r\n")

    def _close(self, reason: str) -> None:
        if not self._closed:
            self._closed = True
            self._events.append(ConnectionClosing(reason))

    def _decide(self, event: Event) -> None:
        self._events.append(event)
        self._waiting = True

    def _command(self, line: bytes) -> None:
        name, _, arg = line.partition(b" ")
        verb = name.upper().decode("ascii", "replace")
        handler = _COMMANDS.get(verb)
        if handler is None:
            self._error(b"-ERR Unknown command")
            return
        states, method = handler
        if self.state not in states:
            self._error(b"-ERR Command not valid in this state")
            return
        method(self, arg if verb == "PASS" else arg.strip())  # RFC 1939 §7: spaces

    # --- AUTHORIZATION (RFC 1939 §4, §7; RFC 5034; RFC 2595) --------------------------------

    def _capa(self, arg: bytes) -> None:
        """RFC 2449 §5: what this session offers now."""
        caps = [b"TOP", b"UIDL", b"RESP-CODES", b"AUTH-RESP-CODE", b"PIPELINING"]
        if self.state == AUTHORIZATION:
            if self.tls:
                caps.append(b"USER")
                if self.settings.mechanisms:
                    caps.append(b"SASL " + " ".join(self.settings.mechanisms).encode())
            elif self.settings.stls:
                caps.append(b"STLS")
        caps.append(b"IMPLEMENTATION " + self.settings.implementation.encode())
        self._multiline(b"+OK Capability list follows", caps)

    def _stls(self, arg: bytes) -> None:
        if self.tls:
            self._error(b"-ERR Already in TLS")
        elif not self.settings.stls:
            self._error(b"-ERR STLS is not available")
        else:
            self._reply(b"+OK Begin TLS negotiation")
            discarded = len(self._in)  # RFC 2595 §4: nothing sent before TLS counts
            del self._in[:]
            self._events.append(StartTlsRequested(discarded))
            self._waiting = True  # until tls_started()

    def _user_cmd(self, arg: bytes) -> None:
        if not self.tls:
            self._error(_PLAINTEXT)
            return
        name = _text(arg)
        if not name:
            self._error(b"-ERR USER needs a user name")
            return
        self._user = name
        self._reply(b"+OK Send the password")

    def _pass(self, arg: bytes) -> None:
        if not self.tls:
            self._error(_PLAINTEXT)
            return
        if self._user is None:
            self._error(b"-ERR USER first")
            return
        password = _text(arg)  # RFC 1939 §7: the rest of the line, spaces included
        if password is None:
            self._error(b"-ERR The password is not UTF-8")
            return
        self._decide(PasswordLogin(self._user, password))

    def _auth(self, arg: bytes) -> None:
        if not self.tls:
            self._error(_PLAINTEXT)
            return
        if not arg:  # a list of mechanisms, as clients before CAPA asked
            names = [m.encode() for m in self.settings.mechanisms]
            self._multiline(b"+OK", names)
            return
        name, _, initial = arg.partition(b" ")
        mech = name.upper().decode("ascii", "replace")
        if mech not in self.settings.mechanisms:
            self._error(b"-ERR Unrecognized authentication type")
            return
        first: bytes | None = None
        if initial:
            first = _b64(initial.strip())  # RFC 5034 §4: "=" is an empty initial response
            if first is None:
                self._error(b"-ERR Cannot decode the initial response")
                return
        self._sasl = sasl.new_mechanism(mech, nonce=self.settings.nonce)
        self._sasl_step(self._sasl.start(first))

    def _sasl_response(self, line: bytes) -> None:
        if line == b"*":  # RFC 5034 §4: the client cancels
            self._sasl = None
            self._error(b"-ERR Authentication cancelled")
            return
        data = _b64(line)
        if data is None:
            self._sasl = None
            self._error(b"-ERR Cannot decode the response")
            return
        assert self._sasl is not None
        if self._sasl.success_data() is not None:  # the answer to the server-final message
            self._finish_sasl(data)
            return
        self._sasl_step(self._sasl.step(data))

    def _sasl_step(self, step: sasl.Step) -> None:
        assert self._sasl is not None
        if isinstance(step, sasl.Challenge):
            self._reply(b"+ " + base64.b64encode(step.data))
        elif isinstance(step, sasl.NeedKeys):
            self._decide(SaslKeysNeeded(step.username))
        elif isinstance(step, sasl.Malformed):
            self._sasl = None
            self._error(b"-ERR [AUTH] " + step.detail.encode())
        elif step.verified and self._sasl.success_data() is not None:
            # RFC 4422 §3.6, RFC 5034 §4: the server-final message goes out as
            # a challenge; the client answers it with an empty line, then +OK.
            self._pending_login = step
            self._reply(b"+ " + base64.b64encode(self._sasl.success_data() or b""))
        else:
            self._decide(SaslLogin(self._sasl.name, step))

    def _finish_sasl(self, data: bytes) -> None:
        assert self._sasl is not None
        if data:
            self._sasl = None
            self._error(b"-ERR [AUTH] Expected an empty response")
            return
        assert self._pending_login is not None
        self._decide(SaslLogin(self._sasl.name, self._pending_login))

    def _quit(self, arg: bytes) -> None:
        if self.state == TRANSACTION:
            self.state = UPDATE  # RFC 1939 §6
            self._decide(UpdateRequested(tuple(sorted(self._deleted))))
            return
        self._reply(b"+OK Bye")
        self._close("QUIT")

    # --- TRANSACTION (RFC 1939 §5, §7) ------------------------------------------------------

    def _stat(self) -> tuple[int, int]:
        kept = [s for i, s in enumerate(self._sizes) if i not in self._deleted]
        return len(kept), sum(kept)

    def _stat_cmd(self, arg: bytes) -> None:
        self._reply(b"+OK %d %d" % self._stat())

    def _message(self, arg: bytes) -> int | None:
        """The 0-based index of message number `arg`, or None (replied -ERR)."""
        if not arg.isdigit() or len(arg) > 9:
            self._error(b"-ERR Invalid message number")
            return None
        index = int(arg) - 1
        if not 0 <= index < len(self._sizes):
            self._error(b"-ERR No such message")
            return None
        if index in self._deleted:
            self._error(b"-ERR Message %d already deleted" % (index + 1))
            return None
        return index

    def _listing(self, arg: bytes, value: Callable[[int], bytes], title: bytes) -> None:
        if arg:
            index = self._message(arg)
            if index is not None:
                self._reply(b"+OK %d %s" % (index + 1, value(index)))
            return
        lines = [
            b"%d %s" % (i + 1, value(i)) for i in range(len(self._sizes)) if i not in self._deleted
        ]
        self._multiline(title, lines)

    def _list(self, arg: bytes) -> None:
        count, size = self._stat()
        title = b"+OK %d messages (%d octets)" % (count, size)
        self._listing(arg, lambda i: b"%d" % self._sizes[i], title)

    def _uidl(self, arg: bytes) -> None:
        self._listing(arg, lambda i: self._uids[i].encode(), b"+OK Unique-ID listing follows")

    def _retr(self, arg: bytes) -> None:
        index = self._message(arg)
        if index is not None:
            self._decide(RetrieveRequested(index, None, self._sizes[index]))

    def _top(self, arg: bytes) -> None:
        number, _, lines = arg.partition(b" ")
        lines = lines.strip()
        if not lines.isdigit() or len(lines) > 9:
            self._error(b"-ERR TOP needs a message number and a number of lines")
            return
        index = self._message(number)
        if index is not None:
            self._decide(RetrieveRequested(index, int(lines), self._sizes[index]))

    def _dele(self, arg: bytes) -> None:
        index = self._message(arg)
        if index is not None:
            self._deleted.add(index)  # RFC 1939 §6: removed at UPDATE only
            self._reply(b"+OK Message %d deleted" % (index + 1))

    def _rset(self, arg: bytes) -> None:
        self._deleted.clear()
        self._reply(b"+OK %d messages (%d octets)" % self._stat())

    def _noop(self, arg: bytes) -> None:
        self._reply(b"+OK")

    def _multiline(self, first: bytes, lines: Sequence[bytes]) -> None:
        """A multi-line reply (RFC 1939 §3); the lines never begin with "."."""
        self._out.append(first + b"\r\n" + b"".join(line + b"\r\n" for line in lines) + b".\r\n")


def _text(arg: bytes) -> str | None:
    try:
        return arg.decode("utf-8")
    except UnicodeDecodeError:
        return None


def _b64(data: bytes) -> bytes | None:
    if data == b"=":
        return b""
    try:
        return base64.b64decode(data, validate=True)
    except (binascii.Error, ValueError):
        return None


_AUTH = (AUTHORIZATION,)
_TRANS = (TRANSACTION,)
_BOTH = (AUTHORIZATION, TRANSACTION)
_COMMANDS: dict[str, tuple[tuple[str, ...], Callable[[Pop3Session, bytes], None]]] = {
    "CAPA": (_BOTH, Pop3Session._capa),
    "STLS": (_AUTH, Pop3Session._stls),
    "USER": (_AUTH, Pop3Session._user_cmd),
    "PASS": (_AUTH, Pop3Session._pass),
    "AUTH": (_AUTH, Pop3Session._auth),
    "QUIT": (_BOTH, Pop3Session._quit),
    "STAT": (_TRANS, Pop3Session._stat_cmd),
    "LIST": (_TRANS, Pop3Session._list),
    "UIDL": (_TRANS, Pop3Session._uidl),
    "RETR": (_TRANS, Pop3Session._retr),
    "TOP": (_TRANS, Pop3Session._top),
    "DELE": (_TRANS, Pop3Session._dele),
    "RSET": (_TRANS, Pop3Session._rset),
    "NOOP": (_TRANS, Pop3Session._noop),
}
