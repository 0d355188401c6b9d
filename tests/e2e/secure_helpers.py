"""Shared set-up for the TLS/AUTH end-to-end tests: a server with one account."""

from __future__ import annotations

import os
import ssl

import pytest

from pigeon.auth.accounts import AccountStore
from pigeon.testing.httpsserver import HttpsServer

USER = "alice@example.test"
PASSWORD = "correct horse battery staple"
CONFIG = '[domains."example.test"]\nmailboxes = ["alice", "bob"]\n[domains."localhost"]\n'


def add_user(proc, name: str = USER, password: str = PASSWORD, addresses=()) -> None:
    with AccountStore.in_data_dir(proc.data_dir).open() as store:
        store.add(name, password, tuple(addresses))


def insecure_context() -> ssl.SSLContext:
    """The server's certificate is self-signed: tests do not verify it."""
    ctx = ssl.create_default_context()
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    return ctx


def message(sender: str, rcpt: str, subject: str) -> bytes:
    return (
        f"From: {sender}\r\nTo: {rcpt}\r\nSubject: {subject}\r\n"
        f"Message-ID: <{subject.replace(' ', '.')}@example.test>\r\n\r\nHello.\r\n"
    ).encode()


def https_on_443(host: str, cert, key, answers) -> HttpsServer:
    """An HTTPS server (pigeon.testing.httpsserver) on `host`:443, where
    MTA-STS policy hosts and https: report URIs live. Binding port 443
    needs root: the test skips without it, except in CI (which runs as root)."""
    try:
        return HttpsServer(host, 443, cert, key, answers)
    except PermissionError:
        if os.environ.get("CI") == "true":
            raise
        pytest.skip("binding port 443 on loopback needs root")
