"""The console's accounts page: the submission accounts `pigeon user` manages.

Contract:
  * The accounts are not in the configuration file: they live in
    `<data_dir>/accounts.db` (pigeon.auth.accounts, argon2id hashes plus
    SCRAM-SHA-256 keys), and this page changes them the way `pigeon user`
    does (cli/user.py), through the same AccountStore. A running pigeon
    sees a change at the next login: no reload is needed.
  * GET /settings/accounts lists each account with its addresses.
    POST /settings/accounts/add (name, password, again, addresses:
    separated by newlines, commas or blanks), POST
    /settings/accounts/passwd (name, password, again), POST
    /settings/accounts/delete (name): CSRF-checked forms. A new password
    needs [auth] min_password_length characters, typed twice alike;
    otherwise, or when the store refuses (the account exists, an address
    belongs to another), the page answers 422 with the reason and nothing
    changes. Hashing and the store's I/O run in a thread.
  * Passwords are never logged nor put back into the page.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from typing import Any

from aiohttp import web

from pigeon.auth.accounts import AccountError, AccountStore
from pigeon.auth.directory import AccountDirectory
from pigeon.console.deps import ConsoleDeps
from pigeon.console.pages import Page, flash, form, redirect, render
from pigeon.console.sessions import SESSION_KEY
from pigeon.console.settings import split_list
from pigeon.store.factory import account_store

__all__ = ["accounts_pages"]

log = logging.getLogger("pigeon")

BACK = "/settings/accounts"


def accounts_pages(deps: ConsoleDeps) -> list[Page]:
    def min_length() -> int:
        config = deps.config() if deps.config is not None else None
        return config.auth.min_password_length if config is not None else 12

    def with_store(action: Callable[[AccountDirectory], Any]) -> Any:
        config = deps.config() if deps.config is not None else None
        # The running configuration's store: the shared database's accounts
        # when [queue] store names one (store/factory.py), else accounts.db.
        store = (
            account_store(config) if config is not None else AccountStore.in_data_dir(deps.data_dir)
        )
        store.open()
        try:
            return action(store)
        finally:
            store.close()

    async def page(request: web.Request, status: int = 200, **extra: Any) -> web.Response:
        try:
            accounts = await asyncio.to_thread(with_store, lambda s: s.list())
            problem = None
        except AccountError as exc:
            accounts, problem = [], f"the account store cannot be read: {exc}"
        return render(
            request,
            "settings_accounts.html",
            http_status=status,
            accounts=accounts,
            min_length=min_length(),
            error=extra.pop("error", None) or problem,
            values=extra.pop("values", {}),
        )

    def password_problem(data: dict[str, str]) -> str | None:
        password, again = data.get("password", ""), data.get("again", "")
        if not password:
            return "the password is empty"
        if password != again:
            return "the two passwords differ"
        if len(password) < min_length():
            return (
                f"the password is too short: {len(password)} characters, at least "
                f"{min_length()} are needed ([auth] min_password_length)"
            )
        return None

    def who(request: web.Request) -> str:
        session = request.get(SESSION_KEY)
        return session.admin if session is not None else "?"

    async def change(
        request: web.Request, data: dict[str, str], action: Callable[[AccountDirectory], str]
    ) -> web.StreamResponse:
        # The form's values come back on a refusal, never its passwords.
        values = {k: v for k, v in data.items() if k in ("name", "addresses")}
        try:
            done = await asyncio.to_thread(with_store, action)
        except AccountError as exc:
            return await page(request, 422, error=str(exc), values=values)
        log.info("web console: %s: %s", who(request), done)
        flash(request, f"{done}.", "ok")
        raise redirect(BACK)

    async def show(request: web.Request) -> web.StreamResponse:
        return await page(request)

    async def add(request: web.Request) -> web.StreamResponse:
        data = await form(request)
        problem = password_problem(data)
        if problem is not None:
            return await page(request, 422, error=problem, values={"name": data.get("name", "")})
        addresses = tuple(split_list(data.get("addresses", "")))

        def action(store: AccountDirectory) -> str:
            account = store.add(data.get("name", ""), data["password"], addresses)
            return f"account {account.name} added ({', '.join(account.addresses) or 'no address'})"

        return await change(request, data, action)

    async def passwd(request: web.Request) -> web.StreamResponse:
        data = await form(request)
        problem = password_problem(data)
        if problem is not None:
            return await page(request, 422, error=problem)

        def action(store: AccountDirectory) -> str:
            store.set_password(data.get("name", ""), data["password"])
            return f"password of {data.get('name', '')} changed"

        return await change(request, data, action)

    async def delete(request: web.Request) -> web.StreamResponse:
        data = await form(request)

        def action(store: AccountDirectory) -> str:
            store.delete(data.get("name", ""))
            return f"account {data.get('name', '')} deleted"

        return await change(request, data, action)

    return [
        Page("GET", BACK, show),
        Page("POST", BACK + "/add", add),
        Page("POST", BACK + "/passwd", passwd),
        Page("POST", BACK + "/delete", delete),
    ]
