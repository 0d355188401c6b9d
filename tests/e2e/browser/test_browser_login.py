"""Logging in to the web console in a real browser (docs/console.md, "Logging in").

An admin is written into the console's admin store (console/admins.py) of
a live pigeon; Debian's headless Chromium opens the console, is sent to the
login page, and logs in with the good password (the dashboard, a session
cookie the page's scripts cannot read) or a bad one (the error, no session).
"""

from __future__ import annotations

import re

import pytest
from browser_helpers import (
    ADMIN,
    ADMIN_PASSWORD,
    assert_post_forms_have_csrf,
    login,
    wait_until,
)

pytestmark = [pytest.mark.e2e, pytest.mark.browser]

COOKIE = "pigeon_session"  # console/sessions.py


def path_of(driver) -> str:
    return "/" + driver.current_url.split("/", 3)[3]


def test_a_good_password_opens_the_dashboard(console, console_url, browser, shot):
    browser.get(console_url("/"))
    # No session: the dashboard sends the browser to the login page, and back after it.
    assert wait_until(browser, lambda d: path_of(d) == "/login?next=/"), browser.current_url
    assert browser.find_elements("css selector", "input[name=password][type=password]")
    assert not browser.find_elements("css selector", "nav")  # nothing but the form
    shot("login", docs=True)
    login(browser, console_url, ADMIN, ADMIN_PASSWORD)
    assert path_of(browser) == "/", browser.current_url
    assert browser.find_element("tag name", "h1").text == "Dashboard"
    assert browser.find_element("css selector", ".who").text == ADMIN
    assert "Dashboard" in browser.find_element("css selector", "nav").text
    cookie = browser.get_cookie(COOKIE)
    assert cookie and cookie["httpOnly"] and cookie["sameSite"] == "Strict"
    assert browser.execute_script("return document.cookie") == ""  # HttpOnly: no script sees it
    assert assert_post_forms_have_csrf(browser) >= 1  # the log-out form
    shot("dashboard-after-login")


def test_a_bad_password_shows_the_error_and_makes_no_session(console, console_url, browser, shot):
    login(browser, console_url, ADMIN, "not the password")
    alert = browser.find_element("css selector", "[role=alert]").text
    assert "wrong" in alert
    assert path_of(browser) == "/login"
    assert browser.get_cookie(COOKIE) is None
    shot("login-failed")
    # Unknown name: the same message (it does not tell which names exist).
    login(browser, console_url, "nobody", ADMIN_PASSWORD)
    assert browser.find_element("css selector", "[role=alert]").text == alert
    browser.get(console_url("/"))
    assert wait_until(browser, lambda d: path_of(d).startswith("/login"))
    assert "wrong name or password" not in console.log()  # the log says it its own way
    assert "failed login for 'nobody'" in console.log()


def test_logging_out_ends_the_session(console, console_url, browser):
    login(browser, console_url, ADMIN, ADMIN_PASSWORD)
    sid = browser.get_cookie(COOKIE)["value"]
    browser.find_element("css selector", "form.logout button").click()
    assert wait_until(browser, lambda d: path_of(d) == "/login")
    assert browser.get_cookie(COOKIE) is None
    # The old id is dead on the server too, not just forgotten by the browser.
    browser.add_cookie({"name": COOKIE, "value": sid, "path": "/"})
    browser.get(console_url("/"))
    assert wait_until(browser, lambda d: path_of(d).startswith("/login"))


def test_the_first_admin_logs_in_with_the_password_printed_once(console, console_url, browser):
    # The console's pigeon started with no admins file: it made `admin` and
    # said its password once, in the log (docs/console.md, "The first admin").
    said = re.findall(r"first admin 'admin' created, password: (\S+);", console.log())
    assert len(said) == 1, console.log()[-2000:]
    login(browser, console_url, "admin", said[0])
    assert path_of(browser) == "/", browser.current_url
    assert browser.find_element("css selector", ".who").text == "admin"
