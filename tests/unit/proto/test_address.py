"""parse_path / split_path / Address.__str__ (RFC 5321 §4.1.2, RFC 6531 §3.3)."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from pigeon.vocab.address import Address, NonAsciiAddressError, PathError, parse_path, split_path


def p(text: str, *, null: bool = False, utf8: bool = False) -> Address | None:
    return parse_path(text, allow_null=null, smtputf8=utf8)


@pytest.mark.parametrize(
    "text, local, domain",
    [
        ("<bob@example.org>", "bob", "example.org"),
        ("<Bob.Smith@Example.ORG>", "Bob.Smith", "example.org"),
        ("bob@example.org", "bob", "example.org"),  # no brackets (Postfix)
        ('<"john doe"@example.org>', "john doe", "example.org"),
        ('<"a\\"b\\\\c"@example.org>', 'a"b\\c', "example.org"),
        ('<"a>b"@example.org>', "a>b", "example.org"),
        ('<""@example.org>', "", "example.org"),
        ("<x@[192.0.2.1]>", "x", "[192.0.2.1]"),
        ("<x@[IPv6:2001:DB8::1]>", "x", "[IPv6:2001:db8::1]"),
        ("<x@[ipv6:::ffff:192.0.2.1]>", "x", "[IPv6:::ffff:192.0.2.1]"),
        ("<x@[x-tag:content]>", "x", "[x-tag:content]"),
        ("<@a.example,@b.example:bob@c.example>", "bob", "c.example"),  # source route dropped
        ("<postmaster>", "postmaster", ""),
        ("<PostMaster>", "postmaster", ""),
        ("<!#$%&'*+/=?^_`{|}~-@example.org>", "!#$%&'*+/=?^_`{|}~-", "example.org"),
    ],
)
def test_valid(text: str, local: str, domain: str) -> None:
    assert p(text) == Address(local, domain)


@pytest.mark.parametrize(
    "text",
    [
        "<>x",
        "<bob>",
        "<bob@>",
        "<@example.org>",
        "<.bob@example.org>",
        "<bob.@example.org>",
        "<bo..b@example.org>",
        "<bob@example..org>",
        "<bob@-example.org>",
        "<bob@example-.org>",
        "<bob@exa_mple.org>",
        "<bob@[300.1.2.3]>",
        "<bob@[1.2.3]>",
        "<bob@[IPv6:1::2::3]>",
        "<bob@[IPv6:fe80::1%eth0]>",
        "<bob@[tag:]>",
        "<bob@[:x]>",
        "<bob@[1.2.3.4>",
        '<"bob@example.org>',
        '<"b"ob@example.org>',
        "<bob@example.org",
        "<a b@example.org>",
        "<@a.example:>",
        "<@a.example bob@example.org>",
        "<a@b@c.example>",
        "",
        "<bob@example.org>>",
        "<x@" + "a" * 250 + ".org>",
    ],
)
def test_invalid(text: str) -> None:
    with pytest.raises(PathError):
        p(text)


def test_null_path() -> None:
    assert p("<>", null=True) is None
    with pytest.raises(PathError):
        p("<>")
    with pytest.raises(PathError):
        p("", null=True)


def test_length_limits() -> None:  # RFC 5321 §4.5.3.1
    assert p("<" + "a" * 64 + "@example.org>")
    with pytest.raises(PathError):
        p("<" + "a" * 65 + "@example.org>")
    label = "a" * 63
    domain = ".".join([label] * 3) + ".abcdefghijklmnopqrstuvwxyz"  # 218 octets
    assert p(f"<x@{domain}>")
    with pytest.raises(PathError):  # path over 256 octets
        p("<" + "a" * 60 + "@" + ".".join([label] * 3) + ".ab" + ">")


def test_utf8() -> None:
    assert p("<jöran@exämple.org>", utf8=True) == Address("jöran", "exämple.org")
    assert p('<"jö ran"@example.org>', utf8=True) == Address("jö ran", "example.org")
    with pytest.raises(NonAsciiAddressError):
        p("<jöran@example.org>")
    with pytest.raises(NonAsciiAddressError):
        p("<bob@exämple.org>")
    with pytest.raises(PathError):
        p("<bob@ex☃mple.org>", utf8=True)  # not a letter/digit
    # The local part limit counts octets, not characters.
    with pytest.raises(PathError):
        p("<" + "ö" * 33 + "@example.org>", utf8=True)


@pytest.mark.parametrize(
    "addr, text",
    [
        (Address("bob", "example.org"), "bob@example.org"),
        (Address("john doe", "example.org"), '"john doe"@example.org'),
        (Address('a"b\\c', "example.org"), '"a\\"b\\\\c"@example.org'),
        (Address("", "example.org"), '""@example.org'),
        (Address(".bob", "example.org"), '".bob"@example.org'),
        (Address("postmaster", ""), "postmaster"),
        (Address("jöran", "example.org"), "jöran@example.org"),
    ],
)
def test_str(addr: Address, text: str) -> None:
    assert str(addr) == text


@pytest.mark.parametrize(
    "arg, path, rest",
    [
        ("<a@b.example>", "<a@b.example>", ""),
        ("  <a@b.example>  SIZE=1  BODY=7BIT", "<a@b.example>", "SIZE=1  BODY=7BIT"),
        ('<"x> y"@b.example> SIZE=1', '<"x> y"@b.example>', "SIZE=1"),
        ("a@b.example SIZE=1", "a@b.example", "SIZE=1"),
        ("<>", "<>", ""),
    ],
)
def test_split_path(arg: str, path: str, rest: str) -> None:
    assert split_path(arg) == (path, rest)


@pytest.mark.parametrize("arg", ["<a@b.example", "<a@b.example>SIZE=1", '<"a@b.example>'])
def test_split_path_errors(arg: str) -> None:
    with pytest.raises(PathError):
        split_path(arg)


_label = st.from_regex(r"[a-z0-9]([a-z0-9-]{0,10}[a-z0-9])?", fullmatch=True)
_domains = st.lists(_label, min_size=1, max_size=4).map(".".join)
_literals = st.one_of(
    st.ip_addresses(v=4).map(lambda a: f"[{a}]"),
    st.ip_addresses(v=6).map(lambda a: f"[IPv6:{a}]"),
)
_locals = st.text(st.characters(min_codepoint=32, max_codepoint=126), max_size=30)


@given(local=_locals, domain=st.one_of(_domains, _literals))
def test_round_trip(local: str, domain: str) -> None:
    addr = Address(local, domain)
    text = "<" + str(addr) + ">"
    if len(text) > 256 or len(str(addr).rpartition("@")[0]) > 64:
        return
    assert p(text) == addr
    assert p(text, utf8=True) == addr


@given(st.text(max_size=80))
def test_never_raises_anything_but_path_error(text: str) -> None:
    for null in (False, True):
        for utf8 in (False, True):
            try:
                p(text, null=null, utf8=utf8)
            except PathError:
                pass
