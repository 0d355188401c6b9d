"""Helpers of the browser tests (tests/e2e/browser): a loopback HTTP server
that records every request (the remote image a received HTML mail must not
load), and waits on a page that are bounded in time.

Contract:
  * `HitServer` serves GET on 127.0.0.1 on an ephemeral port from a thread;
    `pages` maps a path to (content type, bytes), any other path is a 1x1
    PNG. Every request's path is appended to `hits`, whatever it asked for,
    so a test can assert that nothing was fetched. `stop()` ends the thread.
  * `wait_until(driver, predicate, timeout)` polls a predicate of the driver
    (bounded: CONTRIBUTING.md, rule 18) and returns its last value.
  * `add_admin(server, name, password)` writes a console admin into the
    server's admin store (console/admins.py, read again by the running
    pigeon when the file changes); `login(driver, url, name, password)`
    fills the console's login form as a person would and submits it.
  * `api_token(server, name, scopes)` makes an API token with `pigeon token
    add`; `send_by_api(server, token, to, subject)` sends a text message
    with POST /api/send (curl, tests/e2e/test_http_api.py) and returns its
    queue ID; `stat(driver, name)` is the dashboard's number `name`
    (its data-stat attribute: console/templates/dashboard.html).
  * `browser_errors(driver)`: the page's console errors since the last call
    (a script that failed, or a CSP violation: the console's own pages must
    have none).
  * `assert_post_forms_have_csrf(driver)`: every POST form of the page has
    the hidden `csrf` field with a value (console/pages.py, `form`).
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from test_http_api import curl

from pigeon.console.admins import AdminStore

ADMIN = "root-admin"
ADMIN_PASSWORD = "tr0ub4dor&3-but-longer"

# The smallest valid PNG (1x1, transparent): what a tracking pixel looks like.
PIXEL = bytes.fromhex(
    "89504e470d0a1a0a0000000d4948445200000001000000010806000000"
    "1f15c4890000000d49444154789c6360000002000154a24f5d0000000049454e44ae426082"
)


class HitServer:
    def __init__(self, pages: dict[str, tuple[str, bytes]] | None = None) -> None:
        self.pages = dict(pages or {})
        self.hits: list[str] = []
        server = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:  # noqa: N802 (http.server's name)
                server.hits.append(self.path)
                kind, body = server.pages.get(self.path, ("image/png", PIXEL))
                self.send_response(200)
                self.send_header("Content-Type", kind)
                self.send_header("Content-Length", str(len(body)))
                self.send_header("Cache-Control", "no-store")
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args) -> None:  # keep the test output quiet
                pass

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.port = self.httpd.server_address[1]
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)
        self.thread.start()

    def url(self, path: str = "/") -> str:
        return f"http://127.0.0.1:{self.port}{path}"

    def stop(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()
        self.thread.join(5)


def wait_until(driver, predicate: Callable, timeout: float = 10.0, interval: float = 0.1):
    """Poll `predicate(driver)` until it is truthy or `timeout` passes; its last value."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            value = predicate(driver)
        except Exception:  # the page is still changing (stale element, not found yet)
            value = None
        if value or time.monotonic() > deadline:
            return value
        time.sleep(interval)


def add_admin(server, name: str = ADMIN, password: str = ADMIN_PASSWORD) -> None:
    AdminStore.in_data_dir(server.data_dir).add(name, password)


def login(driver, url: Callable[[str], str], name: str, password: str) -> None:
    """Open /login, type the name and password, press the button; waits for
    the next page (the login form's own URL changes or an error shows)."""
    driver.get(url("/login"))
    form = driver.find_element("css selector", "form[action='/login']")
    form.find_element("name", "name").send_keys(name)
    form.find_element("name", "password").send_keys(password)
    form.find_element("css selector", "button[type=submit], input[type=submit]").click()
    wait_until(
        driver,
        lambda d: (
            not d.current_url.rstrip("/").endswith("/login")
            or d.find_elements("css selector", "[role=alert]")
        ),
    )


def assert_post_forms_have_csrf(driver) -> int:
    """Every POST form but the login form (no session yet) carries a non-empty
    `csrf` field; returns how many forms were checked."""
    forms = [
        f
        for f in driver.find_elements("css selector", "form")
        if (f.get_attribute("method") or "").lower() == "post"
        and not (f.get_attribute("action") or "").endswith("/login")
    ]
    for f in forms:
        fields = f.find_elements("css selector", "input[type=hidden][name=csrf]")
        assert fields and fields[0].get_attribute("value"), f.get_attribute("outerHTML")[:300]
    return len(forms)


def browser_errors(driver) -> list[str]:
    return [
        e["message"]
        for e in driver.get_log("browser")
        if e.get("level") == "SEVERE"
        and "/favicon.ico " not in e["message"]  # the browser's own ask
    ]


def api_token(server, name: str, scopes: str) -> str:
    done = server.command("token", "add", name, "--scope", scopes, text=True)
    assert done.returncode == 0, done.stderr
    return done.stdout.strip()


def send_by_api(server, token: str, to: str, subject: str) -> str:
    body = {
        "from": "shop@example.test",
        "to": [to],
        "subject": subject,
        "text": "Your order has shipped.\n",
    }
    status, _, answer = curl(
        server.api_url("/api/send"),
        "-H",
        "Content-Type: application/json",
        "--data-binary",
        "@-",
        token=token,
        stdin=json.dumps(body).encode(),
    )
    assert status == 202, answer
    return json.loads(answer)["queue_id"]


def stat(driver, name: str) -> str:
    return driver.find_element("css selector", f"[data-stat='{name}']").text
