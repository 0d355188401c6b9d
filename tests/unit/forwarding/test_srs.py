"""The SRS codec (forwarding/srs.py): the libsrs2/postsrsd address format."""

from __future__ import annotations

import base64
import hashlib
import hmac

import pytest

from pigeon.forwarding.srs import SrsCodec, SrsError, is_srs_local

DAY = 86400
NOW = 20_000 * DAY + 3600  # day 20000: 20000 % 1024 = 544 = 17*32 + 0 -> "RA"
SECRET = b"tops3cret"


def codec(**kw) -> SrsCodec:
    return SrsCodec([SECRET], "fwd.example", **kw)


def test_srs0_format_and_hash_by_hand():
    made = codec().forward("Alice@Origin.example", NOW)
    assert made.endswith("@fwd.example")
    assert made.startswith("SRS0=")
    tag, given, stamp, domain, local = made.rpartition("@")[0].split("=", 4)
    assert (tag, stamp, domain, local) == ("SRS0", "RA", "Origin.example", "Alice")
    # The hash of the scheme: base64 HMAC-SHA1 of the lowercased stamp+domain+local.
    mac = hmac.new(SECRET, b"raorigin.examplealice", hashlib.sha1).digest()
    assert given == base64.b64encode(mac).decode()[:4]


def test_round_trip():
    c = codec()
    for sender in ("alice@origin.example", "a.b+c=d@sub.origin.example", "x-y@o.example"):
        assert c.reverse(c.forward(sender, NOW), NOW + 5 * DAY) == sender


def test_hash_and_timestamp_are_case_insensitive():
    c = codec()
    made = c.forward("alice@origin.example", NOW)
    assert c.reverse(made.upper(), NOW) == "ALICE@ORIGIN.EXAMPLE"
    assert c.reverse(made.lower(), NOW) == "alice@origin.example"
    assert c.reverse(made.replace("SRS0=", "srs0="), NOW) == "alice@origin.example"


def test_bad_hash_is_refused():
    c = codec()
    made = c.forward("alice@origin.example", NOW)
    forged = made.replace("=alice@", "=mallory@")
    with pytest.raises(SrsError) as err:
        c.reverse(forged, NOW)
    assert err.value.reason == "hash"
    other = SrsCodec([b"another"], "fwd.example")
    with pytest.raises(SrsError) as err:
        other.reverse(made, NOW)
    assert err.value.reason == "hash"


def test_expiry_after_max_age_days():
    c = codec(max_age_days=21)
    made = c.forward("alice@origin.example", NOW)
    assert c.reverse(made, NOW + 21 * DAY) == "alice@origin.example"
    with pytest.raises(SrsError) as err:
        c.reverse(made, NOW + 22 * DAY)
    assert err.value.reason == "expired"
    # A stamp "from the future" is as good as very old (libsrs2).
    with pytest.raises(SrsError):
        c.reverse(made, NOW - 2 * DAY)
    # The queue manager reverses without the age check.
    assert c.reverse(made, None) == "alice@origin.example"


def test_timestamp_wraps_after_1024_days():
    c = codec()
    made = c.forward("alice@origin.example", NOW + 1023 * DAY)
    assert c.reverse(made, NOW + 1024 * DAY + 3 * DAY) == "alice@origin.example"


@pytest.mark.parametrize(
    "address",
    [
        "SRS0=abcd=RA=origin.example@fwd.example",  # no local part
        "SRS0=abcd=R!=origin.example=alice@fwd.example",  # bad stamp
        "SRS0=abcd=RA=origin.example=alice@other.example",  # not our domain
        "alice@fwd.example",
        "SRS1=abcd=@fwd.example",
    ],
)
def test_malformed(address):
    with pytest.raises(SrsError) as err:
        codec().reverse(address, NOW)
    assert err.value.reason in ("malformed", "hash")


def test_srs1_for_re_forwarding_and_its_reversal():
    first = SrsCodec([b"first-secret"], "first.example")
    second = codec()
    srs0 = first.forward("alice@origin.example", NOW)
    srs1 = second.forward(srs0, NOW)
    inner = srs0.rpartition("@")[0][4:]  # "=HHHH=TT=origin.example=alice"
    assert srs1.startswith("SRS1=") and srs1.endswith(f"=first.example={inner}@fwd.example")
    assert "==" in srs1
    # A bounce to the SRS1 address goes to the first forwarder's SRS0 address...
    assert second.reverse(srs1, NOW) == srs0
    # ...which that forwarder reverses to the original sender.
    assert first.reverse(srs0, NOW) == "alice@origin.example"
    # A third forwarder keeps the first one and the inner part (no growth).
    third = SrsCodec([b"third"], "third.example")
    srs1_again = third.forward(srs1, NOW)
    assert srs1_again.endswith(f"=first.example={inner}@third.example")
    assert third.reverse(srs1_again, NOW) == srs0


def test_srs1_hash_is_checked():
    srs1 = codec().forward(SrsCodec([b"x"], "first.example").forward("a@o.example", NOW), NOW)
    with pytest.raises(SrsError) as err:
        codec().reverse(srs1.replace("=first.example=", "=evil.example="), NOW)
    assert err.value.reason == "hash"


def test_secret_rotation_accepts_old_secrets_and_signs_with_the_first():
    old = SrsCodec([b"old"], "fwd.example")
    rotated = SrsCodec([b"new", b"old"], "fwd.example")
    made_old = old.forward("alice@origin.example", NOW)
    assert rotated.reverse(made_old, NOW) == "alice@origin.example"
    made_new = rotated.forward("alice@origin.example", NOW)
    assert made_new != made_old
    with pytest.raises(SrsError):
        old.reverse(made_new, NOW)


def test_hash_length():
    made = codec(hash_length=8).forward("alice@origin.example", NOW)
    assert len(made.split("=")[1]) == 8


def test_is_srs_local():
    assert is_srs_local("SRS0=x") and is_srs_local("srs1+x") and is_srs_local("SRS0-x")
    assert not is_srs_local("srs0") and not is_srs_local("SRS2=x") and not is_srs_local("alice")
