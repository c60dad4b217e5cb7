"""SQLite meaning, GoogleSQL spelling: expression rewrites applied before rendering.

Each rule takes one node (its children already rewritten) and a ``typer`` giving the
GoogleSQL type of any node, and returns the node to use instead; ``@rewrites`` names the node
types it can change. ``RULES`` is their order. A rule moves the nodes it keeps, never copies
them, and makes no column: the emitter finishes the columns it found before the rules ran.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Callable

from sqlglot import exp

from pipesql.decompile.errors import Unsupported
from pipesql.decompile.tree import data_type, kinds, map_children
from pipesql.sql.types import BOOL, FLOAT, INT, STRING, numeric, type_of

_NUMBER = re.compile(r"^\s*[+-]?(\d+(\.\d*)?|\.\d+)([eE][+-]?\d+)?\s*$")
_COMPARISONS = (exp.EQ, exp.NEQ, exp.GT, exp.GTE, exp.LT, exp.LTE, exp.NullSafeEQ, exp.NullSafeNEQ)
# Nodes no rule rewrites and whose children none does either (a column's identifiers): skipped.
_LEAVES = kinds(exp.Column, exp.Identifier, exp.Literal, exp.Var, exp.DataType, exp.Star, exp.Null, exp.Boolean)


def rewrites(*kinds: type) -> Callable[[Callable], Callable]:
    """Declares the node types (with their subclasses) a rule may rewrite: on any other node
    the rule returns the node as it is, so :func:`apply_rules` does not call it there."""
    def declare(rule: Callable) -> Callable:
        rule.kinds = kinds
        return rule
    return declare


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
        return exp.TryCast(this=value, to=data_type("BIGINT" if other_type == INT else "DOUBLE"))
    return value


def _has_affinity(node: exp.Expr) -> bool:
    """SQLite gives a column (and a CAST) an affinity; any other expression has none."""
    while isinstance(node, exp.Paren):
        node = node.this
    return isinstance(node, (exp.Column, exp.Cast, exp.TryCast))


def _to_text(node: exp.Expr) -> exp.Expr:
    return exp.Cast(this=node, to=data_type("TEXT"))


def _orders_before_every_number(literal: exp.Expr) -> bool:
    """Whether a text literal sorts after the text of any number (``'-3'``, ``'12.5'``): its
    first character comes after ``'9'``. Then comparing a number cast to text with it says
    what SQLite says (every number orders before every text)."""
    return isinstance(literal, exp.Literal) and literal.is_string and literal.this[:1] > "9"


def _text_ordering_of_number(number: exp.Expr, literal: exp.Expr) -> exp.Expr:
    """``price > 'abc'``: SQLite orders every number before any text (a numeric column's text
    values compare as text). Casting the number to STRING keeps that only when the literal
    sorts after every number's text; otherwise (``price > ''``, ``price < '1st'``) no GoogleSQL
    comparison keeps it, since the STRING cast compares digits as text: refused."""
    if not _orders_before_every_number(literal):
        raise Unsupported("unsupported:number_vs_text_literal_ordering")
    return _to_text(number)


def _compare_pair(left: exp.Expr, right: exp.Expr, typer, ordering: bool = False) -> tuple[exp.Expr, exp.Expr]:
    """Both operands of one comparison, retyped the way SQLite's affinity rules compare them
    (``ordering``: ``<``, ``<=``, ``>``, ``>=`` rather than equality)."""
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
        # A non-numeric string literal against a number: compare as text (equality is never
        # true in either engine; an ordering only where the literal sorts after every number).
        if numeric(lt):
            left = _text_ordering_of_number(left, right) if ordering else _to_text(left)
        else:
            right = _text_ordering_of_number(right, left) if ordering else _to_text(right)
    return left, right


@rewrites(*_COMPARISONS, exp.In, exp.Between)
def mixed_type_comparison(node: exp.Expr, typer) -> exp.Expr:
    """``text_col = 5`` → ``text_col = '5'``; ``int_col = '5'`` → ``int_col = 5``;
    ``int_col = text_col`` → ``int_col = SAFE_CAST(text_col AS INT64)``;
    ``text_col > (subquery returning a number)`` → ``text_col > CAST((...) AS STRING)``.

    GoogleSQL has no ``INT64 = STRING`` signature; SQLite converts by affinity: a column's
    numeric affinity reaches a text operand, a column's TEXT affinity reaches an operand
    without affinity (literal, aggregate, subquery).
    """
    if isinstance(node, _COMPARISONS):
        left, right = _compare_pair(node.this, node.expression, typer,
                                    ordering=isinstance(node, (exp.GT, exp.GTE, exp.LT, exp.LTE)))
        if left is not node.this:  # most operands compare as they are
            node.set("this", left)
        if right is not node.expression:
            node.set("expression", right)
        return node
    if isinstance(node, exp.In) and node.args.get("query") is not None:
        left, sub = typer(node.this), node.args["query"].meta.get("pipesql_type")
        if left and sub and left != sub and not (numeric(left) and numeric(sub)):
            if numeric(left):
                node.set("this", _to_text(node.this))
            else:
                node.set("this", exp.TryCast(this=node.this, to=data_type("BIGINT" if sub == INT else "DOUBLE")))
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


@rewrites(exp.Div)
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


@rewrites(exp.Like)
def case_insensitive_like(node: exp.Expr, typer) -> exp.Expr:
    """``name LIKE '%Smith%'`` → ``LOWER(name) LIKE '%smith%'``.

    SQLite's LIKE ignores ASCII case; GoogleSQL's does not. A pattern without letters is
    left alone. A numeric operand is cast to STRING, since GoogleSQL LIKE takes strings.
    """
    if not isinstance(node, exp.Like):
        return node
    subject, pattern = node.this, node.expression
    if typer(subject) not in (STRING, None):
        subject = exp.Cast(this=subject, to=data_type("TEXT"))
        node.set("this", subject)
    if isinstance(pattern, exp.Literal) and pattern.is_string and not re.search(r"[A-Za-z]", pattern.this):
        return node
    node.set("this", exp.Lower(this=subject))
    node.set("expression", _lower_pattern(pattern))
    return node


@rewrites(exp.DPipe)
def string_concatenation(node: exp.Expr, typer) -> exp.Expr:
    """``name || 1`` → ``name || CAST(1 AS STRING)``: SQLite's ``||`` converts numbers to
    text, GoogleSQL's takes only STRING."""
    if isinstance(node, exp.DPipe):
        for arg in ("this", "expression"):
            value = node.args[arg]
            kind = typer(value)
            if kind not in (STRING, None):
                node.set(arg, exp.Cast(this=value, to=data_type("TEXT")))
    return node


@rewrites(exp.Sum, exp.Avg, exp.Abs, exp.Round, exp.Stddev, exp.Variance)
def numeric_arguments(node: exp.Expr, typer) -> exp.Expr:
    """``AVG(text_col)`` → ``AVG(SAFE_CAST(text_col AS FLOAT64))``: SQLite does arithmetic on
    text that holds numbers; GoogleSQL's SUM, AVG, ABS and ROUND take numbers only."""
    if isinstance(node, (exp.Sum, exp.Avg, exp.Abs, exp.Round, exp.Stddev, exp.Variance)):
        value = node.this
        if isinstance(value, exp.Distinct):
            inner = value.expressions[0] if value.expressions else None
            if inner is not None and typer(inner) == STRING:
                value.set("expressions", [exp.TryCast(this=inner, to=data_type("DOUBLE"))])
        elif value is not None and getattr(typer, "is_date", lambda _: False)(value):
            # SQLite reads the number an ISO date starts with: its year
            node.set("this", exp.Extract(this=exp.Var(this="YEAR"), expression=exp.TryCast(this=value, to=_datetime_type())))
        elif value is not None and typer(value) == STRING:
            node.set("this", exp.TryCast(this=value, to=data_type("DOUBLE")))
    return node


# --------------------------------------------------------------------------- dates and times
# SQLite stores dates as ISO text and parses it in every date function; GoogleSQL needs a
# DATETIME value. Every text operand becomes SAFE_CAST(x AS DATETIME) (NULL for text that is no
# date, as SQLite's functions give NULL), 'now' becomes CURRENT_DATETIME(), and the result is
# turned back into what SQLite returns: text from strftime/date/datetime/time, fractional days
# from julianday differences. pipe_to_sqlite maps each GoogleSQL function back.

_STRFTIME_CODES = set("YmdHMSwjW%")
_DATE_FORMATS = {"DATE": "%Y-%m-%d", "DATETIME": "%Y-%m-%d %H:%M:%S", "TIME": "%H:%M:%S"}
_MODIFIER = re.compile(r"^\s*([+-]?)\s*(\d+)\s+(second|minute|hour|day|month|year)s?\s*$", re.IGNORECASE)
_START_OF = re.compile(r"^\s*start\s+of\s+(day|month|year)\s*$", re.IGNORECASE)


def _datetime_type() -> exp.DataType:
    return data_type("DATETIME", "bigquery")


def _fn(name: str, *args: exp.Expr) -> exp.Anonymous:
    return exp.Anonymous(this=name, expressions=list(args))


def _as_datetime(value: exp.Expr, typer) -> exp.Expr | None:
    """The GoogleSQL DATETIME for a SQLite time value (ISO text or 'now'); None when the value
    is something else (a julian day number, unix seconds), which is left alone."""
    if isinstance(value, exp.Literal) and value.is_string and value.this.strip().lower() == "now":
        return exp.CurrentDatetime()
    if isinstance(value, exp.Literal) and not value.is_string:
        return None
    if typer(value) not in (STRING, None):
        return None
    return exp.TryCast(this=value, to=_datetime_type())


def _supported_format(fmt: exp.Expr) -> bool:
    if not (isinstance(fmt, exp.Literal) and fmt.is_string):
        return False
    codes = re.findall(r"%(.)", fmt.this)
    return all(code in _STRFTIME_CODES for code in codes)


def _format(fmt: str, value: exp.Expr) -> exp.Expr:
    return _fn("FORMAT_DATETIME", exp.Literal.string(fmt), value)


def _with_modifiers(value: exp.Expr, modifiers: list[exp.Expr]) -> exp.Expr | None:
    for modifier in modifiers:
        if not (isinstance(modifier, exp.Literal) and modifier.is_string):
            return None
        shift = _MODIFIER.match(modifier.this)
        start = _START_OF.match(modifier.this)
        if shift:
            sign, amount, unit = shift.groups()
            number = exp.Literal.number(amount)
            interval = exp.Interval(this=exp.Neg(this=number) if sign == "-" else number, unit=exp.Var(this=unit.upper()))
            value = _fn("DATETIME_ADD", value, interval)
        elif start:
            value = _fn("DATETIME_TRUNC", value, exp.Var(this=start.group(1).upper()))
        else:
            return None  # weekday N, unixepoch, localtime, ...: no GoogleSQL spelling here
    return value


def _julian_operand(node: exp.Expr, typer, recurse) -> exp.Expr | None:
    """``julianday(x)`` → the DATETIME it measures; ``MIN/MAX(julianday(x))`` → ``MIN/MAX`` of
    it (julianday is monotonic, so the extreme day is the extreme DATETIME)."""
    while isinstance(node, exp.Paren):
        node = node.this
    if isinstance(node, (exp.Min, exp.Max)) and not isinstance(node.this, exp.Distinct):
        inner = _julian_operand(node.this, typer, recurse)
        return type(node)(this=inner) if inner is not None else None
    if isinstance(node, exp.Anonymous) and node.name.upper() == "JULIANDAY" and len(node.expressions) == 1:
        return _as_datetime(recurse(node.expressions[0]), typer)
    return None


def _days_between(later: exp.Expr, earlier: exp.Expr) -> exp.Expr:
    diff = _fn("DATETIME_DIFF", later, earlier, exp.Var(this="SECOND"))
    return exp.Div(this=diff, expression=exp.Literal.number(86400))


def _current_time_call(node: exp.Expr) -> bool:
    if isinstance(node, exp.Date):
        return node.this is None and not node.expressions
    return isinstance(node, exp.Anonymous) and node.name.upper() in _DATE_FORMATS and not node.expressions


# The node types _date_rule rewrites: a tree without any, rewrite_dates leaves as it is.
_DATE_CONSTRUCTS = (exp.Sub, exp.Anonymous, exp.TimeToStr, exp.Date)
_DATE_KINDS = kinds(*_DATE_CONSTRUCTS)


def _date_rule(node: exp.Expr, typer, recurse) -> exp.Expr | None:
    """One SQLite date/time construct in GoogleSQL, or None when ``node`` is none (or has no
    spelling here). ``recurse`` rewrites the arguments first."""
    if isinstance(node, exp.Sub):
        later = _julian_operand(node.this, typer, recurse)
        earlier = _julian_operand(node.expression, typer, recurse) if later is not None else None
        if later is not None and earlier is not None:
            return _days_between(later, earlier)  # binds tighter than the "-" it replaces
        if typer.is_date(node.this) and typer.is_date(node.expression):
            # SQLite subtracts the numbers the texts start with: the years of two ISO dates
            year = lambda x: exp.Extract(this=exp.Var(this="YEAR"), expression=exp.TryCast(this=x, to=_datetime_type()))  # noqa: E731
            return exp.Sub(this=year(node.this), expression=year(node.expression))
        return None
    if isinstance(node, exp.Anonymous) and node.name.upper() == "JULIANDAY" and len(node.expressions) == 1:
        value = _as_datetime(recurse(node.expressions[0]), typer)
        if value is None:
            return None
        epoch = exp.Cast(this=exp.Literal.string("1970-01-01 00:00:00"), to=_datetime_type())
        day = exp.Add(this=_days_between(value, epoch), expression=exp.Literal.number("2440587.5"))
        return day if isinstance(node.parent, (exp.Func, exp.Paren, exp.Alias, exp.Select)) else exp.Paren(this=day)
    if isinstance(node, exp.TimeToStr) and _supported_format(node.args.get("format")):
        value = node.this
        if isinstance(value, (exp.TsOrDsToTimestamp, exp.TsOrDsToDatetime, exp.TsOrDsToDate)):
            value = value.this
        value = _as_datetime(recurse(value), typer)
        return _format(node.args["format"].this, value) if value is not None else None
    if _current_time_call(node):
        # date(), datetime(), time() with no argument: SQLite's current UTC date/time, as text
        name = "DATE" if isinstance(node, exp.Date) else node.name.upper()
        return _format(_DATE_FORMATS[name], exp.CurrentDatetime())
    if isinstance(node, exp.Date) and node.this is not None and not node.expressions:
        value = _as_datetime(recurse(node.this), typer)
        return _format(_DATE_FORMATS["DATE"], value) if value is not None else None
    if isinstance(node, exp.Anonymous) and node.name.upper() in _DATE_FORMATS and node.expressions:
        value = _as_datetime(recurse(node.expressions[0]), typer)
        if value is None:
            return None
        value = _with_modifiers(value, node.expressions[1:])
        return _format(_DATE_FORMATS[node.name.upper()], value) if value is not None else None
    return None


def rewrite_dates(node: exp.Expr, typer) -> exp.Expr:
    """Top-down (``julianday(a) - julianday(b)`` is one construct, not two julianday calls)."""
    def recurse(child: exp.Expr) -> exp.Expr:
        return rewrite_dates(child, typer)

    if type(node) in _LEAVES:
        return node
    new = _date_rule(node, typer, recurse)
    if new is not None:
        return new
    return map_children(node, recurse)


def _digits_only_format(node: exp.Expr) -> bool:
    if not (isinstance(node, exp.Anonymous) and node.name.upper() == "FORMAT_DATETIME"):
        return False
    fmt = node.expressions[0]
    return isinstance(fmt, exp.Literal) and re.fullmatch(r"(%[YmdHMSwjW])+", fmt.this) is not None


@rewrites(exp.Add, exp.Sub, exp.Mul, exp.Div, exp.Mod)
def formatted_date_arithmetic(node: exp.Expr, typer) -> exp.Expr:
    """``strftime('%Y', 'now') - strftime('%Y', birthday)`` → the two years as INT64: SQLite
    reads the digit strings as numbers in arithmetic."""
    if isinstance(node, (exp.Add, exp.Sub, exp.Mul, exp.Div, exp.Mod)):
        for arg in ("this", "expression"):
            value = node.args[arg]
            if _digits_only_format(value):
                node.set(arg, exp.TryCast(this=value, to=data_type("BIGINT")))
    return node


@rewrites(exp.Cast)
def float_to_integer_cast(node: exp.Expr, typer) -> exp.Expr:
    """``CAST(x AS INTEGER)`` on a FLOAT64 ``x`` → ``CAST(TRUNC(x) AS INT64)``: SQLite truncates
    toward zero, GoogleSQL's cast rounds. ``ROUND(x)`` is already whole and stays as it is."""
    if isinstance(node, exp.Cast) and not isinstance(node, exp.TryCast) and node.to.is_type(*exp.DataType.INTEGER_TYPES):
        value = node.this
        inner = value.this if isinstance(value, exp.Paren) else value
        if typer(value) == FLOAT and not (isinstance(inner, exp.Round) and inner.args.get("decimals") is None) \
                and not isinstance(inner, exp.Trunc):
            node.set("this", exp.Trunc(this=inner))
    return node


_ARITHMETIC = (exp.Add, exp.Sub, exp.Mul, exp.Div, exp.Mod)
_NUMERIC_PREFIX = re.compile(r"^\s*([+-]?(?:\d+\.?\d*|\.\d+)(?:[eE][+-]?\d+)?)")


def _sqlite_number(text: str) -> exp.Expr:
    """The number SQLite reads from text in arithmetic: its longest numeric prefix, else 0."""
    match = _NUMERIC_PREFIX.match(text)
    if not match:
        return exp.Literal.number(0)
    prefix = match.group(1)
    value = int(prefix) if re.fullmatch(r"[+-]?\d+", prefix) else float(prefix)
    number = exp.Literal.number(abs(value))
    return exp.Neg(this=number) if value < 0 else number


@rewrites(*_ARITHMETIC)
def text_literal_arithmetic(node: exp.Expr, typer) -> exp.Expr:
    """``'1999' - year`` → ``1999 - year``: SQLite reads a string in arithmetic as the number it
    starts with (``'12abc'`` → 12, ``'abc'`` → 0); GoogleSQL would read ``'1999'`` as a DATE."""
    if isinstance(node, _ARITHMETIC):
        for arg in ("this", "expression"):
            value = node.args[arg]
            if isinstance(value, exp.Literal) and value.is_string:
                node.set(arg, _sqlite_number(value.this))
    return node


def _as_int64(node: exp.Expr) -> exp.Expr:
    return exp.Cast(this=node, to=data_type("BIGINT"))


@rewrites(*_ARITHMETIC, exp.Sum, exp.Avg, exp.Max, exp.Min, exp.Abs, exp.Neg)
def boolean_as_number(node: exp.Expr, typer) -> exp.Expr:
    """``SUM(gender = 'M')`` → ``SUM(CAST(gender = 'M' AS INT64))``, ``2 * (a = b)`` →
    ``2 * CAST(a = b AS INT64)``: a SQLite comparison is the integer 0 or 1; a GoogleSQL one
    is a BOOL, which takes no arithmetic."""
    if isinstance(node, _ARITHMETIC):
        for arg in ("this", "expression"):
            if typer(node.args[arg]) == BOOL:
                node.set(arg, _as_int64(node.args[arg]))
    elif isinstance(node, (exp.Sum, exp.Avg, exp.Max, exp.Min, exp.Abs)) and node.this is not None \
            and typer(node.this) == BOOL:
        node.set("this", _as_int64(node.this))
    elif isinstance(node, exp.Neg) and typer(node.this) == BOOL:
        node.set("this", _as_int64(node.this))
    return node


def _branches(node: exp.Expr) -> list[exp.Expr]:
    if isinstance(node, exp.If):
        return [node.args.get("true"), node.args.get("false")]
    if isinstance(node, exp.Case):
        return [i.args.get("true") for i in node.args.get("ifs") or []] + [node.args.get("default")]
    return []


@rewrites(exp.If, exp.Case)
def mixed_type_branches(node: exp.Expr, typer) -> exp.Expr:
    """``IIF(c, text_col, 0)``: SQLite returns text on one branch and an integer on the other;
    a GoogleSQL IF or CASE has one type, and no cast keeps both values as they are (``'0'`` is
    not ``0``). Refused: ``unsupported:mixed_type_branches``. A BOOL branch next to numbers is
    the number 0/1, as in SQLite."""
    branches = [b for b in _branches(node) if b is not None and not isinstance(b, exp.Null)]
    kinds = {typer(b) for b in branches} - {None}
    if STRING in kinds and kinds & {INT, FLOAT, BOOL}:
        raise Unsupported("unsupported:mixed_type_branches")
    if BOOL in kinds and kinds & {INT, FLOAT}:
        for branch in branches:
            if typer(branch) == BOOL:
                parent, key, index = branch.parent, branch.arg_key, branch.index
                parent.set(key, _as_int64(branch), index)  # the branch itself, moved into the cast
    return node


def _numeric_looking(node: exp.Expr, typer) -> bool:
    if isinstance(node, exp.Literal) and node.is_string:
        return _NUMBER.match(node.this) is not None
    return numeric(typer(node))


@rewrites(exp.GT, exp.GTE, exp.LT, exp.LTE, exp.Between)
def date_column_ordering(node: exp.Expr, typer) -> exp.Expr:
    """``date_col > 2015`` is refused (``unsupported:date_column_vs_number``): a column declared
    DATE has NUMERIC affinity in SQLite, so the 2015 stays a number, and SQLite orders every
    text value (every ISO date) after every number: the comparison is true for any date, which
    no comparison of GoogleSQL STRING or DATETIME values says. Equality (never true for ISO
    text) and comparisons with date text (``date_col > '2015-01-01'``) are exact as text."""
    if isinstance(node, (exp.GT, exp.GTE, exp.LT, exp.LTE)):
        pairs = [(node.this, node.expression), (node.expression, node.this)]
    elif isinstance(node, exp.Between):
        pairs = [(node.this, node.args.get("low")), (node.this, node.args.get("high"))]
    else:
        return node
    for column, other in pairs:
        if other is not None and typer.is_date(column) and _numeric_looking(other, typer):
            raise Unsupported("unsupported:date_column_vs_number")
    return node


RULES = (
    date_column_ordering,
    text_literal_arithmetic,
    boolean_as_number,
    mixed_type_branches,
    formatted_date_arithmetic,
    float_to_integer_cast,
    numeric_arguments,
    mixed_type_comparison,
    integer_division,
    case_insensitive_like,
    string_concatenation,
)


def make_typer(column_type, column_is_date=None):
    def typer(node: exp.Expr):
        return type_of(node, column_type)

    def is_date(node: exp.Expr) -> bool:
        """A column declared DATE/DATETIME/TIME... (typed STRING: ISO text)."""
        while isinstance(node, exp.Paren):
            node = node.this
        return column_is_date is not None and isinstance(node, exp.Column) and bool(column_is_date(node))

    typer.is_date = is_date
    return typer


def apply_rules(node: exp.Expr, typer, nodes: list[exp.Expr] | None = None) -> exp.Expr:
    """Date/time constructs first (top-down), then every rule bottom-up; subqueries arrive
    already rendered (as ``exp.Var``) and are skipped. ``nodes``: the nodes of ``node``, or of
    what it was before its subqueries were rendered, when the caller has them (then ``node``
    is not walked to look for date constructs)."""
    dated = node.find(*_DATE_CONSTRUCTS) is not None if nodes is None else any(type(n) in _DATE_KINDS for n in nodes)
    if dated:  # most expressions have no date construct: no top-down walk then
        node = rewrite_dates(node, typer)
    return _apply_bottom_up(node, typer)


def _apply_bottom_up(node: exp.Expr, typer) -> exp.Expr:
    if type(node) in _LEAVES:
        return node
    map_children(node, lambda child: _apply_bottom_up(child, typer))
    return _rewritten(node, typer)


@functools.cache
def _rules_for(kind: type) -> tuple[tuple[int, Callable], ...]:
    """The rules of ``RULES`` that may rewrite a node of type ``kind``, with their positions.
    Most nodes (AND, a column's parent) have one or none; calling all of them on every node
    was most of the rules' cost."""
    return tuple((position, rule) for position, rule in enumerate(RULES) if issubclass(kind, rule.kinds))


def _rewritten(node: exp.Expr, typer, after: int = -1) -> exp.Expr:
    """``node`` after every rule past position ``after`` of ``RULES``, in order; the rules its
    type cannot need are skipped."""
    kind = type(node)
    for position, rule in _rules_for(kind):
        if position > after:
            node = rule(node, typer)
            if type(node) is not kind:  # replaced (a/b → DIV): the rules still to run are those of the new type
                return _rewritten(node, typer, position)
    return node
