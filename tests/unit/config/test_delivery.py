"""[delivery], [transports] and the new [queue] keys: defaults, parsing, errors naming the key."""

from __future__ import annotations

from pathlib import Path

import pytest

from pigeon.config import ConfigError, load_config
from pigeon.config._delivery import parse_nexthop
from pigeon.config.schema import DeliveryConfig, Nameserver, QueueConfig, TransportSpec


def load(tmp_path, text: str):
    path = tmp_path / "pigeon.toml"
    path.write_text(text, encoding="utf-8")
    return load_config(path)


def error(tmp_path, text: str) -> str:
    with pytest.raises(ConfigError) as info:
        load(tmp_path, text)
    # Every problem, without the file name and line.
    return "\n".join(f"{p.key}: {p.message}" for p in info.value.problems)


def test_defaults():
    config = load_config()
    assert config.delivery == DeliveryConfig()
    d = config.delivery
    assert (d.remote_port, d.dns_servers, d.dns_timeout, d.relay_host, d.tls) == (
        25,
        (),
        10.0,
        None,
        "may",
    )
    assert (d.destination_concurrency, d.destination_recipients) == (20, 50)
    q = config.queue
    assert (q.min_backoff, q.max_backoff, q.max_lifetime, q.delay_warning, q.concurrency) == (
        300.0,
        4000.0,
        432000.0,
        14400.0,
        64,
    )
    assert config.transports == {}


def test_full_delivery_section(tmp_path):
    secret = tmp_path / "relay.pw"
    secret.write_text("s3cret\n")
    config = load(
        tmp_path,
        f"""
[delivery]
remote_port = 2525
dns_servers = ["127.0.0.1", "127.0.0.1:5353", "::1", "[2001:db8::53]:54"]
dns_timeout = 2.5
relay_host = "[Relay.Example.NET]:587"
relay_user = "pigeon"
relay_password_file = "{secret}"
helo_name = "Out.Example.TEST"
tls = "verify"
destination_concurrency = 5
destination_recipients = 10
own_addresses = ["192.0.2.7", "NAT.example.test", "2001:DB8::7"]

[queue]
min_backoff = 60
max_backoff = 600
max_lifetime = 86400
delay_warning = 0
concurrency = 8
""",
    )
    d = config.delivery
    assert d.dns_servers == (
        Nameserver("127.0.0.1"),
        Nameserver("127.0.0.1", 5353),
        Nameserver("::1"),
        Nameserver("2001:db8::53", 54),
    )
    assert d.relay_host == TransportSpec("smtp", "relay.example.net", 587, False)
    assert d.relay_password_file == secret and d.helo_name == "out.example.test"
    assert d.own_addresses == ("192.0.2.7", "nat.example.test", "2001:db8::7")
    assert config.queue == QueueConfig(
        min_backoff=60.0, max_backoff=600.0, max_lifetime=86400.0, delay_warning=0.0, concurrency=8
    )


@pytest.mark.parametrize(
    "text, parsed",
    [
        ("local", TransportSpec("local")),
        ("discard", TransportSpec("discard")),
        ("smtp:mail.example.org", TransportSpec("smtp", "mail.example.org", None, True)),
        ("smtp:Mail.Example.org:2525", TransportSpec("smtp", "mail.example.org", 2525, True)),
        ("smtp:[mail.example.org]", TransportSpec("smtp", "mail.example.org", None, False)),
        ("smtp:[mail.example.org]:587", TransportSpec("smtp", "mail.example.org", 587, False)),
        ("smtp:192.0.2.1", TransportSpec("smtp", "192.0.2.1", None, False)),
        ("smtp:[2001:db8::1]:25", TransportSpec("smtp", "2001:db8::1", 25, False)),
        ("smtp:[IPv6:2001:db8::1]", TransportSpec("smtp", "2001:db8::1", None, False)),
        ("lmtp:localhost:24", TransportSpec("lmtp", "localhost", 24, False)),
        ("lmtp:[127.0.0.1]:2424", TransportSpec("lmtp", "127.0.0.1", 2424, False)),
        ("lmtp:unix:/run/dovecot/lmtp", TransportSpec("lmtp", "/run/dovecot/lmtp", None, False)),
    ],
)
def test_parse_nexthop(text, parsed):
    assert parse_nexthop(text) == parsed


@pytest.mark.parametrize(
    "spec",
    [
        "smtp:[mail.example.org]:587",
        "lmtp:unix:/run/lmtp",
        "discard",
        "smtp:mx.example.org:26",
        "lmtp:[127.0.0.1]:24",
    ],
)
def test_spec_str_round_trips(spec):
    assert str(parse_nexthop(spec)) == spec


@pytest.mark.parametrize(
    "spec, reason",
    [
        ("uucp:host", 'expected "local", "discard"'),
        ("smtp:", '"smtp:" needs a host'),
        ("smtp:[mx.example.org", 'missing "]"'),
        ("smtp:mx.example.org:0", "the port must be between 1 and 65535, got 0"),
        ("smtp:mx.example.org:smtp", 'the port must be a number, got "smtp"'),
        ("smtp:2001:db8::1", "IPv6 addresses go in brackets"),
        ("smtp:mx_1.example.org", "is not a valid host name"),
        ("lmtp:localhost", "LMTP over TCP needs a port"),
        ("lmtp:unix:run/lmtp", "the Unix socket path must be absolute"),
    ],
)
def test_bad_transport_names_the_key(tmp_path, spec, reason):
    msg = error(tmp_path, f'[transports]\n"example.org" = "{spec}"\n')
    assert msg.startswith(f'transports."example.org": "{spec}": ')
    assert reason in msg


def test_transport_keys(tmp_path):
    config = load(tmp_path, '[transports]\n"Example.ORG" = "local"\n".example.org" = "discard"\n')
    assert config.transports == {
        "example.org": TransportSpec("local"),
        ".example.org": TransportSpec("discard"),
    }
    assert error(tmp_path, '[transports]\n"..example.org" = "local"\n').startswith(
        'transports."..example.org": the key is not a domain name or .domain'
    )
    assert (
        error(tmp_path, '[transports]\n"a.test" = "local"\n"A.test" = "local"\n')
        == 'transports."A.test": "a.test" is listed twice'
    )
    assert (
        error(tmp_path, '[transports]\n"a.test" = 25\n')
        == 'transports."a.test": must be a transport spec string, got 25'
    )


@pytest.mark.parametrize(
    "line, message",
    [
        (
            "remote_port = 0",
            "delivery.remote_port: must be a port number between 1 and 65535, got 0",
        ),
        (
            'dns_servers = "127.0.0.1"',
            'delivery.dns_servers: must be a list of strings, got "127.0.0.1"',
        ),
        (
            'dns_servers = ["ns.example"]',
            'delivery.dns_servers: "ns.example": not an IP address (name servers are given by address)',
        ),
        (
            'dns_servers = ["127.0.0.1:99999"]',
            'delivery.dns_servers: "127.0.0.1:99999": the port must be between 1 and 65535, got 99999',
        ),
        ("dns_timeout = 0", "delivery.dns_timeout: must be a positive number of seconds, got 0"),
        (
            'relay_host = "relay:x"',
            'delivery.relay_host: "relay:x": the port must be a number, got "x"',
        ),
        (
            "relay_host = 25",
            'delivery.relay_host: must be a string such as "[relay.example.org]:587", got 25',
        ),
        (
            'tls = "yes"',
            'delivery.tls: must be one of "none", "may", "encrypt", "verify", got "yes"',
        ),
        (
            "destination_recipients = 0",
            "delivery.destination_recipients: must be a positive integer, got 0",
        ),
        ('helo_name = "not a name"', 'delivery.helo_name: not a valid host name: "not a name"'),
        (
            'own_addresses = ["-bad-"]',
            'delivery.own_addresses: "-bad-" is neither an IP address nor a host name',
        ),
        ("dns_timout = 3", 'delivery.dns_timout: unknown key (did you mean "dns_timeout"?)'),
    ],
)
def test_delivery_errors_name_the_key(tmp_path, line, message):
    assert error(tmp_path, f"[delivery]\n{line}\n").startswith(message)


def test_queue_errors(tmp_path):
    assert (
        error(tmp_path, "[queue]\nmin_backoff = 600\nmax_backoff = 300\n")
        == "queue.max_backoff: must be >= queue.min_backoff (600), got 300"
    )
    assert (
        error(tmp_path, "[queue]\nconcurrency = 0\n")
        == "queue.concurrency: must be a positive integer, got 0"
    )
    assert (
        error(tmp_path, "[queue]\ndelay_warning = -1\n")
        == "queue.delay_warning: must be a non-negative number of seconds, got -1"
    )


def test_relay_credentials(tmp_path):
    assert error(tmp_path, '[delivery]\nrelay_user = "u"\n') == (
        "delivery.relay_password_file: must name the password file when delivery.relay_user is set\n"
        "delivery.relay_user: is set but delivery.relay_host is empty"
    )
    assert (
        error(tmp_path, '[delivery]\nrelay_host = "[r.example]"\nrelay_user = "u"\n')
        == "delivery.relay_password_file: must name the password file when delivery.relay_user is set"
    )
    missing = tmp_path / "missing.pw"
    assert (
        error(
            tmp_path,
            f'[delivery]\nrelay_host = "[r.example]"\nrelay_user = "u"\n'
            f'relay_password_file = "{missing}"\n',
        )
        == f'delivery.relay_password_file: no such file: "{missing}"'
    )
    assert (
        error(tmp_path, f'[delivery]\ntls_ca_file = "{missing}"\n')
        == f'delivery.tls_ca_file: no such file: "{missing}"'
    )


def test_cross_key_error_names_the_layer(tmp_path):
    path = tmp_path / "pigeon.toml"
    path.write_text("[queue]\nmin_backoff = 600\n", encoding="utf-8")
    with pytest.raises(ConfigError) as info:
        load_config(path, {"queue": {"max_backoff": 300}})
    assert str(info.value).startswith("command line: queue.max_backoff:")
    path.write_text("[queue]\nmin_backoff = 5000\n", encoding="utf-8")  # > default max_backoff
    with pytest.raises(ConfigError) as info:
        load_config(path)
    # Not written in the file: the line of its table, where it would go.
    assert (
        str(info.value)
        == f"{path}:1: queue.max_backoff: must be >= queue.min_backoff (5000), got 4000"
    )


def test_empty_strings_mean_defaults(tmp_path):
    config = load(
        tmp_path,
        '[delivery]\nrelay_host = ""\nrelay_password_file = ""\ntls_ca_file = ""\nhelo_name = ""\n',
    )
    assert config.delivery == DeliveryConfig()
    assert isinstance(config.delivery.tls_ca_file, (Path, type(None)))
