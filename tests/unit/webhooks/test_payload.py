"""The JSON documents webhook receivers get (webhooks/payload.py)."""

from __future__ import annotations

import json
import re

from pigeon.hooks.events import DeliveryEvent
from pigeon.webhooks import payload


def test_received():
    event = payload.received(
        "4XkQ1",
        "alice@example.test",
        ["bob@example.org", "carol@example.org"],
        size=1234,
        client_address="192.0.2.1",
        helo="client.example.test",
        protocol="ESMTPS",
        now=1700000000.25,
    )
    doc = json.loads(event.body)
    assert re.fullmatch(r"evt_[0-9a-f]{32}", doc["id"]) and doc["id"] == event.id
    assert doc == {
        "id": event.id,
        "type": "received",
        "created": 1700000000.25,
        "time": "2023-11-14T22:13:20.250Z",
        "queue_id": "4XkQ1",
        "sender": "alice@example.test",
        "recipients": ["bob@example.org", "carol@example.org"],
        "size": 1234,
        "client_address": "192.0.2.1",
        "helo": "client.example.test",
        "protocol": "ESMTPS",
    }
    assert (event.kind, event.created) == ("received", 1700000000.25)
    assert b" " not in event.body  # compact: the signed octets are unambiguous


def test_delivery_kinds_and_unique_ids():
    outcome = DeliveryEvent(
        "bounced",
        "4XkQ1",
        "",
        ("bob@example.org",),
        "mx.example.org[192.0.2.7]:25",
        "5.1.1",
        "550 5.1.1 no such user",
        1700000001.0,
    )
    a, b = payload.delivery(outcome), payload.delivery(outcome)
    assert a.id != b.id
    doc = json.loads(a.body)
    assert doc["type"] == "bounced" and doc["sender"] == ""
    assert doc["recipients"] == ["bob@example.org"]
    assert (doc["relay"], doc["status"], doc["diagnostic"]) == (
        "mx.example.org[192.0.2.7]:25",
        "5.1.1",
        "550 5.1.1 no such user",
    )


def test_utf8_addresses_kept():
    event = payload.received(
        "Q",
        "jürgen@bücher.example",
        ["δοκιμή@παράδειγμα.δοκιμή"],
        size=1,
        client_address="",
        helo="",
        protocol="UTF8SMTP",
        now=0,
    )
    assert "jürgen@bücher.example".encode() in event.body
    assert json.loads(event.body)["recipients"] == ["δοκιμή@παράδειγμα.δοκιμή"]
