"""SQLite constructs BIRD uses, each handled with faithful GoogleSQL or refused with a named
reason (fixture: ``tests/fixtures/decompile/sqlite_constructs.sql``, whose exact output and
SQLite round trip ``test_decompile_rules.py`` checks with every other fixture): here ZetaSQL
must also analyze each pipe SQL against the same schema.
"""

from __future__ import annotations

import pytest
from decompile_fixtures import FIXTURES, build_database, read_cases

from pipesql.sql.schema import read_sqlite_schema

CASES = [case for case in read_cases(FIXTURES / "sqlite_constructs.sql") if not case.refused]


@pytest.fixture(scope="module")
def schema(tmp_path_factory):
    return read_sqlite_schema(build_database("sqlite_constructs", tmp_path_factory.mktemp("constructs")))


@pytest.fixture(scope="module")
def engine():
    from pipesql.sql import googlesql

    return googlesql.instance()


@pytest.mark.parametrize("case", CASES, ids=[case.id for case in CASES])
def test_construct_analyzes_in_googlesql(case, engine, schema):
    assert engine.analyze(case.expected, schema) is None
