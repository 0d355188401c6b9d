"""The mailbox viewer in a real browser (docs/console.md, "Mailboxes").

Mail is sent with swaks (Debian) to alice@example.test, delivered into her
Maildir, and opened from the console's mailbox pages. A hostile HTML mail
carries a script, event handlers, a meta refresh and remote images, style
sheets and frames that all point at a loopback HTTP server of the test
(browser_helpers.HitServer), which records every request: in the viewer
the script must not run (its canary text in the frame stays as sent, the
console's title is untouched) and the server must see no request at all.
"""

from __future__ import annotations

import subprocess
import time

import pytest
from browser_helpers import (
    HitServer,
    api_token,
    assert_post_forms_have_csrf,
    browser_errors,
    send_by_api,
    stat,
    wait_until,
)

from pigeon.testing.live import maildir_messages, require_tool, wait_for

pytestmark = [pytest.mark.e2e, pytest.mark.browser]

ALICE = "alice@example.test"
CANARY = "the script did not run"


def swaks(server, data: bytes, to: str = ALICE) -> None:
    done = subprocess.run(
        [
            require_tool("swaks"),
            "--server",
            f"127.0.0.1:{server.port}",
            "--helo",
            "swaks.example",
            "--from",
            "news@shop.example",
            "--to",
            to,
            "--timeout",
            "10",
            "--data",
            "-",
        ],
        input=data,
        capture_output=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stdout.decode(errors="replace")[-2000:]


def hostile_html(hits: HitServer) -> str:
    """Every way an HTML mail could run code or call home, aimed at `hits`."""
    u = hits.url
    return f"""<html><head>
<meta http-equiv="refresh" content="1; url={u("/meta-refresh")}">
<link rel="stylesheet" href="{u("/style.css")}">
<style>@import url("{u("/import.css")}"); body {{ background: url("{u("/bg.png")}"); }}</style>
<base href="{u("/base/")}">
</head><body>
<h1>Your weekly deals</h1>
<p id="canary">{CANARY}</p>
<img src="{u("/remote.png")}" alt="tracking pixel">
<img src="broken" onerror="document.getElementById('canary').textContent='onerror ran';
  new Image().src='{u("/onerror")}'">
<svg onload="document.getElementById('canary').textContent='svg onload ran'"></svg>
<iframe src="{u("/frame.html")}"></iframe>
<p style="background-image: url('{u("/inline-style.png")}')">styled</p>
<a href="{u("/click")}">a link</a>
<script>
  document.getElementById("canary").textContent = "SCRIPT RAN";
  document.title = "SCRIPT RAN";
  try {{ parent.document.title = "SCRIPT RAN"; }} catch (e) {{}}
  fetch("{u("/script-fetch")}");
</script>
</body></html>"""


def html_mail(subject: str, hits: HitServer) -> bytes:
    return (
        "From: Shop <news@shop.example>\r\n"
        f"To: {ALICE}\r\n"
        f"Subject: {subject}\r\n"
        "MIME-Version: 1.0\r\n"
        'Content-Type: multipart/alternative; boundary="b1"\r\n'
        "\r\n"
        "--b1\r\n"
        "Content-Type: text/plain; charset=utf-8\r\n"
        "\r\n"
        "Your weekly deals, as text.\r\n"
        "--b1\r\n"
        "Content-Type: text/html; charset=utf-8\r\n"
        "\r\n" + hostile_html(hits).replace("\n", "\r\n") + "\r\n"
        "--b1--\r\n"
    ).encode()


def plain_mail(subject: str) -> bytes:
    return (
        f"From: Bob <bob@example.test>\r\nTo: {ALICE}\r\nSubject: {subject}\r\n"
        "\r\nHello Alice,\r\nlunch at noon?\r\n"
    ).encode()


@pytest.fixture
def hits():
    server = HitServer()
    yield server
    server.stop()


def open_message(browser, console_url, subject: str) -> None:
    """From the mailbox list to alice's folder to the message, by clicking."""
    browser.get(console_url("/mailboxes"))
    browser.find_element("link text", ALICE).click()
    link = wait_until(browser, lambda d: d.find_element("link text", subject))
    assert link, f"{subject!r} is not listed"
    link.click()
    assert wait_until(browser, lambda d: d.find_element("id", "message-subject").text == subject)


def test_mail_sent_with_swaks_is_listed_and_opens_in_the_viewer(
    console, logged_in, console_url, shot
):
    browser = logged_in
    swaks(console, plain_mail("Lunch?"))
    assert wait_for(lambda: maildir_messages(console.data_dir, ALICE), timeout=15)
    browser.get(console_url("/mailboxes"))
    assert ALICE in browser.find_element("id", "mailboxes").text
    shot("mailboxes", docs=True)
    browser.find_element("link text", ALICE).click()
    assert wait_until(browser, lambda d: d.find_element("id", "mailbox-address").text == ALICE)
    rows = browser.find_elements("css selector", "tr[data-test=message-row]")
    assert any("Lunch?" in r.text for r in rows), [r.text for r in rows]
    shot("mailbox")
    open_message(browser, console_url, "Lunch?")
    assert "bob@example.test" in browser.find_element("css selector", "[data-test=from]").text
    assert "lunch at noon?" in browser.find_element("id", "message-text").text
    assert not browser.find_elements("id", "message-html")  # no HTML part, no frame
    assert assert_post_forms_have_csrf(browser) >= 2  # delete, log out
    assert browser_errors(browser) == []
    shot("message", docs=True)
    # The raw source, as delivered (local delivery's Return-Path: on top).
    browser.get(browser.find_element("id", "message-raw").get_attribute("href"))
    raw = browser.find_element("tag name", "body").text
    assert raw.startswith("Return-Path: <news@shop.example>\n") and "Subject: Lunch?" in raw


def test_a_hostile_html_mail_runs_no_script_and_loads_nothing(
    console, logged_in, console_url, hits, shot
):
    browser = logged_in
    swaks(console, html_mail("Weekly deals", hits))
    assert wait_for(
        lambda: any(
            b"Weekly deals" in p.read_bytes() for p in maildir_messages(console.data_dir, ALICE)
        ),
        timeout=15,
    )
    open_message(browser, console_url, "Weekly deals")
    frame = browser.find_element("id", "message-html")
    # An empty sandbox: no scripts, an opaque origin, no forms, no navigation.
    assert browser.execute_script("return arguments[0].getAttribute('sandbox')", frame) == ""
    assert "Your weekly deals, as text." in browser.find_element("id", "message-text").text
    assert "blocked" in browser.find_element("id", "remote-blocked").text  # said to the reader
    browser.switch_to.frame(frame)
    assert wait_until(
        browser, lambda d: d.find_element("tag name", "h1").text == "Your weekly deals"
    )
    time.sleep(2)  # the meta refresh (1 s) and the handlers would have fired by now
    assert browser.find_element("id", "canary").text == CANARY
    assert browser.find_element("tag name", "h1").text == "Your weekly deals"  # not navigated
    images = browser.execute_script("return Array.from(document.images).map(i => i.src)")
    browser.switch_to.default_content()
    assert "SCRIPT RAN" not in browser.title
    assert all(not src.startswith(hits.url()) for src in images), images
    # Not one request reached the test's server: no image, style, frame, refresh or fetch.
    assert hits.hits == []
    shot("message-html", docs=True)


def test_a_message_sent_by_the_api_shows_on_the_dashboard_and_opens_in_the_viewer(
    console, logged_in, console_url
):
    """Issue 15's walk: log in, send through the API, watch the dashboard count
    it, open it in the viewer."""
    browser = logged_in
    token = api_token(console, "viewer-walk", "send")
    before = int(stat(browser, "totals.out"))
    send_by_api(console, token, "bob@example.test", "Order 1002 confirmed")
    # The open dashboard counts the local delivery without a reload (its script polls).
    assert wait_until(browser, lambda d: int(stat(d, "totals.out")) > before, timeout=40), (
        stat(browser, "totals.out"),
        browser_errors(browser),
    )
    browser.get(console_url("/mailboxes"))
    browser.find_element("link text", "bob@example.test").click()
    link = wait_until(browser, lambda d: d.find_element("link text", "Order 1002 confirmed"))
    link.click()
    assert wait_until(
        browser, lambda d: d.find_element("id", "message-subject").text == "Order 1002 confirmed"
    )
    assert "shop@example.test" in browser.find_element("css selector", "[data-test=from]").text
    assert "Your order has shipped." in browser.find_element("id", "message-text").text
