"""Sans-IO SASL server mechanisms: PLAIN (RFC 4616), LOGIN, SCRAM-SHA-256 (RFC 5802, 7677).

The SMTP session (pigeon.proto.server) owns the framing of RFC 4954 (334
challenges, base64, "*" to cancel, line limits); a mechanism here only sees
decoded octets and answers with one of these steps:

    Challenge(data)      send "334 base64(data)" and wait for the next response
    Credentials(...)     the exchange is complete: the driver verifies
                         (PLAIN/LOGIN: the password; SCRAM: `verified` is
                         already decided, only recorded) and accepts or refuses
    NeedKeys(username)   SCRAM only: the session asks the driver for the
                         stored keys, then calls `keys(found)`
    Malformed(detail)    the client broke the mechanism's syntax (501)

Contract:
  * Rule 1: no I/O, no clock, no password store: the caller injects keys and
    randomness (`nonce` for SCRAM), so every exchange is reproducible in tests.
  * Rule 2: inputs are already bounded by the session's line limit; mechanisms
    keep at most a few hundred octets of state.
  * Rule 3: an unknown SCRAM user is not revealed early: the mechanism carries
    on with keys derived from a per-process secret and fails at the proof, like
    a wrong password (RFC 5802 §9 on user enumeration).
  * Authorization identities other than the user itself are refused by the
    driver (no proxy authentication); mechanisms only report them.
  * After a SCRAM success the server-final message ("v=...") must reach the
    client: `success_data()` returns it and the session sends it as a 334
    challenge, then answers the client's empty response with 235 (RFC 4954 §4).
"""

from __future__ import annotations

import base64
import hmac
import os
import re
from collections.abc import Callable
from dataclasses import dataclass

from pigeon.proto import scram
from pigeon.proto.scram import ScramKeys

#: Mechanisms this module implements, in the order pigeon advertises them.
MECHANISMS = ("PLAIN", "LOGIN", "SCRAM-SHA-256")
#: Mechanisms that send the password itself (only inside TLS, RFC 4954 §4 / RFC 8314).
PLAINTEXT_MECHANISMS = frozenset({"PLAIN", "LOGIN"})

MAX_FIELD = 255  # octets for a user name, authzid or password (bounded state)


@dataclass(frozen=True, slots=True)
class Challenge:
    data: bytes


@dataclass(frozen=True, slots=True)
class Credentials:
    username: str
    authzid: str
    password: str | None  # PLAIN/LOGIN: to verify; SCRAM: None
    verified: bool | None = None  # SCRAM: the proof check's result; PLAIN/LOGIN: None


@dataclass(frozen=True, slots=True)
class NeedKeys:
    username: str


@dataclass(frozen=True, slots=True)
class Malformed:
    detail: str


Step = Challenge | Credentials | NeedKeys | Malformed


def _text(data: bytes, what: str) -> str | Malformed:
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError:
        return Malformed(f"{what} is not UTF-8")
    if len(data) > MAX_FIELD:
        return Malformed(f"{what} too long")
    return text


class Plain:
    """RFC 4616: message = [authzid] NUL authcid NUL passwd."""

    name = "PLAIN"

    def start(self, initial: bytes | None) -> Step:
        if initial is None:
            return Challenge(b"")
        return self.step(initial)

    def step(self, response: bytes) -> Step:
        parts = response.split(b"\x00")
        if len(parts) != 3 or not parts[1] or not parts[2]:
            return Malformed("PLAIN needs authzid NUL authcid NUL password")
        fields: list[str] = []
        for part, name in zip(parts, ("authzid", "user name", "password")):
            text = _text(part, name)
            if isinstance(text, Malformed):
                return text
            fields.append(text)
        authzid, user, password = fields
        return Credentials(user, authzid, password)

    def keys(self, keys: ScramKeys | None) -> Step:
        raise RuntimeError("PLAIN does not look up keys")

    def success_data(self) -> bytes | None:
        return None


class Login:
    """The LOGIN mechanism (draft-murchison-sasl-login): "Username:", then "Password:"."""

    name = "LOGIN"

    def __init__(self) -> None:
        self._user: str | None = None

    def start(self, initial: bytes | None) -> Step:
        if initial is None:
            return Challenge(b"Username:")
        return self.step(initial)

    def step(self, response: bytes) -> Step:
        if self._user is None:
            user = _text(response, "user name")
            if isinstance(user, Malformed):
                return user
            if not user:
                return Malformed("empty user name")
            self._user = user
            return Challenge(b"Password:")
        password = _text(response, "password")
        if isinstance(password, Malformed):
            return password
        return Credentials(self._user, "", password)

    def keys(self, keys: ScramKeys | None) -> Step:
        raise RuntimeError("LOGIN does not look up keys")

    def success_data(self) -> bytes | None:
        return None


# RFC 5802 §7: gs2-header, then client-first-message-bare.
_GS2 = re.compile(rb"(n|y|p=[A-Za-z0-9.-]+),(a=[^,]*)?,")
_ATTR = re.compile(rb"([A-Za-z])=([^,]*)")
_PRINTABLE = re.compile(rb"[\x21-\x2b\x2d-\x7e]+")  # RFC 5802 §7 "printable" (no ",")

_FAKE_SECRET = os.urandom(32)  # keys for unknown users (rule 3), per process


def _saslname(raw: bytes) -> str | None:
    # RFC 5802 §5.1: "=2C" is ",", "=3D" is "="; any other "=" is an error.
    if re.search(rb"=(?!2C|3D)", raw):
        return None
    try:
        return raw.replace(b"=2C", b",").replace(b"=3D", b"=").decode("utf-8")
    except UnicodeDecodeError:
        return None


class ScramSha256:
    """SCRAM-SHA-256 server (RFC 5802 §5, RFC 7677), without channel binding."""

    name = "SCRAM-SHA-256"

    def __init__(self, nonce: Callable[[], bytes] = lambda: os.urandom(18)) -> None:
        self._nonce = nonce
        self._gs2 = b""
        self._first_bare = b""
        self._server_first = b""
        self._nonce_full = b""
        self._keys: ScramKeys | None = None
        self._known = False
        self._user = ""
        self._authzid = ""
        self._final: bytes | None = None
        self._state = "first"

    def start(self, initial: bytes | None) -> Step:
        if initial is None:
            return Challenge(b"")  # RFC 4954 §4: empty challenge asks for the client-first message
        return self.step(initial)

    def step(self, response: bytes) -> Step:
        if self._state == "first":
            return self._client_first(response)
        if self._state == "final":
            return self._client_final(response)
        return Malformed("unexpected SCRAM message")

    def _client_first(self, msg: bytes) -> Step:
        m = _GS2.match(msg)
        if m is None:
            return Malformed("bad gs2 header")
        if m.group(1).startswith(b"p="):
            return Malformed("channel binding is not offered (no -PLUS mechanism)")
        self._gs2 = msg[: m.end()]
        authzid = _saslname(m.group(2)[2:]) if m.group(2) else ""
        self._first_bare = msg[m.end() :]
        attrs = _ATTR.findall(self._first_bare)
        if (
            len(attrs) < 2
            or attrs[0][0] != b"n"
            or attrs[1][0] != b"r"
            or self._first_bare.startswith(b"m=")
        ):
            return Malformed("client-first needs n= and r=")
        user = _saslname(attrs[0][1])
        if authzid is None or not user or not _PRINTABLE.fullmatch(attrs[1][1]):
            return Malformed("bad user name or nonce")
        if len(user.encode()) > MAX_FIELD:
            return Malformed("user name too long")
        self._user, self._authzid = user, authzid
        nonce = base64.b64encode(self._nonce()).replace(b"=", b"")
        self._nonce_full = attrs[1][1] + nonce.replace(b",", b"")
        self._state = "keys"
        return NeedKeys(user)

    def keys(self, keys: ScramKeys | None) -> Step:
        if self._state != "keys":
            raise RuntimeError("keys() out of sequence")
        self._known = keys is not None
        if keys is None:  # rule 3: a plausible exchange that cannot succeed
            salt = hmac.new(_FAKE_SECRET, self._user.encode(), "sha256").digest()[:16]
            keys = ScramKeys(salt, scram.DEFAULT_ITERATIONS, os.urandom(32), os.urandom(32))
        self._keys = keys
        self._server_first = (
            b"r="
            + self._nonce_full
            + b",s="
            + base64.b64encode(keys.salt)
            + b",i="
            + str(keys.iterations).encode()
        )
        self._state = "final"
        return Challenge(self._server_first)

    def _client_final(self, msg: bytes) -> Step:
        self._state = "done"
        head, sep, proof_b64 = msg.rpartition(b",p=")
        attrs = dict(_ATTR.findall(head))
        if not sep or b"c" not in attrs or b"r" not in attrs:
            return Malformed("client-final needs c=, r= and p=")
        try:
            binding = base64.b64decode(attrs[b"c"], validate=True)
            proof = base64.b64decode(proof_b64, validate=True)
        except ValueError:
            return Malformed("bad base64 in client-final")
        assert self._keys is not None
        auth_message = self._first_bare + b"," + self._server_first + b"," + head
        ok = (
            self._known
            and binding == self._gs2
            and attrs[b"r"] == self._nonce_full
            and scram.check_proof(self._keys, auth_message, proof)
        )
        if ok:
            self._final = b"v=" + base64.b64encode(scram.server_signature(self._keys, auth_message))
        return Credentials(self._user, self._authzid, None, verified=ok)

    def success_data(self) -> bytes | None:
        return self._final


Mechanism = Plain | Login | ScramSha256


def new_mechanism(name: str, *, nonce: Callable[[], bytes] | None = None) -> Mechanism:
    """A fresh server mechanism for `name` (uppercase, one of MECHANISMS)."""
    if name == "PLAIN":
        return Plain()
    if name == "LOGIN":
        return Login()
    if name == "SCRAM-SHA-256":
        return ScramSha256(nonce) if nonce is not None else ScramSha256()
    raise ValueError(f"unknown SASL mechanism {name!r}")
