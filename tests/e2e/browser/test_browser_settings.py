"""The settings pages in a real browser (docs/console.md, "Settings"): an
alias typed into the aliases form is written into the configuration file,
pigeon reloads, and mail to the alias (sent with swaks) is delivered to its
targets' mailboxes.
"""

from __future__ import annotations

import pytest
from browser_helpers import wait_until
from test_browser_mailboxes import swaks

from pigeon.testing.live import maildir_messages, wait_for

pytestmark = [pytest.mark.e2e, pytest.mark.browser]

TEAM = "team@example.test"


def test_an_alias_added_in_the_browser_delivers(console, logged_in, console_url, shot):
    browser = logged_in
    browser.get(console_url("/settings/aliases"))
    form = browser.find_element("id", "set-alias")
    form.find_element("name", "address").send_keys(TEAM)
    form.find_element("name", "targets").send_keys("alice@example.test bob@example.test")
    form.find_element("css selector", "button[type=submit]").click()
    row = f"tr[data-alias='{TEAM}']"
    assert wait_until(browser, lambda d: d.find_elements("css selector", row)), browser.page_source[
        :3000
    ]
    assert "bob@example.test" in browser.find_element("css selector", row).text
    shot("settings-aliases", docs=True)
    assert TEAM in console.config_path.read_text()
    swaks(console, b"Subject: to the team\r\n\r\nHello team.\r\n", to=TEAM)
    for box in ("alice@example.test", "bob@example.test"):
        assert wait_for(
            lambda: any(
                b"to the team" in p.read_bytes() for p in maildir_messages(console.data_dir, box)
            ),
            timeout=15,
        ), box
