"""Aggregation: what ``|> AGGREGATE`` computes and how later operators name its results.

``SELECT T1.name, COUNT(*) FROM t AS T1 GROUP BY T1.id ORDER BY COUNT(*) DESC`` becomes
``|> AGGREGATE COUNT(*) AS count_star, ANY_VALUE(t1.name) AS name GROUP BY t1.id``: every
aggregate (from SELECT, HAVING or ORDER BY) gets one alias, group keys keep their column
name, and a bare column (legal in SQLite, not in GoogleSQL) becomes ANY_VALUE — or
``ANY_VALUE(x HAVING MAX y)`` when the query has exactly one MAX/MIN, which is the row
SQLite really returns the bare column from.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from sqlglot import exp

from pipesql.decompile.errors import Unsupported
from pipesql.decompile.names import AUTO_ALIAS_PREFIX, NameSpace, column, derive_alias
from pipesql.decompile.scope import Env
from pipesql.decompile.tree import copied, kinds, map_children, signature


@dataclass
class AggregatePlan:
    keys: list[tuple[str, exp.Expr]]  # (output name, key expression)
    aggregates: list[tuple[str, exp.Expr]]  # (alias, aggregate call)
    projections: list[exp.Expr]  # SELECT list, rewritten to post-AGGREGATE names
    having: exp.Expr | None
    order_terms: list[exp.Expr]  # ORDER BY keys, rewritten likewise


_OTHER_LEVELS = kinds(exp.Query, exp.Subquery)
_WINDOWS = kinds(exp.Window)
_AGGREGATES = kinds(exp.AggFunc)
_WITHOUT_AGGREGATES = kinds(exp.Column, exp.Identifier, exp.Literal)  # whose parts are names and values


def collect_aggregates(node: exp.Expr, out: list[exp.Expr]) -> list[exp.Expr]:
    """Aggregate calls of this query level: not inside subqueries, not window functions."""
    kind = type(node)
    if kind in _OTHER_LEVELS or kind in _WITHOUT_AGGREGATES:
        return out
    if kind in _WINDOWS:
        for key in ("partition_by", "order"):
            value = node.args.get(key)
            for child in value if isinstance(value, list) else [value] if value is not None else []:
                collect_aggregates(child, out)
        inner = node.this
        for child in inner.iter_expressions() if inner is not None else []:
            collect_aggregates(child, out)
        return out
    if kind in _AGGREGATES:
        out.append(node)
        return out
    for child in node.iter_expressions():
        collect_aggregates(child, out)
    return out


def _map(node: exp.Expr, fn: Callable[[exp.Expr], exp.Expr | None]) -> exp.Expr:
    """Pre-order replace: ``fn`` returns a replacement or None to descend."""
    replacement = fn(node)
    if replacement is not None:
        return replacement
    if isinstance(node, (exp.Query,)):
        return node
    return map_children(node, lambda child: _map(child, fn))


def plan(select: exp.Select, env: Env, names: NameSpace) -> AggregatePlan | None:
    """The AGGREGATE a SELECT needs, or None when it has no GROUP BY and no aggregate."""
    group, having, order = select.args.get("group"), select.args.get("having"), select.args.get("order")
    found = _aggregates_of(select)
    if group is None and not found:
        if having is not None:
            raise Unsupported("unsupported:having_without_aggregate")
        return None
    if group is not None and any(group.args.get(arg) for arg in ("rollup", "cube", "grouping_sets")):
        raise Unsupported("unsupported:grouping_sets")
    _reserve_source_names(env, names)
    user_alias = _user_aliases(select)
    key_names = NameSpace()  # every name the AGGREGATE outputs
    keys = _group_keys(group.expressions if group is not None else [], env, names, key_names, user_alias)
    named = _aggregate_names(found, names, key_names, user_alias)
    aggregates = list(named.values())  # bare columns join them as the rewrite meets them
    replace = _post_aggregate_names(keys, named, aggregates, env, names, key_names)

    def rewrite(node: exp.Expr) -> exp.Expr:
        # most items of an aggregating SELECT are an aggregate or a key as a whole: then there
        # is nothing to copy (``replace`` reads no more of its node's context than a Window
        # parent, which an item, a HAVING or an ORDER BY term never has)
        replaced = replace(node)
        return replaced if replaced is not None else _map(copied(node), replace)

    return AggregatePlan(
        list(keys.values()),
        aggregates,
        [rewrite(projection) for projection in select.expressions],
        rewrite(having.this) if having is not None else None,
        [rewrite(ordered.this) for ordered in order.expressions] if order is not None else [],
    )


def _aggregates_of(select: exp.Select) -> list[exp.Expr]:
    """The aggregate calls of SELECT, HAVING and ORDER BY, in that order."""
    found: list[exp.Expr] = []
    for projection in select.expressions:
        collect_aggregates(projection, found)
    having, order = select.args.get("having"), select.args.get("order")
    if having is not None:
        collect_aggregates(having.this, found)
    for ordered in order.expressions if order is not None else []:
        collect_aggregates(ordered, found)
    return found


def _reserve_source_names(env: Env, names: NameSpace) -> None:
    """Invented names avoid every range variable and column of this level: an alias equal to
    one could change what a later reference means."""
    for source in env.sources.values():
        names.reserve_lowered(source.columns)  # its keys: the column names, lower-cased
        names.reserve(source.alias)


def _user_aliases(select: exp.Select) -> dict[str, str]:
    """Signature of an aliased projection → the alias the user gave it (qualify's invented
    ``_col_N`` and a column aliased by its own name are no user's choice)."""
    aliases = {}
    for projection in select.expressions:
        if isinstance(projection, exp.Alias) and not projection.alias.startswith(AUTO_ALIAS_PREFIX):
            inner = projection.this
            if isinstance(inner, exp.Column) and inner.name.lower() == projection.alias.lower():
                continue
            aliases[signature(inner)] = projection.alias
    return aliases


def _group_keys(group_by: list[exp.Expr], env: Env, names: NameSpace, key_names: NameSpace,
                user_alias: dict[str, str]) -> dict[str, tuple[str, exp.Expr]]:
    """Signature → (output name, key) of each distinct GROUP BY key. A column keeps its name as
    the table spells it (``t1.name`` → ``Name``), prefixed by its table when another key has it."""
    keys: dict[str, tuple[str, exp.Expr]] = {}
    for key in group_by:
        text = signature(key)
        if text in keys or isinstance(key, exp.Literal):  # GROUP BY <constant> groups nothing
            continue
        if isinstance(key, exp.Column):
            source, _ = env.find_source(key.table) if key.table else (None, False)
            natural = source.columns[key.name.lower()].name if source and key.name.lower() in source.columns else key.name
            wanted = user_alias.get(text, natural)
            name = wanted if wanted not in key_names else f"{key.table}_{natural}"
        else:
            name = user_alias.get(text) or derive_alias(key)
        name = key_names.take(name)
        names.reserve(name)
        keys[text] = (name, key)
    return keys


def _aggregate_names(found: list[exp.Expr], names: NameSpace, key_names: NameSpace,
                     user_alias: dict[str, str]) -> dict[str, tuple[str, exp.Expr]]:
    """Signature → (alias, call) of each distinct aggregate: the user's alias unless a key has
    it, else one derived from the call (``COUNT(*)`` → ``count_star``)."""
    aggregates: dict[str, tuple[str, exp.Expr]] = {}
    for node in found:
        text = signature(node)
        if text in aggregates:
            continue
        wanted = user_alias.get(text)
        if wanted is None or wanted in key_names:
            name = names.take(derive_alias(node))
        else:
            name = wanted
            names.reserve(name)
        key_names.reserve(name)
        aggregates[text] = (name, node)
    return aggregates


def _post_aggregate_names(keys: dict[str, tuple[str, exp.Expr]], named: dict[str, tuple[str, exp.Expr]],
                          aggregates: list[tuple[str, exp.Expr]], env: Env, names: NameSpace,
                          key_names: NameSpace) -> Callable[[exp.Expr], exp.Expr | None]:
    """The replacement a node gets after AGGREGATE: a key or aggregate becomes its output name;
    a bare column of this level becomes a new ``ANY_VALUE`` output (appended to ``aggregates``),
    ``ANY_VALUE(x HAVING MAX y)`` when the query has exactly one distinct MAX/MIN."""
    key_by_sql = {text: name for text, (name, _) in keys.items()}
    agg_by_sql = {text: name for text, (name, _) in named.items()}
    extremes = [call for _, call in named.values() if isinstance(call, (exp.Max, exp.Min))]  # distinct already
    extreme = extremes[0] if len(extremes) == 1 else None
    key_kinds = {type(key) for _, key in keys.values()}
    bare: dict[str, str] = {}

    def replace(node: exp.Expr) -> exp.Expr | None:
        keyed = type(node) in key_kinds or isinstance(node, exp.Column)
        aggregated = isinstance(node, exp.AggFunc) and not isinstance(node.parent, exp.Window)
        if not keyed and not aggregated:
            return None
        text = signature(node)
        if keyed and (name := key_by_sql.get(text)) is not None:
            return column(name)
        if aggregated and (name := agg_by_sql.get(text)) is not None:
            return column(name)
        if isinstance(node, exp.Column) and node.table:
            source, local = env.find_source(node.table)
            if local:
                name = bare.get(text)
                if name is None:
                    natural = source.columns[node.name.lower()].name if node.name.lower() in source.columns else node.name
                    name = names.take(natural) if natural in key_names else natural
                    names.reserve(name)
                    key_names.reserve(name)
                    call = exp.AnyValue(this=copied(node))
                    if extreme is not None:
                        call = exp.AnyValue(this=exp.HavingMax(
                            this=copied(node), expression=copied(extreme.this), max=isinstance(extreme, exp.Max)))
                    aggregates.append((name, call))
                    bare[text] = name
                return column(name)
        return None

    return replace
