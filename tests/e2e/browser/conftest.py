"""Fixtures of the browser tests: the web console (issue 15) driven by a real
headless Chromium from Debian's packages, through Selenium.

Contract:
  * Chromium and its driver are Debian's (`chromium`, `chromium-driver`,
    installed by .ci/run): /usr/bin/chromium and /usr/bin/chromedriver, named
    explicitly, so Selenium Manager is never run and nothing is downloaded at
    test time (SE_OFFLINE=true as well, in case a Selenium release asks it
    anyway). Missing, or `selenium` not installed: the test skips, and fails
    under CI=true (CONTRIBUTING.md, rule 18).
  * `browser`: a fresh headless Chromium per test (--headless=new, its own
    temporary profile, a 1280x900 window, --no-sandbox only as root, where
    Chromium refuses to start otherwise). Its proxy is a closed loopback
    port: a page can reach loopback (which Chromium never proxies) and
    nothing else, so a test cannot talk to the outside world by accident.
  * `shot(name)`: a PNG of the current page in artifacts/screenshots/NAME.png
    under the repository (gitignored); `shot(name, docs=True)` also writes
    docs/images/console/NAME.png when PIGEON_DOC_SCREENSHOTS=1 (`make
    screenshots`), scaled down until it is under 150 KB. A failed test that
    used `browser` leaves artifacts/screenshots/FAILED-<test>.png.
  * `console`: a live pigeon (pigeon.testing.live.PigeonProcess), one per
    test module, whose console and HTTP API listen on `console.console_port`,
    with one console admin (browser_helpers.ADMIN); `console_url(path)` is
    a URL on it; `logged_in` is the browser after logging in as that admin.
"""

from __future__ import annotations

import base64
import os
import re
from pathlib import Path

import pytest
from browser_helpers import ADMIN, ADMIN_PASSWORD, add_admin, login

from pigeon.testing.live import PigeonProcess, free_port, wait_for

REPO = Path(__file__).resolve().parents[3]
SCREENSHOTS = REPO / "artifacts" / "screenshots"
DOC_IMAGES = REPO / "docs" / "images" / "console"
CHROMIUM = Path("/usr/bin/chromium")
CHROMEDRIVER = Path("/usr/bin/chromedriver")
DOC_LIMIT = 150 * 1024  # bytes per screenshot in docs/ (the repository stays small)


def _missing(what: str) -> None:
    if os.environ.get("CI") == "true":
        pytest.fail(f"{what} is required in CI (installed by .ci/run)")
    pytest.skip(f"{what} is not installed")


@pytest.fixture(scope="session")
def webdriver_module():
    """Selenium's webdriver package, once Chromium and its driver are known present."""
    for path in (CHROMIUM, CHROMEDRIVER):
        if not os.access(path, os.X_OK):
            _missing(f"{path} (Debian's chromium and chromium-driver)")
    try:
        from selenium import webdriver
    except ImportError:
        _missing("selenium (pip install -e '.[test]')")
    return webdriver


def chromium_options(webdriver, profile: Path):
    options = webdriver.ChromeOptions()
    options.binary_location = str(CHROMIUM)
    for arg in (
        "--headless=new",
        f"--user-data-dir={profile}",
        "--window-size=1280,900",
        "--disable-gpu",
        "--disable-dev-shm-usage",  # /dev/shm is small in containers
        "--no-first-run",
        "--no-default-browser-check",
        "--disable-extensions",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--disable-features=Translate,OptimizationHints,MediaRouter",
        # Only loopback is reachable: Chromium never proxies it, and every other
        # request goes to a closed port (port 9, discard: nothing listens).
        "--proxy-server=http://127.0.0.1:9",
        "--lang=en-US",
    ):
        options.add_argument(arg)
    # The page's console messages (CSP violations, script errors) for browser_errors().
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    if os.geteuid() == 0:
        options.add_argument("--no-sandbox")  # Chromium will not start as root without it
    return options


@pytest.fixture
def browser(webdriver_module, tmp_path, monkeypatch):
    from selenium.webdriver.chrome.service import Service

    # Belt and braces: with a driver path given Selenium skips its manager;
    # should a release ask it anyway, it must not go to the network.
    monkeypatch.setenv("SE_OFFLINE", "true")
    profile = tmp_path / "chromium-profile"
    profile.mkdir()
    service = Service(
        executable_path=str(CHROMEDRIVER), log_output=str(tmp_path / "chromedriver.log")
    )
    driver = webdriver_module.Chrome(
        service=service, options=chromium_options(webdriver_module, profile)
    )
    driver.set_page_load_timeout(30)
    driver.set_script_timeout(10)
    try:
        yield driver
    finally:
        driver.quit()


def _png(driver, scale: float) -> bytes:
    """The viewport as PNG, at `scale` (1.0: as Selenium takes it)."""
    if scale == 1.0:
        return driver.get_screenshot_as_png()
    width, height = driver.execute_script("return [window.innerWidth, window.innerHeight]")
    clip = {"x": 0, "y": 0, "width": width, "height": height, "scale": scale}
    shot = driver.execute_cdp_cmd("Page.captureScreenshot", {"format": "png", "clip": clip})
    return base64.b64decode(shot["data"])


def _safe(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]+", "-", name).strip("-") or "page"


@pytest.fixture
def shot(browser):
    """`shot(name, docs=False)`: save the page as artifacts/screenshots/NAME.png
    (and docs/images/console/NAME.png with docs=True under `make screenshots`);
    returns the artefact's path."""
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    to_docs = os.environ.get("PIGEON_DOC_SCREENSHOTS") == "1"

    def take(name: str, docs: bool = False) -> Path:
        path = SCREENSHOTS / f"{_safe(name)}.png"
        path.write_bytes(_png(browser, 1.0))
        if docs and to_docs:
            DOC_IMAGES.mkdir(parents=True, exist_ok=True)
            for scale in (1.0, 0.8, 0.65, 0.5):
                data = _png(browser, scale)
                if len(data) <= DOC_LIMIT:
                    break
            (DOC_IMAGES / f"{_safe(name)}.png").write_bytes(data)
        return path

    return take


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    """A failed browser test leaves a screenshot of where it stood."""
    outcome = yield
    report = outcome.get_result()
    driver = getattr(item, "funcargs", {}).get("browser")
    if report.when != "call" or driver is None:
        return
    failed = SCREENSHOTS / f"FAILED-{_safe(item.name)}.png"
    failed.unlink(missing_ok=True)  # an earlier run's, not this one's
    if report.failed:
        try:
            SCREENSHOTS.mkdir(parents=True, exist_ok=True)
            driver.save_screenshot(str(failed))
        except Exception:  # the browser itself may be what failed
            pass


#: The console's pigeon: local mailboxes, a capture domain (docs/capture.md),
#: and "down.test" whose next hop is a closed loopback port, so mail for it
#: stays deferred in the queue (tests/e2e/test_http_api.py does the same).
CONSOLE_CONFIG = (
    'relay_networks = ["127.0.0.0/8"]\n'
    '[domains."localhost"]\n[domains."example.test"]\nmailboxes = ["alice", "bob"]\n'
    '[domains."dev.test"]\ncapture = true\n'
    "[queue]\nrun_interval = 1.0\nmin_backoff = 3600\nmax_backoff = 7200\n"
    '[delivery]\nconnect_timeout = 2.0\n[admin]\nmetrics_listen = ""\n'
    '[transports]\n"down.test" = "smtp:[127.0.0.1]:{closed}"\n{extra}'
)


@pytest.fixture(scope="module")
def console_extra() -> str:
    """TOML appended to CONSOLE_CONFIG for the module's console (a module
    overrides it): lines there first go into its `[transports]` table."""
    return ""


@pytest.fixture(scope="module")
def console(tmp_path_factory, console_extra):
    """A live pigeon with its console (and HTTP API) on `console.console_port`,
    shared by the tests of a module (each test has its own browser, so its own
    session), with the admin browser_helpers.ADMIN in its admin store."""
    config = CONSOLE_CONFIG.format(closed=free_port(), extra=console_extra)
    server = PigeonProcess(tmp_path_factory.mktemp("console"), config).start(timeout=60)
    try:
        # pigeon makes its first admin (`admin`, its password said once in the
        # log) shortly after the console binds, and only while no admins file
        # exists: let it, before ours makes the file (test_browser_login.py
        # logs in with that password).
        wait_for(lambda: "first admin 'admin' created" in server.log(), timeout=30)
        add_admin(server)
        yield server
    finally:
        server.stop()


@pytest.fixture
def console_url(console):
    return console.api_url


@pytest.fixture
def logged_in(browser, console, console_url):
    """The browser, logged in to the console as browser_helpers.ADMIN."""
    login(browser, console_url, ADMIN, ADMIN_PASSWORD)
    assert browser.get_cookie("pigeon_session"), "the login did not make a session"
    return browser
