"""decompile never raises, whatever it is given, and is deterministic."""

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from pipesql.decompile import decompile, split_operators

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
    parts.append(draw(st.sampled_from(["FROM t", "FROM t JOIN u ON t.a = u.a", "FROM t, u", "FROM t AS x", ""])))
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
