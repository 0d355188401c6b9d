"""The mailbox routes (web/mailbox_routes.py) in process, over real Maildirs on disk.

The application is the real one (web/app.py) with a real token file; the
Maildirs are written as local delivery writes them (LF line ends, names
with ,S= and ,W=). The path-traversal cases are here: no request text
may reach a file outside the mailbox's own Maildir.
"""

from __future__ import annotations

import asyncio
import os
from email.message import EmailMessage
from email.policy import SMTP
from pathlib import Path

import pytest
from aiohttp.test_utils import TestClient, TestServer

from pigeon.mailstore import maildir_path, sized_name, unique_base
from pigeon.web.app import WebDeps, build_app
from pigeon.web.mailboxes import folder_name, parse_id
from pigeon.web.problem import Problem
from pigeon.web.tokens import TokenStore


async def _ready() -> dict[str, bool]:
    return {}


def deliver(root: Path, address: str, subject: str, folder: str = "", body: str = "hi\n") -> str:
    local, _, domain = address.rpartition("@")
    mdir = maildir_path(root, local, domain) / folder
    for sub in ("tmp", "new", "cur"):
        (mdir / sub).mkdir(parents=True, exist_ok=True)
    msg = EmailMessage()
    msg["From"] = "alice@example.org"
    msg["To"] = address
    msg["Subject"] = subject
    msg.set_content(body)
    data = msg.as_bytes(policy=SMTP).replace(b"\r\n", b"\n")
    name = sized_name(unique_base(), len(data), len(data) + data.count(b"\n"))
    (mdir / "new" / name).write_bytes(data)
    return name


@pytest.fixture
def env(tmp_path):
    root = tmp_path / "mailboxes"
    root.mkdir()
    tokens = TokenStore.in_data_dir(tmp_path)
    admin = tokens.add("admin", ("admin",), 0.0)
    reader = tokens.add("reader", ("read",), 0.0)
    deps = WebDeps(
        tokens=tokens, ops={}, ready=_ready, max_body=1000, submit=_ready, mailbox_root=root
    )
    return root, deps, {"Authorization": f"Bearer {admin}"}, {"Authorization": f"Bearer {reader}"}


def run(deps, script):
    async def main():
        async with TestClient(TestServer(build_app(deps))) as client:
            return await script(client)

    return asyncio.run(main())


def test_list_read_search_and_delete(env):
    root, deps, admin, reader = env
    for n in range(5):
        deliver(root, "bob@localhost", f"note {n}", body=f"body number {n}\n")
    deliver(root, "bob@localhost", "spam!", folder=".Junk")
    deliver(root, "carol@example.org", "other")

    async def script(client):
        r = await client.get("/api/mailboxes", headers=reader)
        assert r.status == 200
        listed = await r.json()
        assert [m["address"] for m in listed["mailboxes"]] == [
            "carol@example.org",
            "bob@localhost",
        ] or [m["address"] for m in listed["mailboxes"]] == [
            "bob@localhost",
            "carol@example.org",
        ]
        bob = next(m for m in listed["mailboxes"] if m["address"] == "bob@localhost")
        assert bob["messages"] == 6 and bob["size"] > 0
        assert {"name": "Junk", "messages": 1, "size": bob["folders"][1]["size"]} in bob["folders"]

        url = "/api/mailboxes/bob@localhost/messages"
        page = await (await client.get(url, params={"limit": "2"}, headers=reader)).json()
        assert page["total"] == 5 and page["complete"]
        assert [m["subject"] for m in page["messages"]] == ["note 4", "note 3"]
        page2 = await (
            await client.get(url, params={"limit": "2", "offset": "2"}, headers=reader)
        ).json()
        assert [m["subject"] for m in page2["messages"]] == ["note 2", "note 1"]
        assert page["messages"][0]["flags"] == []  # read, never marked \Seen

        junk = await (await client.get(url, params={"folder": ".Junk"}, headers=reader)).json()
        assert [m["subject"] for m in junk["messages"]] == ["spam!"]
        same = await (await client.get(url, params={"folder": "Junk"}, headers=reader)).json()
        assert same["messages"][0]["id"] == junk["messages"][0]["id"]

        found = await (await client.get(url, params={"text": "NUMBER 3"}, headers=reader)).json()
        assert [m["subject"] for m in found["messages"]] == ["note 3"]
        found = await (
            await client.get(url, params={"subject": "note", "from": "alice"}, headers=reader)
        ).json()
        assert found["total"] == 5

        mid = page["messages"][0]["id"]
        again = await (await client.get(url, params={"limit": "1"}, headers=reader)).json()
        assert again["messages"][0]["id"] == mid  # stable
        one = await (await client.get(f"{url}/{mid}", headers=reader)).json()
        assert one["subject"] == "note 4" and one["text"] == "body number 4\n"
        assert one["attachments"] == [] and one["html"] is None
        raw = await client.get(f"{url}/{mid}/raw", headers=reader)
        assert raw.content_type == "message/rfc822"
        assert b"\r\nSubject: note 4\r\n" in await raw.read()
        r = await client.get(f"{url}/{mid}/attachments/0", headers=reader)
        assert r.status == 404

        r = await client.delete(f"{url}/{mid}", headers=reader)
        assert r.status == 403
        r = await client.delete(f"{url}/{mid}", headers=admin)
        assert r.status == 200 and (await r.json()) == {"deleted": mid, "folder": "INBOX"}
        assert (await client.delete(f"{url}/{mid}", headers=admin)).status == 404
        assert (await client.get(f"{url}/{mid}", headers=reader)).status == 404
        left = await (await client.get(url, headers=reader)).json()
        assert left["total"] == 4

    run(deps, script)
    cur = maildir_path(root, "bob", "localhost") / "cur"
    assert len(os.listdir(cur)) == 4
    assert all(name.endswith(":2,") for name in os.listdir(cur))  # no flag set


def test_attachments_are_downloads_in_a_sandbox(env):
    root, deps, _, reader = env
    mdir = maildir_path(root, "bob", "localhost")
    for sub in ("tmp", "new", "cur"):
        (mdir / sub).mkdir(parents=True)
    msg = EmailMessage()
    msg["From"] = "a@example.org"
    msg["Subject"] = "with a file"
    msg.set_content("see attached")
    msg.add_attachment(
        b"<script>alert(1)</script>", maintype="text", subtype="html", filename='../"x".html'
    )
    (mdir / "new" / "1.M1P1Q1.host").write_bytes(msg.as_bytes())

    async def script(client):
        url = "/api/mailboxes/bob@localhost/messages"
        mid = (await (await client.get(url, headers=reader)).json())["messages"][0]["id"]
        one = await (await client.get(f"{url}/{mid}", headers=reader)).json()
        assert one["attachments"][0]["filename"] == '../"x".html'
        r = await client.get(f"{url}/{mid}/attachments/0", headers=reader)
        assert r.status == 200 and await r.read() == b"<script>alert(1)</script>"
        assert r.headers["Content-Disposition"] == 'attachment; filename="x_.html"'
        assert r.headers["Content-Security-Policy"].startswith("sandbox")

    run(deps, script)


@pytest.mark.parametrize(
    "path",
    [
        "/api/mailboxes/..%2F..%2Fetc@localhost/messages",
        "/api/mailboxes/bob@..%2F..%2F/messages",
        "/api/mailboxes/bob@localhost%2F..%2F..%2F/messages",
        "/api/mailboxes/nobody@localhost/messages",
        "/api/mailboxes/no-at-sign/messages",
        "/api/mailboxes/bob@localhost/messages/1-1",
        "/api/mailboxes/bob@localhost/messages?folder=..%2F..%2Fcarol",
        "/api/mailboxes/bob@localhost/messages?folder=..",
        "/api/mailboxes/bob@localhost/messages?folder=Nope",
        "/api/mailboxes/bob@localhost/messages/..%2F..%2Fx",
        "/api/mailboxes/bob@localhost/messages/1-1%2F..",
        "/api/mailboxes/bob@localhost/messages/1-1/attachments/x",
    ],
)
def test_no_request_text_leaves_the_mailbox(env, path):
    root, deps, admin, _ = env
    deliver(root, "bob@localhost", "mine")
    secret = root.parent / "etc"
    secret.mkdir()
    (root / "localhost").joinpath("carol").mkdir()
    before = sorted(str(p) for p in root.parent.rglob("*"))

    async def script(client):
        r = await client.get(path, headers=admin)
        assert r.status in (400, 404), (path, r.status)
        assert r.content_type == "application/problem+json"
        r = await client.delete(path.partition("?")[0], headers=admin)
        assert r.status in (400, 404, 405)

    run(deps, script)
    after = sorted(str(p) for p in root.parent.rglob("*"))
    # Nothing created but what an IMAP SELECT of bob's INBOX makes (its
    # uidlist; new/ moved to cur/); no folder, no other mailbox.
    bob = str(maildir_path(root, "bob", "localhost"))
    assert [p for p in after if p not in before and not p.startswith(bob + "/cur/")] in (
        [],
        [bob + "/pigeon-uidlist"],
    )


def test_ids_and_folders_are_checked_before_use():
    assert parse_id("1733540000-42") == (1733540000, 42)
    for bad in ("", "1", "1-", "-1", "a-1", "1-1/..", "1-1\n", "12345678901-1", "../1-1"):
        with pytest.raises(Problem):
            parse_id(bad)
    assert folder_name(None) == "INBOX" and folder_name("inbox") == "INBOX"
    assert folder_name(".Junk") == "Junk" and folder_name(".Archive.2024") == "Archive/2024"


def test_the_mailbox_list_skips_what_is_not_a_mailbox(env):
    root, deps, _, reader = env
    deliver(root, "bob@localhost", "mine")
    (root / "stray-file").write_text("not a domain")
    (root / "localhost" / "notes.txt").write_text("not a mailbox")
    (root / ".pigeon-format").write_text("1")

    async def script(client):
        r = await client.get("/api/mailboxes", headers=reader)
        assert r.status == 200
        return await r.json()

    listed = run(deps, script)
    assert [m["address"] for m in listed["mailboxes"]] == ["bob@localhost"]
