"""Compare two query results the way text-to-SQL execution evaluation does.

A predicted query is right when it returns the gold query's rows:

- as a **multiset**: duplicates count, row order does not — unless the gold query orders its
  output (a top-level ``ORDER BY``), then order counts too;
- with **numbers compared by value**: ``1 == 1.0``, floats within a relative 1e-6 (absolute
  1e-9), ``True == 1``;
- **ignoring column names** (only positions matter);
- **tie-aware**: when the gold orders by a key and rows tie on it, any order among the tied rows
  is right, and where ``LIMIT``/``OFFSET`` cuts through a group of tied rows, any choice of that
  many rows from the group is right. The tied rows are found by running the gold query once more
  without its ``LIMIT`` and with its order keys appended as extra columns (:func:`tie_probe`).

Two levels of API, both free of I/O:

- :func:`compare(gold_rows, pred_rows, ordered=..., ties=...) <compare>` compares two row lists;
- :func:`compare_results(gold_sql, gold_rows, pred_rows, rerun) <compare_results>` decides
  ``ordered`` from the gold SQL and, only when the plain comparison fails, asks ``rerun`` (a
  callable that executes SQL on the gold's database and returns rows) for the tie probe.

A mismatch is classified (first that applies): ``WRONG_VALUES`` when the column counts differ,
``REORDER`` (same multiset, wrong order), ``DUPLICATE_DIFF`` (same distinct rows, different
multiplicities), ``TYPE_DIFF`` (equal once every value is read as text: ``'1'`` vs ``1``),
``NULL_DIFF`` (equal once NULL-bearing columns, or rows, are set aside), ``EXTRA_ROWS`` (the gold
rows plus more), ``MISSING_ROWS`` (a part of the gold rows), else ``WRONG_VALUES``.
"""

from __future__ import annotations

import functools
import math
from collections import Counter
from dataclasses import dataclass
from typing import Any, Callable, Sequence

import sqlglot
from sqlglot import exp

MATCH = "MATCH"
MISMATCH = "MISMATCH"

REORDER = "REORDER"
EXTRA_ROWS = "EXTRA_ROWS"
MISSING_ROWS = "MISSING_ROWS"
WRONG_VALUES = "WRONG_VALUES"
NULL_DIFF = "NULL_DIFF"
TYPE_DIFF = "TYPE_DIFF"
DUPLICATE_DIFF = "DUPLICATE_DIFF"
MISMATCH_SUBCLASSES = (REORDER, EXTRA_ROWS, MISSING_ROWS, WRONG_VALUES, NULL_DIFF, TYPE_DIFF, DUPLICATE_DIFF)

REL_TOL = 1e-6
ABS_TOL = 1e-9
# Above this many rows per side the tolerant pairwise fallback (quadratic) is skipped and only
# the sorted comparison decides.
_GREEDY_LIMIT = 300
_TIE_KEY_PREFIX = "__pipesql_tie_"

Row = Sequence[Any]


@dataclass(frozen=True)
class Verdict:
    """The outcome of one comparison. ``subclass`` is None exactly when the results match."""

    subclass: str | None = None
    detail: str = ""
    tie_aware: bool = False  # True when only the tie-aware reading made it a match

    @property
    def match(self) -> bool:
        return self.subclass is None

    @property
    def label(self) -> str:
        return MATCH if self.match else MISMATCH

    def as_dict(self) -> dict[str, Any]:
        return {"label": self.label, "subclass": self.subclass, "detail": self.detail, "tie_aware": self.tie_aware}


# --- values -------------------------------------------------------------------------------------

def normalize_value(value: Any) -> Any:
    """The value as compared: bools and integral floats become ints, bytes become text."""
    if isinstance(value, bool):
        return int(value)
    if isinstance(value, float) and math.isfinite(value) and value.is_integer() and abs(value) <= 2**53:
        return int(value)
    if isinstance(value, (bytes, bytearray, memoryview)):
        return bytes(value).decode("utf-8", errors="replace")
    return value


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _values_equal(a: Any, b: Any) -> bool:
    if _is_number(a) and _is_number(b):
        if isinstance(a, int) and isinstance(b, int):
            return a == b
        if math.isnan(a) or math.isnan(b):
            return math.isnan(a) and math.isnan(b)
        return a == b or math.isclose(a, b, rel_tol=REL_TOL, abs_tol=ABS_TOL)
    return a == b


def _rows_equal(a: Row, b: Row) -> bool:
    return len(a) == len(b) and all(_values_equal(x, y) for x, y in zip(a, b))


def _sort_key(value: Any) -> tuple:
    # Numbers sort among numbers, so near-equal floats end up side by side on both sides.
    if value is None:
        return (0, 0)
    if _is_number(value):
        return (1, value if not (isinstance(value, float) and math.isnan(value)) else math.inf)
    if isinstance(value, str):
        return (2, value)
    return (3, repr(value))


def _bucket_key(value: Any) -> Any:
    # Exact-match key for counting: floats are rounded to the tolerance so that 0.1 + 0.2 and 0.3
    # land in one bucket; the tolerant fallback catches what rounding splits.
    if isinstance(value, float) and math.isfinite(value):
        return float(f"{value:.9g}")
    return value


def normalize_value_row(row: Row) -> tuple:
    return tuple(normalize_value(v) for v in row)


def _normalize_rows(rows: Sequence[Row]) -> list[tuple]:
    return [normalize_value_row(row) for row in rows]


# --- multisets ------------------------------------------------------------------------------------

def _row_sort_key(row: Row) -> tuple:
    return tuple(_sort_key(v) for v in row)


def _greedy_cover(big: Sequence[Row], small: Sequence[Row]) -> bool:
    """True when every row of ``small`` pairs with a distinct row of ``big`` (within tolerance)."""
    unused = list(big)
    for row in small:
        for index, candidate in enumerate(unused):
            if _rows_equal(row, candidate):
                del unused[index]
                break
        else:
            return False
    return True


def multiset_equal(a: Sequence[Row], b: Sequence[Row]) -> bool:
    """Same rows, same multiplicities, any order (rows already normalized)."""
    if len(a) != len(b):
        return False
    if all(_rows_equal(x, y) for x, y in zip(sorted(a, key=_row_sort_key), sorted(b, key=_row_sort_key))):
        return True
    return len(a) <= _GREEDY_LIMIT and _greedy_cover(a, b)


def multiset_contains(big: Sequence[Row], small: Sequence[Row]) -> bool:
    """Every row of ``small`` occurs in ``big`` at least as often (rows already normalized)."""
    if len(small) > len(big):
        return False
    have = Counter(tuple(_bucket_key(v) for v in row) for row in big)
    need = Counter(tuple(_bucket_key(v) for v in row) for row in small)
    if all(have[key] >= count for key, count in need.items()):
        return True
    return len(big) <= _GREEDY_LIMIT and _greedy_cover(big, small)


def sequence_equal(a: Sequence[Row], b: Sequence[Row]) -> bool:
    return len(a) == len(b) and all(_rows_equal(x, y) for x, y in zip(a, b))


# --- ties ---------------------------------------------------------------------------------------

@dataclass(frozen=True)
class TieSegment:
    """``take`` rows, in any order, drawn from ``candidates`` (a group of rows tied on the order
    key). A group wholly inside the gold's window has ``take == len(candidates)``."""

    candidates: tuple[tuple, ...]
    take: int


@dataclass(frozen=True)
class TieWindow:
    """The gold's visible rows as consecutive tie segments: a predicted result is right when it
    walks the segments in order, each slice a sub-multiset of its segment's candidates."""

    segments: tuple[TieSegment, ...] = ()

    @property
    def has_ties(self) -> bool:
        return any(len(s.candidates) > 1 for s in self.segments)

    @property
    def size(self) -> int:
        return sum(s.take for s in self.segments)


@dataclass(frozen=True)
class TieProbe:
    """A rewrite of an ordered query that lists its rows (no LIMIT/OFFSET, or up to one row past
    the cut, :func:`order_key_probe`) with their order key values: columns ``key_columns`` of each probe row hold the key (negative: counted from
    the end), and all but the last ``extra_columns`` columns are the gold's own output."""

    sql: str
    extra_columns: int
    key_columns: tuple[int, ...]
    offset: int
    limit: int | None
    # The gold is a SELECT DISTINCT ordered by keys it does not output: the probe's rows stand
    # for the gold's only where each output row has one key (:meth:`fits`).
    distinct: bool = False

    def fits(self, probe_rows: Sequence[Row]) -> bool:
        """Whether the probe's rows are the gold's rows with their keys: always, except for a
        DISTINCT gold whose output rows do not determine their keys (then the probe has more rows)."""
        if not (self.distinct and self.extra_columns):
            return True
        outputs = {tuple(_bucket_key(v) for v in normalize_value_row(row[: len(row) - self.extra_columns]))
                   for row in probe_rows}
        return len(outputs) == len(probe_rows)


def _matches_ties(pred: Sequence[Row], window: TieWindow) -> bool:
    if len(pred) != window.size:
        return False
    start = 0
    for segment in window.segments:
        piece = pred[start : start + segment.take]
        start += segment.take
        if segment.take == 1 and len(segment.candidates) == 1:
            if not _rows_equal(piece[0], segment.candidates[0]):
                return False
        elif not multiset_contains(segment.candidates, piece):
            return False
    return True


def tie_window(probe: TieProbe, probe_rows: Sequence[Row]) -> TieWindow:
    """Group the probe's rows by order key and keep the groups the gold's window overlaps."""
    rows = _normalize_rows(probe_rows)
    groups: list[list[tuple]] = []
    last_key: object = object()
    for row in rows:
        key = _order_key(probe, row)
        if not groups or key != last_key:
            groups.append([])
            last_key = key
        groups[-1].append(row[: len(row) - probe.extra_columns])
    lo = probe.offset
    hi = len(rows) if probe.limit is None else min(len(rows), probe.offset + probe.limit)
    segments, position = [], 0
    for group in groups:
        first, last = position, position + len(group)
        position = last
        take = min(last, hi) - max(first, lo)
        if take > 0:
            segments.append(TieSegment(tuple(group), take))
    return TieWindow(tuple(segments))


# --- classification -------------------------------------------------------------------------------

def _as_text(rows: Sequence[Row]) -> list[tuple]:
    def text(v: Any) -> Any:
        if v is None:
            return None
        if isinstance(v, float):
            return repr(float(f"{v:.9g}"))
        return str(v)

    return [tuple(text(v) for v in row) for row in rows]


def _without_null_columns(a: Sequence[Row], b: Sequence[Row]) -> tuple[list[tuple], list[tuple]] | None:
    width = len(a[0]) if a else len(b[0]) if b else 0
    nullish = {i for rows in (a, b) for row in rows for i, v in enumerate(row) if v is None}
    if not nullish or len(nullish) == width:
        return None
    keep = [i for i in range(width) if i not in nullish]
    return [tuple(r[i] for i in keep) for r in a], [tuple(r[i] for i in keep) for r in b]


def _null_diff(gold: Sequence[Row], pred: Sequence[Row]) -> bool:
    stripped = _without_null_columns(gold, pred)
    if stripped and multiset_equal(*stripped):
        return True
    gold_full = [r for r in gold if None not in r]
    pred_full = [r for r in pred if None not in r]
    changed = len(gold_full) != len(gold) or len(pred_full) != len(pred)
    return changed and multiset_equal(gold_full, pred_full)


def _classify(gold: list[tuple], pred: list[tuple], ordered: bool) -> Verdict:
    widths = {len(r) for r in gold} | {len(r) for r in pred}
    if len(widths) > 1:
        gold_width = len(gold[0]) if gold else "?"
        pred_width = len(pred[0]) if pred else "?"
        return Verdict(WRONG_VALUES, f"column count differs: gold {gold_width}, predicted {pred_width}")
    if multiset_equal(gold, pred):
        if ordered and not sequence_equal(gold, pred):
            first = next(i for i, (g, p) in enumerate(zip(gold, pred)) if not _rows_equal(g, p))
            return Verdict(REORDER, f"same rows, order differs from row {first}")
        return Verdict()
    counts = f"gold {len(gold)} rows, predicted {len(pred)}"
    if multiset_equal(sorted(set(gold), key=_row_sort_key), sorted(set(pred), key=_row_sort_key)):
        return Verdict(DUPLICATE_DIFF, f"same distinct rows, different multiplicities ({counts})")
    if Counter(_as_text(gold)) == Counter(_as_text(pred)):
        return Verdict(TYPE_DIFF, "equal only when values are read as text")
    if _null_diff(gold, pred):
        return Verdict(NULL_DIFF, f"differs only where NULLs are ({counts})")
    if len(pred) > len(gold) and multiset_contains(pred, gold):
        return Verdict(EXTRA_ROWS, counts)
    if len(pred) < len(gold) and multiset_contains(gold, pred):
        return Verdict(MISSING_ROWS, counts)
    return Verdict(WRONG_VALUES, _first_difference(gold, pred, counts))


def _first_difference(gold: Sequence[Row], pred: Sequence[Row], counts: str) -> str:
    predicted = Counter(tuple(_bucket_key(v) for v in row) for row in pred)
    missing = next((row for row in gold if predicted[tuple(_bucket_key(v) for v in row)] == 0), None)
    example = f"; e.g. gold row {missing!r} not predicted" if missing is not None else ""
    return (counts + example)[:300]


def compare(gold_rows: Sequence[Row], pred_rows: Sequence[Row], *, ordered: bool = False,
            ties: TieWindow | None = None) -> Verdict:
    """Compare a predicted result with the gold result.

    >>> compare([(1, "a"), (2, "b")], [(2.0, "b"), (1, "a")]).match
    True
    >>> compare([(1,), (2,)], [(2,), (1,)], ordered=True).subclass
    'REORDER'

    ``ties`` (from :func:`tie_window`) widens what counts as a match for an ordered gold result.
    """
    gold = _normalize_rows(gold_rows)
    pred = _normalize_rows(pred_rows)
    verdict = _classify(gold, pred, ordered)
    if verdict.match or ties is None or not ties.has_ties:
        return verdict
    if _matches_ties(pred, ties):
        return Verdict(tie_aware=True, detail="rows tied on the order key differ in choice or order")
    return verdict


# --- reading the gold SQL -----------------------------------------------------------------------

def _parse(sql: str, dialect: str) -> exp.Expression | None:
    try:
        expressions = sqlglot.parse(sql, read=dialect)
    except sqlglot.errors.SqlglotError:
        return None
    except Exception:  # sqlglot raises plain errors on some malformed input; never let them out
        return None
    return expressions[0] if len(expressions) == 1 and expressions[0] is not None else None


def _top_query(tree: exp.Expression) -> exp.Expression:
    while isinstance(tree, exp.Subquery):
        tree = tree.this
    return tree


@functools.lru_cache(maxsize=4096)
def orders_output(sql: str, dialect: str = "sqlite") -> bool:
    """Whether the query orders its own output (a top-level ORDER BY), i.e. row order counts.
    Remembered per text: validation compares the same gold on many database variants."""
    tree = _parse(sql, dialect)
    return tree is not None and _top_query(tree).args.get("order") is not None


def _int_literal(node: exp.Expression | None) -> int | None:
    if node is None:
        return None
    value = node.expression if isinstance(node, (exp.Limit, exp.Offset)) else node
    if isinstance(value, exp.Literal) and not value.is_string:
        try:
            return int(value.this)
        except ValueError:
            return None
    return None


def _output_index(key: exp.Expression, projections: list[exp.Expression]) -> int | None:
    """The 0-based output column an ORDER BY key names: a position, an alias or the same
    expression as a projection."""
    if isinstance(key, exp.Literal) and not key.is_string:
        position = _int_literal(key)
        return position - 1 if position and 1 <= position <= len(projections) else None
    if isinstance(key, exp.Column) and not key.table:
        for index, projection in enumerate(projections):
            if isinstance(projection, exp.Alias) and projection.alias.lower() == key.name.lower():
                return index
    for index, projection in enumerate(projections):
        bare = projection.this if isinstance(projection, exp.Alias) else projection
        if bare == key:
            return index
    return None


def _expand_aliases(key: exp.Expression, projections: list[exp.Expression]) -> exp.Expression:
    aliases = {p.alias.lower(): p.this for p in projections if isinstance(p, exp.Alias)}

    def replace(node: exp.Expression) -> exp.Expression:
        if isinstance(node, exp.Column) and not node.table and node.name.lower() in aliases:
            return aliases[node.name.lower()].copy()
        return node

    return key.copy().transform(replace)


def tie_probe(sql: str, dialect: str = "sqlite") -> TieProbe | None:
    """The query that reveals which of an ordered gold query's rows tie on its order key, or
    None when the gold is not ordered or cannot be rewritten safely (see :func:`order_key_probe`)."""
    tree = _parse(sql, dialect)
    if tree is None:
        return None
    return order_key_probe(_top_query(tree), dialect)


def order_key_probe(query: exp.Expression, dialect: str = "sqlite", *, past_cut: bool = False) -> TieProbe | None:
    """``query`` (a whole query or one of its subqueries) rewritten to list its rows with their
    order key values: without its LIMIT/OFFSET, or with ``past_cut`` only up to one row past the
    LIMIT's cut (enough to see whether the cut splits a tie, :func:`cut_splits_tie`). None when
    the query is not ordered or cannot be rewritten safely (a set operation ordered by what it
    does not output, a non-literal LIMIT, a position after ``*``). A DISTINCT ordered by a key
    it does not output gets the key appended too: that probe counts only where each output row
    has one key (:meth:`TieProbe.fits`), as when the table's primary key is selected."""
    query = query.copy()
    order = query.args.get("order")
    if order is None:
        return None
    limit_node, offset_node = query.args.get("limit"), query.args.get("offset")
    limit = _int_literal(limit_node)
    offset = _int_literal(offset_node) or 0
    if (limit_node is not None and limit is None) or (offset_node is not None and _int_literal(offset_node) is None):
        return None
    select = query if isinstance(query, exp.Select) else query.find(exp.Select)
    if select is None:
        return None
    projections = list(select.expressions)
    # With a * the output width is unknown here, so every key is appended and found from the end.
    star = any(isinstance(p, exp.Star) or (isinstance(p, exp.Column) and isinstance(p.this, exp.Star))
               for p in projections)
    keys: list[int | exp.Expression] = []
    for ordered in order.expressions:
        key = ordered.this
        index = None if star else _output_index(key, projections)
        if index is not None:
            keys.append(index)
            continue
        if star and isinstance(key, exp.Literal) and not key.is_string:
            return None
        if not isinstance(query, exp.Select):
            return None  # a set operation orders by output columns only
        keys.append(_expand_aliases(key, projections))
    extra = [k for k in keys if isinstance(k, exp.Expression)]
    key_columns, appended = [], 0
    for key in keys:
        if isinstance(key, int):
            key_columns.append(key)
        else:
            key_columns.append(appended - len(extra))
            appended += 1
    rows = offset + limit + 1 if past_cut and limit is not None else None
    query.set("limit", None if rows is None else exp.Limit(expression=exp.Literal.number(rows)))
    query.set("offset", None)
    if extra:
        query.set("expressions", projections + [exp.alias_(k, f"{_TIE_KEY_PREFIX}{i}") for i, k in enumerate(extra)])
    return TieProbe(query.sql(dialect=dialect), len(extra), tuple(key_columns), offset, limit,
                    distinct=bool(query.args.get("distinct")))


def _order_key(probe: TieProbe, row: tuple) -> tuple:
    return tuple(_bucket_key(row[i]) for i in probe.key_columns)


def cut_splits_tie(probe: TieProbe, probe_rows: Sequence[Row]) -> bool:
    """Whether the last row the query's LIMIT keeps ties on the order key with the first row it
    cuts: then the query may return either, and its result is not defined by SQL."""
    if probe.limit is None or not probe.fits(probe_rows):
        return False
    cut = probe.offset + probe.limit
    if not 0 < cut < len(probe_rows):
        return False
    before, after = _normalize_rows(probe_rows[cut - 1 : cut + 1])
    return _order_key(probe, before) == _order_key(probe, after)


def compare_results(gold_sql: str, gold_rows: Sequence[Row], pred_rows: Sequence[Row],
                    rerun: Callable[[str], Sequence[Row]] | None = None, dialect: str = "sqlite") -> Verdict:
    """Execution-evaluation comparison of a prediction against a gold query's result.

    Order counts when the gold query orders its output. When the plain comparison fails on an
    ordered gold and ``rerun`` is given, the tie probe runs (``rerun(sql) -> rows`` on the gold's
    database; let it raise on failure) and tied rows are accepted in any order and choice.
    """
    ordered = orders_output(gold_sql, dialect)
    verdict = compare(gold_rows, pred_rows, ordered=ordered)
    if verdict.match or not ordered or rerun is None:
        return verdict
    probe = tie_probe(gold_sql, dialect)
    if probe is None:
        return verdict
    try:
        probe_rows = rerun(probe.sql)
    except Exception:  # the probe is best effort: without it the plain verdict stands
        return verdict
    if not probe.fits(probe_rows):
        return verdict
    return compare(gold_rows, pred_rows, ordered=True, ties=tie_window(probe, probe_rows))
