"""DNS for pigeon: the `Resolver` interface (api) and its dnspython implementation (stub).

Importing the package loads only the interface; `pigeon.dns.stub` brings in
dnspython. Tests use `pigeon.testing.fakedns.FakeResolver`.
"""

from pigeon.dns.api import DnsError, MxRecord, NoData, NoSuchDomain, Resolver, TemporaryFailure

__all__ = ["DnsError", "MxRecord", "NoData", "NoSuchDomain", "Resolver", "TemporaryFailure"]
