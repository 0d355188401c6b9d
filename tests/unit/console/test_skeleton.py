"""The console's frame: login, sessions, the guard, CSRF, HTML errors
(console/login.py, guard.py, pages.py, sessions.py, admins.py)."""

from __future__ import annotations

import asyncio

import pytest

from pigeon.console.admins import AdminError, AdminStore
from pigeon.console.login import safe_next
from pigeon.console.sessions import COOKIE, SessionStore
from tests.unit.console.conftest import PASSWORD, csrf_of, login


def run(coro):
    return asyncio.run(coro)


def test_every_page_but_login_needs_a_session(console):
    async def go():
        async with console() as client:
            r = await client.get("/", allow_redirects=False)
            assert r.status == 303 and r.headers["Location"] == "/login?next=/"
            r = await client.post("/logout", data={}, allow_redirects=False)
            assert r.status == 403
            r = await client.get("/login")
            assert r.status == 200 and "Log in to pigeon" in await r.text()
            r = await client.get("/api/health")  # the API's own business
            assert r.status == 200

    run(go())


def test_a_wrong_password_is_401_and_makes_no_session(console):
    async def go():
        async with console() as client:
            r = await login(client, password="wrong")
            assert r.status == 401
            assert "The name or the password is wrong." in await r.text()
            assert COOKIE not in r.cookies
            r = await login(client, name="nobody")
            assert r.status == 401

    run(go())


def test_login_sets_a_strict_httponly_cookie_and_opens_the_dashboard(console):
    async def go():
        async with console() as client:
            r = await login(client)
            assert r.status == 303 and r.headers["Location"] == "/"
            morsel = r.cookies[COOKIE]
            assert morsel["httponly"] and morsel["samesite"] == "Strict"
            r = await client.get("/")
            assert r.status == 200
            html = await r.text()
            assert "Dashboard" in html and "delivered" in html
            assert "frame-ancestors 'none'" in r.headers["Content-Security-Policy"]
            assert r.headers["X-Frame-Options"] == "DENY"

    run(go())


def test_a_form_without_the_csrf_token_is_refused(console):
    async def go():
        async with console() as client:
            await login(client)
            html = await (await client.get("/")).text()
            r = await client.post("/logout", data={"csrf": "forged"}, allow_redirects=False)
            assert r.status == 403
            r = await client.post(
                "/logout",
                data={"csrf": csrf_of(html)},
                headers={"Origin": "http://evil.example"},
                allow_redirects=False,
            )
            assert r.status == 403
            r = await client.post("/logout", data={"csrf": csrf_of(html)}, allow_redirects=False)
            assert r.status == 303 and r.headers["Location"] == "/login"
            r = await client.get("/", allow_redirects=False)
            assert r.status == 303  # the session is gone

    run(go())


def test_errors_are_html_on_console_paths_and_problems_on_api_paths(console):
    async def go():
        async with console() as client:
            await login(client)
            r = await client.get("/no-such-page")
            assert r.status == 404 and r.content_type == "text/html"
            r = await client.get("/api/no-such-route")
            assert r.status == 404 and r.content_type == "application/problem+json"

    run(go())


@pytest.mark.parametrize(
    "target, expected",
    [
        ("/queue?state=deferred", "/queue?state=deferred"),
        ("//evil.example/", "/"),
        ("https://evil.example/", "/"),
        ("/\\evil.example", "/"),
        ("", "/"),
        ("/a\r\nSet-Cookie: x", "/"),
    ],
)
def test_next_is_a_local_path_or_the_dashboard(target, expected):
    assert safe_next(target) == expected


def test_sessions_expire_when_idle_and_when_old():
    store = SessionStore(idle=10, absolute=100)
    s = store.create("admin", 0)
    assert store.get(s.sid, 9) is s
    assert store.get(s.sid, 25) is None  # idle 16 s > 10
    s = store.create("admin", 0)
    for t in range(5, 100, 5):
        assert store.get(s.sid, t) is s
    assert store.get(s.sid, 101) is None  # older than 100 s, though never idle
    assert store.create("admin", 0).csrf != store.create("admin", 0).csrf


def test_the_admin_store_hashes_checks_names_and_rereads(tmp_path):
    store = AdminStore.in_data_dir(tmp_path)
    store.add("ops@example.test", PASSWORD)
    text = store.path.read_text()
    assert PASSWORD not in text and "$argon2id$" in text
    assert store.path.stat().st_mode & 0o777 == 0o600
    assert store.verify("ops@example.test", PASSWORD)
    assert not store.verify("ops@example.test", "nope")
    assert not store.verify("ghost", PASSWORD)
    other = AdminStore.in_data_dir(tmp_path)  # another process: `pigeon admin add`
    other.add("second", "pw-2")
    assert store.verify("second", "pw-2")
    assert store.remove("second") and not store.remove("second")
    with pytest.raises(AdminError):
        store.add("bad name\n", "x")
