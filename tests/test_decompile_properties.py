"""decompile never raises, whatever it is given, and is deterministic."""

import pytest
from decompile_fixtures import all_cases
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlglot import exp

from pipesql.decompile import decompile, prepare_schema, split_operators
from pipesql.decompile.emit import render
from pipesql.decompile.errors import Unsupported
from pipesql.decompile.names import identifier
from pipesql.decompile.prepare import _nodes, double_quoted_strings, normalized, parse, plain_sources, qualified, simple_selects
from pipesql.decompile.scope import Catalog, Env
from pipesql.decompile.semantics import RULES, make_typer
from pipesql.decompile.tree import googlesql
from pipesql.sql.types import FLOAT, INT, STRING

SCHEMA = {"t": {"a": "INT", "b": "TEXT", "c": "REAL"}, "u": {"a": "INT", "d": "TEXT"}}

columns = st.sampled_from(["a", "b", "c", "t.a", "u.d", "x", '"b"', "'s'", "1", "2.5", "NULL", "*"])
ops = st.sampled_from(["=", "<", ">", "<>", "/", "+", "||", " LIKE ", " IN ", " AND ", " OR "])
aggs = st.sampled_from(["", "COUNT", "SUM", "AVG", "MAX", "MIN"])


@st.composite
def expressions(draw, depth=0):
    col = draw(columns)
    agg = draw(aggs)
    base = f"{agg}({col})" if agg and col != "*" else (col if col != "*" else "a")
    if depth < 2 and draw(st.booleans()):
        return f"{base}{draw(ops)}{draw(expressions(depth + 1))}"
    if depth < 2 and draw(st.integers(0, 5)) == 0:
        return f"(SELECT {draw(expressions(depth + 1))} FROM u)"
    return base


@st.composite
def queries(draw):
    parts = ["SELECT"]
    if draw(st.booleans()):
        parts.append("DISTINCT")
    parts.append(", ".join(draw(st.lists(expressions(), min_size=1, max_size=3))))
    parts.append(draw(st.sampled_from(["FROM t", "FROM t JOIN u ON t.a = u.a", "FROM t, u", "FROM t AS x",
                                       "FROM t AS x JOIN u AS y ON x.a = y.a", "FROM t LEFT JOIN u ON b = d", ""])))
    if draw(st.booleans()):
        parts.append("WHERE " + draw(expressions()))
    if draw(st.booleans()):
        parts.append("GROUP BY " + draw(columns))
        if draw(st.booleans()):
            parts.append("HAVING " + draw(expressions()))
    if draw(st.booleans()):
        parts.append("ORDER BY " + draw(expressions()) + draw(st.sampled_from(["", " DESC"])))
    if draw(st.booleans()):
        parts.append(f"LIMIT {draw(st.integers(0, 5))}")
    sql = " ".join(parts)
    if draw(st.integers(0, 4)) == 0:
        sql += draw(st.sampled_from([" UNION ", " EXCEPT ", " INTERSECT ALL "])) + "SELECT a FROM u"
    return sql


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(queries())
def test_generated_queries_never_raise(sql):
    first = decompile(sql, SCHEMA)
    assert (first.pipe_sql is None) != (first.reason is None)
    if first.pipe_sql is not None:
        # a FROM-less SELECT is the one query that is a single SELECT operator
        assert first.pipe_sql.startswith(("FROM", "WITH")) or (
            len(first.operators) == 1 and first.pipe_sql.startswith("SELECT "))
        assert "\n".join(first.operators) == first.pipe_sql
        assert all(line.startswith("|> ") for line in first.pipe_sql.splitlines()[1:] if not line.startswith("FROM"))
    assert decompile(sql, SCHEMA) == first


@settings(max_examples=100, deadline=None)
@given(st.text(max_size=80))
def test_arbitrary_text_never_raises(text):
    result = decompile(text, SCHEMA)
    assert result.reason is not None or result.pipe_sql is not None
    split_operators(text)


def _qualified_both_ways(sql: str) -> tuple[str, str] | None:
    """The query qualified by the decompiler's simple path and by sqlglot's qualify_columns,
    as ``repr`` (every argument, quoting included), or None when the simple path declines."""
    from sqlglot.optimizer.qualify_columns import qualify_columns

    schema = prepare_schema(SCHEMA)
    tree = parse(sql, schema.reader)
    nodes = _nodes(tree)
    double_quoted_strings(nodes, schema.column_names)
    tree = normalized(tree, nodes, schema.dialect)
    plain = plain_sources(nodes)
    if not plain or simple_selects(tree, nodes, schema.mapping, schema.dialect) is None:
        return None
    library = qualify_columns(tree.copy(), schema.mapping, expand_alias_refs=True, expand_stars=True)
    return repr(qualified(tree, nodes, schema.mapping, schema.dialect, plain=plain)), repr(library)


@pytest.mark.parametrize("sql", [
    "SELECT b FROM t ORDER BY b",  # an ORDER BY output name stays unqualified
    "SELECT b, COUNT(*) FROM t GROUP BY b ORDER BY COUNT(*) DESC",  # ... and an output becomes its alias
    "SELECT t.b FROM t GROUP BY t.b ORDER BY MAX(b)",
    "SELECT x.b, d FROM t AS x JOIN u AS y ON x.a = y.a WHERE c > 1 GROUP BY b HAVING COUNT(DISTINCT d) > 1",
    'SELECT "B", COUNT(b) FROM t AS "T" WHERE "T".c > 0',
    "SELECT b FROM t WHERE c > 1 UNION SELECT d FROM u EXCEPT SELECT b FROM t AS x WHERE x.a = 2",
    'SELECT b FROM t WHERE a IN (SELECT a FROM u ORDER BY a) AND c > (SELECT AVG(c) FROM t) AND b <> "x"',
    "SELECT b, COUNT(*) FROM t WHERE EXISTS (SELECT d FROM u GROUP BY d ORDER BY COUNT(*)) GROUP BY b",
])
def test_simple_qualification_is_qualify_columns(sql):
    simple, library = _qualified_both_ways(sql)
    assert simple == library


@pytest.mark.parametrize("sql", [
    "SELECT a FROM t JOIN u ON t.a = u.a",  # ambiguous
    "SELECT b AS n FROM t ORDER BY n",  # an alias reference
    "SELECT b FROM t GROUP BY 1",  # positional
    "SELECT * FROM t",  # a star to expand
    "SELECT b FROM t WHERE a IN (SELECT a FROM u WHERE d = b)",  # a correlated subquery
    "SELECT e FROM t",  # unknown column: sqlglot's error and hint
    "SELECT b FROM t UNION SELECT d FROM u ORDER BY b",  # an ORDER BY of the set operation
])
def test_simple_qualification_declines(sql):
    assert _qualified_both_ways(sql) is None


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(queries())
def test_generated_simple_qualification_is_qualify_columns(sql):
    try:
        both = _qualified_both_ways(sql)
    except Unsupported:  # what does not parse has no qualification to compare
        return
    if both is not None:
        assert both[0] == both[1]


def _rules_keep_their_promises(sql: str) -> None:
    """Each semantics rule returns, unchanged, every node whose type its ``@rewrites`` does not
    name (apply_rules calls a rule only on the types it names), and makes no column (render
    finishes the columns it found before the rules ran): both must hold for the output to be
    what calling every rule on every node, then finishing every column, gives."""
    try:
        tree = parse(sql, "sqlite")
    except Unsupported:
        return
    for column_type in (INT, FLOAT, STRING, None):
        typer = make_typer(lambda column, kind=column_type: kind, lambda column: True)
        for node in tree.walk():
            for rule in RULES:
                alone = node.copy()
                before, columns = alone.sql(), list(alone.find_all(exp.Column))
                if not isinstance(node, rule.kinds):
                    assert rule(alone, typer) is alone and alone.sql() == before, (rule.__name__, before)
                    continue
                try:
                    rewritten = rule(alone, typer)
                except Unsupported:
                    continue
                made = [c for c in rewritten.find_all(exp.Column) if not any(c is known for known in columns)]
                assert not made, (rule.__name__, before, rewritten.sql())


@pytest.mark.parametrize("case", all_cases(), ids=lambda case: case.id)
def test_rules_keep_their_promises_on_fixtures(case):
    _rules_keep_their_promises(case.sql)


@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(queries())
def test_rules_keep_their_promises_on_generated_queries(sql):
    _rules_keep_their_promises(sql)


names = st.sampled_from(["a", "Name", "order", "select", "group", "struct", "_col_0", "1x", "my col", "a`b", "x.y", "é"]) | \
    st.text(alphabet="aZ_1 `.\n'\"é", min_size=1, max_size=6)


@settings(max_examples=200, deadline=None)
@given(names, st.none() | names)
def test_a_plain_column_is_written_as_the_generator_writes_it(name, table):
    """render writes a plain column from its identifiers' texts, without the generator."""
    column = exp.Column(this=identifier(name), table=identifier(table) if table else None)
    assert render(column, Env({}), Catalog()) == googlesql(column.copy())
