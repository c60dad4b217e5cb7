"""From SQL text to a qualified sqlglot AST the emitter can trust.

Passes, in order (``PASSES``): parse, refuse what is not a query, turn SQLite's
double-quoted strings into string literals, qualify every column with its range variable.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from sqlglot import exp
from sqlglot.dialects.dialect import Dialect
from sqlglot.errors import ParseError, SqlglotError
from sqlglot.optimizer.qualify import qualify
from sqlglot.schema import MappingSchema

from pipesql.decompile.errors import Unsupported
from pipesql.decompile.scope import Catalog


@dataclass(frozen=True)
class PreparedSchema:
    """One database's schema, prepared once for all its queries: sqlglot's normalised
    ``MappingSchema`` (building it is a sixth of a query's cost), the emitter's catalog and the
    lower-cased column names. :func:`pipesql.decompile.decompile` takes it in place of a mapping."""

    dialect: Dialect
    sqlite: bool  # SQLite input: double-quoted strings that name no column are strings
    mapping: MappingSchema | None
    catalog: Catalog
    column_names: frozenset[str]


def prepare_schema(schema: Mapping[str, Mapping[str, str]] | None = None,
                   keys: Mapping[str, Sequence[str]] | None = None, dialect: str = "sqlite") -> PreparedSchema:
    """``schema`` is ``{table: {column: declared type}}``, ``keys`` ``{table: [primary-key columns]}``."""
    reader = Dialect.get_or_raise(dialect)
    mapping = MappingSchema(schema, dialect=reader, normalize=True) if schema else None
    names = frozenset(str(c).lower() for columns in (schema or {}).values() for c in columns)
    return PreparedSchema(reader, dialect == "sqlite", mapping, Catalog.from_mapping(schema, keys), names)


def _forget_positions(tree: exp.Expr) -> exp.Expr:
    # the parser's line/column metadata is never read here, and every copy would deep-copy it
    for node in tree.walk():
        node._meta = None
    return tree

_DML = (exp.Insert, exp.Update, exp.Delete, exp.Merge)
_DDL = (exp.Create, exp.Drop, exp.Alter, exp.TruncateTable)


def parse(sql: str, dialect: str | Dialect) -> exp.Expr:
    """Parse exactly one query statement.

    >>> parse("DELETE FROM t", "sqlite")
    Traceback (most recent call last):
    ...
    pipesql.decompile.errors.Unsupported: unsupported:dml
    """
    try:
        statements = [s for s in Dialect.get_or_raise(dialect).parse(sql) if s is not None]
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


def double_quoted_strings(tree: exp.Expr, column_names: frozenset[str]) -> exp.Expr:
    """SQLite reads ``"x"`` as a string when no column is named x; GoogleSQL needs ``'x'``.

    ``SELECT a FROM t WHERE b = "John"`` → ``... WHERE b = 'John'`` (given no column John).
    Aliases defined in the query count as names too, since SQLite resolves those first.
    """
    known = set(column_names)
    known.update(a.alias.lower() for a in tree.find_all(exp.Alias))
    for alias in tree.find_all(exp.TableAlias):
        known.update(c.name.lower() for c in alias.columns)
    for col in list(tree.find_all(exp.Column)):
        ident = col.this
        if isinstance(ident, exp.Identifier) and ident.quoted and not col.table and ident.name.lower() not in known:
            col.replace(exp.Literal.string(ident.name))
    return tree


def qualified(tree: exp.Expr, schema: MappingSchema | None, dialect: Dialect) -> exp.Expr:
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


def prepare(sql: str, schema: PreparedSchema) -> exp.Expr:
    tree = _forget_positions(parse(sql, schema.dialect))
    if schema.sqlite:
        tree = double_quoted_strings(tree, schema.column_names)
    return qualified(tree, schema.mapping, schema.dialect)
