"""Spider's hardness levels (easy / medium / hard / extra) for any SQL query.

Spider labels a query by counting three kinds of component in its parsed form (Yu et al. 2018,
``evaluation.py``), and this module counts the same things on the sqlglot AST:

- **component 1**: WHERE, GROUP BY, ORDER BY and LIMIT present (one each), every table joined
  beyond the first, every OR and every LIKE among the FROM/WHERE/HAVING conditions;
- **component 2**: subqueries that are operands of a FROM/WHERE/HAVING condition, plus one for
  a UNION / INTERSECT / EXCEPT;
- **others**: more than one aggregate, more than one selected column, more than one WHERE
  condition, more than one GROUP BY column (one point each).

Only the outermost query is counted (a subquery counts once, as component 2); for a set
operation, its leftmost SELECT. Spider counts "aggregates" in WHERE and HAVING through a field
that holds the condition's NOT flag, so there a negated condition (NOT IN, NOT LIKE ...) is what
counts; that is kept, so that labels agree with Spider's own.

Queries sqlglot cannot parse fall back to the same counts taken from keywords in the text.
"""

from __future__ import annotations

import functools
import re
from dataclasses import dataclass
from typing import Iterator

import sqlglot
from sqlglot import exp

EASY, MEDIUM, HARD, EXTRA = "easy", "medium", "hard", "extra"
LEVELS = (EASY, MEDIUM, HARD, EXTRA)


@dataclass(frozen=True)
class Components:
    component1: int
    component2: int
    others: int


def hardness_from_counts(c: Components) -> str:
    """Spider's decision table over the three counts."""
    c1, c2, others = c.component1, c.component2, c.others
    if c1 <= 1 and others == 0 and c2 == 0:
        return EASY
    if (others <= 2 and c1 <= 1 and c2 == 0) or (c1 <= 2 and others < 2 and c2 == 0):
        return MEDIUM
    if ((others > 2 and c1 <= 2 and c2 == 0)
            or (2 < c1 <= 3 and others <= 2 and c2 == 0)
            or (c1 <= 1 and others == 0 and c2 <= 1)):
        return HARD
    return EXTRA


# --- AST counting ---------------------------------------------------------------------------------

_QUERY_TYPES = (exp.Select, exp.SetOperation, exp.Subquery)


def _walk_scope(node: exp.Expression | None) -> Iterator[exp.Expression]:
    """Nodes of ``node`` without entering subqueries."""
    if node is None:
        return
    stack = [node]
    while stack:
        current = stack.pop()
        yield current
        for child in current.iter_expressions():
            if not isinstance(child, _QUERY_TYPES):
                stack.append(child)


def _direct_subqueries(node: exp.Expression | None) -> int:
    """Subqueries that are operands of this condition (not ones nested inside those)."""
    if node is None:
        return 0
    count = 0
    for current in _walk_scope(node):
        count += sum(isinstance(child, _QUERY_TYPES) for child in current.iter_expressions())
    return count


def _condition_units(node: exp.Expression | None) -> list[exp.Expression]:
    """A condition split on its top-level AND / OR into Spider's condition units."""
    if node is None:
        return []
    while isinstance(node, exp.Paren):
        node = node.this
    if isinstance(node, exp.Connector):
        return _condition_units(node.left) + _condition_units(node.right)
    return [node]


def _is_negated(unit: exp.Expression) -> bool:
    while isinstance(unit, exp.Paren):
        unit = unit.this
    return isinstance(unit, exp.Not)


def _aggregates(node: exp.Expression | None) -> int:
    return sum(isinstance(n, exp.AggFunc) for n in _walk_scope(node))


def _leftmost_select(tree: exp.Expression) -> exp.Select | None:
    while True:
        if isinstance(tree, exp.Subquery):
            tree = tree.this
        elif isinstance(tree, exp.SetOperation):
            tree = tree.this
        elif isinstance(tree, exp.Select):
            return tree
        else:
            return None


def _has_set_operation(tree: exp.Expression) -> bool:
    while isinstance(tree, exp.Subquery):
        tree = tree.this
    return isinstance(tree, exp.SetOperation)


def components_of(tree: exp.Expression) -> Components | None:
    select = _leftmost_select(tree)
    if select is None:
        return None
    where = select.args.get("where")
    having = select.args.get("having")
    group = select.args.get("group")
    order = select.args.get("order")
    from_ = select.args.get("from") or select.args.get("from_")
    joins = select.args.get("joins") or []

    where_cond = where.this if where else None
    having_cond = having.this if having else None
    join_conds = [j.args.get("on") for j in joins if j.args.get("on") is not None]
    conditions = [c for c in [where_cond, having_cond, *join_conds] if c is not None]

    table_units = (len(from_.expressions) if from_ is not None and from_.expressions else 1 if from_ else 0)
    table_units += len(joins)

    component1 = sum(x is not None for x in (where, group, order, select.args.get("limit")))
    component1 += max(table_units - 1, 0)
    component1 += sum(isinstance(n, exp.Or) for c in conditions for n in _walk_scope(c))
    component1 += sum(isinstance(n, exp.Like) for c in conditions for n in _walk_scope(c))

    component2 = sum(_direct_subqueries(c) for c in conditions) + int(_has_set_operation(tree))

    where_units = _condition_units(where_cond)
    aggregates = sum(_aggregates(p) > 0 for p in select.expressions)
    aggregates += sum(_is_negated(u) for u in where_units)
    aggregates += sum(_aggregates(g) > 0 for g in (group.expressions if group else []))
    aggregates += sum(_aggregates(o) for o in (order.expressions if order else []))
    aggregates += sum(_is_negated(u) for u in _condition_units(having_cond))
    others = sum((
        aggregates > 1,
        len(select.expressions) > 1,
        len(where_units) > 1,
        len(group.expressions) > 1 if group else False,
    ))
    return Components(component1, component2, others)


# --- keyword fallback -----------------------------------------------------------------------------

def _keyword_components(sql: str) -> Components:
    text = re.sub(r"'[^']*'|\"[^\"]*\"", "''", sql.upper())
    words = lambda pattern: len(re.findall(pattern, text))  # noqa: E731
    component1 = (min(words(r"\bWHERE\b"), 1) + min(words(r"\bGROUP\s+BY\b"), 1)
                  + min(words(r"\bORDER\s+BY\b"), 1) + min(words(r"\bLIMIT\b"), 1)
                  + words(r"\bJOIN\b") + words(r"\bOR\b") + words(r"\bLIKE\b"))
    component2 = words(r"\(\s*SELECT\b") + min(words(r"\b(UNION|INTERSECT|EXCEPT)\b"), 1)
    aggregates = words(r"\b(COUNT|SUM|AVG|MIN|MAX)\s*\(")
    select_list = re.search(r"\bSELECT\b(.*?)\bFROM\b", text, re.S)
    others = int(aggregates > 1) + int(bool(select_list) and "," in select_list.group(1))
    others += int(words(r"\bWHERE\b.*\b(AND|OR)\b") > 0)
    return Components(component1, component2, others)


@functools.lru_cache(maxsize=4096)  # Spider asks most gold queries twice
def spider_hardness(sql: str, dialect: str = "sqlite") -> str:
    """Spider's hardness of ``sql``: "easy", "medium", "hard" or "extra". Never raises.

    >>> spider_hardness("SELECT count(*) FROM singer")
    'easy'
    >>> spider_hardness("SELECT name FROM singer WHERE age > (SELECT avg(age) FROM singer)")
    'hard'
    """
    try:
        tree = sqlglot.parse_one(sql, read=dialect)
        counts = components_of(tree) if tree is not None else None
    except Exception:  # sqlglot raises several error types on odd input; fall back to keywords
        counts = None
    return hardness_from_counts(counts or _keyword_components(sql))
