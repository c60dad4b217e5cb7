"""Every decompiler fixture's pipe SQL analyzes as GoogleSQL (ZetaSQL) against its schema, so the
training data is GoogleSQL and not only something sqlglot reads back; ``# analyze: false`` marks
a case whose output is knowingly left as it was (see :mod:`decompile_fixtures`)."""

from __future__ import annotations

import pytest
from decompile_fixtures import all_cases, build_database

from pipesql.sql.schema import read_sqlite_schema

CASES = [case for case in all_cases() if case.analyze]


@pytest.fixture(scope="module")
def schemas(tmp_path_factory):
    """Schema name → its database's schema, each built on first use."""
    built = {}

    def get(name: str):
        if name not in built:
            built[name] = read_sqlite_schema(build_database(name, tmp_path_factory.mktemp(name)))
        return built[name]

    return get


@pytest.fixture(scope="module")
def engine():
    from pipesql.sql import googlesql

    return googlesql.instance()


@pytest.mark.parametrize("case", CASES, ids=[case.id for case in CASES])
def test_fixture_analyzes_in_googlesql(case, engine, schemas):
    assert engine.analyze(case.expected, schemas(case.schema)) is None
