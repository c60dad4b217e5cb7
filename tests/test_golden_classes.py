"""The four places where a pipe query could lose SQLite's meaning or the comparison asked too
much (docs/validation.md, docs/decompiler.md), one fixture each: validated on SQLite, analyzed
by ZetaSQL, and proven on all 8 database variants."""

from __future__ import annotations

import sqlite3
from contextlib import closing
from pathlib import Path

import pytest

from pipesql.corpora.items import Item
from pipesql.validate.check import (DECOMPILE_FAIL, GOLD_NONDETERMINISTIC, MATCH, CheckOptions, DatabaseCache,
                                    check_item)
from pipesql.validate.plans import tie_broken

EIGHT_VARIANTS = CheckOptions(variants=8, googlesql=True)


@pytest.fixture(scope="module")
def database(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("classes") / "shop.sqlite"
    with closing(sqlite3.connect(path)) as conn:
        conn.executescript("""
            -- price is declared REAL and holds text too (Spider and BIRD have such columns)
            CREATE TABLE items (id INTEGER PRIMARY KEY, name TEXT, rank INTEGER, shelf TEXT, price REAL);
            INSERT INTO items VALUES (1, 'a', 2, 'x', 1.5), (2, 'b', 1, 'y', 'abc'), (3, 'c', 2, 'x', 12),
                                     (4, 'd', 1, 'y', ''), (5, 'e', 3, 'x', -2);
            CREATE INDEX items_rank ON items (rank);
            CREATE TABLE policies (policy_id INTEGER PRIMARY KEY, policy_type_code TEXT, customer_phone TEXT);
            INSERT INTO policies VALUES (1, 'Life', '111'), (2, 'Car', '222'), (3, 'Life', '333'),
                                        (4, 'Car', '444'), (5, 'House', '555');
            CREATE TABLE events (id INTEGER PRIMARY KEY, day DATE, kind TEXT);
            INSERT INTO events VALUES (1, '2014-03-01', 'a'), (2, '2016-07-09', 'b'), (3, NULL, 'a');
        """)
        conn.commit()
    return path


def _check(database: Path, sql: str) -> dict:
    return check_item(Item("fixture", "shop", "?", sql, database), EIGHT_VARIANTS, DatabaseCache())


def _proven(record: dict) -> None:
    """MATCH on the database and on each of the 8 variants, and GoogleSQL accepts the pipe SQL."""
    assert record["validation"]["class"] == MATCH, record["validation"]
    assert "variants_s" in record["validation"]["seconds"]  # the 8 variants ran and agreed
    assert record["googlesql"]["analyzed"], record["googlesql"]


# 1. A numeric column holding text, ordered against a text literal: SQLite orders every number
#    before any text, a STRING cast compares digits as text.

def test_numeric_column_against_a_text_literal_that_sorts_after_every_number_stays_exact(database):
    record = _check(database, "SELECT name FROM items WHERE price < 'abc'")
    _proven(record)
    assert "CAST(price AS STRING) < 'abc'" in record["pipe_sql"]


@pytest.mark.parametrize("literal", ["''", "'1st'", "' x'"])
def test_numeric_column_against_a_text_literal_among_the_digits_is_refused_by_name(database, literal):
    record = _check(database, f"SELECT name FROM items WHERE price > {literal}")
    assert record["validation"]["class"] == DECOMPILE_FAIL
    assert record["validation"]["detail"] == "unsupported:number_vs_text_literal_ordering"


# 2. Ties on an order key the query does not output.

def test_distinct_ordered_by_an_unselected_key_compares_tie_aware(database):
    record = _check(database, "SELECT DISTINCT items.id, shelf FROM items ORDER BY rank DESC")
    _proven(record)
    assert record["validation"]["tie_aware"]  # the round trip orders tied rows its own way


# 3. A subquery's ORDER BY ... LIMIT cutting through tied groups: the gold has two answers.

def test_gold_that_disagrees_with_itself_is_an_input_problem_with_both_results(database):
    sql = ("SELECT customer_phone FROM policies WHERE policy_type_code = (SELECT policy_type_code FROM policies "
           "GROUP BY policy_type_code ORDER BY count(*) DESC LIMIT 1)")
    record = _check(database, sql)
    validation = record["validation"]
    assert (validation["class"], validation["stage"]) == (GOLD_NONDETERMINISTIC, "gold")
    witness = validation["witness"]
    assert {tuple(r) for r in witness["gold"]} != {tuple(r) for r in witness["other"]}
    assert {frozenset(map(tuple, witness["gold"])), frozenset(map(tuple, witness["other"]))} == \
        {frozenset({("111",), ("333",)}), frozenset({("222",), ("444",)})}
    assert witness["round_trip_is_other"]  # the pipe query gave the gold's other legal answer
    assert record["googlesql"]["analyzed"]


def test_a_gold_with_one_answer_is_never_moved_out(database):
    # the tie-breaker plan gives the same rows: no witness, so a match stays a match
    sql = ("SELECT customer_phone FROM policies WHERE policy_type_code = (SELECT policy_type_code FROM policies "
           "GROUP BY policy_type_code ORDER BY count(*) ASC LIMIT 1)")
    _proven(_check(database, sql))


def test_tie_breakers_refine_only_cut_subqueries():
    sql = "SELECT a FROM t WHERE b = (SELECT b FROM t GROUP BY b ORDER BY count(*) DESC LIMIT 1) ORDER BY a LIMIT 2"
    assert tie_broken(sql, True) == ("SELECT a FROM t WHERE b = (SELECT b FROM t GROUP BY b ORDER BY COUNT(*) DESC, "
                                     "1 DESC LIMIT 1) ORDER BY a LIMIT 2")
    assert tie_broken("SELECT a FROM t ORDER BY a LIMIT 1", True) is None


# 4. Refused constructs: translated where GoogleSQL keeps SQLite's result, refused by name where not.

def test_case_with_integer_and_float_branches_is_translated(database):
    _proven(_check(database, "SELECT name, CASE WHEN rank > 1 THEN 1 ELSE 2.5 END FROM items"))


def test_date_column_equal_to_a_number_is_translated(database):
    _proven(_check(database, "SELECT kind FROM events WHERE day = 2016"))


@pytest.mark.parametrize(("sql", "reason"), [
    ("SELECT kind FROM events WHERE day > 2015", "unsupported:date_column_vs_number"),
    ("SELECT kind FROM events WHERE day BETWEEN 2000 AND '2015'", "unsupported:date_column_vs_number"),
    ("SELECT CASE WHEN rank > 1 THEN name ELSE 0 END FROM items", "unsupported:mixed_type_branches"),
    ("SELECT IIF(rank > 1, shelf, rank) FROM items", "unsupported:mixed_type_branches"),
])
def test_constructs_without_an_exact_googlesql_form_are_refused_by_name(database, sql, reason):
    record = _check(database, sql)
    assert (record["validation"]["class"], record["validation"]["detail"]) == (DECOMPILE_FAIL, reason)
