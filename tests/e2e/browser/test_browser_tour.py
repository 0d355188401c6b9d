"""Every page of the console's navigation bar in a real browser: each one
loads with its heading, without a script error or a Content-Security-Policy
violation in the browser's console, with the CSRF field in each of its POST
forms, and leaves a screenshot (artifacts/screenshots/page-NAME.png).

The list of pages is read from the navigation bar itself, so a page added
later is visited too; sub-pages linked from a page's own navigation
(`nav` elements inside <main>, e.g. the settings' tabs) as well.
"""

from __future__ import annotations

import pytest
from browser_helpers import assert_post_forms_have_csrf, browser_errors, wait_until

pytestmark = [pytest.mark.e2e, pytest.mark.browser]


def links(driver, selector: str) -> list[tuple[str, str]]:
    return [
        (a.text.strip(), a.get_attribute("href"))
        for a in driver.find_elements("css selector", selector)
        if a.get_attribute("href")
    ]


def test_every_page_loads_cleanly(logged_in, console_url, shot):
    browser = logged_in
    top = links(browser, "header nav a")
    assert top and top[0][0] == "Dashboard", top
    seen: set[str] = set()
    queue = list(top)
    while queue:
        label, href = queue.pop(0)
        if href in seen or not href.startswith(console_url("/")):
            continue
        seen.add(href)
        browser.get(href)
        assert wait_until(browser, lambda d: d.find_element("tag name", "h1").text), href
        assert browser.current_url.split("?")[0] == href.split("?")[0], (href, browser.current_url)
        assert browser_errors(browser) == [], href
        assert assert_post_forms_have_csrf(browser) >= 1, href  # log out, at least
        name = href[len(console_url("/")) :].split("?")[0].replace("/", "-") or "dashboard"
        shot(f"page-{name}")
        queue += links(browser, "main nav a")
    assert len(seen) >= len(top)
