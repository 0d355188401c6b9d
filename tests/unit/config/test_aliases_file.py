"""aliases_file: the aliases(5) format, its errors (file and line), loading and reload."""

from __future__ import annotations

from pathlib import Path

import pytest

from pigeon.config import ConfigError, load_config
from pigeon.config._aliases import MAX_INCLUDE_DEPTH, read_aliases_file


def write(path: Path, text: str) -> Path:
    path.write_text(text, encoding="utf-8")
    return path


def test_format_comments_continuations_quotes_and_include(tmp_path):
    members = write(tmp_path / "members", "# the list\ncarol@remote.test, dave\n\nerin\n")
    aliases = write(
        tmp_path / "aliases",
        f"""\
# /etc/aliases
postmaster: root

Root: alice,
    bob@Example.TEST
  # a comment inside an entry's continuation
\t, "carol"
"first last": alice
list: :include:{members}, \\alice
""",
    )
    assert read_aliases_file(aliases) == {
        "postmaster": ("root",),
        "root": ("alice", "bob@example.test", "carol"),
        '"first last"': ("alice",),
        "list": ("carol@remote.test", "dave", "erin", "\\alice"),
    }


@pytest.mark.parametrize(
    "text, problem",
    [
        (
            "root: |/usr/bin/procmail\n",
            'line 1: "|/usr/bin/procmail": command targets are not supported',
        ),
        (
            'ok: alice\nroot: alice, "|exec x"\n',
            'line 2: "\\"|exec x\\"": command targets are not supported',
        ),
        ("root: /var/mail/root\n", 'line 1: "/var/mail/root": file targets are not supported'),
        ("  alice\n", "line 1: a continuation line (starting with blanks) before any entry"),
        ("root alice\n", 'line 1: expected "name: target, ...", got "root alice"'),
        ("root@example.test: alice\n", 'line 1: "root@example.test" is not a usable alias name'),
        ("root:\n", 'line 1: "root" has no target'),
        ("root: alice\n\nROOT: bob\n", 'line 3: "root" is already defined on line 1'),
        ("root: alice@exa_mple.test\n", 'line 1: "alice@exa_mple.test" has an invalid domain'),
        ("root: a>b\n", 'line 1: "a>b" is not an address SMTP can carry'),
        (
            "root: :include:relative.txt\n",
            'line 1: :include: needs an absolute file name, got "relative.txt"',
        ),
        ("root: :include:/nonexistent/list\n", "line 1: cannot read /nonexistent/list"),
    ],
)
def test_errors_name_the_file_and_the_line(tmp_path, text, problem):
    path = write(tmp_path / "aliases", text)
    with pytest.raises(ConfigError) as err:
        read_aliases_file(path)
    assert err.value.key == "aliases_file"
    assert err.value.message.startswith(f"{path}, {problem}"), err.value.message


def test_errors_in_an_include_file_name_that_file(tmp_path):
    inner = write(tmp_path / "inner", "alice\n\nbob, |/bin/sh\n")
    path = write(tmp_path / "aliases", f"x: :include:{inner}\n")
    with pytest.raises(ConfigError) as err:
        read_aliases_file(path)
    assert err.value.message.startswith(f'{inner}, line 3: "|/bin/sh": command targets')


def test_include_cycles_and_depth_are_refused(tmp_path):
    a, b = tmp_path / "a", tmp_path / "b"
    write(a, f":include:{b}\n")
    write(b, f":include:{a}\n")
    path = write(tmp_path / "aliases", f"x: :include:{a}\n")
    with pytest.raises(ConfigError, match="makes a cycle"):
        read_aliases_file(path)
    chain = [tmp_path / f"c{i}" for i in range(MAX_INCLUDE_DEPTH + 1)]
    for here, there in zip(chain, chain[1:]):
        write(here, f":include:{there}\n")
    write(chain[-1], "alice\n")
    write(path, f"x: :include:{chain[0]}\n")
    with pytest.raises(ConfigError, match=f"nested more than {MAX_INCLUDE_DEPTH} deep"):
        read_aliases_file(path)


def test_not_utf8_names_the_line(tmp_path):
    path = tmp_path / "aliases"
    path.write_bytes(b"root: alice\nbob: b\xffb\n")
    with pytest.raises(ConfigError, match=rf"{path}, line 2: not UTF-8 text"):
        read_aliases_file(path)


def test_load_config_reads_it_and_names_the_config_file(tmp_path):
    aliases = write(tmp_path / "aliases", "root: alice\n")
    conf = write(tmp_path / "pigeon.toml", f'aliases_file = "{aliases}"\n')
    assert load_config(conf).local_aliases == {"root": ("alice",)}
    write(aliases, "root: |/bin/true\n")  # a reload reads it again
    with pytest.raises(ConfigError) as err:
        load_config(conf)
    assert str(err.value).startswith(f"{conf}:1: aliases_file: {aliases}, line 1: ")
    write(conf, f'aliases_file = "{tmp_path / "missing"}"\n')
    with pytest.raises(ConfigError, match="aliases_file: cannot read .*missing"):
        load_config(conf)
    assert load_config(overrides={"aliases_file": ""}).local_aliases == {}


def test_recipient_delimiter_values():
    assert load_config().recipient_delimiter == "+"
    assert load_config(overrides={"recipient_delimiter": "+-"}).recipient_delimiter == "+-"
    assert load_config(overrides={"recipient_delimiter": ""}).recipient_delimiter == ""
    for bad, message in [
        ("a", '"a" cannot be a delimiter'),
        ("@", '"@" cannot be a delimiter'),
        ("++", "lists a character twice"),
        (1, "must be a string"),
    ]:
        with pytest.raises(ConfigError, match=message):
            load_config(overrides={"recipient_delimiter": bad})


def test_catch_all_needs_a_local_domain():
    with pytest.raises(
        ConfigError, match='aliases."@remote.test": "remote.test" is not a local domain'
    ):
        load_config(overrides={"aliases": {"@remote.test": "a@remote.test"}})
    config = load_config(
        overrides={
            "transports": {".lists.test": "local"},
            "aliases": {"@a.lists.test": "x@a.lists.test"},
        }
    )
    assert config.aliases == {"@a.lists.test": ("x@a.lists.test",)}


def test_the_example_in_the_docs_parses(tmp_path):
    doc = (Path(__file__).resolve().parents[3] / "docs" / "config.md").read_text(encoding="utf-8")
    section = doc.split("### `aliases_file`", 1)[1]
    example = section.split("```text\n", 1)[1].split("```", 1)[0]
    members = write(tmp_path / "members", "dave, erin\n")
    path = write(tmp_path / "aliases", example.replace("/etc/pigeon/list-members", str(members)))
    assert read_aliases_file(path) == {
        "postmaster": ("root",),
        "root": ("alice", "bob@example.org"),
        "staff": ("alice", "carol"),
        '"first last"': ("alice",),
        "list": ("dave", "erin"),
        "alice": ("\\alice", "archive@example.org"),
    }
