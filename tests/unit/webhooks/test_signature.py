"""The Pigeon-Signature header (webhooks/signature.py): a known vector, verification, replay."""

from __future__ import annotations

import hashlib
import hmac

from pigeon.webhooks.signature import sign, verify

BODY = b'{"id":"evt_1","type":"delivered"}'


def test_known_vector():
    # HMAC-SHA256(key, "<t>.<body>") computed here independently (RFC 2104).
    expected = hmac.new(b"whsec", b"1700000000." + BODY, hashlib.sha256).hexdigest()
    assert sign("whsec", BODY, 1700000000.9) == f"t=1700000000,v1={expected}"


def test_verify_accepts_its_own_signature():
    header = sign("whsec", BODY, 1000)
    assert verify("whsec", header, BODY, now=1000)
    assert verify("whsec", header, BODY, now=1299)
    assert verify("whsec", "x=1, " + header + ",v1=00", BODY, now=1000)  # lenient parsing


def test_verify_refuses():
    header = sign("whsec", BODY, 1000)
    assert not verify("other", header, BODY, now=1000)  # wrong key
    assert not verify("whsec", header, BODY + b" ", now=1000)  # body changed
    assert not verify("whsec", header, BODY, now=1301)  # too old: a replay
    assert not verify("whsec", header, BODY, now=699)  # from the future
    assert not verify("whsec", header.replace("t=1000", "t=1001"), BODY, now=1000)
    assert not verify("whsec", "v1=abc", BODY, now=1000)
    assert not verify("whsec", "", BODY, now=1000)


def test_the_receiver_example_in_the_docs_agrees():
    """docs/webhooks.md's verification example, run against our signatures."""
    import re
    import time
    from pathlib import Path

    doc = Path(__file__).resolve().parents[3] / "docs" / "webhooks.md"
    [code] = re.findall(r"```python\n(.*?)```", doc.read_text(encoding="utf-8"), re.S)
    space: dict = {}
    exec(compile(code, str(doc), "exec"), space)
    check = space["pigeon_signature_ok"]
    now = time.time()
    assert check("whsec", sign("whsec", BODY, now), BODY)
    assert not check("other", sign("whsec", BODY, now), BODY)
    assert not check("whsec", sign("whsec", BODY, now - 301), BODY)
    assert not check("whsec", sign("whsec", BODY, now), BODY + b"x")
    assert not check("whsec", "garbage", BODY)
