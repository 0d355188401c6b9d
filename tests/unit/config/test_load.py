"""load_config: layering (defaults -> file -> overrides), file handling, error sources."""

from __future__ import annotations

import dataclasses
import ipaddress
from pathlib import Path

import pytest

import pigeon.config
from pigeon.config import Config, ConfigError, load_config
from pigeon.config import load as load_module
from pigeon.config.load import default_hostname
from pigeon.config.schema import DomainConfig, Limits, ListenAddress, LogConfig
from pigeon.config.session import session_config
from pigeon.proto.server import SessionConfig

FILE = """\
hostname = "mx.example.test"
data_dir = "/srv/pigeon"
listen = ["0.0.0.0:25", "[::]:25"]
relay_networks = ["192.0.2.0/24"]

[domains."example.test"]
mailboxes = ["alice", "bob"]

[domains."other.test"]

[aliases]
"info@example.test" = ["alice@example.test", "bob@example.test"]

[limits]
message_size = 1000
recipients = 5

[log]
format = "json"
level = "debug"
"""


@pytest.fixture
def conf(tmp_path):
    def write(text: str, name: str = "pigeon.toml") -> Path:
        path = tmp_path / name
        path.write_text(text, encoding="utf-8")
        return path

    return write


def test_public_exports():
    assert pigeon.config.__all__ == ["Config", "ConfigError", "load_config"]


def test_defaults_without_file_or_overrides():
    config = load_config()
    assert config.listen == (ListenAddress("127.0.0.1", 2525),)
    assert config.domains == {"localhost": DomainConfig("localhost")}
    assert config.data_dir == Path("./pigeon-data")
    assert config.relay_networks == ()
    assert config.limits == Limits()
    assert config.log == LogConfig()
    assert config.hostname == default_hostname()


def test_file_values(conf):
    config = load_config(conf(FILE))
    assert config.hostname == "mx.example.test"
    assert config.data_dir == Path("/srv/pigeon")
    assert config.listen == (ListenAddress("0.0.0.0", 25), ListenAddress("::", 25))
    assert config.relay_networks == (ipaddress.ip_network("192.0.2.0/24"),)
    assert config.domains["example.test"].mailboxes == frozenset({"alice", "bob"})
    assert config.domains["other.test"].mailboxes is None
    assert "localhost" not in config.domains  # the file's table replaces the default
    assert config.aliases == {"info@example.test": ("alice@example.test", "bob@example.test")}
    assert config.limits == Limits(message_size=1000, recipients=5)  # other limits keep defaults
    assert config.log == LogConfig(format="json", level="debug")


def test_empty_file_is_all_defaults(conf):
    assert load_config(conf("")) == dataclasses.replace(Config(), hostname=default_hostname())


def test_overrides_beat_the_file_key_by_key(conf):
    config = load_config(
        conf(FILE),
        {
            "listen": ["127.0.0.1:2525"],
            "limits": {"recipients": 9},
            "log": {"level": "info"},
            "hostname": "cli.example.test",
        },
    )
    assert config.listen == (ListenAddress("127.0.0.1", 2525),)  # list replaced, not appended
    assert config.limits == Limits(message_size=1000, recipients=9)  # section merged per key
    assert config.log == LogConfig(format="json", level="info")
    assert config.hostname == "cli.example.test"
    assert config.relay_networks == (ipaddress.ip_network("192.0.2.0/24"),)  # untouched keys stay


def test_override_lists_replace_relay_networks(conf):
    config = load_config(conf(FILE), {"relay_networks": ["10.0.0.0/8"]})
    assert config.relay_networks == (ipaddress.ip_network("10.0.0.0/8"),)


def test_domain_names_override_keeps_the_file_tables(conf):
    config = load_config(conf(FILE), {"domains": ["example.test", "new.test"]})
    assert config.domains == {
        "example.test": DomainConfig("example.test", frozenset({"alice", "bob"})),
        "new.test": DomainConfig("new.test"),
    }


def test_domain_names_in_the_file_alone(conf):
    config = load_config(conf('domains = ["a.test", "localhost"]\n'))
    assert config.domains == {
        "a.test": DomainConfig("a.test"),
        "localhost": DomainConfig("localhost"),
    }


def test_errors_name_their_source(conf):
    path = conf('[limits]\nmessage_size = "ten"\n')
    with pytest.raises(ConfigError) as info:
        load_config(path)
    assert (
        str(info.value)
        == f'{path}:2: limits.message_size: must be a non-negative integer, got "ten"'
    )
    assert (info.value.key, info.value.source, info.value.line) == (
        "limits.message_size",
        str(path),
        2,
    )
    with pytest.raises(ConfigError) as info:
        load_config(conf(FILE), {"limits": {"message_size": -1}})
    assert (
        str(info.value)
        == "command line: limits.message_size: must be a non-negative integer, got -1"
    )


def problems_of(path, overrides=None) -> list[ConfigError]:
    with pytest.raises(ConfigError) as info:
        load_config(path, overrides)
    return info.value.problems


def test_every_problem_in_one_pass(conf):
    path = conf(
        'hostname = "mx.example.test"\nlisten = ["127.0.0.1:0"]\ncolour = "blue"\n'
        '[limits]\nmessage_size = "ten"\nrecipients = 5\nerors = 3\n'
        '[smtp]\npipelining = "yes"\n'
    )
    with pytest.raises(ConfigError) as info:
        load_config(path)
    problems = info.value.problems
    assert [(p.line, p.key) for p in problems] == [
        (2, "listen"),
        (3, "colour"),
        (5, "limits.message_size"),
        (7, "limits.erors"),
        (9, "smtp.pipelining"),
    ]
    assert all(p.source == str(path) for p in problems)
    assert (
        str(info.value).splitlines()[3]
        == f'{path}:7: limits.erors: unknown key (did you mean "errors"?)'
    )
    # It still reads as its first problem for callers that show one.
    assert (info.value.key, info.value.line) == ("listen", 2)


def test_entries_of_a_table_are_checked_one_by_one(conf):
    path = conf(
        '[domains."a_b.test"]\n[domains."ok.test"]\n[domains."c d.test"]\n'
        '[aliases]\n"x@ok.test" = "nobody"\n"y@ok.test" = "y@elsewhere.test"\n'
        '"z" = "z@ok.test"\n'
    )
    assert [(p.line, p.key) for p in problems_of(path)] == [
        (1, 'domains."a_b.test"'),
        (3, 'domains."c d.test"'),
        (5, 'aliases."x@ok.test"'),
        (7, "aliases.z"),
    ]


def test_names_listed_twice_across_entries_are_still_found(conf):
    path = conf('[domains."A.test"]\n[domains."a.test"]\n[domains."b c"]\n')
    assert [(p.line, p.message) for p in problems_of(path)] == [
        (2, 'domain "a.test" is listed twice'),
        (
            3,
            'not a valid domain name: "b c" (label "b c" may only contain letters, digits and "-")',
        ),
    ]


def test_a_cross_key_check_on_a_refused_key_is_skipped(conf):
    # min_backoff is refused: comparing max_backoff with its default would mislead.
    path = conf('[queue]\nmin_backoff = "5m"\nmax_backoff = 10\n')
    assert [p.key for p in problems_of(path)] == ["queue.min_backoff"]


def test_file_problems_come_before_command_line_ones(conf):
    path = conf("[limits]\nrecipients = 0\n")
    found = problems_of(path, {"limits": {"errors": 0}, "listen": ["nowhere"]})
    assert [(p.source, p.line, p.key) for p in found] == [
        (str(path), 2, "limits.recipients"),
        ("command line", None, "limits.errors"),
        ("command line", None, "listen"),
    ]
    assert str(found[1]) == "command line: limits.errors: must be a positive integer, got 0"


def test_collect_config_returns_the_valid_part(conf):
    from pigeon.config.load import collect_config

    config, problems = collect_config(conf('hostname = "h.test"\n[limits]\nrecipients = 0\n'))
    assert config.hostname == "h.test" and config.limits == Limits()
    assert [p.key for p in problems] == ["limits.recipients"]
    assert collect_config(conf("x = ["))[0] is None


def test_error_without_source_says_config_error():
    assert (
        str(ConfigError("limits.message_size", 'must be a non-negative integer, got "ten"'))
        == 'config error: limits.message_size: must be a non-negative integer, got "ten"'
    )
    assert (
        str(ConfigError(None, "cannot read file: Permission denied", "/etc/pigeon.toml"))
        == "/etc/pigeon.toml: cannot read file: Permission denied"
    )


def test_toml_syntax_error_names_file_and_line(conf):
    path = conf('hostname = "x.test"\nlisten = [\n"a" "b"]\n')
    with pytest.raises(ConfigError) as info:
        load_config(path)
    text = str(info.value)
    assert text.startswith(f"{path}:3:5: invalid TOML: ")
    assert (info.value.key, info.value.line, info.value.column) == (None, 3, 5)


def test_toml_error_at_end_of_file(conf):
    with pytest.raises(ConfigError) as info:
        load_config(conf('hostname = "x'))
    assert "invalid TOML" in str(info.value)


def test_missing_file(tmp_path):
    path = tmp_path / "nope.toml"
    with pytest.raises(ConfigError) as info:
        load_config(path)
    assert str(info.value) == f"{path}: cannot read file: No such file or directory"


def test_directory_instead_of_file(tmp_path):
    with pytest.raises(ConfigError) as info:
        load_config(tmp_path)
    assert str(info.value).startswith(f"{tmp_path}: cannot read file: ")


def test_file_that_is_not_utf8(tmp_path):
    path = tmp_path / "latin1.toml"
    path.write_bytes('hostname = "caf\xe9.test"\n'.encode("latin-1"))
    with pytest.raises(ConfigError) as info:
        load_config(path)
    assert str(info.value) == f"{path}: not UTF-8 text (bad byte at offset 15)"


def test_path_may_be_a_string(conf):
    assert load_config(str(conf('hostname = "s.test"\n'))).hostname == "s.test"


def test_default_hostname():
    assert default_hostname(lambda: "Mail.Example.ORG") == "mail.example.org"
    assert default_hostname(lambda: "mail.example.org.") == "mail.example.org"
    assert default_hostname(lambda: "buildbox") == "localhost"
    assert default_hostname(lambda: "bad_name.example") == "localhost"

    def broken() -> str:
        raise OSError("no resolver")

    assert default_hostname(broken) == "localhost"


def test_session_config_mapping(conf):
    config = load_config(
        conf(FILE),
        {
            "timeouts": {"command": 10, "data_block": 20, "data_total": 30},
            "limits": {"errors": 3, "hop_count": 7},
            "smtp": {
                "pipelining": False,
                "chunking": False,
                "smtputf8": False,
                "dsn": False,
                "eight_bit_mime": False,
                "eight_bit_undeclared": "reject",
            },
        },
    )
    assert session_config(config) == SessionConfig(
        hostname="mx.example.test",
        max_message_size=1000,
        max_recipients=5,
        max_errors=3,
        hop_limit=7,
        command_timeout=10.0,
        data_timeout=20.0,
        data_deadline=30.0,
        bare_newline="reject",
        eight_bit_undeclared="reject",
        enable_pipelining=False,
        enable_chunking=False,
        enable_smtputf8=False,
        enable_dsn=False,
        enable_8bitmime=False,
    )


def test_session_config_of_defaults_matches_session_defaults():
    config = dataclasses.replace(Config(), hostname="localhost")
    assert session_config(config) == SessionConfig()


def test_every_schema_field_has_exactly_one_checker():
    for section, (cls, checkers) in load_module._SECTIONS.items():
        assert {f.name for f in dataclasses.fields(cls)} == set(checkers), section
    top_level = {f.name for f in dataclasses.fields(Config)} - set(load_module.DERIVED_FIELDS)
    assert top_level == set(load_module._TOP) | set(load_module._SECTIONS)


def test_loaded_defaults_equal_schema_defaults():
    """The loader adds no defaults of its own (besides hostname): the schema is the one source."""
    assert dataclasses.replace(load_config(), hostname="localhost") == Config()


def test_queue_min_free_is_octets_and_refused_when_negative(conf):
    assert load_config(None).queue.min_free == 0
    assert load_config(conf("[queue]\nmin_free = 104857600\n")).queue.min_free == 104857600
    path = conf("[queue]\nmin_free = -1\n")
    with pytest.raises(ConfigError) as info:
        load_config(path)
    assert str(info.value) == f"{path}:2: queue.min_free: must be a non-negative integer, got -1"
