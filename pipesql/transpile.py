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


_STEP_AFTER_LIMIT = {"WHERE", "AGGREGATE", "ORDER", "EXTEND", "LIMIT", "JOIN", "CROSS", "INNER", "LEFT",
                     "RIGHT", "FULL", "DISTINCT", "UNION", "INTERSECT", "EXCEPT", "PIVOT", "UNPIVOT"}


def _repair_pipe_text(pipe_sql: str) -> str:
    """Token-level repairs done before parsing (sqlglot's compiled parser cannot be subclassed).

    ``|> SELECT DISTINCT a`` → ``|> SELECT a |> DISTINCT``; ``|> LIMIT 3 |> WHERE ...`` →
    ``|> LIMIT 3 |> AS __limit1 |> WHERE ...``.
    """
    tokens = Tokenizer().tokenize(pipe_sql)
    inserts: list[tuple[int, str]] = []  # (char position, text)
    deletes: list[tuple[int, int]] = []
    depth = 0
    open_distinct: list[int] = []  # depths at which a DISTINCT awaits the end of its SELECT
    pipe_positions = []
    limit_counter = 0
    for i, token in enumerate(tokens):
        kind = token.token_type
        if kind == TokenType.L_PAREN:
            depth += 1
        elif kind == TokenType.R_PAREN:
            if open_distinct and open_distinct[-1] == depth:
                open_distinct.pop()
                inserts.append((token.start, " |> DISTINCT "))
            depth -= 1
        elif kind == TokenType.PIPE_GT:
            if open_distinct and open_distinct[-1] == depth:
                open_distinct.pop()
                inserts.append((token.start, "|> DISTINCT "))
            nxt = tokens[i + 1] if i + 1 < len(tokens) else None
            after = tokens[i + 2] if i + 2 < len(tokens) else None
            if nxt is not None and nxt.text.upper() == "SELECT" and after is not None and after.text.upper() == "DISTINCT":
                deletes.append((after.start, after.end + 1))
                open_distinct.append(depth)
            if nxt is not None and nxt.text.upper() in _STEP_AFTER_LIMIT and pipe_positions:
                last_depth, last_op = pipe_positions[-1]
                if last_depth == depth and last_op == "LIMIT":
                    limit_counter += 1
                    inserts.append((token.start, f"|> AS __limit{limit_counter} "))
            pipe_positions = [p for p in pipe_positions if p[0] < depth]
            if nxt is not None:
                pipe_positions.append((depth, nxt.text.upper()))
    if open_distinct:
        inserts.append((len(pipe_sql), " |> DISTINCT"))
    if not inserts and not deletes:
        return pipe_sql
    edits = [(pos, pos, text) for pos, text in inserts] + [(a, b, "") for a, b in deletes]
    out, cursor = [], 0
    for start, end, text in sorted(edits, key=lambda e: (e[0], e[1])):
        out.append(pipe_sql[cursor:start])
        out.append(text)
        cursor = max(cursor, end)
    out.append(pipe_sql[cursor:])
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


def pipe_to_sqlite(pipe_sql: str) -> str:
    """Translate pipe SQL to one SQLite statement. Raises :class:`TranspileError`."""
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
        return tree.sql(dialect="sqlite")
    except SqlglotError as error:
        raise TranspileError(str(error).splitlines()[0]) from None
    except Exception as error:
        raise TranspileError(f"{type(error).__name__}: {error}") from None
