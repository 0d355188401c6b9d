"""`pigeon mta-sts policy DOMAIN`: our policy file (RFC 8461 §3.2) and its TXT record (§3.1)."""

from __future__ import annotations

import re

from pigeon.cli.main import main
from pigeon.delivery.tlspolicy.own import policy_id
from pigeon.delivery.tlspolicy.sts import parse_policy
from pigeon.delivery.tlspolicy.sts import policy_id as txt_id

CONFIG = """hostname = "mx.example.org"
[domains."example.org"]
[tls_policy]
own_mode = "enforce"
own_mx = ["mx.example.org", "*.backup.example.org"]
own_max_age = 86400
"""


def write_config(tmp_path, text=CONFIG):
    path = tmp_path / "pigeon.toml"
    path.write_text(text)
    return str(path)


def test_the_policy_goes_to_stdout_and_what_to_publish_to_stderr(tmp_path, capsys):
    assert main(["mta-sts", "policy", "example.org", "-c", write_config(tmp_path)]) == 0
    out, err = capsys.readouterr()
    assert out.startswith("version: STSv1\r\n")  # RFC 8461 §3.2: CRLF, not escaped
    policy = parse_policy(out)
    assert (policy.mode, policy.max_age) == ("enforce", 86400)
    assert policy.mx == ("mx.example.org", "*.backup.example.org")
    assert "https://mta-sts.example.org/.well-known/mta-sts.txt" in err
    assert re.search(r'_mta-sts\.example\.org\. IN TXT "v=STSv1; id=\w+"', err)


def test_output_file_and_defaults(tmp_path, capsys):
    target = tmp_path / "mta-sts.txt"
    config = write_config(tmp_path, 'hostname = "mx.example.org"\n[domains."example.org"]\n')
    assert main(["mta-sts", "policy", "example.org", "-c", config, "-o", str(target)]) == 0
    policy = parse_policy(target.read_text())
    assert (policy.mode, policy.mx, policy.max_age) == ("testing", ("mx.example.org",), 604800)
    assert target.stat().st_mode & 0o777 == 0o644
    assert f"wrote {target}" in capsys.readouterr().out


def published_id(tmp_path, capsys, config_text) -> tuple[str, str]:
    """(the policy file written, the id= of the TXT record printed)."""
    target = tmp_path / "policy.txt"
    assert (
        main(
            [
                "mta-sts",
                "policy",
                "example.org",
                "-c",
                write_config(tmp_path, config_text),
                "-o",
                str(target),
            ]
        )
        == 0
    )
    record = re.search(r'IN TXT "(v=STSv1; id=\w+)"', capsys.readouterr().out)
    assert record is not None
    text = target.read_bytes().decode("utf-8")
    assert text.startswith("version: STSv1\r\n")  # RFC 8461 §3.2: CRLF
    return text, txt_id([record.group(1)])


def test_the_id_is_the_policy_content_and_changes_with_it(tmp_path, capsys):
    first, first_id = published_id(tmp_path, capsys, CONFIG)
    second, second_id = published_id(tmp_path, capsys, CONFIG.replace("86400", "86401"))
    assert first_id == policy_id(first) and second_id == policy_id(second)
    assert first_id != second_id


def test_a_foreign_domain_is_warned_about_and_a_bad_name_refused(tmp_path, capsys):
    config = write_config(tmp_path)
    assert main(["mta-sts", "policy", "other.test", "-c", config]) == 0
    assert "other.test is not one of our local domains" in capsys.readouterr().err
    assert main(["mta-sts", "policy", "bad_name", "-c", config]) == 64
