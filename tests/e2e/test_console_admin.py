"""The console's admins and settings against a live pigeon (docs/console.md):
the first admin's password is printed once and works; an account added on the
settings page can AUTH on submission; an alias added there delivers."""

from __future__ import annotations

import http.cookiejar
import re
import smtplib
import urllib.error
import urllib.parse
import urllib.request

import pytest
from secure_helpers import insecure_context, message

from pigeon.testing.live import maildir_messages, wait_for

pytestmark = pytest.mark.e2e

CONFIG = (
    "# operator comment: kept by the console\n"
    '[domains."example.test"]\nmailboxes = ["alice", "bob"]\n'
)
FIRST = re.compile(r"web console: first admin 'admin' created, password: ([A-Za-z0-9_-]+);")


class Browser:
    """A cookie-keeping HTTP client for the console (urllib: no redirect to
    another host is ever followed, the console only redirects to itself)."""

    def __init__(self, base: str) -> None:
        self.base = base
        self.opener = urllib.request.build_opener(
            urllib.request.HTTPCookieProcessor(http.cookiejar.CookieJar())
        )

    def get(self, path: str) -> tuple[int, str]:
        return self._open(urllib.request.Request(self.base + path))

    def post(self, path: str, fields: dict[str, str]) -> tuple[int, str]:
        body = urllib.parse.urlencode(fields).encode()
        return self._open(urllib.request.Request(self.base + path, data=body))

    def _open(self, request) -> tuple[int, str]:
        try:
            with self.opener.open(request, timeout=30) as r:
                return r.status, r.read().decode()
        except urllib.error.HTTPError as exc:
            return exc.code, exc.read().decode()

    def csrf(self, path: str) -> str:
        status, html = self.get(path)
        assert status == 200, html
        match = re.search(r'name="csrf" value="([^"]+)"', html)
        assert match, html
        return match.group(1)


def first_password(server) -> str:
    found = wait_for(lambda: FIRST.findall(server.log()))
    assert found, server.log()
    return found[0]


def logged_in(server) -> Browser:
    browser = Browser(server.api_url())
    status, html = browser.post(
        "/login", {"name": "admin", "password": first_password(server), "next": "/"}
    )
    assert status == 200 and "Dashboard" in html, html
    return browser


def test_the_first_admin_password_is_printed_once_and_works(pigeon_factory):
    server = pigeon_factory(CONFIG)
    password = first_password(server)
    assert "change it with pigeon admin passwd admin" in server.log()
    browser = Browser(server.api_url())
    status, html = browser.post("/login", {"name": "admin", "password": "wrong", "next": "/"})
    assert status == 401
    status, html = browser.post("/login", {"name": "admin", "password": password, "next": "/"})
    assert status == 200 and 'class="who">admin<' in html
    # Never again: the second start finds the admins file.
    server.stop()
    server.start()
    assert len(FIRST.findall(server.log())) == 1
    listed = server.command("admin", "list", text=True)
    assert listed.returncode == 0 and listed.stdout.startswith("admin\t")


def test_pigeon_admin_passwd_logs_the_admin_out_of_the_running_pigeon(pigeon_factory):
    server = pigeon_factory(CONFIG)
    browser = logged_in(server)
    assert browser.get("/settings")[0] == 200
    done = server.command(
        "admin", "passwd", "admin", "--password-stdin", stdin=b"a brand new password\n"
    )
    assert done.returncode == 0, done.stderr
    status, html = browser.get("/settings")  # sent to the login page
    assert status == 200 and "Log in to pigeon" in html
    status, html = browser.post(
        "/login", {"name": "admin", "password": "a brand new password", "next": "/settings"}
    )
    assert status == 200 and "Settings" in html


def submit(browser: Browser, page: str, action: str, **fields: str) -> tuple[int, str]:
    """Fill in the form of `page` that posts to `page/action` (with its CSRF token)."""
    return browser.post(f"{page}/{action}", {"csrf": browser.csrf(page), **fields})


def test_an_account_added_in_the_console_can_auth_on_submission(pigeon_factory):
    server = pigeon_factory(CONFIG)
    browser = logged_in(server)
    password = "alice's long password"
    status, html = submit(
        browser,
        "/settings/accounts",
        "add",
        name="alice@example.test",
        password=password,
        again=password,
    )
    assert status == 200 and 'data-account="alice@example.test"' in html, html
    with smtplib.SMTP("127.0.0.1", server.submission_port, timeout=10) as s:
        s.starttls(context=insecure_context())
        s.ehlo("client.example")
        assert s.login("alice@example.test", password)[0] == 235
        s.sendmail(
            "alice@example.test",
            ["bob@example.test"],
            message("alice@example.test", "bob@example.test", "from the console account"),
        )
    assert wait_for(lambda: maildir_messages(server.data_dir, "bob@example.test"))


def test_an_alias_added_in_the_console_delivers_and_the_file_keeps_its_comments(pigeon_factory):
    server = pigeon_factory(CONFIG)
    browser = logged_in(server)
    targets = "alice@example.test, bob@example.test"
    status, html = submit(
        browser, "/settings/aliases", "set", address="team@example.test", targets=targets
    )
    assert status == 200 and "reloaded" in html, html
    assert 'data-alias="team@example.test"' in html
    text = server.config_path.read_text()
    assert "# operator comment: kept by the console" in text
    assert '"team@example.test" = ["alice@example.test", "bob@example.test"]' in text
    assert (server.config_path.parent / "pigeon.toml.bak").exists()
    with smtplib.SMTP("127.0.0.1", server.port, timeout=10) as s:
        s.sendmail(
            "someone@elsewhere.example",
            ["team@example.test"],
            message("someone@elsewhere.example", "team@example.test", "to the team"),
        )
    assert wait_for(lambda: maildir_messages(server.data_dir, "alice@example.test"))
    assert wait_for(lambda: maildir_messages(server.data_dir, "bob@example.test"))
    # An invalid change is refused with the loader's words; the file stays.
    before = server.config_path.read_text()
    status, html = submit(browser, "/settings/domains", "add", name="bad domain!")
    assert status == 422 and str(server.config_path) in html
    assert server.config_path.read_text() == before
