"""pigeon.api: the public surface for plugins is exactly this list (CONTRIBUTING.md, rule 11).

Adding a name is a decision (update EXPECTED); removing or renaming one
breaks users' plugins and needs a deprecation first.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pigeon.api as api
from pigeon.testing.source import parse_source

EXPECTED = {
    "ACCEPT",
    "Address",
    "AuthCheck",
    "ConnectCheck",
    "DELIVERY_EVENTS",
    "DeliveryEvent",
    "PluginContext",
    "accept",
    "discard",
    "quarantine",
    "reject",
    "tempfail",
    "ContentStore",
    "CorruptEntry",
    "DataCheck",
    "DisconnectCheck",
    "DeliveryAgent",
    "DeliveryRecipient",
    "DeliveryRequest",
    "DnsError",
    "Envelope",
    "EnvelopeRecipient",
    "EtrnCheck",
    "HeaderEdit",
    "HeaderField",
    "HeloCheck",
    "Intake",
    "MailCheck",
    "Message",
    "MessageCheck",
    "NewSender",
    "MessageContent",
    "MxRecord",
    "Nexthop",
    "NoData",
    "NoSuchDomain",
    "Outcome",
    "QueueBackend",
    "QueueQueries",
    "QueueState",
    "QueueStateStore",
    "RcptCheck",
    "Recipient",
    "RecipientResult",
    "RecipientStatus",
    "Reply",
    "Resolver",
    "Route",
    "STAGES",
    "SessionFacts",
    "Spool",
    "StoreError",
    "TemporaryFailure",
    "TlsCheck",
    "Verdict",
    "refuse",
}

SRC = Path(api.__file__).resolve().parent


def test_the_public_names_are_pinned():
    assert set(api.__all__) == EXPECTED
    assert len(api.__all__) == len(EXPECTED)  # no name listed twice


def test_every_public_name_resolves():
    missing = [name for name in api.__all__ if not hasattr(api, name)]
    assert missing == []


def test_nothing_public_beyond_the_list():
    extra = {
        name
        for name in vars(api)
        if not name.startswith("_") and name not in EXPECTED and name != "annotations"
    }
    assert extra == set()


def test_nothing_in_pigeon_imports_the_public_api():
    # It sits at the top of the import graph: the parts import what they
    # use from the packages that own it, never from here.
    users = []
    for path in SRC.rglob("*.py"):
        if path == Path(api.__file__).resolve():
            continue
        for node in ast.walk(parse_source(path)):
            if isinstance(node, ast.ImportFrom) and node.module == "pigeon.api":
                users.append(str(path.relative_to(SRC)))
            if isinstance(node, ast.Import) and any(a.name == "pigeon.api" for a in node.names):
                users.append(str(path.relative_to(SRC)))
    assert users == []
