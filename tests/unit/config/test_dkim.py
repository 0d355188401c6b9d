"""[dkim]: its keys, their defaults and the errors that name them."""

from __future__ import annotations

import pytest

from pigeon.config import load_config
from pigeon.config._checks import ConfigError
from pigeon.config.dkim import DEFAULT_HEADERS


def _load(tmp_path, text: str):
    path = tmp_path / "pigeon.toml"
    path.write_text(text)
    return load_config(path)


def test_defaults(tmp_path):
    config = _load(tmp_path, 'data_dir = "/srv/mail"\n')
    assert config.dkim.sign and config.dkim.headers == DEFAULT_HEADERS
    assert str(config.dkim_key_dir) == "/srv/mail/dkim"


def test_headers_lowercased_and_from_always_signed(tmp_path):
    config = _load(tmp_path, '[dkim]\nheaders = ["Subject", "TO", "subject"]\n')
    assert config.dkim.headers == ("from", "subject", "to")


def test_a_selector_per_domain(tmp_path):
    config = _load(tmp_path, '[dkim.domains."Example.Test"]\nselector = "2027a"\n')
    assert config.dkim.domains["example.test"].selector == "2027a"


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ('[dkim]\nheaders = ["Received"]\n', "dkim.headers: received changes in transit"),
        ('[dkim]\nheaders = ["bad name"]\n', 'dkim.headers: "bad name" is not a header'),
        ('[dkim.domains."x.test"]\nselector = "a_b"\n', 'dkim.domains."x.test".selector: "a_b"'),
        ('[dkim.domains."x.test"]\nselektor = "a"\n', 'dkim.domains."x.test".selektor: unknown'),
        ("[dkim]\nsign = 1\n", "dkim.sign"),
    ],
)
def test_errors_name_the_key(tmp_path, text, message):
    with pytest.raises(ConfigError) as error:
        _load(tmp_path, text)
    assert message in str(error.value)
