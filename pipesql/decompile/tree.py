"""Rewriting an expression's children in place, the one traversal every rewrite pass shares."""

from __future__ import annotations

from typing import Callable

from sqlglot import exp


def map_children(node: exp.Expr, fn: Callable[[exp.Expr], exp.Expr]) -> exp.Expr:
    """Replace each child expression of ``node`` (single or in a list) by ``fn(child)``.

    Only changed children are set again, so untouched subtrees keep their parents; returns
    ``node`` itself.
    """
    for key, value in list(node.args.items()):
        if isinstance(value, exp.Expr):
            new = fn(value)
            if new is not value:
                node.set(key, new)
        elif isinstance(value, list):
            node.set(key, [fn(v) if isinstance(v, exp.Expr) else v for v in value])
    return node
