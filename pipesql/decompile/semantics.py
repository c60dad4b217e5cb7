"""SQLite meaning, GoogleSQL spelling: expression rewrites applied before rendering.

Each rule takes one node (its children already rewritten) and a ``typer`` giving the
GoogleSQL type of any node, and returns the node to use instead. ``RULES`` is their order.
"""

from __future__ import annotations

import re

from sqlglot import exp

from pipesql.decompile.sqltypes import FLOAT, INT, STRING, numeric, type_of

_NUMBER = re.compile(r"^\s*[+-]?(\d+(\.\d*)?|\.\d+)([eE][+-]?\d+)?\s*$")
_COMPARISONS = (exp.EQ, exp.NEQ, exp.GT, exp.GTE, exp.LT, exp.LTE, exp.NullSafeEQ, exp.NullSafeNEQ)


def _string_to_number_literal(literal: exp.Literal) -> exp.Expr | None:
    if not _NUMBER.match(literal.this):
        return None
    text = literal.this.strip()
    if re.fullmatch(r"[+-]?\d+", text):
        value = int(text)
        number = exp.Literal.number(abs(value))
        return exp.Neg(this=number) if value < 0 else number
    return exp.Literal.number(text.lstrip("+"))


def _coerce_operand(value: exp.Expr, other_type: str | None, typer) -> exp.Expr:
    """Give ``value`` the type SQLite's affinity rules would compare it as, next to an
    operand of ``other_type``."""
    kind = typer(value)
    if kind is None or other_type is None or kind == other_type:
        return value
    if numeric(kind) and numeric(other_type):
        return value
    if isinstance(value, exp.Literal):
        if value.is_string and numeric(other_type):
            number = _string_to_number_literal(value)
            if number is not None:
                return number
            return value  # compared as text below, by casting the other side
        if not value.is_string and other_type == STRING:
            return exp.Literal.string(value.this)
    if isinstance(value, exp.Neg) and isinstance(value.this, exp.Literal) and other_type == STRING:
        return exp.Literal.string("-" + value.this.this)
    if kind == STRING and numeric(other_type):
        # A text column next to a numeric one: SQLite converts the text to a number
        # when it looks like one, and then the two never compare equal otherwise.
        return exp.TryCast(this=value, to=exp.DataType.build("BIGINT" if other_type == INT else "DOUBLE"))
    return value


def _has_affinity(node: exp.Expr) -> bool:
    """SQLite gives a column (and a CAST) an affinity; any other expression has none."""
    while isinstance(node, exp.Paren):
        node = node.this
    return isinstance(node, (exp.Column, exp.Cast, exp.TryCast))


def _to_text(node: exp.Expr) -> exp.Expr:
    return exp.Cast(this=node, to=exp.DataType.build("TEXT"))


def _compare_pair(left: exp.Expr, right: exp.Expr, typer) -> tuple[exp.Expr, exp.Expr]:
    """Both operands of one comparison, retyped the way SQLite's affinity rules compare them."""
    lt, rt = typer(left), typer(right)
    if not lt or not rt or lt == rt or (numeric(lt) and numeric(rt)):
        return left, right
    if isinstance(right, (exp.Literal, exp.Neg)):
        right = _coerce_operand(right, lt, typer)
    elif isinstance(left, (exp.Literal, exp.Neg)):
        left = _coerce_operand(left, rt, typer)
    else:
        text_side_is_left = lt == STRING
        text_side, other = (left, right) if text_side_is_left else (right, left)
        if _has_affinity(other):
            # numeric affinity wins over text: the text operand is read as a number
            text_side = _coerce_operand(text_side, typer(other), typer)
        elif _has_affinity(text_side):
            # TEXT affinity is applied to an operand that has none (an aggregate, a subquery)
            other = _to_text(other)
        left, right = (text_side, other) if text_side_is_left else (other, text_side)
    lt, rt = typer(left), typer(right)
    if lt and rt and lt != rt and not (numeric(lt) and numeric(rt)):
        # A non-numeric string literal against a number: compare as text.
        if numeric(lt):
            left = _to_text(left)
        else:
            right = _to_text(right)
    return left, right


def mixed_type_comparison(node: exp.Expr, typer) -> exp.Expr:
    """``text_col = 5`` → ``text_col = '5'``; ``int_col = '5'`` → ``int_col = 5``;
    ``int_col = text_col`` → ``int_col = SAFE_CAST(text_col AS INT64)``;
    ``text_col > (subquery returning a number)`` → ``text_col > CAST((...) AS STRING)``.

    GoogleSQL has no ``INT64 = STRING`` signature; SQLite converts by affinity: a column's
    numeric affinity reaches a text operand, a column's TEXT affinity reaches an operand
    without affinity (literal, aggregate, subquery).
    """
    if isinstance(node, _COMPARISONS):
        left, right = _compare_pair(node.this, node.expression, typer)
        node.set("this", left)
        node.set("expression", right)
        return node
    if isinstance(node, exp.In) and node.args.get("query") is not None:
        left, sub = typer(node.this), node.args["query"].meta.get("pipesql_type")
        if left and sub and left != sub and not (numeric(left) and numeric(sub)):
            if numeric(left):
                node.set("this", _to_text(node.this))
            else:
                node.set("this", exp.TryCast(this=node.this, to=exp.DataType.build("BIGINT" if sub == INT else "DOUBLE")))
        return node
    if isinstance(node, exp.In) and node.expressions:
        target = typer(node.this)
        node.set("expressions", [_coerce_operand(e, target, typer) if isinstance(e, (exp.Literal, exp.Neg)) else e
                                 for e in node.expressions])
        return node
    if isinstance(node, exp.Between):
        target = typer(node.this)
        for arg in ("low", "high"):
            value = node.args.get(arg)
            if isinstance(value, (exp.Literal, exp.Neg)):
                node.set(arg, _coerce_operand(value, target, typer))
        return node
    return node


def _nonzero_literal(node: exp.Expr) -> bool:
    return isinstance(node, exp.Literal) and not node.is_string and float(node.this) != 0


def integer_division(node: exp.Expr, typer) -> exp.Expr:
    """``a / b`` on two INT64 operands → ``DIV(a, NULLIF(b, 0))``.

    SQLite truncates integer division and yields NULL on a zero divisor; GoogleSQL's ``/``
    is FLOAT64 and ``DIV`` raises on zero.
    """
    if isinstance(node, exp.Div) and typer(node.this) == INT and typer(node.expression) == INT:
        divisor = node.expression
        if not _nonzero_literal(divisor):
            divisor = exp.Nullif(this=divisor, expression=exp.Literal.number(0))
        return exp.IntDiv(this=node.this, expression=divisor)
    if isinstance(node, exp.Div) and _nonzero_literal(node.expression):
        node.set("safe", False)  # no NULLIF needed around a constant divisor
    return node


def _lower_pattern(pattern: exp.Expr) -> exp.Expr:
    if isinstance(pattern, exp.Literal) and pattern.is_string:
        return exp.Literal.string(pattern.this.lower())
    return exp.Lower(this=pattern)


def case_insensitive_like(node: exp.Expr, typer) -> exp.Expr:
    """``name LIKE '%Smith%'`` → ``LOWER(name) LIKE '%smith%'``.

    SQLite's LIKE ignores ASCII case; GoogleSQL's does not. A pattern without letters is
    left alone. A numeric operand is cast to STRING, since GoogleSQL LIKE takes strings.
    """
    if not isinstance(node, exp.Like):
        return node
    subject, pattern = node.this, node.expression
    if typer(subject) not in (STRING, None):
        subject = exp.Cast(this=subject, to=exp.DataType.build("TEXT"))
        node.set("this", subject)
    if isinstance(pattern, exp.Literal) and pattern.is_string and not re.search(r"[A-Za-z]", pattern.this):
        return node
    node.set("this", exp.Lower(this=subject))
    node.set("expression", _lower_pattern(pattern))
    return node


def string_concatenation(node: exp.Expr, typer) -> exp.Expr:
    """``name || 1`` → ``name || CAST(1 AS STRING)``: SQLite's ``||`` converts numbers to
    text, GoogleSQL's takes only STRING."""
    if isinstance(node, exp.DPipe):
        for arg in ("this", "expression"):
            value = node.args[arg]
            kind = typer(value)
            if kind not in (STRING, None):
                node.set(arg, exp.Cast(this=value, to=exp.DataType.build("TEXT")))
    return node


def numeric_arguments(node: exp.Expr, typer) -> exp.Expr:
    """``AVG(text_col)`` → ``AVG(SAFE_CAST(text_col AS FLOAT64))``: SQLite does arithmetic on
    text that holds numbers; GoogleSQL's SUM, AVG, ABS and ROUND take numbers only."""
    if isinstance(node, (exp.Sum, exp.Avg, exp.Abs, exp.Round, exp.Stddev, exp.Variance)):
        value = node.this
        if isinstance(value, exp.Distinct):
            inner = value.expressions[0] if value.expressions else None
            if inner is not None and typer(inner) == STRING:
                value.set("expressions", [exp.TryCast(this=inner, to=exp.DataType.build("DOUBLE"))])
        elif value is not None and typer(value) == STRING:
            node.set("this", exp.TryCast(this=value, to=exp.DataType.build("DOUBLE")))
    return node


RULES = (
    numeric_arguments,
    mixed_type_comparison,
    integer_division,
    case_insensitive_like,
    string_concatenation,
)


def make_typer(column_type):
    def typer(node: exp.Expr):
        return type_of(node, column_type)
    return typer


def apply_rules(node: exp.Expr, typer) -> exp.Expr:
    """Rewrite bottom-up; subqueries arrive already rendered (as ``exp.Var``) and are skipped."""
    for key, value in list(node.args.items()):
        if isinstance(value, exp.Expr):
            new = apply_rules(value, typer)
            if new is not value:
                node.set(key, new)
        elif isinstance(value, list):
            node.set(key, [apply_rules(v, typer) if isinstance(v, exp.Expr) else v for v in value])
    for rule in RULES:
        node = rule(node, typer)
    return node
