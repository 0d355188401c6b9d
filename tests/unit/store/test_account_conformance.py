"""The account-directory conformance suite (pigeon.testing.account_conformance),
one test per check, on both backends of pigeon/auth/directory.py: the
embedded accounts.db and the PostgreSQL tables (a fresh database per check,
on the session's throw-away cluster, pigeon.testing.postgres)."""

from __future__ import annotations

import pytest

from pigeon.auth.accounts import AccountStore
from pigeon.testing.account_conformance import CHECKS


def _embedded(request, tmp_path):
    return lambda: AccountStore.in_data_dir(tmp_path / "data")


def _postgresql(request, tmp_path):
    from pigeon.store.pg.accounts import PgAccountStore

    cluster = request.getfixturevalue("postgres")
    dsn = cluster.dsn(cluster.new_database())
    PgAccountStore(dsn, migrate=True).open().close()
    return lambda: PgAccountStore(dsn)


BACKENDS = {"embedded": _embedded, "postgresql": _postgresql}


@pytest.mark.parametrize("check", sorted(CHECKS))
@pytest.mark.parametrize("backend", sorted(BACKENDS))
def test_account_directory(backend, check, request, tmp_path):
    CHECKS[check](BACKENDS[backend](request, tmp_path))


def test_a_database_without_the_directory_is_refused(postgres):
    from pigeon.auth.accounts import AccountError
    from pigeon.store.pg.accounts import PgAccountStore

    with pytest.raises(AccountError, match="pigeon db migrate"):
        PgAccountStore(postgres.dsn(postgres.new_database())).open()
