"""The milter protocol codec (proto/milter.py): packets out, responses in."""

from __future__ import annotations

import struct

import pytest

from pigeon.proto import milter as M


def packet(command: bytes, data: bytes = b"") -> bytes:
    return struct.pack("!I", len(data) + 1) + command + data


def test_negotiation_offers_version_6_every_action_and_no_leading_space():
    sent = M.encode_negotiate()
    assert sent[:5] == struct.pack("!I", 13) + b"O"
    version, actions, protocol = struct.unpack("!III", sent[5:])
    assert (version, actions) == (6, 0x1FF)
    assert not protocol & (M.HDR_LEADSPC | M.RCPT_REJ)
    assert protocol & M.SKIP and protocol & M.NR_HDR


def test_connect_and_strings_and_macros():
    assert M.encode_connect("unknown", "192.0.2.1", 2525) == packet(
        b"C", b"unknown\x00" + b"4" + struct.pack("!H", 2525) + b"192.0.2.1\x00"
    )
    assert M.encode_connect("unknown", "2001:db8::1", 25).endswith(b"6\x00\x19IPv6:2001:db8::1\x00")
    assert M.encode_strings(M.MAIL, "<a@b.test>", "SIZE=10") == packet(
        b"M", b"<a@b.test>\x00SIZE=10\x00"
    )
    assert M.encode_macros(M.CONNECT, {"j": "mx.test", "client_addr": "192.0.2.1"}) == packet(
        b"D", b"Cj\x00mx.test\x00{client_addr}\x00192.0.2.1\x00"
    )


def test_body_goes_in_chunks_of_at_most_65535():
    chunks = M.encode_body(b"x" * (M.CHUNK * 2 + 10))
    assert [len(c) - 5 for c in chunks] == [M.CHUNK, M.CHUNK, 10]
    assert all(c[4:5] == b"B" for c in chunks)


def test_responses_split_anywhere_are_put_back_together():
    stream = (
        packet(b"O", struct.pack("!III", 6, M.ADDHDRS | M.CHGHDRS, M.NR_HDR | M.NOHELO))
        + packet(b"c")
        + packet(b"h", b"X-Spam\x00Yes\x00")
        + packet(b"i", struct.pack("!I", 0) + b"DKIM-Signature\x00v=1;\n\tb=x\x00")
        + packet(b"m", struct.pack("!I", 2) + b"Subject\x00\x00")
        + packet(b"y", b"554 5.7.1 Gtube pattern\x00")
        + packet(b"2", b"<c@d.test>\x00NOTIFY=NEVER\x00")
        + packet(b"-", b"<b@d.test>\x00")
        + packet(b"e", b"<>\x00")
        + packet(b"q", b"held\x00")
        + packet(b"b", b"new body\r\n")
        + packet(b"a")
    )
    decoder = M.MilterDecoder()
    out = []
    for i in range(len(stream)):  # one octet at a time
        out += decoder.feed(stream[i : i + 1])
    neg = out[0]
    assert isinstance(neg, M.Negotiated)
    assert neg.may(M.ADDHDRS) and not neg.may(M.CHGBODY)
    assert not neg.sends(M.HELO) and neg.sends(M.MAIL)
    assert not neg.replies(M.HEADER) and neg.replies(M.EOH)
    assert out[1:] == [
        M.Answer("continue"),
        M.Modification("add_header", "X-Spam", "Yes"),
        M.Modification("insert_header", "DKIM-Signature", "v=1;\n\tb=x", 0),
        M.Modification("change_header", "Subject", "", 2),
        M.Answer("reply", "554 5.7.1 Gtube pattern"),
        M.Modification("add_rcpt", "<c@d.test>", "NOTIFY=NEVER"),
        M.Modification("delete_rcpt", "<b@d.test>"),
        M.Modification("change_from", "<>", ""),
        M.Modification("quarantine", value="held"),
        M.Modification("replace_body", data=b"new body\r\n"),
        M.Answer("accept"),
    ]


def test_negotiation_with_macro_lists():
    lists = struct.pack("!I", 2) + b"{auth_authen} i\x00" + struct.pack("!I", 5) + b"i\x00"
    (neg,) = M.MilterDecoder().feed(packet(b"O", struct.pack("!III", 6, 0, 0) + lists))
    assert neg.macros == {M.MAIL: ("auth_authen", "i"), M.BODYEOB: ("i",)}


def test_version_2_waits_for_every_reply():
    (neg,) = M.MilterDecoder().feed(packet(b"O", struct.pack("!III", 2, 0, M.NR_HDR)))
    assert neg.replies(M.HEADER)


@pytest.mark.parametrize(
    "data",
    [
        struct.pack("!I", 0),  # no command octet
        struct.pack("!I", M.MAX_PACKET + 1) + b"b",  # too big: refused before it is read
        packet(b"Z"),  # unknown response
        packet(b"O", b"\x00\x00\x00\x06"),  # short negotiation
        packet(b"i", b"\x00\x00"),  # no index
        packet(b"h", b"only-a-name\x00"),  # one string where two are needed
    ],
)
def test_what_is_not_the_protocol_raises(data):
    with pytest.raises(M.MilterProtocolError):
        M.MilterDecoder().feed(data)
