"""pigeon.net.tls: certificate checks that name the file, the context, reload, self-signed."""

from __future__ import annotations

import datetime
import logging
import ssl

import pytest

from pigeon.config import load_config
from pigeon.config.schema import TlsConfig
from pigeon.net.tls import (
    TlsError,
    TlsProvider,
    build_context,
    check_certificate,
    generate_self_signed,
    tls_info,
)

UTC = datetime.UTC


def _pair(tmp_path, name="mx.example.test", **kw):
    cert, key = tmp_path / f"{name}.crt", tmp_path / f"{name}.key"
    generate_self_signed(cert, key, name, **kw)
    return cert, key


def test_self_signed_is_made_once_and_logged(tmp_path, caplog):
    config = load_config(None, {"data_dir": str(tmp_path / "d"), "hostname": "mx.example.test"})
    with caplog.at_level(logging.WARNING, "pigeon.tls"):
        first = TlsProvider.create(config)
    assert "generated a self-signed certificate for mx.example.test" in caplog.text
    assert first.summary.subject == "CN=mx.example.test" and first.summary.self_signed
    assert oct(first.key_path.stat().st_mode & 0o777) == "0o600"
    caplog.clear()
    again = TlsProvider.create(config)
    assert caplog.text == "" and again.cert_path == first.cert_path


def test_context_settings(tmp_path):
    cert, key = _pair(tmp_path)
    ctx = build_context(TlsConfig(), cert, key)
    assert ctx.minimum_version == ssl.TLSVersion.TLSv1_2
    assert ctx.options & ssl.OP_NO_COMPRESSION
    assert all(c["protocol"] != "TLSv1.0" for c in ctx.get_ciphers())
    ctx13 = build_context(TlsConfig(min_version="TLSv1.3"), cert, key)
    assert ctx13.minimum_version == ssl.TLSVersion.TLSv1_3
    with pytest.raises(TlsError, match="tls.ciphers"):
        build_context(TlsConfig(ciphers="NOSUCHCIPHER"), cert, key)


def test_errors_name_the_file(tmp_path):
    cert, key = _pair(tmp_path, "a.example.test")
    _, other = _pair(tmp_path, "b.example.test")
    with pytest.raises(TlsError, match=f"{other}: the private key does not match"):
        build_context(TlsConfig(), cert, other)
    with pytest.raises(TlsError, match=f"{tmp_path / 'nope.key'}: cannot read the private key"):
        build_context(TlsConfig(), cert, tmp_path / "nope.key")
    with pytest.raises(TlsError, match=f"{tmp_path / 'nope.crt'}: cannot read the certificate"):
        check_certificate(tmp_path / "nope.crt")
    bad = tmp_path / "bad.crt"
    bad.write_text("-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n")
    with pytest.raises(TlsError, match=f"{bad}: not a PEM certificate"):
        check_certificate(bad)


def test_dates(tmp_path):
    old, _ = _pair(
        tmp_path, "old.example.test", now=datetime.datetime(2020, 1, 1, tzinfo=UTC), days=10
    )
    with pytest.raises(TlsError, match=f"{old}: the certificate expired on 2020-01-11"):
        check_certificate(old)
    future, _ = _pair(tmp_path, "new.example.test", now=datetime.datetime(2999, 1, 1, tzinfo=UTC))
    with pytest.raises(TlsError, match="not valid before 2998-12-31"):
        check_certificate(future)


def test_reload_keeps_the_old_context_on_error(tmp_path, caplog):
    cert, key = _pair(tmp_path)
    provider = TlsProvider(TlsConfig(), cert, key)
    first = provider.context
    generate_self_signed(cert, key, "second.example.test")
    assert provider.reload() and provider.context is not first
    assert provider.summary.subject == "CN=second.example.test"
    cert.write_text("garbage")
    current = provider.context
    with caplog.at_level(logging.ERROR, "pigeon.tls"):
        assert not provider.reload()
    assert provider.context is current and "keeping the previous certificate" in caplog.text


def test_tls_info_without_ssl_object():
    assert tls_info(None).version == "unknown"
