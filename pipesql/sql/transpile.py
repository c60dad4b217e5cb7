"""Pipe SQL (GoogleSQL) → SQLite, through sqlglot, with the repairs sqlglot 30 needs.

Everything that executes pipe SQL on a benchmark database goes through :func:`pipe_to_sqlite`:
validation of decompiled pairs, training-data generation and the evaluation of model output,
so it must take any pipe SQL, not only the decompiler's.

Repairs (each measured wrong without it, see shared/notes/engines.md):

- ``|> SELECT DISTINCT`` keeps its DISTINCT (sqlglot's pipe parser drops it).
- ``|> LIMIT`` ends a step: an operator after it runs on the limited rows, not before
  (``|> AS __limitN`` is inserted, so a table alias used after it no longer resolves:
  an error instead of a silently wrong result).
- A set-operation operand that is a pipe query (a ``WITH`` inside UNION, a syntax error in
  SQLite) is wrapped as ``SELECT * FROM (...)``; CTEs are not hoisted, which would cut the
  correlation of a pipe subquery with its outer query.
- ``ANY_VALUE(x HAVING MAX y)`` becomes SQLite's bare column ``x`` when ``MAX(y)`` is the
  only MIN/MAX of its SELECT (SQLite then takes ``x`` from that row), else ``MAX(x)``;
  a plain ``ANY_VALUE(x)`` in a grouped SELECT becomes the bare column too, so the row
  SQLite picks is the one the original SQLite query would have picked.
- Date and time functions get SQLite's spelling, over the ISO text SQLite stores:
  ``SAFE_CAST(x AS DATETIME)`` → ``DATETIME(x)`` (inside ``FORMAT_*`` and ``*_DIFF`` just ``x``,
  which SQLite's date functions parse as they are), ``FORMAT_DATETIME(f, d)`` →
  ``STRFTIME(f, d)``, ``DATETIME_DIFF``/``TIMESTAMP_DIFF(a, b, SECOND|MINUTE|HOUR)`` → the
  difference of ``STRFTIME('%s', ...)`` seconds (``DAY``: of ``JULIANDAY(DATE(...))``),
  ``DATETIME_ADD/SUB(d, INTERVAL n unit)`` → ``DATETIME(d, '+n unit')``,
  ``DATETIME_TRUNC(d, MONTH)`` → ``DATETIME(d, 'start of month')``, ``EXTRACT(YEAR FROM d)``
  → ``CAST(STRFTIME('%Y', d) AS INTEGER)``, ``CURRENT_DATETIME()`` → ``DATETIME('now')``
  (sqlglot leaves these as functions SQLite does not have, or casts to a NUMERIC type).
- ``CAST(TRUNC(x) AS INT64)`` → ``CAST(x AS INTEGER)`` (SQLite's cast already truncates).
"""

from __future__ import annotations

import sqlglot
from sqlglot import exp
from sqlglot.dialects.bigquery import BigQuery
from sqlglot.errors import SqlglotError
from sqlglot.tokens import TokenType

Tokenizer = BigQuery.Tokenizer


class TranspileError(ValueError):
    """The pipe SQL could not be parsed or converted."""


# Longest pipe query translated, and most `|>` operators in it. Translation time grows faster
# than linearly (40,000 characters of `|> LIMIT 1` took 4.5 s, 100 `|> SELECT a` steps 1.1 s
# and 900 of them 64 s); the longest Spider gold query has 577 characters. The bounds keep
# every translation under a second (tests/test_sandbox.py times the worst cases).
MAX_PIPE_SQL_CHARS = 10_000
MAX_PIPE_OPERATORS = 64

_STEP_AFTER_LIMIT = {"WHERE", "AGGREGATE", "ORDER", "EXTEND", "LIMIT", "JOIN", "CROSS", "INNER", "LEFT",
                     "RIGHT", "FULL", "DISTINCT", "UNION", "INTERSECT", "EXCEPT", "PIVOT", "UNPIVOT"}


def _repair_pipe_text(pipe_sql: str) -> str:
    """Token-level repairs done before parsing (sqlglot's compiled parser cannot be subclassed):
    :func:`_distinct_edits` and :func:`_limit_alias_edits`, applied together."""
    tokens = Tokenizer().tokenize(pipe_sql)
    edits = [*_distinct_edits(tokens, len(pipe_sql)), *_limit_alias_edits(tokens)]
    return _apply_edits(pipe_sql, edits) if edits else pipe_sql


# An edit replaces text[start:end] with its text (an insert has start == end).
Edit = tuple[int, int, str]


def _distinct_edits(tokens: list, length: int) -> list[Edit]:
    """``|> SELECT DISTINCT a`` → ``|> SELECT a |> DISTINCT``: sqlglot's pipe parser has no
    SELECT DISTINCT. The DISTINCT moves to where its SELECT ends: the next ``|>`` or closing
    parenthesis at its depth, or the end of the text."""
    edits: list[Edit] = []
    depth = 0
    open_distinct: list[int] = []  # depths at which a DISTINCT awaits the end of its SELECT
    for i, token in enumerate(tokens):
        kind = token.token_type
        if kind == TokenType.L_PAREN:
            depth += 1
        elif kind == TokenType.R_PAREN:
            if open_distinct and open_distinct[-1] == depth:
                open_distinct.pop()
                edits.append((token.start, token.start, " |> DISTINCT "))
            depth -= 1
        elif kind == TokenType.PIPE_GT:
            if open_distinct and open_distinct[-1] == depth:
                open_distinct.pop()
                edits.append((token.start, token.start, "|> DISTINCT "))
            if _text_at(tokens, i + 1) == "SELECT" and _text_at(tokens, i + 2) == "DISTINCT":
                distinct = tokens[i + 2]
                edits.append((distinct.start, distinct.end + 1, ""))
                open_distinct.append(depth)
    if open_distinct:
        edits.append((length, length, " |> DISTINCT"))
    return edits


def _limit_alias_edits(tokens: list) -> list[Edit]:
    """``|> LIMIT 3 |> WHERE ...`` → ``|> LIMIT 3 |> AS __limit1 |> WHERE ...``: a step after a
    LIMIT at the same depth reads the limited rows as a named table."""
    edits: list[Edit] = []
    depth = 0
    pipe_positions: list[tuple[int, str]] = []  # (depth, operator) of the operators open so far
    for i, token in enumerate(tokens):
        kind = token.token_type
        if kind == TokenType.L_PAREN:
            depth += 1
        elif kind == TokenType.R_PAREN:
            depth -= 1
        elif kind == TokenType.PIPE_GT:
            operator = _text_at(tokens, i + 1)
            if operator in _STEP_AFTER_LIMIT and pipe_positions and pipe_positions[-1] == (depth, "LIMIT"):
                edits.append((token.start, token.start, f"|> AS __limit{len(edits) + 1} "))
            pipe_positions = [p for p in pipe_positions if p[0] < depth]
            if operator is not None:
                pipe_positions.append((depth, operator))
    return edits


def _text_at(tokens: list, index: int) -> str | None:
    """The upper-cased text of ``tokens[index]``; None past the end."""
    return tokens[index].text.upper() if index < len(tokens) else None


def _apply_edits(text: str, edits: list[Edit]) -> str:
    """``text`` with every edit made, in position order (at one position, in the list's order)."""
    out, cursor = [], 0
    for start, end, replacement in sorted(edits, key=lambda e: (e[0], e[1])):
        out.append(text[cursor:start])
        out.append(replacement)
        cursor = max(cursor, end)
    out.append(text[cursor:])
    return "".join(out)


def _wrap_set_operands(tree: exp.Expr) -> exp.Expr:
    for node in list(tree.find_all(exp.SetOperation)):
        for key in ("this", "expression"):
            operand = node.args.get(key)
            if isinstance(operand, exp.Select) and operand.args.get("with_"):
                wrapped = exp.select("*").from_(exp.Subquery(this=operand.copy(), alias=exp.TableAlias(this=exp.to_identifier(f"_op_{key}"))))
                node.set(key, wrapped)
    return tree


def _having_max_to_bare_column(tree: exp.Expr) -> exp.Expr:
    for having in list(tree.find_all(exp.HavingMax)):
        call = having.parent
        if not isinstance(call, exp.AnyValue):
            continue
        select = call.find_ancestor(exp.Select)
        extremes = {
            e.sql() for e in (select.find_all(exp.Max, exp.Min) if select else [])
            if e.find_ancestor(exp.Select) is select and not isinstance(e.parent, exp.Window)
        }
        wanted = (exp.Max if having.args.get("max") else exp.Min)(this=having.expression.copy()).sql()
        if extremes == {wanted}:
            call.replace(having.this.copy())
        else:
            call.replace(exp.Max(this=having.this.copy()))
    return tree


def _any_value_to_bare_column(tree: exp.Expr) -> exp.Expr:
    for call in list(tree.find_all(exp.AnyValue)):
        if isinstance(call.this, exp.HavingMax):
            continue
        select = call.find_ancestor(exp.Select)
        if select is None:
            continue
        others = [
            a for a in select.find_all(exp.AggFunc)
            if a is not call and not isinstance(a, exp.AnyValue) and a.find_ancestor(exp.Select) is select
        ]
        if select.args.get("group") or others:
            call.replace(call.this.copy())
    return tree


_DATE_TYPES = (exp.DType.DATE, exp.DType.DATETIME, exp.DType.TIMESTAMP, exp.DType.TIMESTAMPTZ,
               exp.DType.TIMESTAMPLTZ, exp.DType.TIMESTAMPNTZ)
_TS_WRAPPERS = (exp.TsOrDsToDatetime, exp.TsOrDsToTimestamp, exp.TsOrDsToDate)
_UNIT_SECONDS = {"SECOND": 1, "MINUTE": 60, "HOUR": 3600}
_MODIFIER_UNITS = {"SECOND", "MINUTE", "HOUR", "DAY", "MONTH", "YEAR"}


def _fn(name: str, *args: exp.Expr) -> exp.Anonymous:
    return exp.Anonymous(this=name, expressions=list(args))


def _unit(node: exp.Expr) -> str:
    unit = node.args.get("unit")
    return (unit.name if unit is not None else "DAY").upper().strip("'")


def _date_cast(node: exp.Expr) -> bool:
    return isinstance(node, (exp.Cast, exp.TryCast)) and node.to.is_type(*_DATE_TYPES)


def _time_text(node: exp.Expr) -> exp.Expr:
    """The SQLite text a GoogleSQL date/time value stands for: casts of text and sqlglot's
    conversion wrappers are dropped (SQLite's date functions parse ISO text as it is)."""
    while True:
        if isinstance(node, _TS_WRAPPERS) or (_date_cast(node) and not node.to.is_type(exp.DType.DATE)):
            node = node.this
        elif isinstance(node, exp.Paren) and isinstance(node.this, (*_TS_WRAPPERS, exp.Cast, exp.TryCast)):
            node = node.this
        else:
            return node


def _seconds(node: exp.Expr) -> exp.Expr:
    text = _time_text(node)
    return exp.Cast(this=_fn("STRFTIME", exp.Literal.string("%s"), text.copy()), to=exp.DataType.build("INTEGER"))


def _date_repair(node: exp.Expr) -> exp.Expr:
    if isinstance(node, exp.TimeToStr):
        node.set("this", _time_text(node.this).copy())
        return node
    if isinstance(node, (exp.DatetimeDiff, exp.TimestampDiff)):
        unit = _unit(node)
        a, b = node.this, node.expression
        if unit == "DAY":
            day = lambda x: _fn("JULIANDAY", _fn("DATE", _time_text(x).copy()))  # noqa: E731
            return exp.Cast(this=exp.Paren(this=exp.Sub(this=day(a), expression=day(b))),
                            to=exp.DataType.build("INTEGER"))
        if unit in _UNIT_SECONDS:
            size = _UNIT_SECONDS[unit]
            if isinstance(node, exp.DatetimeDiff) and size > 1:  # boundaries crossed
                diff = exp.Sub(this=exp.IntDiv(this=_seconds(a), expression=exp.Literal.number(size)),
                               expression=exp.IntDiv(this=_seconds(b), expression=exp.Literal.number(size)))
            else:
                diff = exp.Sub(this=_seconds(a), expression=_seconds(b))
                if size > 1:
                    diff = exp.IntDiv(this=exp.Paren(this=diff), expression=exp.Literal.number(size))
            return exp.Paren(this=diff)
        return node
    if isinstance(node, (exp.DatetimeAdd, exp.DatetimeSub, exp.TimestampAdd, exp.TimestampSub)):
        unit, amount = _unit(node), node.expression
        if unit in _MODIFIER_UNITS and isinstance(amount, exp.Literal):
            n = float(amount.this) if "." in amount.this else int(amount.this)
            if isinstance(node, (exp.DatetimeSub, exp.TimestampSub)):
                n = -n
            return _fn("DATETIME", _time_text(node.this).copy(), exp.Literal.string(f"{n:+} {unit.lower()}"))
        return node
    if isinstance(node, (exp.DatetimeTrunc, exp.TimestampTrunc)) and _unit(node) in ("DAY", "MONTH", "YEAR"):
        return _fn("DATETIME", _time_text(node.this).copy(), exp.Literal.string(f"start of {_unit(node).lower()}"))
    if isinstance(node, exp.Extract):
        part = node.this.name.upper()
        codes = {"YEAR": "%Y", "MONTH": "%m", "DAY": "%d", "HOUR": "%H", "MINUTE": "%M", "SECOND": "%S",
                 "DAYOFYEAR": "%j"}
        if part in codes:
            text = _fn("STRFTIME", exp.Literal.string(codes[part]), _time_text(node.expression).copy())
            return exp.Cast(this=text, to=exp.DataType.build("INTEGER"))
        if part == "DAYOFWEEK":  # GoogleSQL: 1 = Sunday; SQLite %w: 0 = Sunday
            text = _fn("STRFTIME", exp.Literal.string("%w"), _time_text(node.expression).copy())
            return exp.Add(this=exp.Cast(this=text, to=exp.DataType.build("INTEGER")), expression=exp.Literal.number(1))
        return node
    if isinstance(node, exp.CurrentDatetime):
        return _fn("DATETIME", exp.Literal.string("now"))
    if _date_cast(node) and node.to.is_type(exp.DType.TIMESTAMPTZ, exp.DType.TIMESTAMPLTZ):
        return _fn("DATETIME", node.this.copy())  # sqlglot: CAST(x AS TIMESTAMPTZ), numeric in SQLite
    if isinstance(node, (exp.Cast, exp.TryCast)) and node.to.is_type(*exp.DataType.INTEGER_TYPES):
        inner = node.this
        if isinstance(inner, exp.Trunc) and inner.args.get("decimals") is None:
            node.set("this", inner.this)  # SQLite's CAST to INTEGER truncates toward zero itself
        elif isinstance(inner, exp.Anonymous) and inner.name.upper() == "TRUNC" and len(inner.expressions) == 1:
            node.set("this", inner.expressions[0])
        return node
    return node


def _date_functions(tree: exp.Expr) -> exp.Expr:
    """Children before parents: an outer repair sees its arguments already in SQLite terms."""
    for node in reversed(list(tree.walk(bfs=False))):
        new = _date_repair(node)
        if new is not node:
            node.replace(new)
    return tree


def pipe_to_sqlite(pipe_sql: str) -> str:
    """Translate pipe SQL to one SQLite statement. Raises :class:`TranspileError`."""
    if len(pipe_sql) > MAX_PIPE_SQL_CHARS:
        raise TranspileError(f"query longer than {MAX_PIPE_SQL_CHARS} characters")
    if pipe_sql.count("|>") > MAX_PIPE_OPERATORS:
        raise TranspileError(f"query has more than {MAX_PIPE_OPERATORS} pipe operators")
    try:
        trees = [t for t in sqlglot.parse(_repair_pipe_text(pipe_sql), read="bigquery") if t is not None]
    except SqlglotError as error:
        raise TranspileError(str(error).splitlines()[0] if str(error) else "parse error") from None
    except Exception as error:  # sqlglot can fail with plain Python errors on odd input
        raise TranspileError(f"{type(error).__name__}: {error}") from None
    if len(trees) != 1:
        raise TranspileError("expected exactly one statement")
    tree = trees[0]
    try:
        tree = _wrap_set_operands(tree)
        tree = _having_max_to_bare_column(tree)
        tree = _any_value_to_bare_column(tree)
        tree = _date_functions(tree)
        return tree.sql(dialect="sqlite")
    except SqlglotError as error:
        raise TranspileError(str(error).splitlines()[0]) from None
    except Exception as error:
        raise TranspileError(f"{type(error).__name__}: {error}") from None
