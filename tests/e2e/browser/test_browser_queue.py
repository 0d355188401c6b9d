"""The dashboard and the queue pages in a real browser (docs/console.md,
"Dashboard", "Queue").

A message is sent through the HTTP API with a bearer token (`pigeon token
add`, docs/api.md) while the dashboard is open: its live numbers
(console/static/dashboard.js polling /console/stats.json) count it without
a reload, the queue by state and by destination show it, and the queue page
lists it; its detail page shows its envelope and history, and its buttons
(CSRF-checked forms) hold and release it. The recipient's domain,
down.test, has a closed loopback port as next hop (conftest.CONSOLE_CONFIG):
the message stays deferred, so it can be watched.
"""

from __future__ import annotations

import json

import pytest
from browser_helpers import (
    api_token,
    assert_post_forms_have_csrf,
    browser_errors,
    send_by_api,
    stat,
    wait_until,
)

pytestmark = [pytest.mark.e2e, pytest.mark.browser]


def test_a_message_sent_by_the_api_shows_on_the_dashboard_and_queue(console, logged_in, shot):
    browser = logged_in
    token = api_token(console, "browser", "send,read,admin")
    assert browser.find_element("id", "dashboard")
    before = int(stat(browser, "totals.deferred"))
    qid = send_by_api(console, token, "customer@down.test", "Order 1001 shipped")
    # No reload: the page's script polls the numbers (every 10 s) and shows the
    # first attempt's deferral (down.test's next hop is a closed port).
    assert wait_until(browser, lambda d: int(stat(d, "totals.deferred")) > before, timeout=40), (
        stat(browser, "totals.deferred"),
        browser_errors(browser),
    )
    # Deferred, waiting for down.test: the queue by state and by destination
    # (the page groups destinations at most every 30 s: reload until it shows).
    assert wait_until(
        browser,
        lambda d: (
            d.refresh()
            or (
                stat(d, "queue.deferred") == "1"
                and "down.test" in d.find_element("id", "destinations").text
            )
        ),
        timeout=60,
        interval=2.0,
    ), browser.find_element("id", "dashboard").text
    assert browser.find_elements("css selector", "#chart-minutes svg")  # drawn by the script
    shot("dashboard", docs=True)

    browser.find_element("css selector", "#queue-states a[href='/queue?state=deferred']").click()
    row = f"tr[data-test=queue-row][data-id='{qid}']"
    assert wait_until(browser, lambda d: d.find_elements("css selector", row))
    assert browser.find_element("css selector", row).get_attribute("data-state") == "deferred"
    assert "customer@down.test" in browser.find_element("css selector", row).text
    assert assert_post_forms_have_csrf(browser) >= 2  # flush, bulk actions, log out
    shot("queue", docs=True)

    # Searching by recipient finds it; another address finds nothing.
    field = browser.find_element("id", "filter-recipient")
    field.clear()
    field.send_keys("nobody@else.test")
    browser.find_element("id", "filter-apply").click()
    assert wait_until(browser, lambda d: d.find_elements("id", "queue-empty"))
    field = browser.find_element("id", "filter-recipient")
    field.clear()
    field.send_keys("customer@down")
    browser.find_element("id", "filter-apply").click()
    assert wait_until(browser, lambda d: d.find_elements("css selector", row))

    browser.find_element("css selector", f"{row} a[href='/queue/{qid}']").click()
    assert wait_until(browser, lambda d: d.find_element("id", "entry-id").text == qid)
    assert browser.find_element("id", "entry-sender").text == "shop@example.test"
    assert "customer@down.test" in browser.find_element("id", "entry-recipients").text
    assert "Order 1001 shipped" in browser.find_element("id", "entry-headers").text
    assert assert_post_forms_have_csrf(browser) >= 5
    shot("queue-entry", docs=True)

    # Hold, then release, with the page's own buttons (POST, CSRF, redirect).
    browser.find_element("id", "act-hold").click()
    assert wait_until(browser, lambda d: d.find_element("id", "entry-state").text == "hold")
    done = console.command("queue", "list", "--state", "hold", "--json", text=True)
    assert [e["id"] for e in json.loads(done.stdout)["entries"]] == [qid]
    browser.find_element("id", "act-release").click()
    assert wait_until(browser, lambda d: d.find_element("id", "entry-state").text != "hold")
    done = console.command("queue", "list", "--state", "hold", "--json", text=True)
    assert json.loads(done.stdout)["entries"] == []
