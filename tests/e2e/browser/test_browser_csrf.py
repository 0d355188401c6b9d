"""Cross-site request forgery against the console, from a real browser that
is logged in (docs/console.md, "Security model at a glance").

Another origin (a loopback HTTP server of the test on another port: the
same *site* for the browser, so the SameSite=Strict cookie is sent along
and only the CSRF token and the Origin check stand in the way) serves a
page that posts the queue's delete form by itself. The console refuses it
(403) and the message stays queued; the same action through the console's
own form works.
"""

from __future__ import annotations

import json

import pytest
from browser_helpers import HitServer, api_token, send_by_api, wait_until

pytestmark = [pytest.mark.e2e, pytest.mark.browser]


def queued(server) -> list[str]:
    done = server.command("queue", "list", "--json", text=True)
    assert done.returncode == 0, done.stderr
    return [e["id"] for e in json.loads(done.stdout)["entries"]]


def forged_page(action: str, fields: dict[str, str]) -> bytes:
    inputs = "".join(f'<input type="hidden" name="{k}" value="{v}">' for k, v in fields.items())
    return (
        '<!doctype html><html><head><link rel="icon" href="data:,"></head><body>'
        f'<form id="f" method="post" action="{action}">{inputs}</form>'
        "<script>document.getElementById('f').submit();</script></body></html>"
    ).encode()


def test_a_form_posted_from_another_origin_is_refused(console, logged_in, console_url, shot):
    browser = logged_in
    qid = send_by_api(console, api_token(console, "csrf", "send"), "victim@down.test", "Keep me")
    assert qid in queued(console)
    target = console_url(f"/queue/{qid}/act")
    evil = HitServer(
        {
            "/no-token": ("text/html", forged_page(target, {"action": "delete", "confirm": "yes"})),
            "/bad-token": (
                "text/html",
                forged_page(target, {"action": "delete", "confirm": "yes", "csrf": "guessed"}),
            ),
        }
    )
    try:
        for path in ("/no-token", "/bad-token"):
            browser.get(evil.url(path))
            assert wait_until(browser, lambda d: d.current_url == target), browser.current_url
            assert browser.find_element("tag name", "h1").text == "403", path
            # The session cookie went along (same site): the token check refused it.
            assert "not sent by this console" in browser.find_element("tag name", "main").text
            assert qid in queued(console), path
        shot("csrf-refused")
    finally:
        evil.stop()
    # The console's own form, with its token, does delete it.
    browser.get(console_url(f"/queue/{qid}"))
    browser.find_element("id", "confirm-delete").click()
    browser.find_element("id", "act-delete").click()
    assert wait_until(browser, lambda d: qid not in queued(console), timeout=20)
