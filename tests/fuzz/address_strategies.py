"""Hypothesis strategies for SMTP addresses (RFC 5321 §4.1.2 grammar pieces),
shared by the fuzz tests of the server parser and of the client writer."""

from __future__ import annotations

from hypothesis import strategies as st

from pigeon.vocab.address import Address

ATEXT = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789!#$%&'*+-/=?^_`{|}~"
atom = st.text(ATEXT, min_size=1, max_size=12)
dot_string = st.lists(atom, min_size=1, max_size=4).map(".".join)
# Quoted local parts: any printable ASCII, quotes, backslashes and ">" included.
quoted = st.text(st.characters(min_codepoint=32, max_codepoint=126), min_size=1, max_size=20)
label = st.from_regex(r"[a-z0-9]([a-z0-9-]{0,10}[a-z0-9])?", fullmatch=True)
domain = st.lists(label, min_size=1, max_size=4).map(".".join)
literal = st.ip_addresses(v=4).map(lambda ip: f"[{ip}]") | st.ip_addresses(v=6).map(
    lambda ip: f"[IPv6:{ip.compressed}]"
)
addresses = st.builds(Address, dot_string | quoted, domain | literal)
