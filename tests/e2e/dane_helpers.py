"""Shared by the DANE end-to-end tests: test certificates, and TLSA records made from
them by ldns-dane (an implementation independent of pigeon's)."""

from __future__ import annotations

import subprocess
from pathlib import Path

from pigeon.testing.certs import Issued, make_cert
from pigeon.testing.live import require_tool

CA = make_cert(["Test CA"], ca=True)
LEAF = make_cert(["mx.example.test", "ta.example.test"], issuer=CA)
OTHER_CA = make_cert(["Test CA"], ca=True)
STRANGER = make_cert(["mx.example.test", "ta.example.test"], issuer=OTHER_CA)


def tlsa_by_ldns_dane(tmp: Path, host: str, cert: Issued, params: str) -> str:
    """A TLSA record made by ldns-dane (an independent implementation) from `cert`."""
    ldns_dane = require_tool("ldns-dane")
    path, _ = cert.write(tmp, f"tlsa-{host}-{params.replace(' ', '')}")
    done = subprocess.run(
        [ldns_dane, "-n", "-c", str(path), "create", host, "25", *params.split()],
        capture_output=True, text=True, timeout=30, check=True,
    )  # fmt: skip
    owner, _ttl, _class, rtype, *data = done.stdout.split()
    assert rtype == "TLSA" and owner == f"_25._tcp.{host}."
    return f"{owner} TLSA {' '.join(data)}"
