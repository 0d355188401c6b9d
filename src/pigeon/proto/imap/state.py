"""The IMAP session's protocol state (RFC 9051 §3, §5.4, §6; RFC 3501 §3).

Contract:
  * `Session` holds the state (not authenticated, authenticated, selected,
    logout), whether TLS is on, what ENABLE turned on, whether the selected
    mailbox is read-only, and the auto-logout deadline. It never does I/O and
    never reads a clock: time is an argument (CONTRIBUTING.md, rule 2).
  * `check(command)` says whether a command may run now: None, or a
    `Refusal(status, code, text)` for the driver to send as the tagged
    answer. A command of another state is BAD (RFC 9051 §6: the command is
    not valid here, as Dovecot answers); LOGIN and AUTHENTICATE with a
    password mechanism before TLS are NO [PRIVACYREQUIRED] (RFC 9051 §6.2.3,
    §7.1; the LOGINDISABLED capability says so beforehand); STARTTLS under
    TLS is BAD.
  * `capabilities()` is the list for the CAPABILITY response and code (RFC
    9051 §7.2.2): before TLS, STARTTLS and LOGINDISABLED and no AUTH=;
    under TLS the AUTH= mechanisms; after login the extensions.
  * `enable(names)` does the ENABLE bookkeeping (RFC 5161): IMAP4rev2,
    CONDSTORE (RFC 7162 §3.1) and UTF8=ACCEPT (RFC 6855 §3) can be enabled,
    others are ignored; it returns those newly enabled, for "* ENABLED".
    `utf8` is True once IMAP4rev2 or UTF8=ACCEPT is on (mailbox names in
    UTF-8, RFC 9051 §5.1).
  * Auto-logout (RFC 9051 §5.4): `deadline` is the last activity plus
    `autologout` (at least 30 minutes, enforced) once logged in -- IDLE
    included (RFC 2177 §3: clients re-issue IDLE within 29 minutes) -- and
    plus `preauth_timeout` before login (the RFC allows a shorter timer
    there). `touch(now)` records activity, `expired(now)` tells the driver
    to send BYE and close.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, field

from pigeon.proto.imap.commands import Command

MIN_AUTOLOGOUT = 30 * 60.0  # RFC 9051 §5.4


class State(enum.Enum):
    NOT_AUTHENTICATED = "not authenticated"
    AUTHENTICATED = "authenticated"
    SELECTED = "selected"
    LOGOUT = "logout"


_ANY = frozenset({"CAPABILITY", "NOOP", "LOGOUT", "ID"})  # RFC 9051 §6.1, RFC 2971 §3.1
_NOT_AUTH = frozenset({"STARTTLS", "AUTHENTICATE", "LOGIN"})  # §6.2
_AUTH = frozenset(  # §6.3 (valid in the selected state too)
    {
        "ENABLE",
        "SELECT",
        "EXAMINE",
        "CREATE",
        "DELETE",
        "RENAME",
        "SUBSCRIBE",
        "UNSUBSCRIBE",
        "LIST",
        "LSUB",
        "NAMESPACE",
        "STATUS",
        "APPEND",
        "IDLE",
    }
)
_SELECTED = frozenset(  # §6.4
    {"CLOSE", "UNSELECT", "EXPUNGE", "SEARCH", "FETCH", "STORE", "COPY", "MOVE", "CHECK"}
)
#: Commands that change the mailbox; refused on a read-only (EXAMINEd) one.
_WRITES = frozenset({"STORE", "EXPUNGE", "MOVE"})
#: RFC 4959 SASL-IR, RFC 7888 LITERAL+, RFC 2971 ID, RFC 5161 ENABLE, RFC 2177 IDLE.
BASE_CAPABILITIES = ("IMAP4rev2", "IMAP4rev1", "LITERAL+", "SASL-IR", "ID", "ENABLE", "IDLE")
#: After login (RFC 2342, 4315, 6851, 7162, 6154, 5258, 5819, 4731, 3691, 3348, 6855, 8438).
AUTHENTICATED_CAPABILITIES = (
    "NAMESPACE",
    "UIDPLUS",
    "MOVE",
    "CONDSTORE",
    "SPECIAL-USE",
    "CREATE-SPECIAL-USE",
    "LIST-EXTENDED",
    "LIST-STATUS",
    "ESEARCH",
    "UNSELECT",
    "CHILDREN",
    "UTF8=ACCEPT",
    "STATUS=SIZE",
)
ENABLEABLE = frozenset({"IMAP4REV2", "CONDSTORE", "UTF8=ACCEPT"})


@dataclass(frozen=True, slots=True)
class Refusal:
    status: str  # "BAD" or "NO"
    text: str
    code: str | None = None


@dataclass
class Session:
    tls: bool
    now: float
    autologout: float = MIN_AUTOLOGOUT
    preauth_timeout: float = 60.0
    mechanisms: tuple[str, ...] = ("PLAIN", "SCRAM-SHA-256")
    starttls_available: bool = True
    state: State = State.NOT_AUTHENTICATED
    enabled: set[str] = field(default_factory=set)
    readonly: bool = False
    last_activity: float = 0.0

    def __post_init__(self) -> None:
        self.autologout = max(self.autologout, MIN_AUTOLOGOUT)
        self.last_activity = self.now

    # -- what may run -------------------------------------------------------
    def check(self, command: Command) -> Refusal | None:
        name = command.name
        if self.state is State.LOGOUT:
            return Refusal("BAD", "Logging out")
        if name in _ANY:
            return None
        if name in _NOT_AUTH:
            if self.state is not State.NOT_AUTHENTICATED:
                return Refusal("BAD", f"{name} not allowed: already logged in")
            if name == "STARTTLS" and (self.tls or not self.starttls_available):
                return Refusal(
                    "BAD", "TLS is already active" if self.tls else "STARTTLS not offered"
                )
            if name == "LOGIN" and not self.tls:
                return Refusal("NO", "Login only after STARTTLS", "PRIVACYREQUIRED")
            if name == "AUTHENTICATE":
                mech = getattr(command.args, "mechanism", "")
                if mech not in self.mechanisms:
                    return Refusal("NO", "Unsupported authentication mechanism")
                if not self.tls:
                    return Refusal("NO", "Authentication only after STARTTLS", "PRIVACYREQUIRED")
            return None
        if self.state is State.NOT_AUTHENTICATED:
            return Refusal("BAD", f"{name} needs a login first")
        if name in _AUTH:
            if name == "ENABLE" and self.state is State.SELECTED:
                return Refusal("BAD", "ENABLE only before SELECT")  # RFC 5161 §3.1
            return None
        if name in _SELECTED:
            if self.state is not State.SELECTED:
                return Refusal("BAD", f"{name} needs a selected mailbox")
            if self.readonly and name in _WRITES:
                return Refusal("NO", "Mailbox is read-only", "READ-ONLY")  # RFC 9051 §6.3.3
            return None
        return Refusal("BAD", f"Unknown command {name}")

    # -- capabilities -------------------------------------------------------
    def capabilities(self) -> tuple[str, ...]:
        caps = list(BASE_CAPABILITIES)
        if self.state is State.NOT_AUTHENTICATED and not self.tls:
            if self.starttls_available:
                caps.append("STARTTLS")
            caps.append("LOGINDISABLED")  # RFC 9051 §6.2.3: no passwords in clear
        elif self.tls:
            caps += [f"AUTH={m}" for m in self.mechanisms]
        if self.state in (State.AUTHENTICATED, State.SELECTED):
            caps += AUTHENTICATED_CAPABILITIES
        return tuple(caps)

    # -- transitions --------------------------------------------------------
    def tls_started(self) -> None:
        self.tls = True

    def logged_in(self, now: float) -> None:
        self.state = State.AUTHENTICATED
        self.touch(now)

    def selected(self, readonly: bool) -> None:
        self.state = State.SELECTED
        self.readonly = readonly

    def unselected(self) -> None:
        if self.state is State.SELECTED:
            self.state = State.AUTHENTICATED
        self.readonly = False

    def logout(self) -> None:
        self.state = State.LOGOUT

    def enable(self, names: tuple[str, ...]) -> list[str]:
        newly = []
        for name in names:
            upper = name.upper()
            if upper in ENABLEABLE and upper not in self.enabled:
                self.enabled.add(upper)
                newly.append("IMAP4rev2" if upper == "IMAP4REV2" else upper)
        return newly

    def enable_condstore(self) -> bool:
        """SELECT (CONDSTORE), FETCH MODSEQ, ... turn CONDSTORE on (RFC 7162 §3.1);
        True when this did: the driver then sends HIGHESTMODSEQ codes."""
        if "CONDSTORE" in self.enabled:
            return False
        self.enabled.add("CONDSTORE")
        return True

    @property
    def utf8(self) -> bool:
        return bool(self.enabled & {"IMAP4REV2", "UTF8=ACCEPT"})

    @property
    def rev2(self) -> bool:
        return "IMAP4REV2" in self.enabled

    @property
    def condstore(self) -> bool:
        return "CONDSTORE" in self.enabled

    # -- time ---------------------------------------------------------------
    def touch(self, now: float) -> None:
        self.last_activity = now

    @property
    def deadline(self) -> float:
        if self.state is State.NOT_AUTHENTICATED:
            return self.last_activity + self.preauth_timeout
        return self.last_activity + self.autologout

    def expired(self, now: float) -> bool:
        return now >= self.deadline
