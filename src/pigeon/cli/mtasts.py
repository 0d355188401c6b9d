"""`pigeon mta-sts policy DOMAIN [-o FILE]`: our domain's MTA-STS policy file for a web server.

Contract:
  * Reads the configuration like every command (`-c`, $PIGEON_CONFIG, ...;
    no data directory needed) and writes the policy of `[tls_policy]
    own_mode`, `own_mx` (default: `hostname`) and `own_max_age`
    (`delivery.tlspolicy.own`).
  * Without -o: the policy file on stdout, exactly (redirect it to the web
    server's file), and what to publish on stderr. With -o FILE: FILE is
    written (mode 0644, through a temporary file and a rename: a web server
    never serves half a policy) and what to publish goes to stdout.
  * What to publish: the URL to serve it at (https://mta-sts.DOMAIN/.well-known/mta-sts.txt,
    text/plain, a certificate valid for mta-sts.DOMAIN) and the TXT record
    `_mta-sts.DOMAIN` with the policy's id (changing with its content).
  * DOMAIN must be a valid domain name (64 otherwise); one that is not a
    local domain gets a warning. Exit 78 on a configuration error, 73 when
    FILE cannot be written.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

from pigeon.cli._common import EX_CANTCREAT, EX_CONFIG, EX_USAGE, PROG, fail
from pigeon.cli._control import add_config_arguments, load
from pigeon.cli._entry import raw_stream
from pigeon.config._checks import domain_problem
from pigeon.config.load import ConfigError
from pigeon.delivery.tlspolicy.fetch import policy_url
from pigeon.delivery.tlspolicy.own import policy_text, txt_record

HELP = "write our domains' MTA-STS policy file for a web server"
DESCRIPTION = """\
Write the MTA-STS policy of DOMAIN (RFC 8461) from [tls_policy] own_mode,
own_mx and own_max_age, and say what to publish: the file at
https://mta-sts.DOMAIN/.well-known/mta-sts.txt (served by any web server
with a certificate for mta-sts.DOMAIN) and a TXT record _mta-sts.DOMAIN
whose id changes whenever the policy does. See docs/mail-auth.md,
"Outbound TLS: MTA-STS and DANE".
"""
EPILOG = """\
examples:
  pigeon mta-sts policy example.org -o /var/www/mta-sts/.well-known/mta-sts.txt
  pigeon mta-sts policy example.org > mta-sts.txt

exit status: 0 ok, 64 bad DOMAIN, 73 FILE cannot be written, 78 configuration error.
"""


def add_arguments(parser: argparse.ArgumentParser) -> None:
    actions = parser.add_subparsers(dest="action", metavar="ACTION", required=True)
    policy = actions.add_parser("policy", help="write DOMAIN's policy file")
    add_config_arguments(policy)
    policy.add_argument("domain", metavar="DOMAIN", help="our domain, e.g. example.org")
    policy.add_argument(
        "-o", "--output", metavar="FILE", type=Path, help="write the policy to FILE"
    )


def run(args: argparse.Namespace) -> int:
    domain = args.domain.lower().rstrip(".")
    problem = domain_problem(domain)
    if problem:
        return fail(f"{args.domain!r} is not a domain name: {problem}", EX_USAGE)
    try:
        config = load(args, need_data_dir=False)
    except ConfigError as exc:
        return fail(str(exc), EX_CONFIG)
    own = config.tls_policy
    text = policy_text(
        mode=own.own_mode, mx=own.own_mx or (config.hostname,), max_age=own.own_max_age
    )
    notes = [
        f"serve it at {policy_url(domain)} (text/plain, certificate for mta-sts.{domain})",
        f"publish: {txt_record(domain, text)}",
    ]
    if domain not in config.domains:
        notes.insert(0, f"warning: {domain} is not one of our local domains")
    if args.output is None:
        out = raw_stream(sys.stdout)  # the CRs of CRLF are the file's, not to be escaped
        out.write(text)
        out.flush()
        for note in notes:
            print(f"{PROG}: {note}", file=sys.stderr)
        return 0
    tmp = args.output.with_name(f".{args.output.name}.tmp")
    try:
        tmp.write_text(text, encoding="utf-8")
        os.chmod(tmp, 0o644)
        os.replace(tmp, args.output)
    except OSError as exc:
        return fail(f"{args.output}: {exc.strerror or exc}", EX_CANTCREAT)
    print(f"wrote {args.output}")
    for note in notes:
        print(note)
    return 0
