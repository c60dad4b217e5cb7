"""Static types of SQLite expressions, as far as the schema tells them.

SQLite types values, not columns, so the declared type only gives a column *affinity*.
GoogleSQL types are static, so every semantic rule (integer division, mixed-type comparison,
``||`` on numbers) asks this module what an expression will be in GoogleSQL. The mapping from
declared type to GoogleSQL type is :func:`googlesql_type`; a catalog built for ZetaSQL must use
the same mapping for the emitted casts to line up.
"""

from __future__ import annotations

from sqlglot import exp

INT = "INT64"
FLOAT = "FLOAT64"
STRING = "STRING"
BOOL = "BOOL"


def is_date_type(declared: str | None) -> bool:
    """A declared type that holds dates or times as text (``DATE``, ``DATETIME``,
    ``TIMESTAMP``): typed STRING like any text, but known to hold ISO dates."""
    return googlesql_type(declared) == STRING and any(w in (declared or "").upper() for w in ("DATE", "TIME"))


def googlesql_type(declared: str | None) -> str:
    """The GoogleSQL type a column of this declared SQLite type is given.

    >>> googlesql_type("VARCHAR(20)"), googlesql_type("int(11)"), googlesql_type("DECIMAL(19,4)")
    ('STRING', 'INT64', 'FLOAT64')

    SQLite's affinity rules, in their order (section 3.1 of its datatype page), then the
    NUMERIC affinity split: dates and times are stored as text in the benchmarks, so they are
    STRING; BOOLEAN holds 0/1, so INT64; every other NUMERIC spelling is FLOAT64.
    """
    d = (declared or "").upper()
    if "INT" in d:
        return INT
    if "CHAR" in d or "CLOB" in d or "TEXT" in d or d == "" or "BLOB" in d:
        return STRING
    if "REAL" in d or "FLOA" in d or "DOUB" in d:
        return FLOAT
    if "DATE" in d or "TIME" in d or "YEAR" in d:
        return STRING
    if "BOOL" in d:
        return INT
    return FLOAT


_STRING_FUNCS = (
    exp.Upper, exp.Lower, exp.Substring, exp.Trim, exp.Concat, exp.DPipe, exp.Initcap,
    exp.GroupConcat, exp.Replace if hasattr(exp, "Replace") else exp.Upper,
)
_INT_FUNCS = (exp.Count, exp.Length, exp.StrPosition, exp.IntDiv)


def numeric(kind: str | None) -> bool:
    return kind in (INT, FLOAT)


def type_of(node: exp.Expr, column_type) -> str | None:
    """GoogleSQL type of ``node``; ``column_type(column)`` resolves a column reference.

    Returns None when the type cannot be known (an untyped subquery column, NULL).
    """
    if isinstance(node, exp.Paren):
        return type_of(node.this, column_type)
    if isinstance(node, exp.Column):
        return column_type(node)
    if isinstance(node, exp.Literal):
        if node.is_string:
            return STRING
        text = node.this
        return FLOAT if any(c in text for c in ".eE") else INT
    if isinstance(node, (exp.Cast, exp.TryCast)):
        to = node.to
        if to.is_type(*exp.DataType.INTEGER_TYPES):
            return INT
        if to.is_type(*exp.DataType.REAL_TYPES):
            return FLOAT
        if to.is_type(*exp.DataType.TEXT_TYPES):
            return STRING
        return None
    if isinstance(node, exp.Neg):
        return type_of(node.this, column_type)
    if isinstance(node, exp.Predicate) or isinstance(node, (exp.Not, exp.And, exp.Or)):
        return BOOL
    if isinstance(node, _INT_FUNCS):
        return INT
    if isinstance(node, (exp.Avg, exp.Div, exp.Round, exp.Sqrt, exp.Pow, exp.Exp, exp.Ln, exp.Log)):
        if isinstance(node, exp.Round) and node.args.get("decimals") is None:
            return FLOAT
        return FLOAT
    if isinstance(node, (exp.Sum, exp.Abs)):
        # over text SQLite computes numbers; the emitter casts such an argument to FLOAT64
        return INT if type_of(node.this, column_type) == INT else FLOAT
    if isinstance(node, (exp.Max, exp.Min, exp.AnyValue)):
        inner = node.this
        if isinstance(inner, (exp.HavingMax,)):
            inner = inner.this
        return type_of(inner, column_type)
    if isinstance(node, (exp.Add, exp.Sub, exp.Mul, exp.Mod)):
        left = type_of(node.this, column_type)
        right = type_of(node.expression, column_type)
        if left == INT and right == INT:
            return INT
        if FLOAT in (left, right) or {left, right} <= {INT, FLOAT, None}:
            return FLOAT if (left or right) else None
        return None
    if isinstance(node, _STRING_FUNCS):
        return STRING
    if isinstance(node, (exp.Coalesce, exp.If, exp.Case, exp.Greatest, exp.Least)):
        candidates = []
        if isinstance(node, exp.Case):
            candidates = [i.args.get("true") for i in node.args.get("ifs") or []] + [node.args.get("default")]
        elif isinstance(node, exp.If):
            candidates = [node.args.get("true"), node.args.get("false")]
        else:
            candidates = [node.this, *node.expressions]
        for c in candidates:
            if c is not None and not isinstance(c, exp.Null):
                kind = type_of(c, column_type)
                if kind:
                    return kind
        return None
    if isinstance(node, exp.Subquery):
        return node.meta.get("pipesql_type")
    if isinstance(node, (exp.TimeToStr, exp.Date)):
        return STRING  # SQLite's strftime and date() return text
    if isinstance(node, exp.Extract):
        return INT
    if isinstance(node, exp.Trunc):
        return FLOAT
    if isinstance(node, exp.Anonymous):
        # SQLite's own date functions, and the GoogleSQL the decompiler writes for them
        name = node.name.upper()
        if name in ("DATE", "DATETIME", "TIME", "FORMAT_DATETIME"):
            return STRING
        if name == "JULIANDAY":
            return FLOAT
    return None
