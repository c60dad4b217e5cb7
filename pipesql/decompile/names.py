"""Identifiers as GoogleSQL wants them, and the aliases the decompiler invents.

Invented aliases are derived from the expression (``COUNT(*)`` → ``count_star``) so the
training data reads naturally, and are made unique against every name already visible,
because an alias equal to an input column can silently change what a later reference means.
"""

from __future__ import annotations

import re
from collections.abc import Iterable

from sqlglot import exp

_SAFE = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
# sqlglot's qualify names unaliased projections _col_0, _col_1, ...: never a user's name.
AUTO_ALIAS_PREFIX = "_col_"


def identifier(name: str) -> exp.Identifier:
    """An identifier node that sqlglot's BigQuery generator backticks only when it must.

    The generator already backticks reserved words (`order`); names with spaces or
    punctuation must be marked quoted here.
    """
    return exp.Identifier(this=name, quoted=not _SAFE.match(name))


def column(name: str, table: str | None = None) -> exp.Column:
    return exp.Column(this=identifier(name), table=identifier(table) if table else None)


def _slug(text: str) -> str:
    slug = re.sub(r"[^A-Za-z0-9]+", "_", text).strip("_").lower()
    return slug or "value"


def _first_column_name(node: exp.Expr) -> str | None:
    col = next(node.find_all(exp.Column, bfs=False), None)
    return col.name if col is not None else None


def derive_alias(node: exp.Expr) -> str:
    """A readable name for a computed column.

    >>> import sqlglot
    >>> derive_alias(sqlglot.parse_one("COUNT(DISTINCT t.name)"))
    'count_distinct_name'
    """
    if isinstance(node, exp.Alias):
        return node.alias
    if isinstance(node, exp.Subquery) and isinstance(node.this, exp.Select) and len(node.this.expressions) == 1:
        only = node.this.expressions[0]
        if isinstance(only, exp.Alias) and not only.alias.startswith(AUTO_ALIAS_PREFIX):
            return only.alias
        return derive_alias(only.this if isinstance(only, exp.Alias) else only)
    if isinstance(node, exp.Column):
        return node.name
    if isinstance(node, exp.AggFunc):
        fn = node.key if not isinstance(node, exp.Anonymous) else node.name
        fn = {"groupconcat": "group_concat", "anyvalue": "any_value"}.get(fn, fn)
        arg = node.this
        if isinstance(arg, exp.Distinct):
            inner = arg.expressions[0] if arg.expressions else None
            name = _first_column_name(inner) if inner is not None else None
            return _slug(f"{fn}_distinct_{name or 'value'}")
        if isinstance(arg, exp.Star) or arg is None:
            return f"{fn}_star" if fn == "count" else fn
        name = arg.name if isinstance(arg, exp.Column) else _first_column_name(arg)
        return _slug(f"{fn}_{name}" if name else f"{fn}_value")
    if isinstance(node, exp.Window):
        fn = node.this
        return _slug(fn.key if not isinstance(fn, exp.Anonymous) else fn.name)
    if isinstance(node, exp.Func):
        fn = node.key if not isinstance(node, exp.Anonymous) else node.name
        name = _first_column_name(node)
        return _slug(f"{fn}_{name}" if name else fn)
    name = _first_column_name(node)
    return _slug(f"{name}_expr" if name else "expr")


class NameSpace:
    """Hands out names that collide with nothing already taken (case-insensitively)."""

    def __init__(self, taken=()):
        self._taken = {n.lower() for n in taken}

    def take(self, wanted: str) -> str:
        name, n = wanted, 2
        while name.lower() in self._taken:
            name = f"{wanted}_{n}"
            n += 1
        self._taken.add(name.lower())
        return name

    def reserve(self, name: str) -> None:
        self._taken.add(name.lower())

    def reserve_lowered(self, names: Iterable[str]) -> None:
        """:meth:`reserve` for each of ``names``, which are lower-cased already."""
        self._taken.update(names)

    def __contains__(self, name: str) -> bool:
        return name.lower() in self._taken
