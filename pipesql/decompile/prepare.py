"""From SQL text to a qualified sqlglot AST the emitter can trust.

Passes, in order (``PASSES``): parse, refuse what is not a query, turn SQLite's
double-quoted strings into string literals, qualify every column with its range variable.
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from sqlglot import exp
from sqlglot.dialects.dialect import Dialect, NormalizationStrategy
from sqlglot.errors import ParseError, SqlglotError
from sqlglot.optimizer.normalize_identifiers import normalize_identifiers
from sqlglot.optimizer.qualify_columns import qualify_columns, qualify_outputs
from sqlglot.optimizer.qualify_tables import qualify_tables
from sqlglot.optimizer.scope import Scope
from sqlglot.schema import MappingSchema, ensure_schema

from pipesql.decompile.errors import Unsupported
from pipesql.decompile.scope import Catalog
from pipesql.decompile.tree import kinds


class Reader:
    """A dialect's tokenizer and parser, built once: building them costs a fifth of parsing a
    query. Both keep state while they work, so one reader serves one thread at a time."""

    def __init__(self, dialect: Dialect):
        self._tokenizer = dialect.tokenizer()
        self._parser = dialect.parser()

    def parse(self, sql: str) -> list[exp.Expr | None]:
        """What ``dialect.parse(sql)`` returns."""
        return self._parser.parse(self._tokenizer.tokenize(sql), sql)


class _Schema(MappingSchema):
    """sqlglot's ``MappingSchema``, each table's column names looked up once: qualify asks for
    them per source per query, and the schema's own cache hashes and compares whole ``Table``
    expressions to answer (a tenth of qualify's time)."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self._column_names: dict[tuple, list[str]] = {}

    def column_names(self, table, only_visible=False, dialect=None, normalize=None) -> list[str]:
        name = table.this if isinstance(table, exp.Table) else None
        if not isinstance(name, exp.Identifier) or dialect is not None or normalize is not None:
            return super().column_names(table, only_visible, dialect, normalize)
        key = (name.this, name.quoted, table.text("db"), table.text("catalog"), only_visible)
        names = self._column_names.get(key)
        if names is None:
            names = self._column_names[key] = super().column_names(table, only_visible)
        return list(names)


@dataclass(frozen=True)
class PreparedSchema:
    """One database's schema, prepared once for all its queries: sqlglot's normalised
    ``MappingSchema`` (building it is a sixth of a query's cost), the emitter's catalog, the
    lower-cased column names and the dialect's reader. :func:`pipesql.decompile.decompile` takes
    it in place of a mapping; like its reader, it serves one thread at a time."""

    dialect: Dialect
    sqlite: bool  # SQLite input: double-quoted strings that name no column are strings
    mapping: MappingSchema | None
    catalog: Catalog
    column_names: frozenset[str]
    reader: Reader


def prepare_schema(schema: Mapping[str, Mapping[str, str]] | None = None,
                   keys: Mapping[str, Sequence[str]] | None = None, dialect: str = "sqlite") -> PreparedSchema:
    """``schema`` is ``{table: {column: declared type}}``, ``keys`` ``{table: [primary-key columns]}``."""
    read = Dialect.get_or_raise(dialect)
    mapping = _Schema(schema, dialect=read, normalize=True) if schema else None
    names = frozenset(str(c).lower() for columns in (schema or {}).values() for c in columns)
    return PreparedSchema(read, dialect == "sqlite", mapping, Catalog.from_mapping(schema, keys), names, Reader(read))


def _nodes(tree: exp.Expr) -> list[exp.Expr]:
    """Every node of the parsed ``tree``, rid of the parser's line/column metadata (never read
    here) and of the empty comment lists it leaves on each SELECT, aggregate call and table
    alias (nothing here tells empty from None): every copy would deep-copy them. The passes
    before qualify look through this list instead of walking the tree again, which costs
    several times more."""
    nodes = list(tree.walk())
    for node in nodes:
        node._meta = None
        if node.comments is not None and not node.comments:
            node.comments = None
    return nodes


_COLUMN_KINDS = kinds(exp.Column)
_IDENTIFIER_KINDS = kinds(exp.Identifier)
_DML = (exp.Insert, exp.Update, exp.Delete, exp.Merge)
_DDL = (exp.Create, exp.Drop, exp.Alter, exp.TruncateTable)


def parse(sql: str, dialect: str | Dialect | Reader) -> exp.Expr:
    """Parse exactly one query statement.

    >>> parse("DELETE FROM t", "sqlite")
    Traceback (most recent call last):
    ...
    pipesql.decompile.errors.Unsupported: unsupported:dml
    """
    try:
        reader = dialect if isinstance(dialect, Reader) else Dialect.get_or_raise(dialect)
        statements = [s for s in reader.parse(sql) if s is not None]
    except ParseError as error:
        first = str(error).splitlines()[0] if str(error) else "syntax error"
        raise Unsupported(f"parse_error: {first}") from None
    except SqlglotError as error:
        raise Unsupported(f"parse_error: {str(error).splitlines()[0] if str(error) else 'error'}") from None
    if not statements:
        raise Unsupported("parse_error: empty input")
    if len(statements) > 1:
        raise Unsupported("unsupported:multiple_statements")
    statement = statements[0]
    if isinstance(statement, _DML):
        raise Unsupported("unsupported:dml")
    if isinstance(statement, _DDL):
        raise Unsupported("unsupported:ddl")
    if not isinstance(statement, exp.Query):
        raise Unsupported(f"unsupported:statement_{statement.key}")
    return statement


def double_quoted_strings(nodes: list[exp.Expr], column_names: frozenset[str]) -> None:
    """SQLite reads ``"x"`` as a string when no column is named x; GoogleSQL needs ``'x'``.
    ``nodes`` are the query's (:func:`_nodes`); its columns are replaced in place, in the tree
    and in the list.

    ``SELECT a FROM t WHERE b = "John"`` → ``... WHERE b = 'John'`` (given no column John).
    Aliases defined in the query count as names too, since SQLite resolves those first.
    """
    quoted = [i for i, node in enumerate(nodes) if type(node) in _COLUMN_KINDS
              and isinstance(node.this, exp.Identifier) and node.this.quoted and not node.table]
    if not quoted:  # most queries: no need to collect the names
        return
    known = set(column_names)
    for node in nodes:
        if isinstance(node, exp.Alias):
            known.add(node.alias.lower())
        elif isinstance(node, exp.TableAlias):
            known.update(c.name.lower() for c in node.columns)
    for i in quoted:
        col = nodes[i]
        if col.name.lower() not in known:
            nodes[i] = exp.Literal.string(col.name)  # the list stays the query's nodes
            col.replace(nodes[i])


def _plain_table(table: exp.Table) -> bool:
    """A table ``qualify_tables`` leaves alone or aliases by its own name: one identifier in FROM
    or JOIN, without db, catalog, join construct or PIVOT, and aliased, or else unquoted (then
    its name is normalised already, as the alias it would get)."""
    alias = table.args.get("alias")
    return (isinstance(table.parent, (exp.From, exp.Join)) and isinstance(table.this, exp.Identifier)
            and not any(table.args.get(arg) for arg in ("db", "catalog", "joins", "pivots"))
            and (not table.this.quoted if alias is None else bool(alias.name)))


def _plain_subquery(subquery: exp.Subquery) -> bool:
    """A subquery ``qualify_tables`` leaves alone: a query in parentheses that are not redundant
    (no subquery right around it), without PIVOT, aliased when it is a derived table."""
    return (isinstance(subquery.this, (exp.Select, exp.SetOperation)) and not isinstance(subquery.parent, exp.Subquery)
            and not subquery.args.get("pivots")
            and (bool(subquery.alias) or not isinstance(subquery.parent, (exp.From, exp.Join))))


def _distinct_sources(select: exp.Select) -> bool:
    """Whether no unaliased table of this FROM shares its name with another of its sources
    (``FROM t JOIN t``): ``qualify_tables`` would alias the second one ``t_2``."""
    joins = select.args.get("joins")
    if not joins:
        return True  # one source at most (most SELECTs)
    from_ = select.args.get("from_")
    sources = ([from_.this] if from_ else []) + [join.this for join in joins]
    names = [s.alias_or_name for s in sources] + [s.name for s in sources if isinstance(s, exp.Table) and s.alias]
    return all(names.count(s.name) == 1 for s in sources if isinstance(s, exp.Table) and not s.alias)


_SOURCE_KINDS = kinds(exp.Table, exp.Select, exp.Subquery, exp.UDTF, exp.Pivot)  # what _plain_node looks at


def _plain_node(node: exp.Expr) -> bool:
    """Whether ``qualify_tables`` leaves this node alone or aliases it by its own name."""
    if isinstance(node, exp.Table):
        return _plain_table(node)
    if isinstance(node, exp.Select):
        return _distinct_sources(node)
    if isinstance(node, exp.Subquery):
        return _plain_subquery(node)
    return not isinstance(node, (exp.UDTF, exp.Pivot))


def plain_sources(nodes: list[exp.Expr]) -> bool:
    """Whether sqlglot's ``qualify_tables`` would do no more to the query of ``nodes`` (root
    first) than alias unaliased tables by their own names, which changes nothing the decompiler
    reads (a range variable is its alias, else its name): no derived table without an alias,
    table function, VALUES, UNNEST, PIVOT, join construct, redundant parentheses, db-qualified
    table, or unaliased table whose name another source in its FROM has.

    >>> plain_sources(list(parse("SELECT a FROM t JOIN (SELECT b FROM u) AS s ON a = b", "sqlite").walk()))
    True
    >>> plain_sources(list(parse("SELECT COUNT(*) FROM (SELECT b FROM u)", "sqlite").walk()))
    False
    """
    return not isinstance(nodes[0], exp.Subquery) and all(
        _plain_node(node) for node in nodes if type(node) in _SOURCE_KINDS)


def normalized(tree: exp.Expr, nodes: list[exp.Expr], dialect: Dialect) -> exp.Expr:
    """sqlglot's ``normalize_identifiers``: names as the dialect resolves them. For a dialect
    that ignores case even in quotes (SQLite) that is every identifier of ``nodes`` (the
    query's, :func:`_nodes`) lower-cased, done here in a third of the time; the original
    spellings sqlglot can keep in metadata are read by nothing here."""
    if dialect.normalization_strategy is not NormalizationStrategy.CASE_INSENSITIVE:
        return normalize_identifiers(tree, dialect=dialect)
    for node in nodes:
        if type(node) in _IDENTIFIER_KINDS:
            node.set("this", node.this.lower())
    return tree


# What a SELECT may hold for :func:`table_columns` to judge it: arguments, and join arguments.
_SIMPLE_SELECT_ARGS = frozenset({"expressions", "from_", "joins", "where", "group", "having", "order", "limit", "offset",
                                 "distinct"})
_SIMPLE_JOIN_ARGS = frozenset({"this", "on", "side", "kind"})


# Nodes that give a query more than one scope, or columns sqlglot resolves by other rules.
_NOT_SIMPLE = kinds(exp.Query, exp.Subquery, exp.Window, exp.Lambda, exp.Dot, exp.Pivot, exp.UDTF, exp.Lateral,
                    *exp.Column.__subclasses__())


def _only(node: exp.Expr, allowed: frozenset[str]) -> bool:
    """Whether every argument ``node`` has set is one of ``allowed``."""
    args = node.args
    return args.keys() <= allowed or not any(args[key] for key in args.keys() - allowed)


def _sources(select: exp.Select) -> list[exp.Table] | None:
    """The tables of a FROM and its plain joins (no USING, NATURAL, SEMI or ANTI), else None."""
    from_ = select.args.get("from_")
    joins = select.args.get("joins") or []
    if from_ is None or any(not _only(join, _SIMPLE_JOIN_ARGS) or join.kind not in ("", "INNER", "OUTER", "CROSS")
                            for join in joins):
        return None
    tables = [from_.this, *(join.this for join in joins)]
    return tables if all(isinstance(table, exp.Table) for table in tables) else None


def _select_columns(select: exp.Select, schema: MappingSchema
                    ) -> tuple[dict[str, exp.Table], dict[str, set[str]], set[str]] | None:
    """The tables of a SELECT :func:`table_columns` may accept and their column names, both by
    range variable, and the names of its SELECT aliases; None when the SELECT rules that out."""
    distinct = select.args.get("distinct")
    tables = _sources(select)
    if (tables is None or (distinct and distinct.args.get("on")) or any(e.is_star for e in select.expressions)
            or not _only(select, _SIMPLE_SELECT_ARGS)):
        return None
    for key in ("group", "order"):
        clause = select.args.get(key)
        terms = [] if clause is None else [term.this if key == "order" else term for term in clause.expressions]
        if any(term.is_int for term in terms):
            return None
    columns: dict[str, set[str]] = {}
    for table in tables:
        alias = table.args.get("alias")
        names = schema.column_names(table)
        if not names or (alias is not None and alias.columns) or table.alias_or_name in columns:
            return None
        columns[table.alias_or_name] = set(names)
    ranges = {table.alias_or_name: table for table in tables}
    return ranges, columns, {e.alias for e in select.expressions if isinstance(e, exp.Alias)}


def _range_of(column: exp.Column, columns: dict[str, set[str]], aliases: set[str]) -> str | None:
    """The range variable ``column`` can only mean, of a SELECT with ``columns`` (names by range
    variable) and SELECT ``aliases``; None when it could mean another or none."""
    if not isinstance(column.this, exp.Identifier) or column.args.get("db"):
        return None
    name = column.name
    if column.table:
        return column.table if name in columns.get(column.table, ()) else None
    holders = [range_variable for range_variable, names in columns.items() if name in names]
    return holders[0] if len(holders) == 1 and name not in aliases else None


def table_columns(tree: exp.Expr, nodes: list[exp.Expr], schema: MappingSchema | None, dialect: Dialect
                  ) -> list[tuple[exp.Select, dict[str, exp.Table], list[tuple[exp.Column, str]]]] | None:
    """Each SELECT of a query whose columns ``qualify_columns`` can only resolve one way, with
    its tables by range variable and its unqualified columns (not its subqueries') with the
    range variable each resolves to, innermost first; else None. The query is a SELECT whose
    subqueries (in expressions, not in FROM) are SELECTs too, none correlated, each over plain
    tables of known columns (run after :func:`plain_sources` and :func:`normalized`) with
    distinct range variables, no star in its SELECT list, every column either qualified by a
    range variable of its SELECT whose table has it or, unqualified, in exactly one table of
    its SELECT and not named like one of its SELECT aliases (the alias could be meant), no
    positional GROUP BY or ORDER BY, no window or CTE. Then that function does to each SELECT
    no more than :func:`simply_qualified` does."""
    if schema is None or not isinstance(tree, exp.Select) or dialect.PSEUDOCOLUMNS or dialect.ANNOTATE_ALL_SCOPES:
        return None
    selects: dict[int, tuple[exp.Select, dict[str, exp.Table], dict[str, set[str]], set[str]]] = {}
    columns: list[exp.Column] = []
    for node in nodes:  # each SELECT comes before its columns (an ancestor is walked first)
        kind = type(node)
        if kind is exp.Column:
            columns.append(node)
        elif kind is exp.Select:
            found = _select_columns(node, schema)
            if found is None:
                return None
            selects[id(node)] = (node, *found)
        elif kind is exp.Subquery:
            if type(node.this) is not exp.Select or isinstance(node.parent, (exp.From, exp.Join)):
                return None
        elif kind in _NOT_SIMPLE:
            return None
    nested = len(selects) > 1
    owners: dict[int, list[tuple[exp.Column, str]]] = {key: [] for key in selects}
    for column in columns:
        key = id(column.find_ancestor(exp.Select)) if nested else id(tree)
        _, _, names, aliases = selects[key]
        range_variable = _range_of(column, names, aliases)
        if range_variable is None:
            return None
        if not column.table:
            owners[key].append((column, range_variable))
    return [(select, ranges, owners[key]) for key, (select, ranges, _, _) in reversed(selects.items())]


def simple_selects(tree: exp.Expr, nodes: list[exp.Expr], schema: MappingSchema | None, dialect: Dialect
                   ) -> list[tuple[exp.Select, dict[str, exp.Table], list[tuple[exp.Column, str]]]] | None:
    """Each SELECT of a query :func:`table_columns` accepts, or of a UNION, INTERSECT or EXCEPT
    (nothing else: no ORDER BY or LIMIT of its own) of such queries, with its tables and
    unqualified columns; else None. ``qualify_columns`` treats each operand of a set operation as a query of its own."""
    if not isinstance(tree, exp.SetOperation):
        return table_columns(tree, nodes, schema, dialect)
    if any(value and key not in ("this", "expression", "distinct") for key, value in tree.args.items()):
        return None
    selects = []
    for operand in (tree.this, tree.expression):
        found = simple_selects(operand, list(operand.walk()), schema, dialect)
        if found is None:
            return None
        selects.extend(found)
    return selects


def _in_order_by_of_output(column: exp.Column, outputs: set[str]) -> bool:
    """A column sqlglot's scope leaves out of its columns, so qualifies only inside an
    aggregate: in ORDER BY, named as a SELECT output (then it may mean that output)."""
    return (column.name in outputs and isinstance(column.find_ancestor(exp.Select, exp.Order), exp.Order)
            and not isinstance(column.find_ancestor(exp.AggFunc, exp.Order), exp.AggFunc))


def _range_variable(table: exp.Table) -> exp.Identifier:
    """The identifier sqlglot's resolver qualifies a column of ``table`` with: the alias's
    own identifier (shared by every column it qualifies), else a new one of its name."""
    alias = table.args.get("alias")
    return exp.to_identifier(alias.this) if alias else exp.to_identifier(table.name)


def simply_qualified(tree: exp.Select, tables: dict[str, exp.Table], schema: MappingSchema,
                     dialect: Dialect, owners: list[tuple[exp.Column, str]] | None = None) -> exp.Select:
    """What ``qualify_columns`` makes of a query :func:`table_columns` accepts (``tables``, by
    range variable; ``owners``, breadth first, the unqualified columns of this SELECT, not of
    its subqueries, which are qualified on their own before, each with the range variable of
    the table that has it), without its scopes and resolver (most of its cost): unqualified
    columns name the one table that has them; SELECT outputs are aliased (sqlglot's
    ``qualify_outputs``); with GROUP BY, an ORDER BY term equal to a SELECT output becomes that
    output's name.

    >>> tree = parse("SELECT a, COUNT(*) FROM t AS x GROUP BY a ORDER BY COUNT(*)", "sqlite")
    >>> schema = MappingSchema({"t": {"a": "INT"}})
    >>> simply_qualified(tree, {"x": tree.args["from_"].this}, schema, Dialect.get_or_raise("sqlite")).sql()
    'SELECT x.a AS a, COUNT(*) AS _col_1 FROM t AS x GROUP BY x.a ORDER BY _col_1'
    """
    outputs = set(tree.named_selects)
    if owners is None:  # not judged by table_columns: each column's table is looked up here
        owner = {name: range_variable for range_variable, table in tables.items() for name in schema.column_names(table)}
        owners = [(column, owner.get(column.name)) for column in tree.find_all(exp.Column)
                  if not column.table and column.find_ancestor(exp.Select) is tree]
    for column, range_variable in owners:
        if not _in_order_by_of_output(column, outputs):
            column.set("table", _range_variable(tables[range_variable]))
    qualify_outputs(Scope(tree, sources=dict(tables)), dialect=dialect)  # the scope it reads, not built by walking
    order = tree.args.get("order")
    if order and tree.args.get("group"):
        names = Counter(tree.named_selects)
        selects = {select.this: select for select in tree.expressions if names[select.alias_or_name] == 1}
        for ordered in order.expressions:
            output = selects.get(ordered.this)
            if output is not None:
                ordered.this.replace(exp.column(output.alias_or_name))
    return tree


def qualified(tree: exp.Expr, nodes: list[exp.Expr], schema: MappingSchema | None, dialect: Dialect,
              catalog: Catalog | None = None, plain: bool = False) -> exp.Expr:
    """Every column names its range variable; stars are expanded (the emitter folds a full expansion back to no SELECT).

    These are the steps of sqlglot's ``qualify`` with the options used here (no quoting, no
    validation), except that ``qualify_tables``, a quarter of their cost, is left out when
    ``plain`` says it has nothing to do here (:func:`plain_sources`), and ``qualify_columns``
    when its columns resolve only one way (:func:`simply_qualified`)."""
    try:
        tree = normalized(tree, nodes, dialect)
        selects = simple_selects(tree, nodes, schema, dialect) if plain else None
        if selects is not None:
            for select, tables, owners in selects:
                simply_qualified(select, tables, schema, dialect, owners)
            return tree
        if not plain:
            tree = qualify_tables(tree, dialect=dialect)
        tree = qualify_columns(tree, ensure_schema(schema, dialect=dialect), expand_alias_refs=True, expand_stars=True)
        for node in nodes:
            # it leaves an empty metadata dict on each column, which every copy would deep-copy
            if node._meta is not None and not node._meta:
                node._meta = None
        return tree
    except SqlglotError as error:
        first_line = str(error).splitlines()[0] if str(error) else "error"
        unknown = re.fullmatch(r"Unknown column: (\S+)", first_line)
        # the hint names tables and columns as the database spells them, not as sqlglot normalised them
        tables = {name: [c.name for c in columns] for name, columns in (catalog.tables.values() if catalog else ())}
        detail = unknown_column_hint(tree, tables, unknown.group(1)) if unknown else first_line[:80]
        raise Unsupported(f"unsupported:qualify ({detail})") from None


def unknown_column_hint(tree: exp.Expr, schema: Mapping[str, Sequence[str]], column: str) -> str:
    """What a person needs to fix a wrong column: the table it was looked up in, that table's
    columns, and the tables that do have it.

    ``SELECT T2.singer_id FROM concert AS T2`` (concert_singer) → ``unknown column T2.singer_id:
    table concert has no column singer_id; its columns: concert_ID, ...; singer_id is in singer,
    singer_in_concert``.
    """
    by_name = {name.lower(): (name, columns) for name, columns in schema.items()}
    range_tables = {t.alias_or_name.lower(): t.name for t in tree.find_all(exp.Table)}
    holders = [name for name, columns in schema.items() if column.lower() in {c.lower() for c in columns}]
    holder_keys = {name.lower() for name in holders}
    elsewhere = f"; {column} is in {', '.join(holders)}" if holders else ""
    # The reference that failed: qualified by a range variable whose table lacks the column.
    for used in tree.find_all(exp.Column):
        table = range_tables.get(used.table.lower()) if used.table else None
        if used.name.lower() == column.lower() and table and table.lower() in by_name and table.lower() not in holder_keys:
            break
    else:
        return f"unknown column {column}{elsewhere}"
    table_name, columns = by_name[table.lower()]
    return (f"unknown column {used.table}.{column}: table {table_name} has no column {column}; "
            f"its columns: {', '.join(columns)}{elsewhere}")


def prepare(sql: str, schema: PreparedSchema) -> exp.Expr:
    tree = parse(sql, schema.reader)
    nodes = _nodes(tree)
    if schema.sqlite:
        double_quoted_strings(nodes, schema.column_names)
    # the sources plain_sources reads are as parsed: double_quoted_strings replaces columns only
    return qualified(tree, nodes, schema.mapping, schema.dialect, schema.catalog, plain_sources(nodes))
