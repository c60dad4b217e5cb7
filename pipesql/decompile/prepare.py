"""From SQL text to a qualified sqlglot AST the emitter can trust.

Passes, in order (``PASSES``): parse, refuse what is not a query, turn SQLite's
double-quoted strings into string literals, qualify every column with its range variable.
"""

from __future__ import annotations

from collections.abc import Mapping

import sqlglot
from sqlglot import exp
from sqlglot.errors import ParseError, SqlglotError
from sqlglot.optimizer.qualify import qualify

from pipesql.decompile.errors import Unsupported

_DML = (exp.Insert, exp.Update, exp.Delete, exp.Merge)
_DDL = (exp.Create, exp.Drop, exp.Alter, exp.TruncateTable)


def parse(sql: str, dialect: str) -> exp.Expr:
    """Parse exactly one query statement.

    >>> parse("DELETE FROM t", "sqlite")
    Traceback (most recent call last):
    ...
    pipesql.decompile.errors.Unsupported: unsupported:dml
    """
    try:
        statements = [s for s in sqlglot.parse(sql, read=dialect) if s is not None]
    except ParseError as error:
        first = str(error).splitlines()[0] if str(error) else "syntax error"
        raise Unsupported(f"parse_error: {first}") from None
    except SqlglotError as error:
        raise Unsupported(f"parse_error: {str(error).splitlines()[0] if str(error) else 'error'}") from None
    if not statements:
        raise Unsupported("parse_error: empty input")
    if len(statements) > 1:
        raise Unsupported("unsupported:multiple_statements")
    statement = statements[0]
    if isinstance(statement, _DML):
        raise Unsupported("unsupported:dml")
    if isinstance(statement, _DDL):
        raise Unsupported("unsupported:ddl")
    if not isinstance(statement, exp.Query):
        raise Unsupported(f"unsupported:statement_{statement.key}")
    return statement


def double_quoted_strings(tree: exp.Expr, schema: Mapping[str, Mapping[str, str]] | None) -> exp.Expr:
    """SQLite reads ``"x"`` as a string when no column is named x; GoogleSQL needs ``'x'``.

    ``SELECT a FROM t WHERE b = "John"`` → ``... WHERE b = 'John'`` (given no column John).
    Aliases defined in the query count as names too, since SQLite resolves those first.
    """
    known = {c.lower() for cols in (schema or {}).values() for c in cols}
    known.update(a.alias.lower() for a in tree.find_all(exp.Alias))
    for alias in tree.find_all(exp.TableAlias):
        known.update(c.name.lower() for c in alias.columns)
    for col in list(tree.find_all(exp.Column)):
        ident = col.this
        if isinstance(ident, exp.Identifier) and ident.quoted and not col.table and ident.name.lower() not in known:
            col.replace(exp.Literal.string(ident.name))
    return tree


def qualified(tree: exp.Expr, schema, dialect: str) -> exp.Expr:
    """Every column names its range variable; stars are expanded (the emitter folds a full expansion back to no SELECT)."""
    try:
        return qualify(
            tree,
            schema=schema,
            dialect=dialect,
            expand_stars=True,
            validate_qualify_columns=False,
            quote_identifiers=False,
            identify=False,
        )
    except SqlglotError as error:
        raise Unsupported(f"unsupported:qualify ({str(error).splitlines()[0][:80]})") from None


def prepare(sql: str, schema, dialect: str) -> exp.Expr:
    tree = parse(sql, dialect)
    if dialect == "sqlite":
        tree = double_quoted_strings(tree, schema)
    return qualified(tree, schema, dialect)
