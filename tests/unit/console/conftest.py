"""A console in memory for the page tests: the API's application with the
console added, an aiohttp test client, and a helper that logs in."""

from __future__ import annotations

import re
from collections.abc import Awaitable, Callable
from typing import Any

import pytest
from aiohttp.test_utils import TestClient, TestServer

from pigeon.console.admins import AdminStore
from pigeon.console.app import add_console
from pigeon.console.deps import ConsoleDeps
from pigeon.console.sessions import SessionStore
from pigeon.web.app import WebDeps, build_app
from pigeon.web.tokens import TokenStore

PASSWORD = "correct horse battery"


async def _ready() -> dict[str, bool]:
    return {"queue": True}


async def _status() -> dict[str, Any]:
    return {"pid": 1, "running": True, "delivered": 3}


def make_app(tmp_path, ops: dict[str, Callable[..., Awaitable[dict]]] | None = None, **extra):
    ops = {"status": _status, **(ops or {})}
    web_deps = WebDeps(
        tokens=TokenStore.in_data_dir(tmp_path),
        ops=ops,
        ready=_ready,
        max_body=1 << 20,
        submit=_ready,
    )
    admins = AdminStore.in_data_dir(tmp_path)
    admins.add("admin", PASSWORD)
    app = build_app(web_deps)
    deps = ConsoleDeps(admins=admins, sessions=SessionStore(), ops=ops, data_dir=tmp_path, **extra)
    add_console(app, deps)
    return app, deps


def csrf_of(html: str) -> str:
    match = re.search(r'name="csrf" value="([^"]+)"', html)
    assert match, "no CSRF field in the page"
    return match.group(1)


async def login(client: TestClient, name: str = "admin", password: str = PASSWORD):
    return await client.post(
        "/login", data={"name": name, "password": password, "next": "/"}, allow_redirects=False
    )


@pytest.fixture
def console(tmp_path):
    """An async context factory: `async with console() as client:` (logged out)."""

    def open_(**kwargs) -> TestClient:
        app, _ = make_app(tmp_path, **kwargs)
        return TestClient(TestServer(app))

    return open_
