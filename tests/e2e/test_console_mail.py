"""The console's mailbox and capture pages against running pigeons (docs/console.md).

Mail is delivered over SMTP (smtplib) into a local Maildir of a real
pigeon, and captured by a second one with a capture account whose
released mail must reach a third (the peer), as in tests/e2e/test_capture.py.
The console is used with curl and a cookie jar, as a browser would: log
in (an admin made with `AdminStore`), read the pages, post the forms with
their CSRF token. What a browser does with the sandboxed frame (no
script runs, no remote image loads) is the browser tests' part; these
check what the server answers.
"""

from __future__ import annotations

import re
import smtplib
from email.message import EmailMessage

import pytest
from secure_helpers import add_user
from test_capture import ALICE, config, submit
from test_http_api import curl

from pigeon.console.admins import AdminStore
from pigeon.console.viewer import FRAME_CSP
from pigeon.testing.live import maildir_messages, wait_for

pytestmark = pytest.mark.e2e

PASSWORD = "correct horse battery"


class Browser:
    """curl with a cookie jar, logged in to one pigeon's console."""

    def __init__(self, server, tmp_path) -> None:
        self.server = server
        self.jar = str(tmp_path / "cookies")
        AdminStore.in_data_dir(server.data_dir).add("admin", PASSWORD)
        status, headers, _ = self.post("/login", name="admin", password=PASSWORD, next="/")
        assert status == 303 and headers["location"] == "/", headers

    def get(self, path: str) -> tuple[int, dict[str, str], bytes]:
        return curl(self.server.api_url(path), "-b", self.jar, "-c", self.jar)

    def page(self, path: str) -> str:
        status, _, body = self.get(path)
        assert status == 200, (path, status, body[:500])
        return body.decode()

    def post(self, path: str, **fields: str) -> tuple[int, dict[str, str], bytes]:
        data = [a for k, v in fields.items() for a in ("--data-urlencode", f"{k}={v}")]
        return curl(self.server.api_url(path), "-b", self.jar, "-c", self.jar, *data)


def csrf_of(html: str) -> str:
    found = re.search(r'name="csrf" value="([^"]+)"', html)
    assert found, "no CSRF field in the page"
    return found.group(1)


def rich_message() -> EmailMessage:
    msg = EmailMessage()
    msg["From"] = "sender@localhost"
    msg["To"] = "alice@localhost"
    msg["Subject"] = "Quarterly report"
    msg.set_content("The text of the quarterly report.\n")
    msg.add_alternative(
        "<p>The <b>HTML</b> report.</p><script>document.title='ran'</script>"
        '<img src="http://127.0.0.1:9/tracker.gif">',
        subtype="html",
    )
    msg.add_attachment(b"%PDF-1.4 tiny", maintype="application", subtype="pdf", filename="q3.pdf")
    return msg


@pytest.fixture
def local(pigeon_factory):
    return pigeon_factory('[domains."localhost"]\n[admin]\nmetrics_listen = ""\n')


def test_delivered_mail_is_shown_in_the_mailbox_viewer(local, tmp_path):
    with smtplib.SMTP("127.0.0.1", local.port, timeout=10) as s:
        s.send_message(rich_message())
    assert wait_for(lambda: maildir_messages(local.data_dir, "alice@localhost"))
    browser = Browser(local, tmp_path)

    listing = browser.page("/mailboxes")
    assert 'data-test="mailbox-row" data-address="alice@localhost"' in listing
    folder = browser.page("/mailboxes/alice@localhost")
    assert "Quarterly report" in folder
    mid = re.search(r'data-test="message-row" data-id="([0-9]+-[0-9]+)"', folder).group(1)
    one = f"/mailboxes/alice@localhost/messages/{mid}"
    view = browser.page(one + "?folder=INBOX")
    assert "Quarterly report" in view and "The text of the quarterly report." in view
    assert "HTML</b> report" not in view  # the HTML part is only in the frame
    assert (
        f'sandbox="" referrerpolicy="no-referrer" title="HTML part of the message" src="{one}/html?folder=INBOX"'
        in view
    )

    status, headers, body = browser.get(one + "/html?folder=INBOX")
    assert status == 200 and headers["content-security-policy"] == FRAME_CSP
    assert (
        headers["x-frame-options"] == "SAMEORIGIN" and headers["referrer-policy"] == "no-referrer"
    )
    assert b"<b>HTML</b> report" in body and b"<script" not in body and b"tracker" not in body

    status, headers, body = browser.get(one + "/attachments/0?folder=INBOX")
    assert status == 200 and body == b"%PDF-1.4 tiny"
    assert headers["content-type"] == "application/octet-stream"
    assert headers["content-disposition"] == 'attachment; filename="q3.pdf"'
    assert headers["x-content-type-options"] == "nosniff"

    status, headers, body = browser.get(one + "/raw?folder=INBOX")
    assert status == 200 and headers["content-type"] == "text/plain; charset=utf-8"
    assert b"Subject: Quarterly report\r\n" in body and b"Received: " in body

    # Delete through the page's form: the message leaves the Maildir.
    status, headers, _ = browser.post(one + "/delete", csrf=csrf_of(view), folder="INBOX")
    assert status == 303 and headers["location"] == "/mailboxes/alice@localhost?folder=INBOX"
    assert "deleted from alice@localhost" in browser.page(headers["location"])
    assert wait_for(lambda: not maildir_messages(local.data_dir, "alice@localhost"))
    assert browser.get(one)[0] == 404


@pytest.fixture
def peer(pigeon_factory):
    return pigeon_factory('[domains."peer.test"]\n[admin]\nmetrics_listen = ""\n')


@pytest.fixture
def capturing(pigeon_factory, peer):
    proc = pigeon_factory(config(peer.port))
    add_user(proc, ALICE)
    return proc


def test_captured_mail_is_listed_viewed_and_released_to_the_peer(capturing, peer, tmp_path):
    qid = submit(capturing, ALICE, "friend@peer.test", "from the capture page")
    browser = Browser(capturing, tmp_path)

    listing = browser.page(f"/capture?tenant={ALICE}")
    assert f'data-test="capture-row" data-id="{qid}"' in listing
    assert "from the capture page" in listing
    assert qid not in browser.page("/capture?tenant=nobody@example.test")
    view = browser.page(f"/capture/{qid}")
    assert "from the capture page" in view and "Hello." in view and ALICE in view
    assert 'id="release"' in view
    assert maildir_messages(peer.data_dir, "friend@peer.test") == []

    status, headers, _ = browser.post(f"/capture/{qid}/release", csrf=csrf_of(view))
    assert status == 303 and headers["location"] == "/capture"
    assert f"{qid} released into the queue." in browser.page("/capture")
    files = wait_for(lambda: maildir_messages(peer.data_dir, "friend@peer.test"), timeout=20)
    assert len(files) == 1 and b"from the capture page" in files[0].read_bytes()
    assert browser.get(f"/capture/{qid}")[0] == 404

    # A form without its token changes nothing.
    other = submit(capturing, ALICE, "friend@peer.test", "kept")
    status, _, _ = browser.post(f"/capture/{other}/delete", csrf="forged")
    assert status == 403
    assert f'data-id="{other}"' in browser.page("/capture")
