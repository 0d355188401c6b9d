"""A lean DKIM verifier for the common signature, with dkimpy behind it for the rest.

dkimpy (policy/mailauth/verify.py) re-parses the whole message for every
signature, canonicalises every header field and the body with regular
expressions, and checks keys through its own ASN.1 code: most of the cost
of an inbound check (docs/mail-auth.md, "What it costs"). This module does
the same verification for the signatures nearly all mail carries, with
the message parsed once and the keys parsed once per record text.

Contract:
  * `parse_message(content)` splits the message (CRLF line ends) into its
    raw header fields (name, value with its folding and final CRLF) and
    its body, as dkimpy does; None when the message is anything it is not
    sure to split as dkimpy would (a bare LF, a header line that is not a
    field; a message without an empty line is all header section, as for
    dkimpy). The result caches the canonical body hashes, so signatures
    with the same c= and l= hash the body once.
  * `tag_list(text)` reads a tag=value list (RFC 6376 §3.2) exactly as
    dkimpy's `parse_tag_value` does (None where it raises), faster.
  * `parse_key(record)` (cached by the record text) reads a key record
    (RFC 6376 §3.6.1): a `PublicKey` for v=DKIM1 (or no v=), k=rsa with p=
    a SubjectPublicKeyInfo or a bare PKCS#1 RSAPublicKey (both read by
    `cryptography`'s load_der_public_key, as dkimpy reads both) or
    k=ed25519 with p= the 32-octet key (RFC 8463 §4.2), s= absent or
    naming "*" or "email", with its h= hashes and t=s flag; a reason
    (permerror) for an empty p= (revoked, §3.6.1); None for everything
    else (dkimpy decides those).
  * `verify(message, index, key, domain=, selector=, now=)` checks the
    index-th DKIM-Signature field and returns (result, reason) with the
    results of policy/mailauth/verify.py, or None when the signature is
    not one this module handles (dkimpy then decides, so an answer is
    never less correct than dkimpy's: it is dkimpy's, or stricter where
    the RFC says so and dkimpy does not check). Handled: v=1, a=rsa-sha256 or
    a=ed25519-sha256, c= simple|relaxed for header and body (§3.4), q=
    absent or dns/txt, l=, t=, x=, i=; b= and bh= valid base64. In order:
      - h= without From: permerror (§5.4, §6.1.1);
      - i= whose domain is not d= or a subdomain of it: fail (§3.5);
        i= not exactly d= under a key with t=s: permerror (§3.6.1);
      - x= before t=: permerror; x= in the past: fail (§3.5, no slack;
        a t= more than 10 hours ahead is left to dkimpy, which fails it);
      - a key of another type than a=, or whose h= lacks sha256:
        permerror (§3.6.1, §6.1.2);
      - the body hash (c=, l=, §3.4.3, §3.4.4, §3.5 l=) differs from bh=:
        fail;
      - the header hash: the h= fields chosen bottom-up per name, a name
        with no field left hashed as nothing (§5.4.2), then this
        DKIM-Signature field with b= emptied and no final CRLF (§3.7),
        canonicalised per c=; checked with RSASSA-PKCS1-v1_5 over its
        SHA-256 digest (RFC 8017 §8.2.2) or Ed25519 over the SHA-256 digest
        (RFC 8463 §3): fail when it does not verify, else pass.
    As dkimpy does, an h= naming From also hashes one more From field
    above the signed ones, if there is one (a second From breaks the
    signature).
  * `read_signature(value)` reads one DKIM-Signature field's raw value into
    a `Signature` (None: not one this module handles), and
    `verify_signature(message, index, signature, key, now=)` is `verify`
    for a signature read once for all it is used for (its key's name, its
    verification and its result: policy/mailauth/verify.py `read_signatures`).
  * No cryptography is written here: RSA and Ed25519 checks are
    `cryptography`'s (OpenSSL), hashing is hashlib's.
  * Key-size limits and max_signatures are the caller's (verify.py).
"""

from __future__ import annotations

import base64
import binascii
import functools
import hashlib
import re
from dataclasses import dataclass, field

from cryptography.exceptions import InvalidSignature, UnsupportedAlgorithm
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ed25519, padding, rsa
from cryptography.hazmat.primitives.asymmetric.utils import Prehashed
from cryptography.hazmat.primitives.serialization import load_der_public_key

__all__ = [
    "ParsedMessage",
    "PublicKey",
    "Signature",
    "parse_key",
    "parse_message",
    "read_signature",
    "tag_list",
    "verify",
    "verify_signature",
]

_ALGORITHMS = {b"rsa-sha256": "rsa", b"ed25519-sha256": "ed25519"}
_CANON = {b"simple": False, b"relaxed": True}  # value: relaxed?
_MANDATORY = (b"v", b"a", b"b", b"bh", b"d", b"h", b"s")  # RFC 6376 §3.5
_FIELD_NAME = re.compile(rb"[\x21-\x39\x3b-\x7e]+")  # RFC 5322 §3.6.8 ftext
_FIELD_END = re.compile(rb"\r\n(?![ \t])")  # a line end that does not fold (RFC 5322 §2.2.3)
_NAMES = re.compile(
    rb"[\x21-\x39\x3b-\x7e]+(?:\n[\x21-\x39\x3b-\x7e]+)*"
)  # field names, one per line
_WSP_RUN = re.compile(rb"[\t ]+")
_WSP_BEFORE_CRLF = re.compile(rb"[\t ]+\r\n")
_H_SEPARATOR = re.compile(rb"\s*:\s*")
_D_SPECIALS = re.compile(rb"[()<>\[\]:;@\\,]")
# Where a b= tag's value starts, and the octets it may hold (RFC 6376 §3.5:
# base64 and FWS); see `_empty_b`.
_B_START = re.compile(rb"[;\s]b\s*=")
_B_VALUE = re.compile(rb"[\sA-Za-z0-9+/=]*")
_PKCS1 = padding.PKCS1v15()
_SHA256_DIGEST = Prehashed(hashes.SHA256())
# dkimpy's leeway for a t= in the future (clocks that are off); more is its business.
_CLOCK_SLACK = 36000


@dataclass(frozen=True, slots=True)
class PublicKey:
    """A usable key record (module contract)."""

    kind: str  # "rsa" | "ed25519"
    bits: int
    key: rsa.RSAPublicKey | ed25519.Ed25519PublicKey
    hashes: frozenset[bytes] | None  # h= of the record; None: any
    strict: bool  # t=s: i= must be exactly d=


@dataclass(slots=True)
class ParsedMessage:
    """A message split once (module contract)."""

    headers: list[tuple[bytes, bytes]]  # (name, raw value with folding and CRLF)
    body: bytes
    signatures: list[int]  # indexes into headers of the DKIM-Signature fields
    lower_names: list[bytes] = field(default_factory=list)
    body_hashes: dict[tuple[bool, int | None], bytes] = field(default_factory=dict)

    def body_hash(self, relaxed: bool, length: int | None) -> bytes:
        """SHA-256 of the canonical body (§3.4.3, §3.4.4), cut at l= octets."""
        cached = self.body_hashes.get((relaxed, length))
        if cached is not None:
            return cached
        body = self.body
        # find(), not "in": CPython's bytes "in" first tries its operand as an
        # integer and builds (then drops) a TypeError each time, per message.
        if relaxed and (body.find(b"\t") >= 0 or body.find(b"  ") >= 0 or body.find(b" \r\n") >= 0):
            body = _WSP_RUN.sub(b" ", _WSP_BEFORE_CRLF.sub(b"\r\n", body))
        end = len(body)
        while body.endswith(b"\r\n", 0, end):  # empty lines at the end are ignored
            end -= 2
        if end == 0:  # an empty body is CRLF in simple, nothing in relaxed
            canonical = [memoryview(b"" if relaxed else b"\r\n")]
        else:
            canonical = [memoryview(body)[:end], memoryview(b"\r\n")]
        digest = hashlib.sha256()
        budget = length
        for part in canonical:
            if budget is not None:
                part, budget = part[:budget], max(0, budget - len(part))
            digest.update(part)
        self.body_hashes[(relaxed, length)] = digest.digest()
        return self.body_hashes[(relaxed, length)]


def parse_message(content: bytes) -> ParsedMessage | None:
    """The message's header fields and body, or None (module contract)."""
    if content.count(b"\n") != content.count(b"\r\n"):
        return None  # a bare LF: dkimpy reads it as a line end; leave it to dkimpy
    if content.startswith(b"\r\n"):
        head, body = b"", content[2:]
    else:
        end = content.find(b"\r\n\r\n")
        if end >= 0:
            head, body = content[: end + 2], content[end + 4 :]
        else:  # no empty line: all header section, as dkimpy reads it
            head, body = content if content.endswith(b"\r\n") else content + b"\r\n", b""
    # The usual header section is read with one split at each line end that
    # does not fold (RFC 5322 §2.2.3) and one check of all the names; anything
    # else (a line that is not a field, an mbox "From " line) line by line.
    pairs = [field.partition(b":") for field in _FIELD_END.split(head[:-2])] if head[:-2] else []
    if all(colon for _, colon, _ in pairs) and _NAMES.fullmatch(b"\n".join(p[0] for p in pairs)):
        headers = [(name, value + b"\r\n") for name, _, value in pairs]
    else:
        found = _fields_by_line(head)
        if found is None:
            return None
        headers = found
    lower = [name.lower() for name, _ in headers]
    signatures = [i for i, name in enumerate(lower) if name == b"dkim-signature"]
    return ParsedMessage(headers, body, signatures, lower)


def _fields_by_line(head: bytes) -> list[tuple[bytes, bytes]] | None:
    """The header fields of `head` (ending in CRLF) read line by line, as dkimpy does."""
    headers: list[tuple[bytes, bytes]] = []
    for line in head[:-2].split(b"\r\n") if head[:-2] else ():
        if line[:1] in (b" ", b"\t"):  # folded: part of the field above (RFC 5322 §2.2.3)
            if not headers:
                return None
            name, value = headers[-1]
            headers[-1] = (name, value + line + b"\r\n")
            continue
        colon = line.find(b":")
        if colon > 0 and _FIELD_NAME.fullmatch(line, 0, colon):
            headers.append((line[:colon], line[colon + 1 :] + b"\r\n"))
        elif not line.startswith(b"From "):  # dkimpy skips an mbox "From " line
            return None
    return headers


def tag_list(text: bytes) -> dict[bytes, bytes] | None:
    """RFC 6376 §3.2 tag=value list, as strict as dkimpy's parser; None if malformed."""
    specs = text.strip().split(b";")
    if not specs[-1]:  # a trailing ";" is allowed
        specs.pop()
    found: dict[bytes, bytes] = {}
    for spec in specs:
        name, equals, value = spec.partition(b"=")
        name = name.strip()
        if not equals or not name[:1].isalpha() or name in found:  # as dkimpy: ^[a-zA-Z]
            return None
        found[name] = value.strip()
    return found


def _base64(value: bytes) -> bytes | None:
    """A b=/bh=/p= value decoded, its FWS ignored (§3.5); None when not plain base64."""
    compact = b"".join(value.split())
    # Strict decoding refuses what is not the base64 alphabet or not padded
    # right, but lets "====" through: the check below keeps that out.
    if not compact or len(compact) % 4 or compact.endswith(b"==="):
        return None
    try:
        return binascii.a2b_base64(compact, strict_mode=True)
    except binascii.Error:
        return None


@functools.lru_cache(maxsize=512)
def parse_key(record: str) -> PublicKey | str | None:
    """The key of a DKIM key record, a permerror reason, or None (module contract)."""
    found = tag_list(record.encode("utf-8", "replace"))
    if found is None or found.get(b"v", b"DKIM1") != b"DKIM1" or b"p" not in found:
        return None
    kind = found.get(b"k", b"rsa")
    service = found.get(b"s")
    if service is not None and not {s.strip() for s in service.split(b":")} & {b"*", b"email"}:
        return None
    if not b"".join(found[b"p"].split()):
        return "key revoked (empty p=)"  # RFC 6376 §3.6.1
    try:
        raw = base64.b64decode(found[b"p"])  # as dkimpy reads it: non-alphabet octets ignored
    except binascii.Error:
        return None
    key: rsa.RSAPublicKey | ed25519.Ed25519PublicKey
    if kind == b"rsa":
        try:
            loaded = load_der_public_key(raw)
        except (ValueError, UnsupportedAlgorithm):
            return None  # dkimpy says what is wrong with it
        if not isinstance(loaded, rsa.RSAPublicKey):
            return None
        key, bits = loaded, loaded.key_size
    elif kind == b"ed25519" and len(raw) == 32:
        key, bits = ed25519.Ed25519PublicKey.from_public_bytes(raw), 256
    else:
        return None
    allowed = found.get(b"h")
    flags = {f.strip() for f in found.get(b"t", b"").split(b":")}
    return PublicKey(
        kind.decode(),
        bits,
        key,
        frozenset(h.strip() for h in allowed.split(b":")) if allowed is not None else None,
        b"s" in flags,
    )


@dataclass(slots=True)
class Signature:
    """A DKIM-Signature this module handles, its tags read (`read_signature`)."""

    algorithm: str  # "rsa" | "ed25519"
    relaxed_header: bool
    relaxed_body: bool
    domain: bytes  # d=, lowercase
    selector: bytes
    identity: bytes | None  # the domain of i=
    signed: list[bytes]  # h=, lowercase
    length: int | None
    timestamp: int | None
    expires: int | None
    b: bytes
    bh: bytes
    b_start: str  # the first 8 characters of b= (RFC 6008), for the result


def read_signature(value: bytes) -> Signature | None:
    """The tags of a DKIM-Signature this module handles, or None (dkimpy's)."""
    found = tag_list(value)
    if found is None or any(tag not in found for tag in _MANDATORY) or found[b"v"] != b"1":
        return None
    algorithm = _ALGORITHMS.get(found[b"a"])
    header_canon, _, body_canon = found.get(b"c", b"simple").partition(b"/")
    relaxed_header = _CANON.get(header_canon)
    relaxed_body = _CANON.get(body_canon or b"simple")
    b, bh, domain = _base64(found[b"b"]), _base64(found[b"bh"]), found[b"d"]
    numbers: dict[bytes, int | None] = {}
    for tag in (b"l", b"t", b"x"):
        text = found.get(tag)
        if text is not None and (not text.isdigit() or len(text) > 76):
            return None
        numbers[tag] = int(text) if text is not None else None
    identity = found.get(b"i")
    if (
        algorithm is None
        or relaxed_header is None
        or relaxed_body is None
        or b is None
        or bh is None
        or found.get(b"q", b"dns/txt") != b"dns/txt"
        or not domain.isascii()
        or _D_SPECIALS.search(domain)
        or (identity is not None and identity.find(b"@") < 0)
    ):
        return None
    return Signature(
        algorithm,
        relaxed_header,
        relaxed_body,
        domain.lower(),
        found[b"s"],
        identity.rpartition(b"@")[2].lower() if identity is not None else None,
        [name.lower() for name in _H_SEPARATOR.split(found[b"h"])],
        numbers[b"l"],
        numbers[b"t"],
        numbers[b"x"],
        b,
        bh,
        b"".join(found[b"b"].split())[:8].decode(),
    )


def _checks(sig: Signature, key: PublicKey, now: float) -> tuple[str, str] | None:
    """The rules before any hashing (module contract, in order); None: go on."""
    if b"from" not in sig.signed:
        return "permerror", "From is not signed (h=)"
    if sig.identity is not None:
        if sig.identity != sig.domain and not sig.identity.endswith(b"." + sig.domain):
            return "fail", "i= domain is not d= or a subdomain of it"
        if key.strict and sig.identity != sig.domain:
            return "permerror", "i= domain is not d= and the key has t=s"
    if sig.expires is not None:
        if sig.timestamp is not None and sig.expires < sig.timestamp:
            return "permerror", "x= is before t="
        if sig.expires < now:
            return "fail", "signature expired (x=)"
    if key.kind != sig.algorithm:
        return "permerror", f"key of type {key.kind} for a={sig.algorithm}-sha256"
    if key.hashes is not None and b"sha256" not in key.hashes:
        return "permerror", "key h= does not allow sha256"
    return None


def _header_hash(message: ParsedMessage, sig: Signature, field_index: int) -> bytes:
    """SHA-256 of the signed header fields and the signature field (§3.7, §5.4.2)."""
    headers, lower = message.headers, message.lower_names
    names = list(sig.signed)
    if b"from" in names:  # as dkimpy: one more From above the signed ones breaks it
        names.append(b"from")
    digest = hashlib.sha256()
    below: dict[bytes, int] = {}
    for name in names:
        at = below.get(name, len(headers))
        while at > 0:
            at -= 1
            if lower[at] == name:
                digest.update(_canonical(*headers[at], sig.relaxed_header))
                break
        below[name] = at
    name, value = headers[field_index]
    emptied = _canonical(name, _empty_b(value), sig.relaxed_header)
    digest.update(emptied.rstrip())  # hashed without its final CRLF (§3.7)
    return digest.digest()


def _empty_b(value: bytes) -> bytes:
    """The signature field's value with the b= value removed (§3.7).

    The same octets as dkimpy's pattern (`dkim.RE_BTAG`: "[;\\s]b FWS =",
    then FWS and base64 as long as a base64 character follows, then a
    final line end), without its backtracking, which cost more than the
    RSA check: the value runs to its last base64 character."""
    out, at = [], 0
    while (start := _B_START.search(value, at)) is not None:
        begin = start.end()
        run = _B_VALUE.match(value, begin)
        end = begin + len(value[begin : run.end() if run else begin].rstrip())
        if value[end:] in (b"\r\n", b"\n"):
            end = len(value)
        out.append(value[at:begin])
        at = end
    out.append(value[at:])
    return b"".join(out)


def _canonical(name: bytes, value: bytes, relaxed: bool) -> bytes:
    """One header field canonicalised (§3.4.1 simple, §3.4.2 relaxed)."""
    if not relaxed:
        return name + b":" + value
    value = value.replace(b"\r\n", b"")  # unfold; parse_message left no bare LF
    if value.find(b"\t") >= 0 or value.find(b"  ") >= 0:  # find(): see body_hash
        if value.find(b"\r") < 0 and value.find(b"\x0b") < 0 and value.find(b"\x0c") < 0:
            # Its only white space is WSP: split() makes each run one SP and
            # drops both ends, as the expression below and strip() do, faster.
            return name.lower() + b":" + b" ".join(value.split()) + b"\r\n"
        value = _WSP_RUN.sub(b" ", value)
    return name.lower() + b":" + value.strip() + b"\r\n"


def verify(
    message: ParsedMessage,
    index: int,
    key: PublicKey,
    *,
    domain: str,
    selector: str,
    now: float,
) -> tuple[str, str] | None:
    """(result, reason) of the index-th DKIM-Signature, or None (module contract)."""
    sig = read_signature(message.headers[message.signatures[index]][1])
    if (
        sig is None
        or sig.domain.decode() != domain
        or sig.selector.decode("ascii", "replace") != selector
    ):
        return None  # not ours to judge, or not the key the caller fetched
    return verify_signature(message, index, sig, key, now=now)


def verify_signature(
    message: ParsedMessage, index: int, sig: Signature, key: PublicKey, *, now: float
) -> tuple[str, str] | None:
    """`verify` for a signature already read (`read_signature` of that field)
    and a key fetched for its d= and s=."""
    field_index = message.signatures[index]
    if sig.timestamp is not None and sig.timestamp > now + _CLOCK_SLACK:
        return None  # signed "in the future": dkimpy's rule
    refused = _checks(sig, key, now)
    if refused is not None:
        return refused
    if message.body_hash(sig.relaxed_body, sig.length) != sig.bh:
        return "fail", "body hash mismatch"
    digest = _header_hash(message, sig, field_index)
    try:
        if isinstance(key.key, rsa.RSAPublicKey):
            key.key.verify(sig.b, digest, _PKCS1, _SHA256_DIGEST)
        else:
            key.key.verify(sig.b, digest)
    except (InvalidSignature, ValueError):
        return "fail", "signature did not verify"
    return "pass", ""
