"""The console's mailbox and capture pages in memory (console/mailbox_pages.py,
capture_pages.py): listing, search, the viewer, delete and release forms."""

from __future__ import annotations

import asyncio
import base64
import contextlib
from collections.abc import AsyncIterator
from email.message import EmailMessage
from email.policy import SMTP

import pytest
from aiohttp.test_utils import TestClient, TestServer

from pigeon.admin.control import OpError
from pigeon.console.viewer import FRAME_CSP
from pigeon.mailstore import maildir_path, sized_name, unique_base
from tests.unit.console.conftest import csrf_of, login, make_app
from tests.unit.web.test_mailbox_routes import deliver


def run(coro):
    return asyncio.run(coro)


def rich(address: str) -> bytes:
    msg = EmailMessage()
    msg["From"] = "carol@example.org"
    msg["To"] = address
    msg["Subject"] = "rich <mail>"
    msg.set_content("the plain text\n")
    msg.add_alternative(
        '<p>HTMLBODY</p><script>SCRIPTMARK()</script><img src="http://tracker.example/p.gif">',
        subtype="html",
    )
    msg.add_attachment(b"%PDF-1.4 tiny", maintype="application", subtype="pdf", filename="r.pdf")
    return msg.as_bytes(policy=SMTP)


def put(root, address: str, data: bytes) -> None:
    local, _, domain = address.rpartition("@")
    mdir = maildir_path(root, local, domain)
    for sub in ("tmp", "new", "cur"):
        (mdir / sub).mkdir(parents=True, exist_ok=True)
    (mdir / "new" / sized_name(unique_base(), len(data), len(data))).write_bytes(data)


@pytest.fixture
def mail(tmp_path):
    root = tmp_path / "mailboxes"
    root.mkdir()
    for n in range(3):
        deliver(root, "bob@localhost", f"hello {n}", body=f"body number {n}\n")
    put(root, "bob@localhost", rich("bob@localhost"))
    app, _ = make_app(tmp_path, mailbox_root=root)
    return root, app


@contextlib.asynccontextmanager
async def logged_in(app) -> AsyncIterator[TestClient]:
    async with TestClient(TestServer(app)) as client:
        assert (await login(client)).status == 303
        yield client


def test_mailboxes_list_search_and_view(mail):
    root, app = mail

    async def go():
        async with logged_in(app) as client:
            r = await client.get("/mailboxes")
            html = await r.text()
            assert r.status == 200 and 'data-address="bob@localhost"' in html
            assert '<a href="/mailboxes" class="current"' in html  # the nav entry
            r = await client.get("/mailboxes/bob@localhost")
            html = await r.text()
            assert html.index("rich &lt;mail&gt;") < html.index("hello 2") < html.index("hello 0")
            r = await client.get("/mailboxes/bob@localhost?text=number%201")
            html = await r.text()
            assert "hello 1" in html and "hello 2" not in html and "1 message<" in html
            r = await client.get("/mailboxes/bob@localhost?subject=RICH")
            html = await r.text()
            mid = html.split('data-test="message-row" data-id="')[1].split('"')[0]
            one = f"/mailboxes/bob@localhost/messages/{mid}"
            r = await client.get(one + "?folder=INBOX")
            page = await r.text()
            assert r.status == 200 and "the plain text" in page and "rich &lt;mail&gt;" in page
            # The HTML part is never inlined: only a sandboxed frame pointing at it.
            assert "HTMLBODY" not in page and "SCRIPTMARK" not in page
            assert 'id="message-html" class="message-html" sandbox="" ' in page
            assert f'src="{one}/html?folder=INBOX"' in page
            assert 'id="remote-blocked">1 remote reference blocked' in page
            r = await client.get(one + "/html?folder=INBOX")
            frame = await r.text()
            assert r.headers["Content-Security-Policy"] == FRAME_CSP
            assert r.headers["X-Frame-Options"] == "SAMEORIGIN"
            assert "HTMLBODY" in frame and "SCRIPTMARK" not in frame
            assert "tracker.example" not in frame
            r = await client.get(one + "/attachments/0?folder=INBOX")
            assert await r.read() == b"%PDF-1.4 tiny"
            assert r.headers["Content-Type"] == "application/octet-stream"
            assert r.headers["Content-Disposition"] == 'attachment; filename="r.pdf"'
            r = await client.get(one + "/raw?folder=INBOX")
            assert r.headers["Content-Type"] == "text/plain; charset=utf-8"
            assert b"Subject: rich <mail>" in await r.read()
            r = await client.get(f"/mailboxes/bob@localhost/messages/{mid}/html?folder=INBOX")
            assert r.status == 200

    run(go())


def test_delete_takes_the_form_and_its_token(mail):
    root, app = mail

    async def go():
        async with logged_in(app) as client:
            html = await (await client.get("/mailboxes/bob@localhost?subject=hello%200")).text()
            mid = html.split('data-test="message-row" data-id="')[1].split('"')[0]
            url = f"/mailboxes/bob@localhost/messages/{mid}"
            page = await (await client.get(url)).text()
            assert 'id="delete"' in page
            r = await client.post(url + "/delete", data={"csrf": "forged"}, allow_redirects=False)
            assert r.status == 403
            r = await client.post(
                url + "/delete",
                data={"csrf": csrf_of(page), "folder": "INBOX"},
                allow_redirects=False,
            )
            assert (
                r.status == 303 and r.headers["Location"] == "/mailboxes/bob@localhost?folder=INBOX"
            )
            html = await (await client.get(r.headers["Location"])).text()
            assert f"Message {mid} deleted" in html and "hello 0" not in html
            assert (await client.get(url)).status == 404

    run(go())


@pytest.mark.parametrize(
    ("path", "status"),
    [
        ("/mailboxes/..%2F..%2Fetc@localhost", 404),
        ("/mailboxes/nobody@localhost", 404),
        ("/mailboxes/bob@localhost?folder=..%2F..%2Fcarol", 400),
        ("/mailboxes/bob@localhost?folder=Nope", 404),
        ("/mailboxes/bob@localhost/messages/..%2Fx", 400),
        ("/mailboxes/bob@localhost/messages/1-1", 404),
        ("/mailboxes/bob@localhost/messages/1-1/attachments/x", 404),  # no such message first
    ],
)
def test_bad_paths_are_html_errors_and_touch_nothing(mail, path, status):
    root, app = mail

    async def go():
        async with logged_in(app) as client:
            r = await client.get(path)
            assert r.status == status and r.content_type == "text/html"
            assert not (root / "localhost" / "nobody").exists()

    run(go())


def test_without_a_mailbox_root_the_page_says_so(tmp_path):
    app, _ = make_app(tmp_path)

    async def go():
        async with logged_in(app) as client:
            assert 'id="no-mailboxes"' in await (await client.get("/mailboxes")).text()

    run(go())


class Captured:
    """The capture operations' answers for one captured message (the real ones
    are tested with a live pigeon in tests/e2e/test_console_mail.py)."""

    def __init__(self) -> None:
        self.raw = rich("dev@dev.test")
        self.kept = {"ABCD1234"}
        self.calls: list[tuple[str, dict]] = []

    def ops(self):
        async def capture_list(**kw):
            self.calls.append(("list", kw))
            entries = [
                {
                    "id": i,
                    "tenant": "dev.test",
                    "received_at": 1.0,
                    "size": len(self.raw),
                    "sender": "app@client.example",
                    "recipients": ["dev@dev.test"],
                    "from": "",
                    "to": "",
                    "subject": "rich <mail>",
                }  # fmt: skip
                for i in sorted(self.kept)
            ]
            return {"total": len(entries), "offset": 0, "limit": 50, "entries": entries}

        async def capture_show(id, tenant=None):
            if id not in self.kept:
                raise OpError(f"no such captured message: {id}")
            return (await capture_list())["entries"][0]

        async def capture_raw(id, tenant=None):
            await capture_show(id)
            return {"id": id, "raw": base64.b64encode(self.raw).decode()}

        async def capture_release(ids, tenant=None):
            done = [i for i in ids if i in self.kept]
            self.kept -= set(done)
            return {"done": done, "pending": [], "skipped": [], "unknown": []}

        return {
            "capture_list": capture_list,
            "capture_show": capture_show,
            "capture_raw": capture_raw,
            "capture_release": capture_release,
            "capture_delete": capture_release,
        }


def test_capture_list_view_and_release(tmp_path):
    captured = Captured()
    app, _ = make_app(tmp_path, ops=captured.ops())

    async def go():
        async with logged_in(app) as client:
            r = await client.get("/capture?tenant=dev.test&q=rich")
            html = await r.text()
            assert r.status == 200 and 'data-test="capture-row" data-id="ABCD1234"' in html
            assert captured.calls[-1][1]["tenant"] == "dev.test"
            assert captured.calls[-1][1]["q"] == "rich" and captured.calls[-1][1]["sender"] is None
            page = await (await client.get("/capture/ABCD1234")).text()
            assert "dev.test" in page and "the plain text" in page and 'id="release"' in page
            assert "SCRIPTMARK" not in page and 'src="/capture/ABCD1234/html"' in page
            r = await client.get("/capture/ABCD1234/html")
            assert r.headers["Content-Security-Policy"] == FRAME_CSP
            r = await client.get("/capture/ABCD1234/attachments/0")
            assert r.headers["Content-Disposition"] == 'attachment; filename="r.pdf"'
            assert (await client.get("/capture/abc")).status == 400
            assert (await client.get("/capture/ZZZZ9999")).status == 404
            url = "/capture/ABCD1234/release"
            assert (await client.post(url, data={}, allow_redirects=False)).status == 403
            r = await client.post(url, data={"csrf": csrf_of(page)}, allow_redirects=False)
            assert r.status == 303 and r.headers["Location"] == "/capture"
            assert (
                "ABCD1234 released into the queue." in await (await client.get("/capture")).text()
            )
            r = await client.post(url, data={"csrf": csrf_of(page)})
            assert "ABCD1234: not captured (any more); nothing done." in await r.text()

    run(go())
