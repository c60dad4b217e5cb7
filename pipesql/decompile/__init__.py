"""Standard SQL (SQLite by default) + schema → GoogleSQL pipe syntax.

>>> r = decompile("SELECT name FROM singer WHERE age > 20 ORDER BY age", {"singer": {"name": "TEXT", "age": "INT"}})
>>> print(r.pipe_sql)
FROM singer
|> WHERE age > 20
|> ORDER BY age
|> SELECT name

The pipeline: :mod:`.prepare` (parse, SQLite quirks, qualify) → :mod:`.emit` (operators, with
:mod:`.aggregate` for AGGREGATE and :mod:`.semantics` for SQLite-vs-GoogleSQL meaning).
Anything it cannot express faithfully comes back as a ``reason``; it never raises.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from pipesql.decompile.emit import emit_query
from pipesql.decompile.errors import Unsupported
from pipesql.decompile.prepare import PreparedSchema, prepare, prepare_schema

__all__ = ["DecompileResult", "PreparedSchema", "decompile", "prepare_schema", "split_operators"]


@dataclass(frozen=True)
class DecompileResult:
    pipe_sql: str | None
    reason: str | None  # None on success, else e.g. "unsupported:dml", "parse_error: ..."
    operators: tuple[str, ...] = ()

    @property
    def ok(self) -> bool:
        return self.reason is None


def decompile(
    sql: str,
    schema: Mapping[str, Mapping[str, str]] | PreparedSchema | None = None,
    dialect: str = "sqlite",
    keys: Mapping[str, Sequence[str]] | None = None,
) -> DecompileResult:
    """Decompile one query. ``schema`` is ``{table: {column: declared type}}``, or the same
    prepared once per database by :func:`prepare_schema` (then ``dialect`` and ``keys`` come
    from it); ``keys`` (optional) ``{table: [primary-key columns]}``, which lets
    ``SELECT DISTINCT a ... ORDER BY b`` through when ``b`` is a function of ``a``."""
    try:
        prepared = schema if isinstance(schema, PreparedSchema) else prepare_schema(schema, keys, dialect)
        tree = prepare(sql, prepared)
        pipe = emit_query(tree, prepared.catalog.for_query(), None)
    except Unsupported as error:
        return DecompileResult(None, error.reason)
    except RecursionError:
        return DecompileResult(None, "unsupported:too_deep")
    except Exception as error:  # a bug here must cost one item, never the whole batch
        return DecompileResult(None, f"internal_error: {type(error).__name__}: {str(error)[:200]}")
    lines = pipe.lines()
    # the emitter's lines are the operators already (split_operators would find the same ones),
    # except that a WITH line belongs to the FROM after it
    operators = (f"{lines[0]}\n{lines[1]}", *lines[2:]) if pipe.with_clause else tuple(lines)
    return DecompileResult("\n".join(lines), None, operators)


def split_operators(pipe_sql: str) -> list[str]:
    """Top-level operators of pipe SQL, one per element; a leading WITH line is joined to FROM.

    Works on any pipe SQL, not only ours: splits at ``|>`` outside parentheses, strings and
    quoted identifiers, so each prefix ``"\\n".join(ops[:k])`` is itself a query.

    >>> split_operators("WITH a AS (FROM t |> SELECT x)\\nFROM a\\n|> WHERE x > 1")
    ['WITH a AS (FROM t |> SELECT x)\\nFROM a', '|> WHERE x > 1']
    """
    pieces: list[str] = []
    depth, start, i, n = 0, 0, 0, len(pipe_sql)
    quote: str | None = None
    while i < n:
        ch = pipe_sql[i]
        if quote:
            if ch == "\\" and quote in "'\"":
                i += 2
                continue
            if ch == quote:
                quote = None
        elif ch in "'\"`":
            quote = ch
        elif ch == "-" and pipe_sql.startswith("--", i):
            end = pipe_sql.find("\n", i)
            i = n if end < 0 else end
            continue
        elif ch == "(":
            depth += 1
        elif ch == ")":
            depth -= 1
        elif ch == "|" and depth == 0 and pipe_sql.startswith("|>", i):
            pieces.append(pipe_sql[start:i])
            start = i
        i += 1
    pieces.append(pipe_sql[start:])
    return [piece.strip() for piece in pieces if piece.strip()]
