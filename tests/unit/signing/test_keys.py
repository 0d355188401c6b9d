"""pigeon.signing.keys: key files written private, read back, chosen by selector."""

from __future__ import annotations

import os
import stat
import time

import pytest

from pigeon.config._checks import ConfigError
from pigeon.config.dkim import DkimConfig, DkimDomain
from pigeon.signing.keys import KeyProblem, generate, load_keys


def test_generate_writes_0600_files_in_0700_directories(tmp_path):
    key_dir = tmp_path / "dkim"
    pair = generate(key_dir, "example.test", "s1")
    for directory in (key_dir, key_dir / "example.test"):
        assert stat.S_IMODE(directory.stat().st_mode) == 0o700
    names = sorted(p.name for p in (key_dir / "example.test").iterdir())
    assert names == ["s1-ed25519.key", "s1-rsa.key"]
    for name in names:
        assert stat.S_IMODE((key_dir / "example.test" / name).stat().st_mode) == 0o600
    (rsa_name, rsa_txt), (ed_name, ed_txt) = pair.dns_records()
    assert rsa_name == "s1-rsa._domainkey.example.test"
    assert ed_name == "s1-ed25519._domainkey.example.test"
    assert rsa_txt.startswith("v=DKIM1; k=rsa; p=MIIB")  # SubjectPublicKeyInfo, 2048 bits
    assert ed_txt.startswith("v=DKIM1; k=ed25519; p=") and len(ed_txt.split("p=")[1]) == 44


def test_generate_never_overwrites_a_selector(tmp_path):
    generate(tmp_path, "example.test", "s1")
    before = (tmp_path / "example.test" / "s1-rsa.key").read_bytes()
    with pytest.raises(KeyProblem, match="s1-rsa.key exists"):
        generate(tmp_path, "example.test", "s1")
    assert (tmp_path / "example.test" / "s1-rsa.key").read_bytes() == before


@pytest.mark.parametrize("selector", ["", "a_b", "-x", "a" * 56, "a.b"])
def test_generate_refuses_a_selector_that_is_no_dns_label(tmp_path, selector):
    with pytest.raises(KeyProblem, match="not a selector"):
        generate(tmp_path, "example.test", selector)


def test_load_takes_the_newest_pair_or_the_configured_selector(tmp_path):
    generate(tmp_path, "example.test", "old")
    generate(tmp_path, "example.test", "new")
    past = time.time() - 3600
    for name in ("old-rsa.key", "old-ed25519.key"):
        os.utime(tmp_path / "example.test" / name, (past, past))
    assert load_keys(tmp_path, DkimConfig())["example.test"].selector == "new"
    pinned = DkimConfig(domains={"example.test": DkimDomain("old")})
    assert load_keys(tmp_path, pinned)["example.test"].selector == "old"


def test_no_key_directory_means_nothing_to_sign(tmp_path):
    assert load_keys(tmp_path / "absent", DkimConfig()) == {}


def test_a_configured_selector_without_keys_names_the_key_and_path(tmp_path):
    generate(tmp_path, "example.test", "s1")
    config = DkimConfig(domains={"example.test": DkimDomain("s2")})
    with pytest.raises(ConfigError) as error:
        load_keys(tmp_path, config)
    assert error.value.key == 'dkim.domains."example.test".selector'
    assert f"cannot read {tmp_path / 'example.test' / 's2-rsa.key'}" in str(error.value)


def test_a_damaged_key_names_its_file(tmp_path):
    generate(tmp_path, "example.test", "s1")
    bad = tmp_path / "example.test" / "s1-rsa.key"
    bad.write_text("-----BEGIN RSA PRIVATE KEY-----\nnonsense\n")
    with pytest.raises(ConfigError) as error:
        load_keys(tmp_path, DkimConfig())
    assert error.value.key == "dkim.key_dir"
    assert f"{bad} is not a PEM private key" in str(error.value)


def test_half_a_pair_is_refused(tmp_path):
    generate(tmp_path, "example.test", "s1")
    (tmp_path / "example.test" / "s1-ed25519.key").unlink()
    with pytest.raises(ConfigError, match="s1-ed25519.key"):
        load_keys(tmp_path, DkimConfig())


@pytest.mark.skipif(os.geteuid() != 0, reason="chown needs root")
def test_generate_gives_the_files_to_the_owner(tmp_path):
    generate(tmp_path / "dkim", "example.test", "s1", owner=(65534, 65534))
    for path in [tmp_path / "dkim", *(tmp_path / "dkim").rglob("*")]:
        assert (path.stat().st_uid, path.stat().st_gid) == (65534, 65534), path
