"""The browser tests' own infrastructure works (tests/e2e/browser/conftest.py):
Debian's headless Chromium under Selenium loads a loopback page, runs its
script, fetches its image, and the screenshot helper writes a PNG; a page
cannot reach beyond loopback. Proven apart from the console, so a console
test that fails is about the console."""

from __future__ import annotations

import pytest
from browser_helpers import HitServer, wait_until

pytestmark = [pytest.mark.e2e, pytest.mark.browser]

PAGE = b"""<!doctype html>
<html><head><title>before</title><link rel="icon" href="data:,"></head>
<body><h1 id="greeting">static</h1><img id="pixel" src="/pixel.png">
<script>
document.title = "after";
document.getElementById("greeting").textContent = "scripted";
</script></body></html>
"""


@pytest.fixture
def site():
    server = HitServer({"/": ("text/html; charset=utf-8", PAGE)})
    yield server
    server.stop()


def test_chromium_runs_scripts_and_loads_loopback_images(browser, site, shot):
    browser.get(site.url("/"))
    assert wait_until(browser, lambda d: d.title == "after")
    assert browser.find_element("id", "greeting").text == "scripted"
    assert wait_until(
        browser, lambda d: d.execute_script("return document.getElementById('pixel').complete")
    )
    assert browser.execute_script("return document.getElementById('pixel').naturalWidth") == 1
    assert sorted(site.hits) == ["/", "/pixel.png"]
    path = shot("driver-selftest")
    assert path.read_bytes().startswith(b"\x89PNG\r\n\x1a\n")
    assert browser.get_window_size()["width"] == 1280


def test_the_browser_reaches_nothing_beyond_loopback(browser):
    # 192.0.2.1 (TEST-NET-1, RFC 5737) is not loopback: Chromium hands it to the
    # proxy, a closed port, and shows its own error page; nothing goes out.
    from selenium.common.exceptions import WebDriverException

    with pytest.raises(WebDriverException, match="ERR_PROXY_CONNECTION_FAILED"):
        browser.get("http://192.0.2.1/")
