"""Captured mail in a real browser: searched, opened, released, and delivered
to a peer (docs/console.md, "Captured mail"; docs/capture.md).

The console's pigeon captures what its capture account (carol) submits; a
second pigeon on loopback is the test peer, the next hop for peer.test.
Captured mail is never delivered until the console's Release button (a
CSRF-checked POST) hands it to the real queue: then it reaches the peer's
Maildir, and the one left captured does not.
"""

from __future__ import annotations

import time

import pytest
from browser_helpers import assert_post_forms_have_csrf, browser_errors, wait_until
from secure_helpers import add_user
from test_capture import submit

from pigeon.testing.live import PigeonProcess, maildir_messages, wait_for

pytestmark = [pytest.mark.e2e, pytest.mark.browser]

CAROL = "carol@example.test"
FRIEND = "friend@peer.test"


@pytest.fixture(scope="module")
def peer(tmp_path_factory):
    server = PigeonProcess(
        tmp_path_factory.mktemp("peer"), '[domains."peer.test"]\n[admin]\nmetrics_listen = ""\n'
    ).start(timeout=60)
    yield server
    server.stop()


@pytest.fixture(scope="module")
def console_extra(peer) -> str:
    return f'"peer.test" = "smtp:[127.0.0.1]:{peer.port}"\n[capture]\naccounts = ["{CAROL}"]\n'


def test_a_captured_message_is_released_and_reaches_the_peer(
    console, peer, logged_in, console_url, shot
):
    browser = logged_in
    add_user(console, CAROL)
    kept = submit(console, CAROL, FRIEND, "Invoice draft (keep)")
    chosen = submit(console, CAROL, FRIEND, "Password reset for friend")
    time.sleep(2.5)  # two runs of the queue manager: captured mail is not delivered
    assert maildir_messages(peer.data_dir, FRIEND) == []

    browser.find_element("link text", "Capture").click()
    row = "tr[data-test=capture-row][data-id='{}']"
    assert wait_until(browser, lambda d: d.find_elements("css selector", row.format(chosen)))
    assert browser.find_elements("css selector", row.format(kept))
    assert "2 captured messages" in browser.find_element("id", "capture-count").text
    assert assert_post_forms_have_csrf(browser) >= 3  # one Release a row, log out
    shot("capture", docs=True)

    # Search by subject, then open the one to release.
    search = browser.find_element("css selector", "#capture-search input[name=subject]")
    search.send_keys("password")
    search.submit()
    assert wait_until(
        browser, lambda d: len(d.find_elements("css selector", "tr[data-test=capture-row]")) == 1
    )
    browser.find_element("link text", "Password reset for friend").click()
    assert wait_until(
        browser, lambda d: d.find_element("css selector", "[data-test=qid]").text == chosen
    )
    assert browser.find_element("css selector", "[data-test=tenant]").text == CAROL
    assert FRIEND in browser.find_element("css selector", "[data-test=recipients]").text
    assert browser_errors(browser) == []
    shot("capture-message", docs=True)

    browser.find_element("id", "release").click()
    flash = wait_until(browser, lambda d: d.find_element("css selector", ".flash").text)
    assert chosen in flash and "released" in flash, flash
    files = wait_for(lambda: maildir_messages(peer.data_dir, FRIEND), timeout=30)
    assert len(files) == 1 and b"Password reset for friend" in files[0].read_bytes()
    browser.get(console_url("/capture"))
    assert not browser.find_elements("css selector", row.format(chosen))
    assert browser.find_elements("css selector", row.format(kept))  # still captured
    shot("capture-released")
    time.sleep(1.5)
    assert len(maildir_messages(peer.data_dir, FRIEND)) == 1  # only the released one
