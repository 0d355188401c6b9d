"""The console's settings pages: local domains and aliases, written to the configuration file.

Contract:
  * GET /settings: where the settings live (the configuration file pigeon
    was started with, or a plain statement that it runs on the embedded
    defaults, with no file to edit, and how to make one) and links to the
    pages below. GET /settings/domains and /settings/aliases list the
    running configuration's domains and aliases (deps.config).
  * POST /settings/domains/add (name, mailboxes: one local part a line or
    separated by commas or blanks, empty = any; capture), POST
    /settings/domains/remove (name), POST /settings/aliases/set (address
    or "@domain", targets separated likewise: adds, or replaces an alias
    of that address), POST /settings/aliases/remove (address). Each is a
    CSRF-checked form (console/pages.py `form`).
  * An edit reads the file, changes only what it names, keeps the
    operator's comments and layout, and has pigeon's own loader check the
    result before the file is replaced (console/confedit.py: temporary
    file, fsync, `FILE.bak`, rename). A refused edit answers 422 with the
    page and the loader's message; the file is unchanged. An accepted one
    asks the running pigeon to reload (ops["reload"], as `pigeon reload`)
    and shows the reload's outcome (applied, or refused with its errors)
    after the redirect.
  * Edits are serialised (one lock): two admins saving at once do not
    lose each other's change. A change made by hand in the file since the
    last reload is kept (the file is read at each edit) and is applied by
    the same reload.
  * Without a file (embedded defaults) every edit answers 409 with the
    statement of GET /settings.
"""

from __future__ import annotations

import asyncio
import re
from collections.abc import Callable

from aiohttp import web
from tomlkit.toml_document import TOMLDocument

from pigeon.console.confedit import (
    ConfigFile,
    EditError,
    add_domain,
    remove_alias,
    remove_domain,
    set_alias,
)
from pigeon.console.deps import ConsoleDeps
from pigeon.console.pages import Page, flash, form, redirect, render

__all__ = ["NO_FILE", "settings_pages", "split_list"]

NO_FILE = (
    "pigeon runs on its embedded defaults: there is no configuration file to edit. "
    "To manage domains and aliases here, write one (an empty file is the same as the "
    "defaults, docs/config.md), start pigeon with it (pigeon serve --config FILE, or "
    "install it as /etc/pigeon/pigeon.toml) and come back."
)


def split_list(text: str) -> list[str]:
    """Items separated by newlines, commas or blanks; empty ones dropped."""
    return [item for item in re.split(r"[\s,]+", text) if item]


async def reload_outcome(request: web.Request, deps: ConsoleDeps, what: str) -> None:
    """Ask the running pigeon to reload and flash what happened."""
    try:
        outcome = await deps.ops["reload"]()
    except Exception as exc:  # an OpError ("cannot reload"), said, never a 500
        flash(request, f"{what}; the reload failed: {exc}", "error")
        return
    status = outcome.get("status")
    if status == "refused":
        flash(request, f"{what}; the reload was refused:", "error")
        for error in outcome.get("errors", []):
            flash(request, error, "error")
        return
    applied = ", ".join(outcome.get("applied", [])) or "nothing new"
    flash(request, f"{what}; reloaded ({status}: {applied}).", "ok")
    for warning in outcome.get("warnings", []):
        flash(request, warning, "error")
    for key in outcome.get("restart", []):
        flash(request, f"{key} waits for a restart (pigeon restart).", "info")


def settings_pages(deps: ConsoleDeps) -> list[Page]:
    lock = asyncio.Lock()

    def running() -> dict:
        config = deps.config() if deps.config is not None else None
        if config is None:
            return {"domains": [], "aliases": []}
        domains = [
            {
                "name": d.name,
                "mailboxes": sorted(d.mailboxes) if d.mailboxes is not None else None,
                "capture": d.capture,
            }
            for d in sorted(config.domains.values(), key=lambda d: d.name)
        ]
        aliases = [{"key": k, "targets": list(v)} for k, v in sorted(config.aliases.items())]
        return {"domains": domains, "aliases": aliases}

    def page(request: web.Request, template: str, status: int = 200, **extra) -> web.Response:
        return render(
            request,
            template,
            http_status=status,
            config_path=str(deps.config_path) if deps.config_path else None,
            no_file=NO_FILE,
            error=extra.pop("error", None),
            values=extra.pop("values", {}),
            **running(),
            **extra,
        )

    async def edit(
        request: web.Request,
        template: str,
        back: str,
        values: dict[str, str],
        change: Callable[[TOMLDocument], str],
    ) -> web.StreamResponse:
        if deps.config_path is None:
            return page(request, template, 409, error=NO_FILE, values=values)
        path = deps.config_path

        def work() -> str:
            config_file = ConfigFile(path)
            doc = config_file.read()
            what = change(doc)
            config_file.save(doc)
            return what

        async with lock:
            try:
                what = await asyncio.to_thread(work)
            except EditError as exc:
                return page(request, template, 422, error=str(exc), values=values)
            await reload_outcome(request, deps, f"{what}, {path} saved")
        raise redirect(back)

    async def overview(request: web.Request) -> web.StreamResponse:
        return page(request, "settings.html")

    async def domains(request: web.Request) -> web.StreamResponse:
        return page(request, "settings_domains.html")

    async def domain_add(request: web.Request) -> web.StreamResponse:
        data = await form(request)
        name = data.get("name", "").strip().lower()
        boxes_text = data.get("mailboxes", "")
        boxes = split_list(boxes_text.lower()) or None
        capture = data.get("capture") == "on"

        def change(doc: TOMLDocument) -> str:
            add_domain(doc, name, boxes, capture)
            return f"domain {name} added"

        return await edit(request, "settings_domains.html", "/settings/domains", data, change)

    async def domain_remove(request: web.Request) -> web.StreamResponse:
        data = await form(request)
        name = data.get("name", "").strip().lower()

        def change(doc: TOMLDocument) -> str:
            remove_domain(doc, name)
            return f"domain {name} removed"

        return await edit(request, "settings_domains.html", "/settings/domains", {}, change)

    async def aliases(request: web.Request) -> web.StreamResponse:
        return page(request, "settings_aliases.html")

    async def alias_set(request: web.Request) -> web.StreamResponse:
        data = await form(request)
        key = data.get("address", "").strip()
        targets = split_list(data.get("targets", ""))

        def change(doc: TOMLDocument) -> str:
            set_alias(doc, key, targets)
            return f"alias {key} set"

        return await edit(request, "settings_aliases.html", "/settings/aliases", data, change)

    async def alias_remove(request: web.Request) -> web.StreamResponse:
        data = await form(request)
        key = data.get("address", "").strip()

        def change(doc: TOMLDocument) -> str:
            remove_alias(doc, key)
            return f"alias {key} removed"

        return await edit(request, "settings_aliases.html", "/settings/aliases", {}, change)

    return [
        Page("GET", "/settings", overview, nav="Settings"),
        Page("GET", "/settings/domains", domains),
        Page("POST", "/settings/domains/add", domain_add),
        Page("POST", "/settings/domains/remove", domain_remove),
        Page("GET", "/settings/aliases", aliases),
        Page("POST", "/settings/aliases/set", alias_set),
        Page("POST", "/settings/aliases/remove", alias_remove),
    ]
