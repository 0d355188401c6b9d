"""The settings pages (console/settings.py, accounts.py, confedit.py): domains and
aliases written to the configuration file (comments kept, checked by the loader,
.bak, reload), accounts in the account store, CSRF enforced, bad input refused."""

from __future__ import annotations

import asyncio
import os

import pytest
import tomlkit
from aiohttp.test_utils import TestClient, TestServer

from pigeon.auth.accounts import AccountStore
from pigeon.auth.passwords import verify_password
from pigeon.config.load import ConfigError, load_config
from pigeon.console.confedit import EditError, add_domain, remove_domain
from tests.unit.console.conftest import csrf_of, login, make_app

FILE = """\
# The operator's own words, kept by every edit.
data_dir = "{data}"

[domains."example.test"]   # the main domain
mailboxes = ["alice", "bob"]

[aliases]
# sales goes to bob
"sales@example.test" = "bob@example.test"
"""


def run(coro):
    return asyncio.run(coro)


@pytest.fixture
def site(tmp_path):
    """(config path, reloads list, client factory) for a console started with a file."""
    data = tmp_path / "data"
    data.mkdir()
    path = tmp_path / "pigeon.toml"
    path.write_text(FILE.format(data=data))
    os.chmod(path, 0o640)
    state = {"config": load_config(path)}
    reloads = []

    async def reload():
        # What the lifecycle does: load the same file again and put it in force.
        state["config"] = load_config(path)
        reloads.append(1)
        return {
            "status": "applied",
            "applied": ["domains", "aliases"],
            "restart": [],
            "errors": [],
            "warnings": [],
        }

    def open_(config_path=path):
        app, _ = make_app(
            data, ops={"reload": reload}, config_path=config_path, config=lambda: state["config"]
        )
        return TestClient(TestServer(app))

    return path, reloads, open_


async def _csrf(client, page):
    return csrf_of(await (await client.get(page)).text())


def test_the_pages_list_the_running_configuration(site):
    path, _, open_ = site

    async def go():
        async with open_() as client:
            await login(client)
            r = await client.get("/settings")
            html = await r.text()
            assert r.status == 200 and str(path) in html and 'href="/settings"' in html
            html = await (await client.get("/settings/domains")).text()
            assert 'data-domain="example.test"' in html and "alice, bob" in html
            html = await (await client.get("/settings/aliases")).text()
            assert 'data-alias="sales@example.test"' in html and "bob@example.test" in html

    run(go())


async def poster(client):
    """Log in; a function posting a settings form with the session's CSRF token:
    (status, page text, Location) without following the redirect."""
    await login(client)
    csrf = await _csrf(client, "/settings")

    async def post(url: str, **fields: str):
        r = await client.post(url, data={"csrf": csrf, **fields}, allow_redirects=False)
        return r.status, await r.text(), r.headers.get("Location")

    return post


def test_adding_a_domain_and_an_alias_writes_the_file_keeps_comments_and_reloads(site):
    path, reloads, open_ = site
    before = path.read_text()

    async def go():
        async with open_() as client:
            post = await poster(client)
            boxes = "carol, dave\nerin"
            got = await post(
                "/settings/domains/add", name="Example.ORG", mailboxes=boxes, capture="on"
            )
            assert got[0] == 303 and got[2] == "/settings/domains"
            html = await (await client.get("/settings/domains")).text()
            assert "domain example.org added" in html and "reloaded" in html
            assert 'data-domain="example.org"' in html and "carol, dave, erin" in html
            targets = "alice@example.test bob@example.test"
            got = await post("/settings/aliases/set", address="team@example.test", targets=targets)
            assert got[0] == 303
            got = await post("/settings/aliases/remove", address="SALES@example.test")
            assert got[0] == 303
            html = await (await client.get("/settings/aliases")).text()
            assert 'data-alias="team@example.test"' in html
            assert 'data-alias="sales@example.test"' not in html

    run(go())
    text = path.read_text()
    assert "# The operator's own words, kept by every edit." in text
    assert "# the main domain" in text
    assert '[domains."example.org"]' in text and "capture = true" in text
    assert '"team@example.test" = ["alice@example.test", "bob@example.test"]' in text
    assert "sales@example.test" not in text
    assert (path.parent / "pigeon.toml.bak").exists()
    assert (path.parent / "pigeon.toml.bak").read_text() != before  # the last but one
    assert oct(os.stat(path).st_mode & 0o777) == oct(0o640)  # the mode is kept
    config = load_config(path)
    assert config.domains["example.org"].capture
    assert config.aliases["team@example.test"] == ("alice@example.test", "bob@example.test")
    assert len(reloads) == 3
    assert not [p for p in path.parent.iterdir() if p.name.endswith(".tmp")]


def test_an_invalid_edit_is_refused_with_the_loaders_message_and_the_file_unchanged(site):
    path, reloads, open_ = site
    before = path.read_text()

    async def go():
        async with open_() as client:
            post = await poster(client)
            status, html, _ = await post("/settings/domains/add", name="not a domain!")
            assert status == 422
            assert 'id="settings-error"' in html and str(path) in html and "domains" in html
            assert 'value="not a domain!"' in html  # the form keeps what was typed
            status, html, _ = await post(
                "/settings/aliases/set", address="x@example.test", targets="no-at-sign"
            )
            assert status == 422 and "aliases" in html
            status, html, _ = await post("/settings/aliases/remove", address="nobody@example.test")
            assert status == 422 and "not in the file" in html

    run(go())
    assert path.read_text() == before and reloads == []
    assert not (path.parent / "pigeon.toml.bak").exists()


def test_every_settings_form_needs_the_csrf_token(site):
    path, reloads, open_ = site
    before = path.read_text()

    async def go():
        async with open_() as client:
            await login(client)
            for url, data in [
                ("/settings/domains/add", {"name": "example.org"}),
                ("/settings/domains/remove", {"name": "example.test"}),
                ("/settings/aliases/set", {"address": "a@example.test", "targets": "b@x.test"}),
                ("/settings/aliases/remove", {"address": "sales@example.test"}),
                (
                    "/settings/accounts/add",
                    {"name": "eve", "password": "x" * 20, "again": "x" * 20},
                ),
                ("/settings/accounts/delete", {"name": "eve"}),
            ]:
                r = await client.post(url, data={**data, "csrf": "forged"})
                assert r.status == 403, url
        async with open_() as client:  # logged out: refused before anything
            r = await client.post("/settings/domains/add", data={"name": "example.org"})
            assert r.status == 403

    run(go())
    assert path.read_text() == before and reloads == []


def test_without_a_file_the_page_says_so_and_edits_are_refused(site):
    _, _, open_ = site

    async def go():
        async with open_(config_path=None) as client:
            await login(client)
            html = await (await client.get("/settings/domains")).text()
            assert 'id="no-config-file"' in html and "embedded defaults" in html
            assert 'id="add-domain"' not in html
            csrf = await _csrf(client, "/settings")
            r = await client.post(
                "/settings/domains/add", data={"csrf": csrf, "name": "example.org"}
            )
            assert r.status == 409 and "no configuration file to edit" in await r.text()

    run(go())


def test_accounts_are_added_changed_and_deleted_like_pigeon_user(site, tmp_path):
    _, _, open_ = site
    data = tmp_path / "data"

    async def go():
        async with open_() as client:
            await login(client)
            csrf = await _csrf(client, "/settings/accounts")

            async def post(action, name, password="", again=None, **more):
                fields = {"csrf": csrf, "name": name, "password": password, **more}
                fields["again"] = password if again is None else again
                r = await client.post(f"/settings/accounts/{action}", data=fields)
                return r.status, await r.text()

            status, html = await post("add", "Carol@Example.test", "short")
            assert status == 422 and "too short" in html
            status, html = await post("add", "carol@example.test", "x" * 12, "y" * 12)
            assert status == 422 and "differ" in html
            new = ("add", "Carol@Example.test", "carol's password")
            status, html = await post(*new, addresses="sales@example.test")
            assert status == 200 and "account carol@example.test added" in html
            assert 'data-account="carol@example.test"' in html and "sales@example.test" in html
            assert "carol&#39;s password" not in html and "carol's password" not in html
            status, html = await post("add", "carol@example.test", "x" * 12)
            assert status == 422 and "already exists" in html
            status, html = await post("passwd", "carol@example.test", "a new password")
            assert status == 200 and "password of carol@example.test changed" in html
            with AccountStore.in_data_dir(data).open() as store:
                assert verify_password(store.password_hash("carol@example.test"), "a new password")
            status, html = await post("delete", "carol@example.test")
            assert status == 200 and 'data-account="carol@example.test"' not in html
            status, html = await post("delete", "carol@example.test")
            assert status == 422 and "no such user" in html

    run(go())


def test_a_refused_reload_is_shown_with_its_reasons(site, tmp_path):
    path, _, _ = site

    async def refuse():
        return {
            "status": "refused",
            "applied": [],
            "restart": [],
            "errors": ["cannot load the configuration: a reason from the lifecycle"],
            "warnings": [],
        }

    app, _ = make_app(
        tmp_path / "data",
        ops={"reload": refuse},
        config_path=path,
        config=lambda: load_config(path),
    )

    async def go():
        async with TestClient(TestServer(app)) as client:
            post = await poster(client)
            got = await post("/settings/aliases/set", address="x@example.test", targets="a@b.test")
            assert got[0] == 303
            html = await (await client.get("/settings/aliases")).text()
            assert "the reload was refused" in html
            assert "a reason from the lifecycle" in html

    run(go())
    assert '"x@example.test" = "a@b.test"' in path.read_text()  # the file is written


def test_the_domains_list_shorthand_becomes_tables_only_when_needed():
    doc = tomlkit.parse('# mine\ndomains = ["a.test", "b.test"]  # two\n')
    add_domain(doc, "C.test")
    assert tomlkit.dumps(doc) == '# mine\ndomains = ["a.test", "b.test", "c.test"]  # two\n'
    with pytest.raises(EditError, match="already in the file"):
        add_domain(doc, "A.TEST")
    add_domain(doc, "d.test", ["x"], capture=True)
    text = tomlkit.dumps(doc)
    assert text.startswith("# mine\n")
    assert '[domains."a.test"]' in text and '[domains."d.test"]\nmailboxes = ["x"]' in text
    remove_domain(doc, "B.test")
    assert "b.test" not in tomlkit.dumps(doc)
    with pytest.raises(EditError, match="not in the file"):
        remove_domain(doc, "b.test")


def test_session_limits_are_checked_naming_the_key(tmp_path):
    path = tmp_path / "pigeon.toml"
    path.write_text("[console]\nsession_idle = 0\nsession_max = 600\n")
    with pytest.raises(ConfigError, match="session_idle"):
        load_config(path)
    path.write_text("[console]\nsession_idle = 60\nsession_max = 600\n")
    assert load_config(path).console.session_max == 600
