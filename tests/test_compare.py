"""Result comparison as execution evaluation does it: multisets, order, floats, ties, classes."""

from __future__ import annotations

import sqlite3

import pytest
import sqlglot
from sqlglot import exp

from pipesql.sql.compare import (DUPLICATE_DIFF, EXTRA_ROWS, MISSING_ROWS, NULL_DIFF, REORDER, TYPE_DIFF, WRONG_VALUES,
                             TieProbe, compare, compare_results, cut_splits_tie, order_key_probe, orders_output,
                             tie_probe, tie_window)


@pytest.mark.parametrize("gold, pred, ordered", [
    ([(1, "a"), (2, "b")], [(2, "b"), (1, "a")], False),          # order ignored without ORDER BY
    ([(1,), (2,)], [(1,), (2,)], True),
    ([(1,)], [(1.0,)], False),                                     # 1 == 1.0
    ([(0.1 + 0.2,)], [(0.3,)], False),                             # float noise
    ([(1000000.0,)], [(1000000.4,)], False),                       # relative 1e-6
    ([(True,)], [(1,)], False),
    ([(None, "x")], [(None, "x")], False),
    ([], [], True),
    ([(b"abc",)], [("abc",)], False),                              # bytes read as text
])
def test_matches(gold, pred, ordered):
    verdict = compare(gold, pred, ordered=ordered)
    assert verdict.match, verdict
    assert verdict.label == "MATCH" and verdict.subclass is None


@pytest.mark.parametrize("gold, pred, ordered, subclass", [
    ([(1,), (2,)], [(2,), (1,)], True, REORDER),
    ([(1,), (2,)], [(1,), (2,), (3,)], False, EXTRA_ROWS),
    ([(1,), (2,), (3,)], [(1,), (3,)], False, MISSING_ROWS),
    ([(1,), (2,)], [(1,), (5,)], False, WRONG_VALUES),
    ([(1,), (1,), (2,)], [(1,), (2,), (2,)], False, DUPLICATE_DIFF),
    ([(1,), (2,)], [(1,), (2,), (2,)], False, DUPLICATE_DIFF),     # a duplicate is not an "extra" row
    ([(1,), (2,)], [("1",), ("2",)], False, TYPE_DIFF),
    ([(1, None), (2, 3)], [(1, 7), (2, 3)], False, NULL_DIFF),
    ([(1, "a")], [(1, "a"), (None, None)], False, NULL_DIFF),      # an extra all-NULL row
    ([(1, "a")], [(1,)], False, WRONG_VALUES),                     # column count differs
    ([(1.0,)], [(1.1,)], False, WRONG_VALUES),                     # beyond the tolerance
])
def test_mismatch_subclasses(gold, pred, ordered, subclass):
    verdict = compare(gold, pred, ordered=ordered)
    assert not verdict.match
    assert verdict.label == "MISMATCH"
    assert verdict.subclass == subclass, verdict
    assert verdict.detail


def test_column_names_are_not_compared():
    # compare takes rows only; compare_results likewise ignores the SELECT's aliases
    assert compare_results("SELECT a AS x FROM t", [(1,)], [(1,)]).match


def test_orders_output_reads_top_level_order_only():
    assert orders_output("SELECT a FROM t ORDER BY a")
    assert orders_output("SELECT a FROM t UNION SELECT b FROM u ORDER BY 1")
    assert not orders_output("SELECT a FROM (SELECT a FROM t ORDER BY a)")
    assert not orders_output("SELECT a FROM t WHERE a IN (SELECT b FROM u ORDER BY b LIMIT 1)")
    assert not orders_output("this is not sql (")


def test_tie_probe_appends_keys_that_are_not_projected():
    probe = tie_probe("SELECT name FROM people ORDER BY age DESC LIMIT 2 OFFSET 1")
    assert probe == TieProbe(probe.sql, extra_columns=1, key_columns=(-1,), offset=1, limit=2)
    assert "LIMIT" not in probe.sql.upper() and "OFFSET" not in probe.sql.upper()


def test_tie_probe_reuses_projected_keys_aliases_and_positions():
    assert tie_probe("SELECT name, count(*) AS n FROM t GROUP BY name ORDER BY n DESC LIMIT 1").key_columns == (1,)
    assert tie_probe("SELECT name, age FROM t ORDER BY 2 LIMIT 1").key_columns == (1,)
    assert tie_probe("SELECT name, count(*) FROM t GROUP BY name ORDER BY count(*) LIMIT 1").key_columns == (1,)


def test_distinct_tie_probe_counts_only_where_the_output_determines_the_key():
    probe = tie_probe("SELECT DISTINCT id, a FROM t ORDER BY b LIMIT 1")
    assert probe.distinct and probe.extra_columns == 1
    assert probe.fits([(1, "x", 5), (2, "x", 5)])            # each output row has one key
    assert not probe.fits([(1, "x", 5), (1, "x", 6)])        # the key would change DISTINCT's rows


def test_a_subquerys_probe_reads_one_row_past_its_cut_and_sees_a_split_tie():
    inner = sqlglot.parse_one("SELECT a FROM t WHERE b = (SELECT b FROM u GROUP BY b ORDER BY count(*) DESC LIMIT 1 OFFSET 1)")
    [select] = [s for s in inner.find_all(exp.Select) if s is not inner]
    probe = order_key_probe(select, past_cut=True)
    assert (probe.offset, probe.limit, probe.extra_columns) == (1, 1, 1) and "LIMIT 3" in probe.sql
    assert cut_splits_tie(probe, [("x", 5), ("y", 3), ("z", 3)])       # the cut falls inside the tie on 3
    assert not cut_splits_tie(probe, [("x", 5), ("y", 3), ("z", 2)])
    assert not cut_splits_tie(probe, [("x", 5), ("y", 3)])             # nothing past the cut


def test_tie_probe_declines_what_it_cannot_rewrite_safely():
    assert tie_probe("SELECT * FROM t ORDER BY 1 LIMIT 1") is None              # position unknown behind *
    assert tie_probe("SELECT a FROM t LIMIT 1") is None                        # no order: nothing to tie
    assert tie_probe("SELECT a FROM t ORDER BY a LIMIT (SELECT 1)") is None


@pytest.fixture
def people():
    conn = sqlite3.connect(":memory:")
    conn.executescript("""
        CREATE TABLE people (name TEXT, age INTEGER, city TEXT);
        INSERT INTO people VALUES ('ann', 40, 'x'), ('bob', 35, 'y'), ('cid', 35, 'x'), ('dan', 35, 'z'),
                                  ('eve', 20, 'y');
    """)
    yield conn
    conn.close()


def _rerun(conn):
    return lambda sql: conn.execute(sql).fetchall()


def test_limit_cutting_through_ties_accepts_any_tied_choice(people):
    gold_sql = "SELECT name FROM people ORDER BY age DESC LIMIT 2"
    gold = people.execute(gold_sql).fetchall()
    assert gold == [("ann",), ("bob",)]
    # cid and dan tie with bob on age 35: either may take the second place
    for pred in ([("ann",), ("cid",)], [("ann",), ("dan",)]):
        plain = compare(gold, pred, ordered=True)
        assert not plain.match
        verdict = compare_results(gold_sql, gold, pred, rerun=_rerun(people))
        assert verdict.match and verdict.tie_aware
    # but not a row outside the tie, nor the tied rows ahead of the winner
    assert compare_results(gold_sql, gold, [("ann",), ("eve",)], rerun=_rerun(people)).subclass == WRONG_VALUES
    assert not compare_results(gold_sql, gold, [("cid",), ("ann",)], rerun=_rerun(people)).match


def test_ties_allow_any_order_within_the_tie_only(people):
    gold_sql = "SELECT name, age FROM people ORDER BY age DESC"
    gold = people.execute(gold_sql).fetchall()
    tied_reordered = [gold[0], gold[3], gold[1], gold[2], gold[4]]
    assert compare(gold, tied_reordered, ordered=True).subclass == REORDER
    assert compare_results(gold_sql, gold, tied_reordered, rerun=_rerun(people)).match
    broken = [gold[1], gold[0], gold[2], gold[3], gold[4]]  # ann (40) must come first
    assert compare_results(gold_sql, gold, broken, rerun=_rerun(people)).subclass == REORDER


def test_offset_window_ties(people):
    gold_sql = "SELECT name FROM people ORDER BY age DESC LIMIT 1 OFFSET 2"
    gold = people.execute(gold_sql).fetchall()
    assert gold == [("cid",)]
    assert compare_results(gold_sql, gold, [("bob",)], rerun=_rerun(people)).match
    assert not compare_results(gold_sql, gold, [("ann",)], rerun=_rerun(people)).match


def test_ties_behind_a_star_projection(people):
    gold_sql = "SELECT * FROM people ORDER BY age DESC LIMIT 2"
    probe = tie_probe(gold_sql)
    assert probe.extra_columns == 1 and probe.key_columns == (-1,)
    gold = people.execute(gold_sql).fetchall()
    pred = [("ann", 40, "x"), ("dan", 35, "z")]
    assert compare_results(gold_sql, gold, pred, rerun=_rerun(people)).match


def test_tie_window_segments(people):
    probe = tie_probe("SELECT name FROM people ORDER BY age DESC LIMIT 3")
    rows = people.execute(probe.sql).fetchall()
    window = tie_window(probe, rows)
    assert [s.take for s in window.segments] == [1, 2]
    assert sorted(window.segments[1].candidates) == [("bob",), ("cid",), ("dan",)]
    assert window.has_ties and window.size == 3


def test_failed_probe_keeps_the_plain_verdict(people):
    def failing(sql):
        raise RuntimeError("database went away")

    gold = [("ann",), ("bob",)]
    verdict = compare_results("SELECT name FROM people ORDER BY age DESC LIMIT 2", gold, [("ann",), ("cid",)],
                              rerun=failing)
    assert verdict.subclass == WRONG_VALUES and not verdict.tie_aware


def test_unordered_gold_never_needs_the_probe():
    def must_not_run(sql):
        raise AssertionError("probe ran for an unordered gold")

    assert compare_results("SELECT a FROM t", [(1,), (2,)], [(2,), (1,)], rerun=must_not_run).match
