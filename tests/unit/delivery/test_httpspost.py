"""delivery/httpspost.py against a real HTTPS server and DNS server on loopback."""

from __future__ import annotations

import asyncio

import pytest

from pigeon.delivery.httpspost import PostError, post
from pigeon.dns.stub import StubResolver
from pigeon.testing.dnsserver import DnsServer
from pigeon.testing.httpsserver import Answer, HttpsServer
from pigeon.testing.testca import TestCa, self_signed

ZONE = {"example.test": "reports A 127.0.0.1\n"}
URL = "https://reports.example.test/tlsrpt?x=1"


def _post(dns: DnsServer, web: HttpsServer, ca_file, url: str = URL, timeout: float = 5.0):
    resolver = StubResolver([("127.0.0.1", dns.port)], timeout=2.0)
    return asyncio.run(
        post(
            url,
            b"\x1f\x8bbody",
            "application/tlsrpt+gzip",
            resolver,
            ca_file=ca_file,
            timeout=timeout,
            port=web.port,
        )
    )


@pytest.fixture
def ca(tmp_path):
    return TestCa(tmp_path / "ca")


def _web(ca, status: int, path: str = "/tlsrpt?x=1", **headers) -> HttpsServer:
    cert, key = ca.issue("reports.example.test")
    answers = {"reports.example.test": Answer(b"ok\n", status, path=path, headers=headers)}
    return HttpsServer("127.0.0.1", 0, cert, key, answers)


def test_a_2xx_answer_takes_the_document(ca):
    with DnsServer(zones=ZONE) as dns, _web(ca, 202) as web:
        _post(dns, web, ca.ca_file)
    (taken,) = web.posts
    assert taken.host == "reports.example.test" and taken.path == "/tlsrpt?x=1"
    assert taken.body == b"\x1f\x8bbody"
    assert taken.headers["content-type"] == "application/tlsrpt+gzip"


def test_other_statuses_and_redirects_are_errors(ca):
    with DnsServer(zones=ZONE) as dns, _web(ca, 500) as web:
        with pytest.raises(PostError, match="HTTP status 500"):
            _post(dns, web, ca.ca_file)
    with DnsServer(zones=ZONE) as dns, _web(ca, 302, Location="https://elsewhere.test/") as web:
        with pytest.raises(PostError, match="HTTP status 302"):
            _post(dns, web, ca.ca_file)
    assert len(web.posts) == 1  # the redirect was not followed


def test_an_untrusted_certificate_is_refused(ca, tmp_path):
    cert, key = self_signed(tmp_path / "self", "reports.example.test")
    answers = {"reports.example.test": Answer(b"ok\n", 200, path="/tlsrpt?x=1")}
    with DnsServer(zones=ZONE) as dns, HttpsServer("127.0.0.1", 0, cert, key, answers) as web:
        with pytest.raises(PostError, match="TLS"):
            _post(dns, web, ca.ca_file)
    assert web.posts == []


def test_no_address_and_not_https_are_errors(ca):
    with DnsServer(zones=ZONE) as dns, _web(ca, 200) as web:
        with pytest.raises(PostError, match="nowhere.example.test"):
            _post(dns, web, ca.ca_file, url="https://nowhere.example.test/r")
        with pytest.raises(PostError, match="not an https: URL"):
            _post(dns, web, ca.ca_file, url="http://reports.example.test/r")
    assert web.posts == []
