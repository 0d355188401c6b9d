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


def test_tables_of_an_array_are_counted_from_zero():
    text = '[[milters]]\nname = "a"\n\n[[milters]]\nname = "b"\nsocket = "x"\n[limits]\n'
    locator = KeyLocator(text)
    assert locator.line_of("milters[0].name") == 2
    assert locator.line_of("milters[1].socket") == 6
    assert locator.line_of("milters[1].timeout") == 4  # not written: its table
    assert locator.line_of("limits") == 7
