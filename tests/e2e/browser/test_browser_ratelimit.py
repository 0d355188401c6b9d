"""Login rate limiting seen from a browser (docs/console.md, "Login rate
limiting"): after five failed logins from one address the login page
refuses even the right password, says so, and makes no session.

Its own module, hence its own console pigeon: the limit is per client
address, and every browser test comes from 127.0.0.1.
"""

from __future__ import annotations

import pytest
from browser_helpers import ADMIN, ADMIN_PASSWORD, login

pytestmark = [pytest.mark.e2e, pytest.mark.browser]


def test_five_failures_lock_the_login_even_for_the_right_password(
    console, console_url, browser, shot
):
    for attempt in range(5):
        login(browser, console_url, ADMIN, f"guess number {attempt}")
        assert "wrong" in browser.find_element("css selector", "[role=alert]").text
    login(browser, console_url, ADMIN, ADMIN_PASSWORD)
    alert = browser.find_element("css selector", "[role=alert]").text
    assert "Too many failed logins" in alert, alert
    assert browser.get_cookie("pigeon_session") is None
    shot("login-rate-limited")
