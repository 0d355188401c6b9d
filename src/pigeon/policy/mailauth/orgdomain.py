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
  * Answers are remembered per object (at most 4096 domains, then all
    are forgotten): a domain's mail asks for the same ones every time.
  * The list is read when the object is made: the pipeline builder makes
    one at start-up and at every reload (a few hundredths of a second).
"""

from __future__ import annotations

from pathlib import Path

from publicsuffixlist import PublicSuffixList

__all__ = ["OrgDomains"]

_KEEP = 4096  # answers remembered (module contract)


class OrgDomains:
    """See the module contract."""

    def __init__(self, path: Path | None = None) -> None:
        if path is None:
            self._psl = PublicSuffixList()
        else:
            with open(path, "rb") as source:
                self._psl = PublicSuffixList(source)
        self._known: dict[str, str] = {}  # answers given, by domain (the list does not change)

    def org(self, domain: str) -> str:
        name = domain.lower().rstrip(".")
        known = self._known.get(name)
        if known is None:
            found = self._psl.privatesuffix(name)
            known = str(found) if found else name
            if len(self._known) >= _KEEP:  # bounded: forget all, the list is cheap to ask
                self._known.clear()
            self._known[name] = known
        return known
