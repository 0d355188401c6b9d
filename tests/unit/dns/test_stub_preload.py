"""pigeon.dns.stub imports, with itself, every module a look-up can need.

After dropping root (pigeon.privileges) pigeon may not be able to read its
own install directory (a virtualenv under a 0700 /root): a module dnspython
imports at the first look-up would then fail with ModuleNotFoundError, and
the inbound checks answer 451 (seen in CI). So importing the stub must load
the asyncio backend and the record-type classes already."""

from __future__ import annotations

import subprocess
import sys

WANTED = [
    "dns._asyncio_backend",
    "dns.rdtypes.IN.A",
    "dns.rdtypes.IN.AAAA",
    "dns.rdtypes.ANY.MX",
    "dns.rdtypes.ANY.TXT",
    "dns.rdtypes.ANY.PTR",
    "dns.rdtypes.ANY.TLSA",
    "dns.rdtypes.ANY.CNAME",
    "dns.rdtypes.ANY.SOA",
]


def test_importing_the_stub_loads_what_a_lookup_needs():
    code = (
        "import sys, pigeon.dns.stub\n"
        f"missing = [m for m in {WANTED!r} if m not in sys.modules]\n"
        "print(missing)\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "[]", done.stdout
