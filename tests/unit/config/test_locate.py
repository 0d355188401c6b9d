"""pigeon.config.locate: the line of a key in TOML text, for error messages."""

from __future__ import annotations

import pytest

from pigeon.config._checks import join
from pigeon.config.locate import KeyLocator, split_key

TEXT = '''\
# a comment
hostname = "mx.example.test"
listen = [
  "127.0.0.1:25",
  "x = 1",
]
notes = """
limits = 5
"""

[limits]
message_size = 10
  recipients=3

[domains."example.test"]
mailboxes = ["alice"]

[domains.'other.test']

[aliases]
"info@example.test" = "alice@example.test"

[tls]
min_version = "TLSv1.2"
auth.mechanisms = ["PLAIN"]
inline = { a = 1, b = 2 }
'''


@pytest.mark.parametrize(
    "key, line",
    [
        ("hostname", 2),
        ("listen", 3),
        ("limits", 11),
        ("limits.message_size", 12),
        ("limits.recipients", 13),
        ('domains."example.test"', 15),
        ('domains."example.test".mailboxes', 16),
        ('domains."other.test"', 18),
        ("domains", 15),
        ('aliases."info@example.test"', 21),
        ("tls.auth.mechanisms", 25),
        ("tls.inline.a", 26),  # inside an inline table: the table's line
        ("limits.connections", 11),  # not written: where its table is
        ("queue.fsync", None),  # neither the key nor its table
    ],
)
def test_line_of(key, line):
    assert KeyLocator(TEXT).line_of(key) == line


def test_multi_line_strings_are_not_keys():
    # "limits = 5" inside notes = """...""" must not be taken for the key.
    assert KeyLocator(TEXT).line_of("limits") == 11


@pytest.mark.parametrize(
    "parts",
    [
        ("a",),
        ("limits", "message_size"),
        ("domains", "a.test", "mailboxes"),
        ("aliases", "info@example.test"),
        ("x", 'q"uote'),
    ],
)
def test_split_key_inverts_join(parts):
    assert split_key(join(*parts)) == parts


def test_the_sample_is_valid_toml():
    import tomllib

    tomllib.loads(TEXT)


def test_empty_text():
    assert KeyLocator("").line_of("hostname") is None


def test_the_elements_of_an_array_of_tables_are_numbered_as_errors_name_them():
    locator = KeyLocator(
        '[[plugins]]\npath = "a.py"\n[plugins.config]\nx = 1\n'
        '[[plugins]]\nmodule = "b"\ntimeout = 0\n[plugins.config]\nurl = "ftp://x"\n'
    )
    assert locator.line_of("plugins[0].config.x") == 4
    assert locator.line_of("plugins[1]") == 5
    assert locator.line_of("plugins[1].timeout") == 7
    assert locator.line_of("plugins[1].config.url") == 9
    assert locator.line_of("plugins[1].config.nothing") == 8
