"""Database variants: small generated copies of a database on which a golden pair is proven again.

One database can agree with a wrong query by accident (a dropped filter that removes nothing
there, ``<`` where no row equals the bound). Test-suite accuracy (Zhong, Yu & Klein, EMNLP 2020)
runs the pair on several databases of the same schema instead; this module makes them:

- the variant is built from the original's own DDL (``sqlite_master``), so declared types,
  affinities, primary keys, UNIQUE and NOT NULL hold as in the original (a generated row that
  breaks one is dropped by ``INSERT OR IGNORE``);
- each column's values come from the original's values (its first rows), from the query's
  literals that the column is compared with (the literal itself and values either side of it:
  for numbers ±1, for text the literal cut by a character and extended by one, so ``<``
  against ``<=`` shows), and from a few values made up near those;
- columns linked by a foreign key or by an equality in the query draw from one shared pool of
  values, so joins hit; about one value in five is left dangling (or NULL), half of those
  pointing at one missing parent, so orphan children form a group of their own, and parents
  without children are common: LEFT and INNER joins differ;
- tables get between 1 and ``rows`` rows (every other variant: a third of that, where one row
  more or less shows), so ties, duplicates and empty groups are common and every query runs in
  milliseconds; a one-column primary key gets distinct values, so joins find their parents;
- variants 2, 6, ... are *narrow* (:func:`_narrow_value`): each column keeps one or two values
  (a column the query compares with literals: exactly those and their neighbours) and a row is
  repeated, so groups of different sizes, repeated rows (a missing DISTINCT) and values equal to
  an aggregate of them (``x < (SELECT AVG(x) ...)`` against ``<=``) are common; where the query
  bounds a COUNT (``HAVING count(*) > 10``), the tables take that many rows, or one more or less.

A variant is a function of (database, gold SQL, index): the seed is a hash of them, so the
same run gives the same variants and a saved witness can be rebuilt.

:func:`first_disagreement` runs the gold and the candidate on K variants. A variant where the
gold itself depends on SQLite's scan order (it gives other rows with ``PRAGMA
reverse_unordered_selects``: ``LIMIT`` without a total order, bare columns) proves nothing and
is skipped, and so is one where a subquery's ``ORDER BY ... LIMIT`` cuts through tied rows, or
where the gold fails or times out.
"""

from __future__ import annotations

import hashlib
import random
import re
import sqlite3
import string
from dataclasses import dataclass, field
from functools import cached_property, lru_cache
from pathlib import Path
from typing import Any, Callable, Sequence

import sqlglot
from sqlglot import exp

from pipesql.sql.compare import TieProbe, compare_results, cut_splits_tie, order_key_probe
from pipesql.sql.execute import QueryError, connect_readonly, connect_scratch, deadline, execute, seal
from pipesql.sql.identifiers import sqlite_identifier
from pipesql.sql.types import FLOAT, INT, googlesql_type, is_date_type

DEFAULT_VARIANTS = 8
DEFAULT_ROWS = 12
SAMPLE_ROWS = 200          # rows of each original table read for its value pools
VARIANT_TIMEOUT_S = 2.0    # per query on a variant; the data are tiny, so only a blow-up hits it
# Queries per variant under VARIANT_TIMEOUT_S: building it, the gold, a candidate, an order-key probe.
VARIANT_QUERIES = 4
_LITERAL_SHARE = 0.5       # a seeded column takes a query literal this often
MAX_GROUP_SIZE = 300       # the largest COUNT bound a narrow variant builds a group for
_NULL_SHARE = 0.08
_DANGLING_SHARE = 0.2
_INTEGER_TEXT = re.compile(r"-?\d{1,15}")
_COMPARISONS = (exp.EQ, exp.NEQ, exp.GT, exp.GTE, exp.LT, exp.LTE, exp.Like, exp.ILike, exp.Glob, exp.In,
                exp.Between)


@dataclass(frozen=True)
class SourceColumn:
    name: str
    declared: str
    not_null: bool
    primary_key: bool
    samples: tuple[Any, ...]   # distinct values from the original's first rows

    # What made-up values are drawn near, worked out once per column rather than per value.

    @cached_property
    def kind(self) -> str:
        return googlesql_type(self.declared)

    @cached_property
    def numbers(self) -> tuple[Any, ...]:
        return tuple(v for v in self.samples if isinstance(v, (int, float)) and not isinstance(v, bool))

    @cached_property
    def texts(self) -> tuple[str, ...]:
        return tuple(v for v in self.samples if isinstance(v, str))

    @cached_property
    def digit_texts(self) -> bool:
        """Its sampled texts are all integers (ids kept as text)."""
        return bool(self.texts) and all(_INTEGER_TEXT.fullmatch(t) for t in self.texts)


@dataclass(frozen=True)
class SourceTable:
    name: str
    columns: tuple[SourceColumn, ...]
    foreign_keys: tuple[tuple[str, str, str], ...]  # (column, referenced table, referenced column)


@dataclass(frozen=True)
class Source:
    """What variants of one database are made from: its DDL and a sample of its values."""

    ddl: tuple[tuple[str, str, str], ...]  # (type, table it belongs to, SQL): tables, then indexes, then views
    tables: tuple[SourceTable, ...]

    def table(self, name: str) -> SourceTable | None:
        lowered = name.lower()
        return next((t for t in self.tables if t.name.lower() == lowered), None)


@dataclass(frozen=True)
class Disagreement:
    """A variant on which the candidate's result differs from the gold's."""

    index: int
    seed: int
    detail: str
    subclass: str | None
    connection: sqlite3.Connection = field(repr=False, compare=False)

    def save(self, path: Path) -> Path:
        """Write this variant as a SQLite file (through a temporary name, then renamed)."""
        path.parent.mkdir(parents=True, exist_ok=True)
        partial = path.with_name(path.name + ".partial")
        partial.unlink(missing_ok=True)
        target = sqlite3.connect(partial)
        try:
            self.connection.backup(target)
        finally:
            target.close()
        partial.replace(path)
        return path


def _ddl_of(conn: sqlite3.Connection) -> tuple[tuple[str, str, str], ...]:
    rows = execute(conn, "SELECT type, tbl_name, sql FROM sqlite_master WHERE sql IS NOT NULL "
                         "AND name NOT LIKE 'sqlite_%' "
                         "ORDER BY CASE type WHEN 'table' THEN 0 WHEN 'index' THEN 1 ELSE 2 END, rowid").rows
    return tuple((kind, table.lower(), sql) for kind, table, sql in rows if kind in ("table", "index", "view"))


def _source_table(conn: sqlite3.Connection, name: str) -> SourceTable:
    quoted = sqlite_identifier(name)
    # Schema PRAGMAs are SQL of our own: the sandbox's authorizer allows them, its query-only gate does not.
    info = conn.execute(f"PRAGMA table_info({quoted})").fetchall()
    foreign = tuple((row[3], row[2], row[4] or "") for row in conn.execute(f"PRAGMA foreign_key_list({quoted})"))
    try:
        sample = execute(conn, f"SELECT * FROM {quoted} LIMIT {SAMPLE_ROWS}", timeout_s=VARIANT_TIMEOUT_S).rows
    except QueryError:
        sample = ()
    columns = []
    for position, row in enumerate(info):
        distinct = tuple(dict.fromkeys(r[position] for r in sample if position < len(r) and r[position] is not None))
        columns.append(SourceColumn(row[1], (row[2] or "").upper(), bool(row[3]), bool(row[5]), distinct))
    return SourceTable(name, tuple(columns), foreign)


@lru_cache(maxsize=8)
def source_of(db_path: str) -> Source:
    """The :class:`Source` of a database file (cached per process: one read per database)."""
    conn = connect_readonly(db_path)
    try:
        names = [r[0] for r in execute(conn, "SELECT name FROM sqlite_master WHERE type = 'table' "
                                             "AND name NOT LIKE 'sqlite_%' ORDER BY rowid").rows]
        return Source(_ddl_of(conn), tuple(_source_table(conn, name) for name in names))
    finally:
        conn.close()


# --- what the query says about the data it needs -------------------------------------------------

def _literal_value(node: exp.Expr) -> Any:
    if isinstance(node, exp.Neg) and isinstance(node.this, exp.Literal) and not node.this.is_string:
        value = _literal_value(node.this)
        return -value if isinstance(value, (int, float)) else None
    if not isinstance(node, exp.Literal):
        return None
    if node.is_string:
        return node.this
    try:
        return int(node.this)
    except ValueError:
        try:
            return float(node.this)
        except ValueError:
            return None


def _like_examples(pattern: str) -> list[str]:
    """Strings that match a LIKE pattern, in two letter cases (SQLite's LIKE ignores case)."""
    text = pattern.replace("%", "x").replace("_", "y")
    return [text, pattern.replace("%", "").replace("_", "a").upper()]


def _neighbours(value: Any, ordering: bool = False) -> list[Any]:
    """The literal and values either side of it (the bound itself half the time: where ``<`` and
    ``<=`` differ); a text literal gets neighbours only where the query orders by it."""
    if isinstance(value, str):
        return [value, value, value[:-1], value + "0"] if ordering and value else [value]
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return [value]
    step = 1 if isinstance(value, int) or float(value).is_integer() else abs(value) * 0.01 or 0.01
    return [value, value, value - step, value + step]


class _Columns:
    """Resolves a query's column references to (table, column) of the database."""

    def __init__(self, tree: exp.Expr, source: Source):
        self.source = source
        self.aliases: dict[str, str] = {}
        for table in tree.find_all(exp.Table):
            if source.table(table.name):
                self.aliases[(table.alias_or_name or table.name).lower()] = source.table(table.name).name
        self.in_query = list(dict.fromkeys(self.aliases.values()))

    def resolve(self, column: exp.Column) -> list[tuple[str, str]]:
        name = column.name.lower()
        tables = [self.aliases[column.table.lower()]] if column.table.lower() in self.aliases else self.in_query
        found = []
        for table_name in tables:
            table = self.source.table(table_name)
            match = next((c for c in table.columns if c.name.lower() == name), None) if table else None
            if match:
                found.append((table.name, match.name))
        return found


def _operand_columns(node: exp.Expr) -> list[exp.Column]:
    # a column compared directly, or under CAST / a string function (strftime('%Y', d), lower(x))
    if isinstance(node, exp.Column):
        return [node]
    if isinstance(node, (exp.Cast, exp.Lower, exp.Upper, exp.Trim, exp.Paren)):
        return _operand_columns(node.this)
    return []


@dataclass
class QueryHints:
    """Literals per (table, column), and pairs of columns the query equates (joins)."""

    literals: dict[tuple[str, str], list[Any]]
    links: list[tuple[tuple[str, str], tuple[str, str]]]
    # lower-cased tables the query reads; None: all (it reads a view, or could not be parsed)
    tables: frozenset[str] | None = None
    # ``COUNT(...) > 10``: 10 and its neighbours, so a narrow variant can hold a group of that size
    group_sizes: list[int] = field(default_factory=list)


def _tables_read(tree: exp.Expr, source: Source) -> frozenset[str] | None:
    views = {table for kind, table, _ in source.ddl if kind == "view"}
    names = {t.name.lower() for t in tree.find_all(exp.Table)}
    if names & views:
        return None
    return frozenset(n for n in names if source.table(n) is not None)


def query_hints(sql: str, source: Source) -> QueryHints:
    hints = QueryHints({}, [])
    try:
        tree = sqlglot.parse_one(sql, read="sqlite")
    except Exception:  # noqa: BLE001 - an unparseable gold gets unseeded variants
        return hints
    hints.tables = _tables_read(tree, source)
    columns = _Columns(tree, source)
    known = {c.name.lower() for t in source.tables for c in t.columns}
    for column in list(tree.find_all(exp.Column)):
        # SQLite reads "Spanish" as a string when no column has that name (Spider does this a lot)
        if column.this.quoted and not column.table and column.name.lower() not in known:
            column.replace(exp.Literal.string(column.name))
    for predicate in tree.find_all(*_COMPARISONS):
        operands = [predicate.this, *([predicate.expression] if predicate.expression else []),
                    *predicate.expressions, *(predicate.args.get(k) for k in ("low", "high") if predicate.args.get(k))]
        refs = [ref for node in operands for column in _operand_columns(node) for ref in columns.resolve(column)]
        values = [v for node in operands if (v := _literal_value(node)) is not None]
        if isinstance(predicate, (exp.Like, exp.ILike)):
            values = [s for v in values if isinstance(v, str) for s in _like_examples(v)]
        else:
            ordering = isinstance(predicate, (exp.GT, exp.GTE, exp.LT, exp.LTE, exp.Between))
            values = [n for v in values for n in _neighbours(v, ordering)]
        for ref in refs:
            hints.literals.setdefault(ref, []).extend(values)
        if isinstance(predicate.this, exp.Count):
            hints.group_sizes += [n for n in values if isinstance(n, int) and 0 < n <= MAX_GROUP_SIZE]
        if isinstance(predicate, exp.EQ) and isinstance(predicate.this, exp.Column) \
                and isinstance(predicate.expression, exp.Column):
            left, right = columns.resolve(predicate.this), columns.resolve(predicate.expression)
            hints.links += [(a, b) for a in left for b in right if a != b]
    return hints


# --- building one variant ------------------------------------------------------------------------

def variant_seed(db_path: str | Path, sql: str, index: int) -> int:
    key = f"{Path(db_path).name}\x00{sql}\x00{index}".encode()
    return int.from_bytes(hashlib.sha256(key).digest()[:8], "big")


def _made_up(column: SourceColumn, rng: random.Random) -> Any:
    """A value of the column's declared type near its sampled values (or plausible without any)."""
    numbers, texts = column.numbers, column.texts
    if column.kind == INT:
        base = int(rng.choice(numbers)) if numbers else rng.randint(0, 50)
        return base + rng.randint(-3, 3)
    if column.kind == FLOAT:
        base = float(rng.choice(numbers)) if numbers else rng.uniform(0, 100)
        return round(base * rng.uniform(0.8, 1.2), 2)
    if is_date_type(column.declared):
        return f"{rng.randint(1990, 2025):04d}-{rng.randint(1, 12):02d}-{rng.randint(1, 28):02d}"
    if column.digit_texts:
        return str(int(rng.choice(texts)) + rng.randint(-3, 3))  # ids kept as text stay digits
    if texts and rng.random() < 0.5:
        return rng.choice(texts) + rng.choice(string.ascii_lowercase)
    return "".join(rng.choice(string.ascii_letters) for _ in range(rng.randint(3, 8)))


class _Groups:
    """Union-find over (table, column): foreign keys and the query's equalities join groups."""

    def __init__(self):
        self.parent: dict[tuple[str, str], tuple[str, str]] = {}

    def find(self, key):
        key = (key[0].lower(), key[1].lower())
        while self.parent.get(key, key) != key:
            key = self.parent[key]
        return key

    def union(self, a, b):
        ra, rb = self.find(a), self.find(b)
        if ra != rb:
            self.parent[max(ra, rb)] = min(ra, rb)


@dataclass(frozen=True)
class _Slot:
    """A column as the variants of one query fill it."""

    column: SourceColumn
    literals: list[Any] | None  # the query's literals compared with it
    group: tuple[str, str]      # its group of linked columns (foreign keys, the query's equalities)


@dataclass(frozen=True)
class _Layout:
    """What the variants of one query share; only their random draws differ (so
    :func:`first_disagreement` works it out once for all of them)."""

    schema: sqlite3.Connection                      # the DDL run on an empty database, copied into each variant
    tables: tuple[tuple[str, tuple[_Slot, ...]], ...]  # (INSERT statement, its columns), parents first
    # each group of two or more linked columns: its root, its first column, their sampled values
    linked: tuple[tuple[tuple[str, str], SourceColumn, tuple[Any, ...]], ...]
    group_sizes: tuple[int, ...] = ()  # row counts a narrow variant's tables take (the query's COUNT bounds)


def _groups(source: Source, hints: QueryHints) -> _Groups:
    groups = _Groups()
    for table in source.tables:
        for column, ref_table, ref_column in table.foreign_keys:
            target = source.table(ref_table)
            if target is None:
                continue
            ref = ref_column or next((c.name for c in target.columns if c.primary_key), "")
            if ref:
                groups.union((table.name, column), (target.name, ref))
    for a, b in hints.links:
        groups.union(a, b)
    return groups


def _layout(source: Source, hints: QueryHints) -> _Layout:
    """Only the tables the query reads are built (a database's other tables cannot change its
    result, and building them was most of a variant's cost)."""
    groups = _groups(source, hints)
    members: dict[tuple[str, str], list[SourceColumn]] = {}
    for table in source.tables:
        for column in table.columns:
            members.setdefault(groups.find((table.name, column.name)), []).append(column)
    linked = tuple((root, cols[0], tuple(dict.fromkeys(v for c in cols for v in c.samples)))
                   for root, cols in members.items() if len(cols) >= 2)
    tables = []
    for table in _parents_first(source):
        if hints.tables is not None and table.name.lower() not in hints.tables:
            continue
        names = ", ".join(sqlite_identifier(c.name) for c in table.columns)
        marks = ", ".join("?" for _ in table.columns)
        slots = tuple(_Slot(c, hints.literals.get((table.name, c.name)), groups.find((table.name, c.name)))
                      for c in table.columns)
        tables.append((f"INSERT OR IGNORE INTO {sqlite_identifier(table.name)} ({names}) VALUES ({marks})", slots))
    return _Layout(_schema(source, hints), tuple(tables), linked, tuple(hints.group_sizes))


def _schema(source: Source, hints: QueryHints) -> sqlite3.Connection:
    # The file's own DDL is input like its gold SQL: run under the sandbox's limits and a deadline.
    schema = connect_scratch()
    with deadline(schema, VARIANT_TIMEOUT_S):
        for _, table, statement in source.ddl:
            if hints.tables is not None and table not in hints.tables:
                continue
            try:
                schema.execute(statement)
            except sqlite3.Error:  # e.g. a view over a table this SQLite cannot create: the rest still stands
                continue
    schema.commit()
    return schema


def _pools(layout: _Layout, rows: int, rng: random.Random) -> dict:
    """A value pool per group of linked columns: their sampled values, shuffled, topped up."""
    pools = {}
    for root, first, candidates in layout.linked:
        shuffled = list(candidates)
        rng.shuffle(shuffled)
        pool = shuffled[:rows]
        while len(pool) < rows:
            pool.append(_made_up(first, rng))
        pools[root] = pool
        pools[("orphan",) + root] = _made_up(first, rng)
    return pools


def _value(slot: _Slot, pools: dict, rng: random.Random) -> Any:
    column = slot.column
    if slot.literals and rng.random() < _LITERAL_SHARE:
        return rng.choice(slot.literals)
    if not column.not_null and not column.primary_key and rng.random() < _NULL_SHARE:
        return None
    pool = pools.get(slot.group)
    if pool is not None and rng.random() > _DANGLING_SHARE:
        present = pools.get(("present",) + slot.group)  # values a linked column already holds: joins hit
        return rng.choice(present if present and rng.random() < 0.7 else pool)
    if pool is not None and rng.random() < 0.5:
        return pools[("orphan",) + slot.group]  # one missing parent for many children: its group shows
    if column.samples and rng.random() < 0.75:
        return rng.choice(column.samples)
    return _made_up(column, rng)


def _narrow_value(slot: _Slot, pools: dict, rng: random.Random) -> Any:
    """A narrow variant's value: a column the query compares with literals takes only those
    (each literal and its neighbours: rows on both sides of every bound), any other column keeps
    one or two values, so rows repeat, groups grow to different sizes, values tie and equal an
    aggregate of them (``x < (SELECT AVG(x) ...)`` against ``<=``)."""
    key = ("narrow", id(slot))
    if key not in pools:
        pools[key] = list(dict.fromkeys(slot.literals)) if slot.literals else \
            [_value(slot, pools, rng) for _ in range(rng.randint(1, 2))]
    return rng.choice(pools[key])


def _key_values(slot: _Slot, count: int, pools: dict, rng: random.Random) -> list[Any]:
    """Distinct values for a one-column primary key (drawn with replacement, most would collide
    and ``INSERT OR IGNORE`` would leave the parent tables of every join nearly empty)."""
    pool = pools.get(slot.group) or list(slot.column.samples)
    values = rng.sample(pool, min(count, len(pool)))
    while len(values) < count:
        values.append(_made_up(slot.column, rng))
    return values


def _rows_of(slots: tuple[_Slot, ...], count: int, pools: dict, rng: random.Random,
             narrow: bool = False) -> list[tuple]:
    keys = [s for s in slots if s.column.primary_key]
    key_values = _key_values(keys[0], count, pools, rng) if len(keys) == 1 else None
    # a narrow variant keeps the last key column wide, so rows stay distinct on the key
    values = [_narrow_value if narrow and not (keys and slot is keys[-1]) else _value for slot in slots]
    rows = [tuple(key_values[row] if key_values is not None and slot is keys[0] else value(slot, pools, rng)
                  for slot, value in zip(slots, values))
            for row in range(count)]
    if narrow and rows:
        rows.append(rows[0])  # a repeated row (dropped where a key forbids it): a missing DISTINCT shows
    for position, slot in enumerate(slots):
        if slot.group in pools:
            pools.setdefault(("present",) + slot.group, []).extend(r[position] for r in rows if r[position] is not None)
    return rows


def _parents_first(source: Source) -> list[SourceTable]:
    """Tables ordered so that a referenced table comes before the tables referencing it (cycles
    are cut where they close), so child rows can point at parent rows that exist."""
    ordered, visiting, done = [], set(), set()

    def visit(table: SourceTable) -> None:
        if table.name in done or table.name in visiting:
            return
        visiting.add(table.name)
        for _, ref_table, _ in table.foreign_keys:
            parent = source.table(ref_table)
            if parent is not None:
                visit(parent)
        visiting.discard(table.name)
        done.add(table.name)
        ordered.append(table)

    for table in source.tables:
        visit(table)
    return ordered


def variant_shape(index: int, rows: int) -> tuple[int, bool]:
    """(most rows per table, narrow) of variant ``index``: every other variant has a third of
    the rows, and variants 2, 6, 10 ... are narrow (:func:`_narrow_value`)."""
    return (rows if index % 2 == 0 else max(3, rows // 3)), index % 4 == 2


def build_variant(source: Source, hints: QueryHints, seed: int, rows: int = DEFAULT_ROWS) -> sqlite3.Connection:
    """An in-memory database with the source's schema and generated rows (see the module doc)
    for the tables the query reads."""
    layout = _layout(source, hints)
    try:
        return _build(layout, seed, rows)
    finally:
        layout.schema.close()


def _build(layout: _Layout, seed: int, rows: int, narrow: bool = False) -> sqlite3.Connection:
    rng = random.Random(seed)
    conn = connect_scratch()  # CHECK constraints and defaults run under the sandbox's limits
    layout.schema.backup(conn)  # a copy of the pages: cheaper than running the DDL again
    pools = _pools(layout, rows, rng)
    with deadline(conn, VARIANT_TIMEOUT_S):
        for insert, slots in layout.tables:
            count = rng.choice(layout.group_sizes) if narrow and layout.group_sizes else rng.randint(1, rows)
            values = _rows_of(slots, count, pools, rng, narrow)
            try:
                conn.executemany(insert, values)
            except sqlite3.Error:  # a CHECK constraint or a generated column: leave the table as far as it got
                continue
    seal(conn)
    return conn


# --- proving a pair on variants -----------------------------------------------------------------

def _limit_probes(sql: str) -> list[TieProbe]:
    """For each subquery that cuts an ordered result (``ORDER BY count(*) DESC LIMIT 1``), its
    order-key probe up to one row past the cut. Where the rows at the cut tie, the subquery
    (hence the gold) may return either: the variant proves nothing. The top level is left to the
    tie-aware comparison."""
    try:
        tree = sqlglot.parse_one(sql, read="sqlite")
    except Exception:  # noqa: BLE001
        return []
    probes = [order_key_probe(select, past_cut=True) for select in tree.find_all(exp.Select)
              if select is not tree and select.args.get("limit") is not None]
    return [probe for probe in probes if probe is not None and probe.limit is not None]


def _cut_ties(conn: sqlite3.Connection, probes: list[TieProbe]) -> bool:
    for probe in probes:
        try:
            rows = execute(conn, probe.sql, timeout_s=VARIANT_TIMEOUT_S).rows
        except QueryError:  # a correlated subquery cannot run alone: no verdict from it
            continue
        if cut_splits_tie(probe, rows):
            return True
    return False


def _rows(conn: sqlite3.Connection, sql: str, *, reverse: bool = False):
    if not reverse:  # the pragma is off but inside a reversed run
        return execute(conn, sql, timeout_s=VARIANT_TIMEOUT_S).rows
    conn.execute("PRAGMA reverse_unordered_selects = 1")
    try:
        return execute(conn, sql, timeout_s=VARIANT_TIMEOUT_S).rows
    finally:
        conn.execute("PRAGMA reverse_unordered_selects = 0")


def _disagreements_on(conn: sqlite3.Connection, index: int, seed: int, gold_sql: str, candidate_sqls: Sequence[str],
                      probes, compare: Callable, found: list) -> bool:
    """Fill ``found`` with the candidates this variant refutes; whether it refuted any. Whether the
    variant can decide at all (:func:`_decides`) is asked only when a candidate disagrees: where
    every candidate agrees it refutes nothing either way, and that is nearly every variant."""
    try:
        gold = _rows(conn, gold_sql)
    except QueryError:
        return False  # the gold fails or times out on this variant
    disagreements = {position: disagreement for position, candidate in enumerate(candidate_sqls)
                     if found[position] is None
                     and (disagreement := _disagreement(conn, index, seed, gold_sql, gold, candidate, compare))}
    if not disagreements or not _decides(conn, gold_sql, gold, probes, compare):
        return False
    for position, disagreement in disagreements.items():
        found[position] = disagreement
    return True


def _disagreement(conn: sqlite3.Connection, index: int, seed: int, gold_sql: str, gold, candidate: str,
                  compare: Callable) -> Disagreement | None:
    try:
        verdict = compare(gold_sql, gold, _rows(conn, candidate), rerun=lambda sql: _rows(conn, sql))
    except QueryError as error:
        return Disagreement(index, seed, f"candidate fails on the variant: {error}", "ERROR", conn)
    return None if verdict.match else Disagreement(index, seed, verdict.detail, verdict.subclass, conn)


def _decides(conn: sqlite3.Connection, gold_sql: str, gold, probes, compare: Callable) -> bool:
    """Whether a disagreement on this variant proves anything: no subquery's LIMIT cuts through
    tied rows, and the gold gives the same rows when SQLite scans in reverse order."""
    if _cut_ties(conn, probes):
        return False
    try:
        return compare(gold_sql, gold, _rows(conn, gold_sql, reverse=True), rerun=lambda sql: _rows(conn, sql)).match
    except QueryError:
        return False  # the reversed run fails or times out


def variants_budget_s(count: int) -> float:
    """The most time checking a candidate on ``count`` variants may take by the per-query limit:
    the budget of a process that is killed past it (work inside one SQLite step escapes the limit)."""
    return count * VARIANT_QUERIES * VARIANT_TIMEOUT_S


def first_disagreement(db_path: str | Path, gold_sql: str, candidate_sqls: Sequence[str], *, count: int = DEFAULT_VARIANTS,
                       rows: int = DEFAULT_ROWS, compare: Callable | None = None) -> list[Disagreement | None]:
    """For each candidate, the first of ``count`` variants on which it disagrees with the gold
    (``None``: it agrees on all of them, or no variant could decide). Variants are built once and
    shared by the candidates (the mutation benchmark passes many)."""
    compare = compare or compare_results
    source = source_of(str(db_path))
    layout = _layout(source, query_hints(gold_sql, source))
    probes = _limit_probes(gold_sql)
    found: list[Disagreement | None] = [None] * len(candidate_sqls)
    try:
        for index in range(count):
            if all(found):
                break
            seed = variant_seed(db_path, gold_sql, index)
            conn = _build(layout, seed, *variant_shape(index, rows))
            if not _disagreements_on(conn, index, seed, gold_sql, candidate_sqls, probes, compare, found):
                conn.close()  # a variant that refutes a candidate stays open: its witness is saved from it
    finally:
        layout.schema.close()
    return found

