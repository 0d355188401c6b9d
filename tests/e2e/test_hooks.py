"""Issue 12, "Done when", tried as a new user would from docs/hooks.md.

A plugin of a few lines in a file next to the configuration rejects one
recipient with its own reply text; another adds a header (it arrives in the
Maildir); a plugin that raises gets the client a 451 and the log its
traceback. Also: a plugin that does not answer in time, a bad key in a
plugin's own table (refused at start, naming it), and SIGHUP putting an
edited plugin in force.
"""

from __future__ import annotations

import re
import smtplib
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from pigeon.testing.live import free_port, maildir_messages, wait_for

pytestmark = pytest.mark.e2e

#: Seconds to wait for what happens beside the SMTP reply (bounded polling,
#: no speed assumed: the machine may be loaded).
WAIT = 30

HOOKS_MD = Path(__file__).resolve().parents[2] / "docs" / "hooks.md"

# Any local part of example.test is accepted: the plugin, not the mailbox
# list, is what refuses nobody@.
DOMAIN = '[domains."example.test"]\n'

#: The plugins of docs/hooks.md, by file name: the guide is what is tested.
DOC = {
    block.split("\n", 1)[0].removeprefix("# "): block
    for block in re.findall(r"```python\n(.*?)```", HOOKS_MD.read_text(), re.S)
}
REJECT_ONE, ADD_HEADER, RAISES = DOC["reject_one.py"], DOC["add_header.py"], DOC["broken.py"]
GREETER = DOC["greeter.py"]

SLOW = """
import asyncio

class Plugin:
    async def mail(self, session, sender, params):
        await asyncio.sleep(60)
"""


def _plugins(*entries: tuple[str, str], extra: str = "") -> str:
    """A [[plugins]] table per entry, `extra` in the last one."""
    return DOMAIN + "".join(f'[[plugins]]\npath = "{path}"\n' for path, _ in entries) + extra


def _server(pigeon_factory, tmp_path, *entries: tuple[str, str], extra: str = ""):
    """pigeon with each (file name, code) written next to its configuration."""
    workdir = tmp_path / "p0"
    workdir.mkdir(parents=True, exist_ok=True)
    for name, code in entries:
        (workdir / name).write_text(textwrap.dedent(code))
    return pigeon_factory(_plugins(*entries, extra=extra))


def _message(subject: str) -> str:
    return f"From: a@client.test\r\nTo: alice@example.test\r\nSubject: {subject}\r\n\r\nhi\r\n"


def test_a_plugin_next_to_the_configuration_rejects_one_recipient(pigeon_factory, tmp_path):
    server = _server(pigeon_factory, tmp_path, ("reject_one.py", REJECT_ONE))
    with smtplib.SMTP("127.0.0.1", server.port, timeout=30) as s:
        s.ehlo()
        assert s.mail("a@client.test")[0] == 250
        assert s.rcpt("nobody@example.test") == (
            550,
            b"5.1.1 nobody lives here, says the plugin",
        )
        assert s.rcpt("alice@example.test")[0] == 250
        assert s.data(_message("one refused"))[0] == 250
    assert wait_for(
        timeout=WAIT, predicate=lambda: maildir_messages(server.data_dir, "alice@example.test")
    )
    assert maildir_messages(server.data_dir, "nobody@example.test") == []


def test_a_plugin_adds_a_header_that_arrives_in_the_maildir(pigeon_factory, tmp_path):
    server = _server(
        pigeon_factory,
        tmp_path,
        ("add_header.py", ADD_HEADER),
        ("greeter.py", GREETER),
        extra='[plugins.config]\ngreeting = "hello"\n',
    )
    with smtplib.SMTP("127.0.0.1", server.port, timeout=30) as s:
        s.sendmail("a@client.test", ["alice@example.test"], _message("hooked"))
    found = wait_for(
        timeout=WAIT, predicate=lambda: maildir_messages(server.data_dir, "alice@example.test")
    )
    assert found
    content = found[0].read_bytes()
    # On top of the message, above our Received: (RFC 5321 §4.4).
    assert content.index(b"\nX-Hooked: yes, by 127.0.0.1\n") < content.index(b"\nReceived:")
    assert b"\nX-Greeting: hello\n" in content


def test_a_plugin_that_raises_gets_451_and_its_traceback_logged(pigeon_factory, tmp_path):
    server = _server(pigeon_factory, tmp_path, ("broken.py", RAISES))
    with smtplib.SMTP("127.0.0.1", server.port, timeout=30) as s:
        s.ehlo()
        assert s.mail("a@client.test")[0] == 250
        code, text = s.rcpt("alice@example.test")
    assert (code, text[:5]) == (451, b"4.3.0")
    assert b"secret" not in text
    log = wait_for(
        timeout=WAIT, predicate=lambda: "secret internal detail" in server.log() and server.log()
    )
    assert "Traceback (most recent call last)" in log
    assert "plugin broken" in log
    assert 'broken.py", line 4, in rcpt' in log


def test_a_plugin_over_its_time_limit_gets_451(pigeon_factory, tmp_path):
    server = _server(pigeon_factory, tmp_path, ("slow.py", SLOW), extra="timeout = 0.5\n")
    with smtplib.SMTP("127.0.0.1", server.port, timeout=30) as s:
        s.ehlo()
        code, text = s.mail("a@client.test")
        assert (code, text[:5]) == (451, b"4.3.0")
        assert s.noop()[0] == 250  # the session goes on
    log = wait_for(
        timeout=WAIT, predicate=lambda: "no answer within 0.5 s" in server.log() and server.log()
    )
    assert "slow.py" in log and "in mail" in log  # where it was stuck


def test_a_bad_key_in_a_plugin_table_refuses_the_start_naming_it(tmp_path):
    workdir = tmp_path / "bad"
    workdir.mkdir()
    (workdir / "greeter.py").write_text(GREETER)
    config = workdir / "pigeon.toml"
    config.write_text(
        f'data_dir = "{workdir / "data"}"\nlisten = ["127.0.0.1:{free_port()}"]\nsubmission_listen = []\n'
        'submissions_listen = []\n[admin]\nmetrics_listen = ""\n'
        '[[plugins]]\npath = "greeter.py"\n[plugins.config]\ngreting = "hi"\n'
    )
    for argv in (["serve", "--config", str(config)], ["check-config", str(config)]):
        done = subprocess.run(
            [sys.executable, "-m", "pigeon", *argv],
            capture_output=True,
            text=True,
            timeout=60,
            cwd=workdir,
        )
        assert done.returncode == 78, done.stderr
        assert 'plugins[0].config.greting: unknown key (did you mean "greeting"?)' in done.stderr


def test_sighup_puts_an_edited_plugin_in_force(pigeon_factory, tmp_path):
    server = _server(pigeon_factory, tmp_path, ("reject_one.py", REJECT_ONE))
    (server.workdir / "reject_one.py").write_text(
        textwrap.dedent(REJECT_ONE).replace('"nobody"', '"somebody"')
    )
    done = server.command("reload", text=True)
    assert done.returncode == 0, done.stdout + done.stderr
    with smtplib.SMTP("127.0.0.1", server.port, timeout=30) as s:
        s.ehlo()
        assert s.mail("a@client.test")[0] == 250
        assert s.rcpt("nobody@example.test")[0] == 250
        assert s.rcpt("somebody@example.test")[0] == 550


def test_a_plugin_that_no_longer_loads_refuses_the_reload_and_the_running_one_stays(
    pigeon_factory, tmp_path
):
    server = _server(pigeon_factory, tmp_path, ("reject_one.py", REJECT_ONE))
    (server.workdir / "reject_one.py").write_text("class Plugin(:\n")
    done = server.command("reload", text=True)
    assert done.returncode == 78, done.stdout + done.stderr
    assert "plugins[0].path: cannot load path" in done.stderr and "SyntaxError" in done.stderr
    with smtplib.SMTP("127.0.0.1", server.port, timeout=30) as s:
        s.ehlo()
        assert s.mail("a@client.test")[0] == 250
        assert s.rcpt("nobody@example.test")[0] == 550  # the running plugin, still in force


def test_with_workers_every_process_asks_its_plugins(pigeon_factory, tmp_path):
    server = _server(pigeon_factory, tmp_path, ("reject_one.py", REJECT_ONE))
    server.stop()
    config = server.config_path.read_text()
    server.config_path.write_text(config.replace("\n[domains", "\nworkers = 2\n[domains", 1))
    server.start()
    answers = set()
    for _ in range(8):  # the kernel spreads connections over both processes
        with smtplib.SMTP("127.0.0.1", server.port, timeout=30) as s:
            s.ehlo()
            s.mail("a@client.test")
            answers.add(s.rcpt("nobody@example.test"))
    assert answers == {(550, b"5.1.1 nobody lives here, says the plugin")}
