"""Rewriting an expression's children in place, the one traversal every rewrite pass shares,
copying expressions, telling node types apart, and writing expressions out as SQL text."""

from __future__ import annotations

import functools
from typing import Callable

from sqlglot import exp
from sqlglot.dialects.dialect import Dialect

# Each generator is built once: building one costs more than writing out a small expression.
# Reusing one within a thread is safe: it resets its messages per call, and the only other state
# it keeps (a counter naming table aliases that have no name) is never used, since every derived
# table has a name after prepare (qualify_tables names the others) and rendered expressions hold
# no FROM clause.
_GOOGLESQL_TEXT = Dialect.get_or_raise("bigquery").generator()
_SIGNATURE_TEXT = Dialect().generator()


def copied(node: exp.Expr) -> exp.Expr:
    """``node.copy()``: sqlglot's ``copy`` goes through ``copy.deepcopy``, whose memo
    bookkeeping costs a tenth of copying a small expression, around the expression's own
    ``__deepcopy__``, which ignores the memo."""
    return node.__deepcopy__(None)


def data_type(name: str, dialect: str | None = None) -> exp.DataType:
    """``exp.DataType.build(name, dialect=dialect)``, a new node each call. sqlglot builds one by
    parsing the name, which costs as much as writing out a whole condition: each type is built
    once, then copied."""
    return copied(_built_type(name, dialect))


@functools.cache
def _built_type(name: str, dialect: str | None) -> exp.DataType:
    return exp.DataType.build(name, dialect=dialect)


def kinds(*bases: type) -> frozenset[type]:
    """``bases`` and all their subclasses: a node's type is looked up in this set, several times
    faster than ``isinstance`` against the bases, on every node of every query."""
    found, todo = set(), list(bases)
    while todo:
        kind = todo.pop()
        if kind not in found:
            found.add(kind)
            todo.extend(kind.__subclasses__())
    return frozenset(found)


def googlesql(node: exp.Expr) -> str:
    """``node`` as GoogleSQL text; the generator may rewrite ``node``, so it must be the caller's own."""
    return _GOOGLESQL_TEXT.generate(node, copy=False)


def signature(node: exp.Expr) -> str:
    """``node.sql()``: the text two expressions are compared by. Writing out can rewrite an
    expression (a division's divisor), so it is written from a copy, except a column, which is
    written as it is (and is what signatures are mostly taken of)."""
    return _SIGNATURE_TEXT.generate(node if isinstance(node, exp.Column) else copied(node), copy=False)


def map_children(node: exp.Expr, fn: Callable[[exp.Expr], exp.Expr]) -> exp.Expr:
    """Replace each child expression of ``node`` (single or in a list) by ``fn(child)``.

    Only changed children are set again (setting a list re-parents each of its children), so
    untouched subtrees keep their parents; returns ``node`` itself.
    """
    for key, value in list(node.args.items()):
        if isinstance(value, exp.Expr):
            new = fn(value)
            if new is not value:
                node.set(key, new)
        elif isinstance(value, list) and value:
            mapped = [fn(v) if isinstance(v, exp.Expr) else v for v in value]
            if any(new is not old for new, old in zip(mapped, value)):
                node.set(key, mapped)
    return node
