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

from pipesql.decompile.names import AUTO_ALIAS_PREFIX, NameSpace, column, derive_alias
from pipesql.decompile.scope import Catalog, Env
from pipesql.decompile.tree import map_children, signature



@dataclass
class AggregatePlan:
    keys: list[tuple[str, exp.Expr]]  # (output name, key expression)
    aggregates: list[tuple[str, exp.Expr]]  # (alias, aggregate call)
    projections: list[exp.Expr]  # SELECT list, rewritten to post-AGGREGATE names
    having: exp.Expr | None
    order_terms: list[exp.Expr]  # ORDER BY keys, rewritten likewise
    rewrite: Callable[[exp.Expr], exp.Expr]


def collect_aggregates(node: exp.Expr, out: list[exp.Expr]) -> list[exp.Expr]:
    """Aggregate calls of this query level: not inside subqueries, not window functions."""
    if isinstance(node, (exp.Query, exp.Subquery)):
        return out
    if isinstance(node, exp.Window):
        for key in ("partition_by", "order"):
            value = node.args.get(key)
            for child in value if isinstance(value, list) else [value] if value is not None else []:
                collect_aggregates(child, out)
        inner = node.this
        for child in inner.iter_expressions() if inner is not None else []:
            collect_aggregates(child, out)
        return out
    if isinstance(node, exp.AggFunc):
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


def plan(select: exp.Select, env: Env, names: NameSpace, catalog: Catalog) -> AggregatePlan | None:
    group = select.args.get("group")
    having = select.args.get("having")
    order = select.args.get("order")
    found: list[exp.Expr] = []
    for projection in select.expressions:
        collect_aggregates(projection, found)
    if having is not None:
        collect_aggregates(having.this, found)
    if order is not None:
        for ordered in order.expressions:
            collect_aggregates(ordered, found)
    if group is None and not found:
        if having is not None:
            raise_unsupported("having_without_aggregate")
        return None
    if group is not None and (group.args.get("rollup") or group.args.get("cube") or group.args.get("grouping_sets")):
        raise_unsupported("grouping_sets")

    for source in env.sources.values():
        for col in source.columns.values():
            names.reserve(col.name)
        names.reserve(source.alias)

    # Names the user gave, so invented ones avoid them.
    user_alias = {}
    for projection in select.expressions:
        if isinstance(projection, exp.Alias) and not projection.alias.startswith(AUTO_ALIAS_PREFIX):
            inner = projection.this
            if isinstance(inner, exp.Column) and inner.name.lower() == projection.alias.lower():
                continue
            user_alias[signature(inner)] = projection.alias

    keys: list[tuple[str, exp.Expr]] = []
    key_by_sql: dict[str, str] = {}
    key_names = NameSpace()  # every name the AGGREGATE outputs
    for key in group.expressions if group is not None else []:
        text = signature(key)
        if text in key_by_sql:
            continue
        if isinstance(key, exp.Literal):
            continue  # GROUP BY <constant> groups nothing
        if isinstance(key, exp.Column):
            source, _ = env.find_source(key.table) if key.table else (None, False)
            natural = source.columns[key.name.lower()].name if source and key.name.lower() in source.columns else key.name
            wanted = user_alias.get(text, natural)
            name = wanted if wanted not in key_names else f"{key.table}_{natural}"
        else:
            name = user_alias.get(text) or derive_alias(key)
        name = key_names.take(name)
        names.reserve(name)
        keys.append((name, key))
        key_by_sql[text] = name

    aggregates: list[tuple[str, exp.Expr]] = []
    agg_by_sql: dict[str, str] = {}
    for node in found:
        text = signature(node)
        if text in agg_by_sql:
            continue
        wanted = user_alias.get(text)
        if wanted is None or wanted in key_names:
            name = names.take(derive_alias(node))
        else:
            name = wanted
            names.reserve(name)
        key_names.reserve(name)
        aggregates.append((name, node))
        agg_by_sql[text] = name

    extremes = {signature(a) for _, a in aggregates if isinstance(a, (exp.Max, exp.Min))}
    extreme = next((a for _, a in aggregates if isinstance(a, (exp.Max, exp.Min))), None) if len(extremes) == 1 else None
    bare: dict[str, str] = {}

    key_kinds = {type(k) for _, k in keys}

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
                    call = exp.AnyValue(this=node.copy())
                    if extreme is not None:
                        call = exp.AnyValue(this=exp.HavingMax(
                            this=node.copy(), expression=extreme.this.copy(), max=isinstance(extreme, exp.Max)))
                    aggregates.append((name, call))
                    bare[text] = name
                return column(name)
        return None

    def rewrite(node: exp.Expr) -> exp.Expr:
        return _map(node.copy(), replace)

    projections = []
    for projection in select.expressions:
        projections.append(rewrite(projection))
    having_rewritten = rewrite(having.this) if having is not None else None
    order_terms = [rewrite(o.this) for o in order.expressions] if order is not None else []
    return AggregatePlan(keys, aggregates, projections, having_rewritten, order_terms, rewrite)


def raise_unsupported(what: str):
    from pipesql.decompile.errors import Unsupported

    raise Unsupported(f"unsupported:{what}")
