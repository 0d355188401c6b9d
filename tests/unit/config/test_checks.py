"""Every value rule of the configuration loader, with its exact message."""

from __future__ import annotations

import ipaddress
from pathlib import Path

import pytest

from pigeon.config import ConfigError, load_config
from pigeon.config._checks import domain_problem, join, parse_listen, show
from pigeon.config.schema import DomainConfig, ListenAddress


def error(overrides: dict) -> str:
    """The error text for `overrides`, without the "command line: " source."""
    with pytest.raises(ConfigError) as info:
        load_config(overrides=overrides)
    assert info.value.source == "command line"
    return str(info.value).removeprefix("command line: ")


# --- unknown keys -------------------------------------------------------------------


def test_unknown_top_level_key_suggests_the_closest():
    assert error({"hostnme": "x"}) == 'hostnme: unknown key (did you mean "hostname"?)'


def test_unknown_section_key_suggests_the_closest():
    assert (
        error({"limits": {"mesage_size": 1}})
        == 'limits.mesage_size: unknown key (did you mean "message_size"?)'
    )


def test_unknown_key_without_a_close_match_lists_the_known_ones():
    assert (
        error({"log": {"colour": True}})
        == "log.colour: unknown key (known keys: file, format, level, syslog)"
    )


def test_unknown_key_in_a_domain_table():
    assert (
        error({"domains": {"example.test": {"mailbox": ["a"]}}})
        == 'domains."example.test".mailbox: unknown key (did you mean "mailboxes"?)'
    )


def test_section_must_be_a_table():
    assert error({"limits": 5}) == "limits: must be a table, got 5"


# --- integers, numbers, booleans, enums ------------------------------------------------


@pytest.mark.parametrize(
    "value, shown", [("ten", '"ten"'), (-1, "-1"), (1.5, "1.5"), (True, "true")]
)
def test_limits_are_non_negative_integers(value, shown):
    assert (
        error({"limits": {"message_size": value}})
        == f"limits.message_size: must be a non-negative integer, got {shown}"
    )


def test_zero_means_no_limit_where_documented():
    config = load_config(
        overrides={"limits": {"message_size": 0, "connections": 0, "connections_per_ip": 0}}
    )
    assert (
        config.limits.message_size,
        config.limits.connections,
        config.limits.connections_per_ip,
    ) == (0, 0, 0)


@pytest.mark.parametrize("key", ["hop_count", "recipients", "errors"])
def test_some_limits_must_be_at_least_one(key):
    assert error({"limits": {key: 0}}) == f"limits.{key}: must be a positive integer, got 0"
    assert getattr(load_config(overrides={"limits": {key: 1}}).limits, key) == 1


@pytest.mark.parametrize(
    "value, shown",
    [
        (0, "0"),
        (-5, "-5"),
        ("30s", '"30s"'),
        (False, "false"),
        (float("inf"), "inf"),
        (float("nan"), "nan"),
    ],
)
def test_timeouts_are_positive_numbers(value, shown):
    assert (
        error({"timeouts": {"command": value}})
        == f"timeouts.command: must be a positive number of seconds, got {shown}"
    )


def test_timeouts_accept_integers_and_floats_as_floats():
    config = load_config(overrides={"timeouts": {"command": 30, "data_block": 2.5}})
    assert config.timeouts.command == 30.0 and isinstance(config.timeouts.command, float)
    assert config.timeouts.data_block == 2.5


def test_greet_pause_and_shutdown_grace_may_be_zero():
    config = load_config(overrides={"timeouts": {"greet_pause": 0, "shutdown_grace": 0}})
    assert config.timeouts.greet_pause == 0.0 and config.timeouts.shutdown_grace == 0.0
    assert (
        error({"timeouts": {"greet_pause": -1}})
        == "timeouts.greet_pause: must be a non-negative number of seconds, got -1"
    )


@pytest.mark.parametrize("value, shown", [("yes", '"yes"'), (1, "1"), (0, "0")])
def test_booleans_are_true_or_false(value, shown):
    assert (
        error({"smtp": {"pipelining": value}})
        == f"smtp.pipelining: must be true or false, got {shown}"
    )
    assert error({"queue": {"fsync": value}}) == f"queue.fsync: must be true or false, got {shown}"


@pytest.mark.parametrize(
    "key, value, allowed",
    [
        ("log.format", "xml", '"text", "json"'),
        ("log.level", "verbose", '"debug", "info", "warning", "error"'),
        ("log.level", "INFO", '"debug", "info", "warning", "error"'),
        ("smtp.bare_newline", "accept", '"reject"'),
        ("smtp.eight_bit_undeclared", "ignore", '"accept", "reject"'),
    ],
)
def test_enums_list_the_allowed_values(key, value, allowed):
    section, name = key.split(".")
    assert error({section: {name: value}}) == f'{key}: must be one of {allowed}, got "{value}"'


def test_enum_accepts_its_values():
    config = load_config(
        overrides={
            "log": {"format": "json", "level": "warning"},
            "smtp": {"eight_bit_undeclared": "reject"},
        }
    )
    assert (config.log.format, config.log.level, config.smtp.eight_bit_undeclared) == (
        "json",
        "warning",
        "reject",
    )


# --- paths and names ---------------------------------------------------------------------


def test_data_dir_and_log_file_become_paths():
    config = load_config(
        overrides={"data_dir": "/var/lib/pigeon", "log": {"file": "/var/log/pigeon.log"}}
    )
    assert config.data_dir == Path("/var/lib/pigeon")
    assert config.log.file == Path("/var/log/pigeon.log")
    assert config.queue_dir == Path("/var/lib/pigeon/queue")


@pytest.mark.parametrize("value, shown", [("", '""'), (5, "5"), (["a"], '["a"]')])
def test_data_dir_must_be_a_non_empty_string(value, shown):
    assert error({"data_dir": value}) == f"data_dir: must be a non-empty string, got {shown}"


def test_hostname_is_checked_and_lowercased():
    assert load_config(overrides={"hostname": "MX.Example.TEST"}).hostname == "mx.example.test"
    assert (
        error({"hostname": "mx_1.example"})
        == 'hostname: not a valid domain name: "mx_1.example" (label "mx_1" may only contain letters, digits and "-")'
    )
    assert error({"hostname": 42}) == "hostname: must be a domain name (a string), got 42"


@pytest.mark.parametrize(
    "name, problem",
    [
        ("", "it is empty"),
        ("a..b", "empty label (two dots, or a dot at the start or end)"),
        ("example.test.", "empty label (two dots, or a dot at the start or end)"),
        ("-a.test", 'label "-a" starts or ends with "-"'),
        ("a" * 64 + ".test", 'label "aaaaaaaaaaaaaaaa..." is longer than 63 characters'),
        (("a" * 60 + ".") * 5, "longer than 253 characters"),
        ("192.0.2.1", "looks like an IP address, not a name"),
        ("bücher.example", 'non-ASCII: write it as "xn--bcher-kva.example"'),
    ],
)
def test_domain_problems(name, problem):
    assert domain_problem(name) == problem


@pytest.mark.parametrize(
    "name", ["localhost", "example.test", "xn--bcher-kva.example", "a-b.c0.test", "1a.test"]
)
def test_valid_domain_names(name):
    assert domain_problem(name) is None


# --- listen ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "text, expected",
    [
        ("127.0.0.1:25", ListenAddress("127.0.0.1", 25)),
        ("0.0.0.0:2525", ListenAddress("0.0.0.0", 2525)),
        ("[::1]:25", ListenAddress("::1", 25)),
        ("[2001:DB8:0::1]:587", ListenAddress("2001:db8::1", 587)),
        ("Localhost:65535", ListenAddress("localhost", 65535)),
    ],
)
def test_listen_parses(text, expected):
    assert parse_listen(text) == expected


@pytest.mark.parametrize(
    "text, reason",
    [
        ("127.0.0.1", 'expected "host:port" or "[ipv6]:port"'),
        ("127.0.0.1:0", "the port must be between 1 and 65535, got 0"),
        ("127.0.0.1:65536", "the port must be between 1 and 65535, got 65536"),
        ("127.0.0.1:smtp", 'the port must be a number, got "smtp"'),
        ("127.0.0.1:", 'the port must be a number, got ""'),
        ("::1:25", 'IPv6 addresses go in brackets, as in "[::1]:25"'),
        ("[::1]25", 'expected "[ipv6]:port"'),
        ("[127.0.0.1]:25", '"127.0.0.1" is not an IPv6 address'),
        ("300.0.0.1:25", '"300.0.0.1" is not an IPv4 address'),
        (":25", 'the host is empty; use "0.0.0.0" or "[::]" for all addresses'),
        (
            "bad_host:25",
            '"bad_host" is not a valid host name (label "bad_host" may only contain letters, digits and "-")',
        ),
    ],
)
def test_listen_rejects(text, reason):
    with pytest.raises(ValueError) as info:
        parse_listen(text)
    assert str(info.value) == reason
    assert error({"listen": [text]}) == f"listen: {show(text)}: {reason}"


def test_listen_list_rules():
    assert (
        error({"listen": "127.0.0.1:25"}) == 'listen: must be a list of strings, got "127.0.0.1:25"'
    )
    assert error({"listen": []}) == "listen: must list at least one address to listen on"
    assert error({"listen": ["[::1]:25", "[0::1]:25"]}) == 'listen: "[0::1]:25" is listed twice'
    assert load_config(overrides={"listen": ["[::]:25", "0.0.0.0:25"]}).listen == (
        ListenAddress("::", 25),
        ListenAddress("0.0.0.0", 25),
    )


def test_listen_address_str_round_trips():
    for text in ("127.0.0.1:25", "[::1]:25"):
        assert str(parse_listen(text)) == text


# --- relay networks -----------------------------------------------------------------------------


def test_relay_networks_parse_non_strict():
    config = load_config(overrides={"relay_networks": ["10.1.2.3/8", "2001:db8::/32", "192.0.2.7"]})
    assert config.relay_networks == (
        ipaddress.ip_network("10.0.0.0/8"),
        ipaddress.ip_network("2001:db8::/32"),
        ipaddress.ip_network("192.0.2.7/32"),
    )


def test_relay_network_error_names_the_bad_entry():
    assert error({"relay_networks": ["127.0.0.0/8", "10.0.0.0/33"]}) == (
        'relay_networks: "10.0.0.0/33" is not an IP network (write CIDR, as in "192.0.2.0/24" or "2001:db8::/32")'
    )
    assert (
        error({"relay_networks": ["127.0.0.0/8", 10]})
        == 'relay_networks: must be a list of strings, got ["127.0.0.0/8", 10]'
    )


# --- domains -------------------------------------------------------------------------------------------


def test_domains_tables_with_and_without_mailboxes():
    config = load_config(
        overrides={"domains": {"Example.TEST": {"mailboxes": ["Alice", "bob"]}, "other.test": {}}}
    )
    assert config.domains == {
        "example.test": DomainConfig("example.test", frozenset({"alice", "bob"})),
        "other.test": DomainConfig("other.test", None),
    }


def test_domain_errors():
    assert error({"domains": {"ex ample.test": {}}}) == (
        'domains."ex ample.test": not a valid domain name: "ex ample.test" '
        '(label "ex ample" may only contain letters, digits and "-")'
    )
    assert (
        error({"domains": {"a.test": {}, "A.test": {}}})
        == 'domains."A.test": domain "a.test" is listed twice'
    )
    assert error({"domains": {"a.test": 1}}) == 'domains."a.test": must be a table, got 1'
    assert (
        error({"domains": "a.test"})
        == 'domains: must be a table of [domains."NAME"] tables, got "a.test"'
    )
    assert (
        error({"domains": {"a.test": {"mailboxes": "alice"}}})
        == 'domains."a.test".mailboxes: must be a list of strings, got "alice"'
    )


@pytest.mark.parametrize("name", ["../etc", "a b", "a@b", ".hidden", "x" * 65, "", 'q"t', "a\\b"])
def test_mailbox_names_must_be_safe_path_components(name):
    message = error({"domains": {"a.test": {"mailboxes": [name]}}})
    assert message.startswith(
        f'domains."a.test".mailboxes: {show(name)} is not a usable mailbox name'
    )


def test_domains_as_a_list_of_names():
    config = load_config(overrides={"domains": ["Example.test", "localhost"]})
    assert config.domains == {
        "example.test": DomainConfig("example.test"),
        "localhost": DomainConfig("localhost"),
    }
    assert error({"domains": ["a.test", "A.TEST"]}) == 'domains: "A.TEST" is listed twice'
    assert error({"domains": ["a_b.test"]}).startswith(
        'domains: not a valid domain name: "a_b.test"'
    )


# --- aliases --------------------------------------------------------------------------------------------------


def test_aliases_string_or_list():
    config = load_config(
        overrides={
            "aliases": {
                "Info@Example.TEST": "Alice@Example.TEST",
                "team@example.test": ["a@example.test", "b@elsewhere.example"],
            }
        }
    )
    assert config.aliases == {
        "info@example.test": ("Alice@example.test",),
        "team@example.test": ("a@example.test", "b@elsewhere.example"),
    }


@pytest.mark.parametrize(
    "aliases, message",
    [
        (
            {"info": "a@b.test"},
            'aliases.info: the key must be a full address "local@domain", got "info"',
        ),
        (
            {"@b_c": "a@b.test"},
            'aliases."@b_c": the catch-all key "@b_c" needs a valid domain after "@" (label "b_c" may only contain letters, digits and "-")',
        ),
        (
            {"@": "a@b.test"},
            'aliases."@": the catch-all key "@" needs a valid domain after "@" (it is empty)',
        ),
        (
            {"a@b_c": "a@b.test"},
            'aliases."a@b_c": the key "a@b_c" has an invalid domain (label "b_c" may only contain letters, digits and "-")',
        ),
        (
            {"a@b.test": "alice"},
            'aliases."a@b.test": target must be a full address "local@domain", got "alice"',
        ),
        (
            {"a@b.test": ["x@y.test", 5]},
            'aliases."a@b.test": must be an address or a list of addresses, got ["x@y.test", 5]',
        ),
        ({"a@b.test": []}, 'aliases."a@b.test": must name at least one target address'),
        (
            {"a@b.test": "a>b@c.test"},
            'aliases."a@b.test": target "a>b@c.test" is not an address SMTP can '
            "carry (RFC 5321 §4.1.2: quote a local part with special characters, "
            'as in "\\"a>b\\"@example.org")',
        ),
        (
            {"a@b.test": "x y@b.test"},
            'aliases."a@b.test": target must be a full address "local@domain", got "x y@b.test"',
        ),
        (
            {"a@b.test": "x@y.test", "A@B.test": "x@y.test"},
            'aliases."A@B.test": alias "a@b.test" is listed twice',
        ),
        ("x", 'aliases: must be a table, got "x"'),
    ],
)
def test_alias_errors(aliases, message):
    assert error({"aliases": aliases}) == message


# --- helpers -----------------------------------------------------------------------------------------------


def test_join_quotes_non_bare_keys():
    assert join("domains", "example.test", "mailboxes") == 'domains."example.test".mailboxes'
    assert join("limits", "message_size") == "limits.message_size"


def test_show_spells_values_like_toml():
    assert show("ten") == '"ten"'
    assert show(True) == "true"
    assert show({"a": 1}) == "a table"
    assert show([1, 2, 3, 4, 5]) == "[1, 2, 3, 4, ...]"
    assert len(show("x" * 500)) < 100


def test_paths_may_be_path_objects_in_overrides():
    assert load_config(overrides={"data_dir": Path("/x")}).data_dir == Path("/x")
