"""The milter protocol (Sendmail's mail filter protocol, version 6), MTA side, sans-IO.

Contract:
  * Bytes only: the `encode_*` functions make the packets the MTA sends, and
    `MilterDecoder.feed(data)` turns what the milter sent into responses
    (`Negotiated`, `Verdict`-like `Answer`s and modification `Action`s).
    No sockets, no asyncio, no clock: the client (pigeon.policy.milter)
    moves the bytes and bounds the waits.
  * A packet is a 32-bit length in network order (counting the command
    octet), one command octet, then the data. Strings are NUL-terminated.
    This layout and every constant below is the one libmilter's
    `mfdef.h` fixes for protocol version 6 (the version Sendmail 8.14 and
    Postfix 2.6 speak).
  * Option negotiation: the MTA offers a version, the actions it allows
    (`ACTIONS_OFFERED`: every modification) and the protocol steps it can
    leave out or not wait for (`PROTOCOL_OFFERED`); the milter answers
    with the subset it wants, and may add the macro names it wants at each
    stage (`Negotiated.macros`). `Negotiated.sends(cmd)` and
    `Negotiated.replies(cmd)` tell the client which commands to send and
    which answers to wait for.
  * Anything that is not the protocol (an unknown response, a packet over
    `MAX_PACKET` octets, a short field) raises `MilterProtocolError`; the
    client then applies its milter's default action.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass, field

__all__ = [
    "ACTIONS_OFFERED",
    "Answer",
    "MAX_PACKET",
    "MilterDecoder",
    "MilterProtocolError",
    "Modification",
    "Negotiated",
    "PROTOCOL_OFFERED",
    "VERSION",
    "encode",
    "encode_body",
    "encode_connect",
    "encode_header",
    "encode_macros",
    "encode_negotiate",
    "encode_strings",
]

VERSION = 6

# Commands the MTA sends (SMFIC_*).
ABORT = b"A"
BODY = b"B"
CONNECT = b"C"
MACRO = b"D"
BODYEOB = b"E"
HELO = b"H"
HEADER = b"L"
MAIL = b"M"
EOH = b"N"
OPTNEG = b"O"
QUIT = b"Q"
RCPT = b"R"
DATA = b"T"

# Actions the milter may take (SMFIF_*), offered in the negotiation.
ADDHDRS = 0x01
CHGBODY = 0x02
ADDRCPT = 0x04
DELRCPT = 0x08
CHGHDRS = 0x10
QUARANTINE = 0x20
CHGFROM = 0x40
ADDRCPT_PAR = 0x80
SETSYMLIST = 0x100
ACTIONS_OFFERED = 0x1FF

# Protocol steps (SMFIP_*): NO* the milter does not want the command,
# NR_* it sends no reply to it.
NOCONNECT = 0x01
NOHELO = 0x02
NOMAIL = 0x04
NORCPT = 0x08
NOBODY = 0x10
NOHDRS = 0x20
NOEOH = 0x40
NR_HDR = 0x80
NOUNKNOWN = 0x100
NODATA = 0x200
SKIP = 0x400
RCPT_REJ = 0x800
NR_CONN = 0x1000
NR_HELO = 0x2000
NR_MAIL = 0x4000
NR_RCPT = 0x8000
NR_DATA = 0x10000
NR_UNKN = 0x20000
NR_EOH = 0x40000
NR_BODY = 0x80000
HDR_LEADSPC = 0x100000
# Everything but RCPT_REJ (we do not pass refused recipients on) and
# HDR_LEADSPC (header values go without their leading space, as Sendmail's).
PROTOCOL_OFFERED = 0x1FFFFF & ~(RCPT_REJ | HDR_LEADSPC)

# Macro stages of the negotiation's symbol lists (SMFIM_*) -> the command
# whose macros they are.
MACRO_STAGES = {0: CONNECT, 1: HELO, 2: MAIL, 3: RCPT, 4: DATA, 5: BODYEOB, 6: EOH}

# Which flag leaves a command out, and which one means "no reply to it".
_NOT_SENT = {
    CONNECT: NOCONNECT,
    HELO: NOHELO,
    MAIL: NOMAIL,
    RCPT: NORCPT,
    DATA: NODATA,
    HEADER: NOHDRS,
    EOH: NOEOH,
    BODY: NOBODY,
}
_NO_REPLY = {
    CONNECT: NR_CONN,
    HELO: NR_HELO,
    MAIL: NR_MAIL,
    RCPT: NR_RCPT,
    DATA: NR_DATA,
    HEADER: NR_HDR,
    EOH: NR_EOH,
    BODY: NR_BODY,
}

#: The largest packet accepted from a milter (a body chunk is at most 64 KiB).
MAX_PACKET = 1 << 20
#: The largest body chunk sent (libmilter's MILTER_CHUNK_SIZE).
CHUNK = 65535


class MilterProtocolError(Exception):
    """The milter said something that is not the protocol."""


# --- what the MTA sends ------------------------------------------------------------


def encode(command: bytes, data: bytes = b"") -> bytes:
    """One packet: length, command octet, data."""
    return struct.pack("!I", len(data) + 1) + command + data


def encode_strings(command: bytes, *strings: str) -> bytes:
    """A packet of NUL-terminated strings (HELO, MAIL and RCPT arguments)."""
    return encode(command, b"".join(_z(s) for s in strings))


def encode_negotiate(
    version: int = VERSION, actions: int = ACTIONS_OFFERED, protocol: int = PROTOCOL_OFFERED
) -> bytes:
    return encode(OPTNEG, struct.pack("!III", version, actions, protocol))


def encode_macros(command: bytes, macros: dict[str, str]) -> bytes:
    """SMFIC_MACRO: the macros defined for `command`, sent just before it.
    Single-letter names go bare, longer ones in braces ("{client_addr}")."""
    data = command + b"".join(_z(_macro_name(k)) + _z(v) for k, v in macros.items())
    return encode(MACRO, data)


def encode_connect(hostname: str, address: str, port: int) -> bytes:
    """SMFIC_CONNECT: the client's name, address family, port and address."""
    if address.startswith("/"):  # a Unix socket peer
        return encode(CONNECT, _z(hostname) + b"L" + struct.pack("!H", 0) + _z(address))
    family = b"6" if ":" in address else b"4"
    if family == b"6" and not address.startswith("IPv6:"):
        address = "IPv6:" + address  # Sendmail's form of an IPv6 address
    return encode(CONNECT, _z(hostname) + family + struct.pack("!H", port) + _z(address))


def encode_header(name: str, value: str) -> bytes:
    return encode(HEADER, _z(name) + _z(value))


def encode_body(data: bytes) -> list[bytes]:
    """SMFIC_BODY packets for `data`, at most CHUNK octets each."""
    return [encode(BODY, data[i : i + CHUNK]) for i in range(0, len(data), CHUNK)]


def _z(text: str) -> bytes:
    # Addresses may be UTF-8 (RFC 6531); surrogateescape keeps other
    # octets of a header value as they were received.
    return text.encode("utf-8", "surrogateescape") + b"\0"


def _macro_name(name: str) -> str:
    return name if len(name) == 1 or name.startswith("{") else "{" + name + "}"


# --- what the milter sends -----------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Negotiated:
    """The milter's answer to the option negotiation."""

    version: int
    actions: int
    protocol: int
    #: Macro names the milter asked for, by the command they go with.
    macros: dict[bytes, tuple[str, ...]] = field(default_factory=dict)

    def sends(self, command: bytes) -> bool:
        """Does the milter want `command` at all?"""
        flag = _NOT_SENT.get(command)
        return flag is None or not self.protocol & flag

    def replies(self, command: bytes) -> bool:
        """Does the milter answer `command` (else it must not be waited for)?"""
        if self.version < 6:
            return True  # the NR_ flags came with version 6
        flag = _NO_REPLY.get(command)
        return flag is None or not self.protocol & flag

    def may(self, action: int) -> bool:
        return bool(self.actions & action)


@dataclass(frozen=True, slots=True)
class Answer:
    """A response that ends a command: kind is one of accept, continue,
    reject, tempfail, discard, skip, reply (with `text`: "554 5.7.1 ..."),
    shutdown, conn_fail; progress means "still working, wait longer"."""

    kind: str
    text: str = ""


@dataclass(frozen=True, slots=True)
class Modification:
    """A change at end of message: kind is one of add_header, insert_header,
    change_header, replace_body, add_rcpt, delete_rcpt, change_from,
    quarantine. Unused fields are empty."""

    kind: str
    name: str = ""
    value: str = ""
    index: int = 0
    data: bytes = b""


_SIMPLE = {
    b"a": "accept",
    b"c": "continue",
    b"r": "reject",
    b"t": "tempfail",
    b"d": "discard",
    b"s": "skip",
    b"p": "progress",
    b"4": "shutdown",
    b"f": "conn_fail",
}

Response = Negotiated | Answer | Modification


class MilterDecoder:
    """Splits the milter's bytes into responses (module contract)."""

    __slots__ = ("_buf",)

    def __init__(self) -> None:
        self._buf = bytearray()

    def feed(self, data: bytes) -> list[Response]:
        self._buf += data
        out: list[Response] = []
        buf = self._buf
        while len(buf) >= 4:
            (length,) = struct.unpack_from("!I", buf)
            if not 1 <= length <= MAX_PACKET:
                raise MilterProtocolError(f"packet length {length} out of bounds")
            if len(buf) < 4 + length:
                break
            command, payload = bytes(buf[4:5]), bytes(buf[5 : 4 + length])
            del buf[: 4 + length]
            out.append(_decode(command, payload))
        return out


def _decode(command: bytes, data: bytes) -> Response:
    simple = _SIMPLE.get(command)
    if simple is not None:
        return Answer(simple)
    if command == b"O":
        return _negotiated(data)
    if command == b"y":
        return Answer("reply", _strings(data, 1)[0])
    if command == b"h":
        name, value = _strings(data, 2)
        return Modification("add_header", name, value)
    if command in (b"i", b"m"):
        if len(data) < 4:
            raise MilterProtocolError("header change without an index")
        (index,) = struct.unpack_from("!I", data)
        name, value = _strings(data[4:], 2)
        kind = "insert_header" if command == b"i" else "change_header"
        return Modification(kind, name, value, index)
    if command == b"b":
        return Modification("replace_body", data=data)
    if command == b"+":
        return Modification("add_rcpt", _strings(data, 1)[0])
    if command == b"2":
        parts = _strings(data, 1, optional=1)
        return Modification("add_rcpt", parts[0], parts[1] if len(parts) > 1 else "")
    if command == b"-":
        return Modification("delete_rcpt", _strings(data, 1)[0])
    if command == b"e":
        parts = _strings(data, 1, optional=1)
        return Modification("change_from", parts[0], parts[1] if len(parts) > 1 else "")
    if command == b"q":
        return Modification("quarantine", value=_strings(data, 1)[0])
    raise MilterProtocolError(f"unknown response {command!r}")


def _negotiated(data: bytes) -> Negotiated:
    if len(data) < 12:
        raise MilterProtocolError("short option negotiation")
    version, actions, protocol = struct.unpack_from("!III", data)
    macros: dict[bytes, tuple[str, ...]] = {}
    rest = data[12:]
    while len(rest) >= 4:  # SMFIR_SETSYMLIST pairs: stage, "names\0"
        (stage,) = struct.unpack_from("!I", rest)
        end = rest.find(b"\0", 4)
        if end == -1:
            raise MilterProtocolError("unterminated macro list")
        names = rest[4:end].decode("ascii", "replace").split()
        if stage in MACRO_STAGES:
            macros[MACRO_STAGES[stage]] = tuple(n.strip("{}") for n in names)
        rest = rest[end + 1 :]
    return Negotiated(version, actions, protocol, macros)


def _strings(data: bytes, count: int, *, optional: int = 0) -> list[str]:
    """`count` NUL-terminated strings (and up to `optional` more)."""
    parts = data.split(b"\0")
    if parts and parts[-1] == b"":
        parts.pop()
    if not count <= len(parts) <= count + optional + 8:
        raise MilterProtocolError(f"expected {count} strings, got {len(parts)}")
    return [p.decode("utf-8", "surrogateescape") for p in parts[: count + optional]]
