"""Admins and login hardening (console/admins.py, login.py, guard.py): the first admin,
the login rate limit, sessions ended by a removed admin or a changed password."""

from __future__ import annotations

import asyncio
import re

from pigeon.console.admins import AdminStore
from pigeon.console.sessions import COOKIE
from tests.unit.console.conftest import PASSWORD, login


def run(coro):
    return asyncio.run(coro)


def test_the_first_admin_is_made_once(tmp_path):
    store = AdminStore.in_data_dir(tmp_path)
    password = store.ensure_first()
    assert password and len(password) >= 16
    assert store.names() == ["admin"] and store.verify("admin", password)
    assert store.ensure_first() is None  # the file exists: never again
    store.remove("admin")
    assert store.ensure_first() is None  # even with every admin gone
    assert store.names() == []


def test_passwd_changes_the_stamp_and_remove_clears_it(tmp_path):
    store = AdminStore.in_data_dir(tmp_path)
    store.add("ops", PASSWORD)
    before = store.stamp("ops")
    store.passwd("ops", "another long password")
    assert store.stamp("ops") not in (None, before)
    assert store.verify("ops", "another long password") and not store.verify("ops", PASSWORD)
    assert store.remove("ops") and store.stamp("ops") is None


def test_too_many_failures_are_429_with_retry_after_even_with_the_right_password(console):
    async def go():
        async with console() as client:
            for _ in range(5):
                r = await login(client, password="wrong")
                assert r.status == 401
            r = await login(client)  # right password, but locked
            assert r.status == 429
            assert 1 <= int(r.headers["Retry-After"]) <= 900
            assert "Too many failed logins" in await r.text()
            assert COOKIE not in r.cookies

    run(go())


def test_a_success_resets_the_failures(console):
    async def go():
        async with console() as client:
            for _ in range(4):
                assert (await login(client, password="wrong")).status == 401
            assert (await login(client)).status == 303
            for _ in range(4):
                assert (await login(client, password="wrong")).status == 401
            assert (await login(client)).status == 303

    run(go())


def test_a_removed_admin_or_a_changed_password_ends_the_session(console, tmp_path):
    async def go():
        async with console() as client:
            assert (await login(client)).status == 303
            assert (await client.get("/", allow_redirects=False)).status == 200
            # what `pigeon admin passwd` does, from another process
            AdminStore.in_data_dir(tmp_path).passwd("admin", "a new password 1")
            r = await client.get("/", allow_redirects=False)
            assert r.status == 303 and r.headers["Location"].startswith("/login")
            assert (await login(client, password="a new password 1")).status == 303
            assert (await client.get("/", allow_redirects=False)).status == 200
            AdminStore.in_data_dir(tmp_path).remove("admin")
            r = await client.get("/", allow_redirects=False)
            assert r.status == 303 and r.headers["Location"].startswith("/login")

    run(go())


def test_the_first_admin_line_reaches_stderr_when_the_log_goes_to_a_file(tmp_path, capsys):
    from pigeon.app.console import first_admin
    from pigeon.config.load import load_config

    path = tmp_path / "pigeon.toml"
    path.write_text(f'data_dir = "{tmp_path}"\n[log]\nfile = "{tmp_path / "mail.log"}"\n')
    store = AdminStore.in_data_dir(tmp_path)
    first_admin(load_config(path), store)
    err = capsys.readouterr().err
    found = re.search(r"first admin 'admin' created, password: ([A-Za-z0-9_-]+); change it", err)
    assert found and store.verify("admin", found.group(1))
    first_admin(load_config(path), store)  # the file exists now: nothing more said
    assert capsys.readouterr().err == ""


def test_the_first_admin_never_overwrites_an_admin_added_meanwhile(tmp_path, monkeypatch):
    import pigeon.console.admins as admins_module

    store = AdminStore.in_data_dir(tmp_path)
    real_hash = admins_module.hash_password
    raced = []

    def slow_hash(password):
        # `pigeon admin add` in another process, while the first admin's hash is made
        if not raced:
            raced.append(1)
            AdminStore.in_data_dir(tmp_path).add("ops", PASSWORD)
        return real_hash(password)

    monkeypatch.setattr(admins_module, "hash_password", slow_hash)
    assert store.ensure_first() is None
    assert store.names() == ["ops"] and store.verify("ops", PASSWORD)
    assert not [p for p in tmp_path.iterdir() if p.name.endswith(".tmp")]
