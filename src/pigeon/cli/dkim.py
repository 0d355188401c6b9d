"""`pigeon dkim keygen DOMAIN [--selector S]`: make a domain's DKIM keys.

Contract:
  * Writes a new key pair for DOMAIN under the key directory (`[dkim]
    key_dir`, default `<data_dir>/dkim`; pigeon.signing.keys: an RSA 2048
    key and an Ed25519 key, files 0600 in directories 0700, given to
    `user` or the owner of data_dir when root runs it) and prints the two
    DNS TXT records to publish, in zone-file form, then what to do next.
  * The selector defaults to the year and month (`202612`): a new one each
    month at most; an existing selector is never overwritten (use another).
  * The server signs with the new keys after its next reload or restart
    when `[dkim.domains."DOMAIN"] selector` is not set (the newest pair is
    used); with it set, once it names the new selector (rotation:
    docs/mail-auth.md).
  * Exit statuses: 0 written; 64 usage (bad domain or selector); 73 the
    keys cannot be written (the selector exists, a directory is missing
    or not writable); 78 configuration error.
"""

from __future__ import annotations

import argparse
import os
import time

from pigeon.cli._common import EX_CANTCREAT, EX_CONFIG, EX_USAGE, fail
from pigeon.cli._control import add_config_arguments

HELP = "make DKIM signing keys for a domain and print their DNS records"

DESCRIPTION = """\
Make the DKIM keys pigeon signs a domain's mail with: an RSA (2048 bits,
rsa-sha256) and an Ed25519 key (ed25519-sha256, RFC 8463), which pigeon
uses together. They are written to [dkim] key_dir (default
data_dir/dkim) as DOMAIN/SELECTOR-rsa.key and DOMAIN/SELECTOR-ed25519.key,
and the two TXT records to publish are printed:
SELECTOR-rsa._domainkey.DOMAIN and SELECTOR-ed25519._domainkey.DOMAIN.
"""

EPILOG = """\
examples:
  pigeon dkim keygen example.org                   selector: this year and month (202612)
  pigeon dkim keygen example.org --selector 2027a  another selector (key rotation)

Publish the records, check them with "pigeon dns example.org --check",
then "pigeon reload". Rotation step by step: docs/mail-auth.md.

exit status: 0 keys written, 64 usage (bad domain or selector), 73 the
keys cannot be written (selector exists, directory missing or not
writable), 78 configuration error.
"""


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_config_arguments(parser)
    sub = parser.add_subparsers(dest="action", metavar="ACTION", required=True)
    keygen = sub.add_parser("keygen", help="make a key pair for DOMAIN, print its DNS records")
    add_config_arguments(keygen, nested=True)
    keygen.add_argument("domain", metavar="DOMAIN", help="the sending domain (RFC5322.From)")
    keygen.add_argument(
        "--selector",
        metavar="S",
        default=None,
        help="the selector (default: year and month, e.g. 202612)",
    )


def run(args: argparse.Namespace) -> int:
    from pigeon.admin.dnsrecords import zone_line
    from pigeon.cli.dns import config_and_domain
    from pigeon.config._dkim import selector_problem
    from pigeon.signing.keys import RSA_BITS, KeyProblem, generate

    loaded = config_and_domain(args)
    if isinstance(loaded, int):
        return loaded
    config, domain = loaded
    selector = args.selector or time.strftime("%Y%m", time.gmtime())
    if (problem := selector_problem(selector)) is not None:
        return fail(problem, EX_USAGE)
    key_dir = config.dkim_key_dir
    if config.dkim.key_dir is None and not config.data_dir.is_dir():
        return fail(
            f"data_dir {config.data_dir} does not exist: start pigeon once, or set [dkim] key_dir",
            EX_CONFIG,
        )
    try:
        pair = generate(key_dir, domain, selector, owner=_owner(config))
    except KeyProblem as exc:
        return fail(str(exc), EX_CANTCREAT)
    directory = key_dir / domain
    print(f"wrote {directory / (selector + '-rsa.key')} (rsa-sha256, {RSA_BITS} bits)")
    print(f"wrote {directory / (selector + '-ed25519.key')} (ed25519-sha256)")
    print()
    print(f"; DKIM keys of {domain}, selector {selector}: publish both records")
    for name, value in pair.dns_records():
        print(zone_line(name, "TXT", value))
    print()
    configured = config.dkim.domains.get(domain)
    if configured is not None and configured.selector and configured.selector != selector:
        print(
            f'; pigeon signs with selector {configured.selector} until [dkim.domains."{domain}"] '
            f'selector = "{selector}" and a reload'
        )
    else:
        print(f"; pigeon signs with them after the next reload (the newest keys of {domain})")
    print(f"; check the records with: pigeon dns {domain} --check")
    return 0


def _owner(config: object) -> tuple[int, int] | None:
    """Who the key files belong to when root makes them: `user`, else the owner of
    data_dir (the server must read them after it dropped root); None otherwise."""
    if os.geteuid() != 0:
        return None
    user = getattr(config, "user", "")
    if user:
        import pwd

        entry = pwd.getpwnam(user)
        return entry.pw_uid, entry.pw_gid
    data_dir = getattr(config, "data_dir", None)
    if data_dir is not None and data_dir.is_dir():
        st = data_dir.stat()
        return (st.st_uid, st.st_gid) if st.st_uid != 0 else None
    return None
