"""The mailbox routes of the HTTP API against a running pigeon, with curl (docs/api.md).

Mail is delivered over SMTP to local mailboxes of a real pigeon (local
delivery into the Maildirs); the API lists, reads, searches and deletes
it, as a user of the API would with curl; tokens are made with `pigeon
token add`. The helpers are test_http_api.py's (imported as a module, so
its tests are not collected twice).
"""

from __future__ import annotations

import json
import smtplib
from email.message import EmailMessage
from urllib.parse import quote

import pytest
import test_http_api as api

from pigeon.mailstore import maildrop
from pigeon.testing.live import maildir_messages, wait_for

pytestmark = pytest.mark.e2e


@pytest.fixture
def server(pigeon_factory):
    return pigeon_factory('[domains."localhost"]\n[admin]\nmetrics_listen = ""\n')


def deliver(server, rcpt: str, subject: str, attach: bytes | None = None) -> None:
    msg = EmailMessage()
    msg["From"] = "sender@localhost"
    msg["To"] = rcpt
    msg["Subject"] = subject
    msg.set_content(f"the text of {subject}\n")
    if attach is not None:
        msg.add_attachment(attach, maintype="application", subtype="pdf", filename="r.pdf")
    with smtplib.SMTP("127.0.0.1", server.port, timeout=10) as s:
        s.send_message(msg)


def get(server, path: str, token: str, *args: str):
    return api.curl(server.api_url(path), *args, token=token)


def test_list_read_search_and_delete_delivered_mail(server):
    for n in range(3):
        deliver(server, "alice@localhost", f"hello {n}")
    deliver(server, "alice@localhost", "with a file", attach=b"%PDF-1.4 tiny")
    deliver(server, "bob@localhost", "for bob")
    assert wait_for(lambda: len(maildir_messages(server.data_dir, "alice@localhost")) == 4)
    assert wait_for(lambda: maildir_messages(server.data_dir, "bob@localhost"))
    reader, admin = api.token(server, "r", "read"), api.token(server, "a", "admin")
    sender = api.token(server, "s", "send")
    alice = server.data_dir / "mailboxes" / "localhost" / "alice"
    uidls = [m.uid for m in maildrop.scan(alice)]  # POP3's view before the API

    api.problem(get(server, "/api/mailboxes", sender), 403)
    status, _, body = get(server, "/api/mailboxes", reader)
    assert status == 200, body
    boxes = {m["address"]: m for m in json.loads(body)["mailboxes"]}
    assert boxes["alice@localhost"]["messages"] == 4 and boxes["bob@localhost"]["messages"] == 1

    base = "/api/mailboxes/alice@localhost/messages"
    status, _, body = get(server, f"{base}?limit=2", reader)
    page = json.loads(body)
    assert status == 200 and page["total"] == 4 and page["complete"], body
    assert [m["subject"] for m in page["messages"]] == ["with a file", "hello 2"]
    newest = page["messages"][0]

    found = json.loads(get(server, f"{base}?text=text%20of%20hello%201", reader)[2])
    assert [m["subject"] for m in found["messages"]] == ["hello 1"]
    found = json.loads(get(server, f"{base}?subject=HELLO&from=sender", reader)[2])
    assert found["total"] == 3

    status, _, body = get(server, f"{base}/{newest['id']}", reader)
    shown = json.loads(body)
    assert status == 200 and shown["text"] == "the text of with a file\n", body
    assert shown["attachments"] == [
        {"index": 0, "filename": "r.pdf", "content_type": "application/pdf", "size": 13}
    ]
    status, headers, body = get(server, f"{base}/{newest['id']}/attachments/0", reader)
    assert status == 200 and body == b"%PDF-1.4 tiny"
    assert headers["content-disposition"] == 'attachment; filename="r.pdf"'
    status, headers, body = get(server, f"{base}/{newest['id']}/raw", reader)
    assert status == 200 and headers["content-type"] == "message/rfc822"
    assert b"\r\nSubject: with a file\r\n" in body and b"Received: " in body

    # Reading changed nothing a POP3 or IMAP client relies on: the same
    # messages, the same UIDLs, no flag set.
    assert [m.uid for m in maildrop.scan(alice)] == uidls
    assert all(m.name.endswith(":2,") or ":" not in m.name for m in maildrop.scan(alice))

    # Path traversal and bad ids never reach a file.
    escape = quote("../bob@localhost", safe="")
    api.problem(get(server, f"/api/mailboxes/{escape}/messages", reader), 404)
    api.problem(get(server, f"{base}/..%2F..%2Fqueue.db", reader), 400)
    api.problem(get(server, f"{base}?folder=..%2F..%2Fbob", reader), 400)
    api.problem(get(server, "/api/mailboxes/nobody@localhost/messages", reader), 404)
    assert not (server.data_dir / "mailboxes" / "localhost" / "nobody").exists()

    url = f"{base}/{newest['id']}"
    api.problem(get(server, url, reader, "-X", "DELETE"), 403)
    status, _, body = get(server, url, admin, "-X", "DELETE")
    assert status == 200 and json.loads(body) == {"deleted": newest["id"], "folder": "INBOX"}
    api.problem(get(server, url, reader), 404)
    assert len(maildrop.scan(alice)) == 3
    assert json.loads(get(server, base, reader)[2])["total"] == 3
