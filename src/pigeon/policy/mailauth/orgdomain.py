"""The organizational domain (RFC 7489 §3.2) from the Public Suffix List.

Contract:
  * `OrgDomains(path)` reads the Public Suffix List from `path` (the file
    publicsuffix.org publishes; `[mail_auth] public_suffix_list`), or the
    list shipped with the `publicsuffixlist` package when `path` is None.
    So the list is updated by replacing a file and reloading, without a
    release of pigeon. Both the ICANN and the private sections count (a
    private suffix such as a hosting provider's is an organisation
    boundary too).
  * `org(domain)` is RFC 7489 §3.2: the public suffix plus one label; a
    domain that is itself a public suffix, or that the list does not know
    (its last label is then taken as the suffix, the list's "*" rule), is
    handled the same way. Lowercase in and out, no final dot.
  * The list is read when the object is made: the pipeline builder makes
    one at start-up and at every reload (a few hundredths of a second).
"""

from __future__ import annotations

from pathlib import Path

from publicsuffixlist import PublicSuffixList

__all__ = ["OrgDomains"]


class OrgDomains:
    """See the module contract."""

    def __init__(self, path: Path | None = None) -> None:
        if path is None:
            self._psl = PublicSuffixList()
        else:
            with open(path, "rb") as source:
                self._psl = PublicSuffixList(source)

    def org(self, domain: str) -> str:
        name = domain.lower().rstrip(".")
        found = self._psl.privatesuffix(name)
        return str(found) if found else name
