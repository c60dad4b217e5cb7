"""What names a pipe operator can see: range variables, their columns and column types.

The emitter walks the query itself (no sqlglot ``Scope``): each SELECT gets an ``Env`` of the
sources its FROM and JOINs bring in, chained to the enclosing query's ``Env`` so correlated
references resolve and get typed.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from sqlglot import exp

from pipesql.sql.types import googlesql_type, is_date_type


@dataclass(frozen=True)
class OutputColumn:
    name: str  # as displayed
    type: str | None
    date: bool = False  # declared DATE/DATETIME/TIMESTAMP: ISO text (type STRING)


@dataclass
class Source:
    """One range variable: a base table, a CTE reference or a derived table."""

    alias: str
    columns: dict[str, OutputColumn]  # lower-cased name → column
    table: str | None = None  # display name of the base table or CTE, None for a derived table

    @classmethod
    def of(cls, alias: str, outputs: list[OutputColumn], table: str | None = None) -> Source:
        columns: dict[str, OutputColumn] = {}
        for column in outputs:
            columns.setdefault(column.name.lower(), column)
        return cls(alias, columns, table)

    def ordered(self) -> list[OutputColumn]:
        return list(self.columns.values())


@dataclass
class Env:
    sources: dict[str, Source]  # lower-cased alias → source
    parent: Env | None = None
    # Names visible after AGGREGATE (lower-cased name → type); set once aggregation happens.
    post_aggregate: dict[str, str | None] | None = None

    @classmethod
    def after(cls, outputs: list[OutputColumn], parent: Env | None) -> Env:
        """What an operator sees after one that keeps only ``outputs`` (SELECT, AGGREGATE, a set
        operation): those names, no range variables."""
        return cls({}, parent, post_aggregate={c.name.lower(): c.type for c in outputs})

    def find_source(self, alias: str) -> tuple[Source | None, bool]:
        """The source named ``alias`` and whether it belongs to this level (not an outer one)."""
        env, local = self, True
        while env is not None:
            source = env.sources.get(alias.lower())
            if source is not None:
                return source, local
            env, local = env.parent, False
        return None, False

    def column_is_date(self, column: exp.Column) -> bool:
        """Whether ``column`` is a base-table column declared as a date or time."""
        if self.post_aggregate is not None and not column.table:
            return False
        env = self
        while env is not None:
            for alias, source in env.sources.items():
                if column.table and alias != column.table.lower():
                    continue
                found = source.columns.get(column.name.lower())
                if found:
                    return found.date
            env = env.parent
        return False

    def column_type(self, column: exp.Column) -> str | None:
        if column.table:
            source, _ = self.find_source(column.table)
            if source is not None:
                found = source.columns.get(column.name.lower())
                return found.type if found else None
            return None
        if self.post_aggregate is not None and column.name.lower() in self.post_aggregate:
            return self.post_aggregate[column.name.lower()]
        env = self
        while env is not None:
            for source in env.sources.values():
                found = source.columns.get(column.name.lower())
                if found:
                    return found.type
            env = env.parent
        return None


@dataclass
class Catalog:
    """The database schema plus the CTEs in scope, looked up case-insensitively."""

    tables: dict[str, tuple[str, list[OutputColumn]]] = field(default_factory=dict)
    ctes: list[dict[str, tuple[str, list[OutputColumn]]]] = field(default_factory=list)
    # lower-cased table → its primary-key columns, lower-cased (empty when unknown)
    keys: dict[str, frozenset[str]] = field(default_factory=dict)
    # lower-cased table → its columns as a Source holds them, made on first use and shared by
    # every query's catalog (no Source changes its columns)
    columns: dict[str, dict[str, OutputColumn]] = field(default_factory=dict)

    @classmethod
    def from_mapping(cls, schema, keys=None) -> Catalog:
        tables = {}
        for table, columns in (schema or {}).items():
            tables[str(table).lower()] = (
                str(table),
                [OutputColumn(str(name), googlesql_type(str(kind)), is_date_type(str(kind))) for name, kind in columns.items()],
            )
        primary = {str(t).lower(): frozenset(str(c).lower() for c in cols) for t, cols in (keys or {}).items() if cols}
        return cls(tables, keys=primary)

    def for_query(self) -> Catalog:
        """A catalog for one query: the same tables and keys, no CTEs yet (CTEs are per query)."""
        return Catalog(self.tables, [], self.keys, self.columns)

    def source(self, alias: str, name: str) -> Source:
        """The range variable ``alias`` over the CTE or table ``name`` (without columns when it
        is neither)."""
        lowered = name.lower()
        for frame in reversed(self.ctes):
            if lowered in frame:
                display, outputs = frame[lowered]
                return Source.of(alias, outputs, display)
        if lowered not in self.tables:
            return Source(alias, {}, name)
        columns = self.columns.get(lowered)
        if columns is None:
            columns = self.columns[lowered] = Source.of(alias, self.tables[lowered][1]).columns
        return Source(alias, columns, self.tables[lowered][0])

    def primary_key(self, source: Source) -> frozenset[str]:
        """The primary-key columns of a base-table source (empty for CTEs and derived tables)."""
        if source.table is None or self.is_cte(source.table):
            return frozenset()
        return self.keys.get(source.table.lower(), frozenset())

    def is_cte(self, name: str) -> bool:
        return any(name.lower() in frame for frame in self.ctes)
