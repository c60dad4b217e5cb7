"""Qualified standard-SQL AST → pipe operators.

A SELECT becomes its operators in the canonical order, each step one function of
``SELECT_STEPS``: FROM → JOIN → WHERE → AGGREGATE → WHERE (HAVING) → SELECT → ORDER BY → LIMIT,
except that ORDER BY and LIMIT come before SELECT when they read a column SELECT drops.
Set operations append ``|> UNION ALL (...)``-style operators to their left operand; CTEs go on a
``WITH`` line of their own. Subqueries anywhere are emitted the same way and written inline.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from functools import lru_cache

from sqlglot import exp

from pipesql.decompile import aggregate
from pipesql.decompile.errors import Unsupported
from pipesql.decompile.names import AUTO_ALIAS_PREFIX, NameSpace, derive_alias, identifier
from pipesql.decompile.scope import Catalog, Env, OutputColumn, Source
from pipesql.decompile.semantics import apply_rules, make_typer
from pipesql.decompile.tree import copied, googlesql, kinds, signature
from pipesql.sql.types import type_of


@dataclass
class PipeQuery:
    """Operators of one query; ``with_clause`` is the ``WITH ...`` text, if any."""

    operators: list[str]
    outputs: list[OutputColumn]
    with_clause: str | None = None

    def inline(self) -> str:
        body = " |> ".join(op.removeprefix("|> ") for op in self.operators)
        return f"{self.with_clause} {body}" if self.with_clause else body

    def lines(self) -> list[str]:
        head = [self.with_clause] if self.with_clause else []
        return head + self.operators


# --------------------------------------------------------------------------- queries


def emit_query(node: exp.Expr, catalog: Catalog, outer: Env | None) -> PipeQuery:
    if isinstance(node, exp.Subquery):
        if node.args.get("limit") or node.args.get("order") or node.args.get("offset"):
            raise Unsupported("unsupported:modified_parenthesized_query")
        return emit_query(node.this, catalog, outer)
    with_ = node.args.get("with_")
    with_clause = None
    if with_ is not None:
        if with_.args.get("recursive"):
            raise Unsupported("unsupported:recursive_cte")
        with_clause = _emit_ctes(with_, catalog, outer)
    try:
        if isinstance(node, exp.Select):
            pipe = emit_select(node, catalog, outer)
        elif isinstance(node, exp.SetOperation):
            pipe = emit_set_operation(node, catalog, outer)
        else:
            raise Unsupported(f"unsupported:query_{node.key}")
    finally:
        if with_ is not None:
            catalog.ctes.pop()
    pipe.with_clause = with_clause
    return pipe


def _emit_ctes(with_: exp.With, catalog: Catalog, outer: Env | None) -> str:
    frame: dict[str, tuple[str, list[OutputColumn]]] = {}
    catalog.ctes.append(frame)
    parts = []
    for cte in with_.expressions:
        name = cte.alias
        body = emit_query(cte.this, catalog, outer)
        if cte.args.get("alias") and cte.args["alias"].columns:
            raise Unsupported("unsupported:cte_column_list")
        frame[name.lower()] = (name, body.outputs)
        parts.append(f"{_ident(name)} AS ({body.inline()})")
    return "WITH " + ", ".join(parts)


def emit_set_operation(node: exp.SetOperation, catalog: Catalog, outer: Env | None) -> PipeQuery:
    """``a UNION b ORDER BY 1`` → ``<a> |> UNION DISTINCT (<b>) |> ORDER BY <first column>``.

    GoogleSQL requires ALL or DISTINCT; SQLite's bare UNION/INTERSECT/EXCEPT mean DISTINCT.
    """
    if node.args.get("by_name") or node.args.get("side") or node.args.get("kind") or node.args.get("on"):
        raise Unsupported("unsupported:set_operation_by_name")
    left = emit_query(node.left, catalog, outer)
    if left.with_clause:
        raise Unsupported("unsupported:cte_in_set_operand")
    right = emit_query(node.right, catalog, outer)
    if len(right.outputs) != len(left.outputs) and left.outputs and right.outputs:
        raise Unsupported("unsupported:set_operation_arity")
    keyword = {exp.Union: "UNION", exp.Intersect: "INTERSECT", exp.Except: "EXCEPT"}[type(node)]
    quantifier = "DISTINCT" if node.args.get("distinct") else "ALL"
    operators = list(left.operators)
    if any(op.startswith(("|> ORDER BY", "|> LIMIT")) for op in operators):
        operators.append(f"|> AS {_ident('_set_left')}")
    operators.append(f"|> {keyword} {quantifier} ({right.inline()})")
    outputs = left.outputs
    env = Env.after(outputs, outer)
    names = [c.name for c in outputs]
    order = node.args.get("order")
    if order is not None:
        terms = []
        for ordered in order.expressions:
            term = ordered.this
            if isinstance(term, exp.Literal) and not term.is_string and term.this.isdigit():
                position = int(term.this) - 1
                if not 0 <= position < len(names):
                    raise Unsupported("unsupported:order_by_position")
                term = exp.column(names[position])
            elif isinstance(term, exp.Column):
                matches = [n for n in names if n.lower() == term.name.lower()]
                term = exp.column(matches[0] if len(matches) == 1 else term.name)
            else:
                raise Unsupported("unsupported:set_operation_order_expression")
            terms.append(_ordered_sql(ordered, render(term, env, catalog)))
        operators.append("|> ORDER BY " + ", ".join(terms))
    operators.extend(_limit_operators(node, env, catalog))
    return PipeQuery(operators, outputs)


# --------------------------------------------------------------------------- SELECT


@dataclass
class SelectState:
    select: exp.Select
    catalog: Catalog
    env: Env
    names: NameSpace
    operators: list[str] = field(default_factory=list)
    plan: aggregate.AggregatePlan | None = None
    # Final projection: (output name, expression as it reads at SELECT time, explicit alias?)
    projections: list[tuple[str, exp.Expr, bool]] = field(default_factory=list)
    outputs: list[OutputColumn] = field(default_factory=list)
    select_needed: bool = True
    # qualify's invented aliases (_col_0) → the readable names used instead
    renamed: dict[str, str] = field(default_factory=dict)
    # ORDER BY reads a column SELECT drops, so ORDER BY and LIMIT run before SELECT
    order_before_select: bool = False
    # ORDER BY after SELECT: its terms, written with output names
    late_order_terms: list[str] = field(default_factory=list)
    # SELECT DISTINCT ordered before SELECT: the rows are grouped already, SELECT only picks names
    grouped_for_order: bool = False

    def render(self, node: exp.Expr) -> str:
        return render(node, self.env, self.catalog)


def emit_select(select: exp.Select, catalog: Catalog, outer: Env | None) -> PipeQuery:
    if select.args.get("from_") is None:
        return _emit_select_without_from(select, catalog, outer)
    for unsupported in ("qualify", "windows", "prewhere", "connect", "sample", "laterals", "settings"):
        if select.args.get(unsupported):
            raise Unsupported(f"unsupported:{unsupported}")
    if isinstance(select.args.get("distinct"), exp.Distinct) and select.args["distinct"].args.get("on"):
        raise Unsupported("unsupported:distinct_on")
    _inline_invented_alias_refs(select)
    state = SelectState(select, catalog, Env({}, outer), NameSpace())
    for step in SELECT_STEPS:
        step(state)
    return PipeQuery(state.operators, state.outputs)


def _emit_select_without_from(select: exp.Select, catalog: Catalog, outer: Env | None) -> PipeQuery:
    """``SELECT (SELECT COUNT(*) FROM a) - (SELECT COUNT(*) FROM b)`` → ``SELECT (FROM a |> AGGREGATE
    ...) - (FROM b |> ...) AS expr``: a pipe query has nothing to start FROM, and GoogleSQL
    allows a FROM-less SELECT as the whole query or a subquery (the subqueries inside are pipe
    queries). With any other clause (WHERE, GROUP BY, ORDER BY on no table), or as an operand of
    UNION/INTERSECT/EXCEPT (pipe set operators follow a pipe query), it is refused."""
    clauses = ("joins", "where", "group", "having", "order", "limit", "offset", "distinct")
    if isinstance(select.parent, exp.SetOperation) or any(select.args.get(c) for c in clauses) or any(
            e.find(exp.AggFunc) and not e.find(exp.Select) for e in select.expressions):
        raise Unsupported("unsupported:select_without_from")
    state = SelectState(select, catalog, Env({}, outer), NameSpace())
    projection_plan(state)
    select_operator(state)
    state.operators[0] = state.operators[0].removeprefix("|> ")
    return PipeQuery(state.operators, state.outputs)


def from_clause(state: SelectState) -> None:
    """``FROM singer AS T1`` → ``FROM singer AS t1``; ``FROM (SELECT ...) AS s`` → ``FROM (<pipe>) AS s``."""
    source = state.select.args["from_"].this
    text = _source_sql(source, state)
    state.operators.append(f"FROM {text}")


def joins(state: SelectState) -> None:
    """``JOIN b ON c`` → ``|> JOIN b ON c``; a comma join → ``|> CROSS JOIN b`` (its condition
    stays in WHERE, as in the input)."""
    for join in state.select.args.get("joins") or []:
        if join.method:
            raise Unsupported(f"unsupported:{join.method.lower()}_join")
        text = _source_sql(join.this, state)
        side, kind = (join.side or "").upper(), (join.kind or "").upper()
        on, using = join.args.get("on"), join.args.get("using")
        if kind == "CROSS" or (not on and not using and not side):
            state.operators.append(f"|> CROSS JOIN {text}")
            continue
        words = " ".join(w for w in (side, "OUTER" if kind == "OUTER" and side else "") if w)
        words = f"{words} JOIN" if words else "JOIN"
        if on is not None:
            state.operators.append(f"|> {words} {text} ON {state.render(on)}")
        elif using:
            cols = ", ".join(_ident(c.name) for c in using)
            state.operators.append(f"|> {words} {text} USING ({cols})")
        else:
            state.operators.append(f"|> {words} {text} ON TRUE")


def where(state: SelectState) -> None:
    condition = state.select.args.get("where")
    if condition is not None:
        state.operators.append(f"|> WHERE {state.render(condition.this)}")


def aggregate_step(state: SelectState) -> None:
    """GROUP BY, aggregates anywhere, HAVING → ``|> AGGREGATE ... GROUP BY ...`` then ``|> WHERE``.

    After it only the group keys and aggregate aliases exist, so SELECT, HAVING and ORDER BY
    are rewritten to name them (see :mod:`pipesql.decompile.aggregate`).
    """
    plan = aggregate.plan(state.select, state.env, state.names)
    if plan is None:
        return
    state.plan = plan
    typer = make_typer(state.env.column_type)
    agg_items = [f"{state.render(e)} AS {_ident(n)}" for n, e in plan.aggregates]
    key_items = []
    for name, key in plan.keys:
        text = state.render(key)
        key_items.append(text if _natural_name(key, state.env) == name else f"{text} AS {_ident(name)}")
    post = {}
    for name, key in plan.keys:
        post[name.lower()] = type_of(key, state.env.column_type)
    for name, agg in plan.aggregates:
        post[name.lower()] = typer(agg)
    if not agg_items and not key_items:
        raise Unsupported("unsupported:group_by_constant_only")
    parts = [", ".join(agg_items)] if agg_items else []
    if key_items:
        parts.append("GROUP BY " + ", ".join(key_items))
    state.operators.append("|> AGGREGATE " + " ".join(parts))
    # Range variables are gone after AGGREGATE; only the output names remain.
    state.env = Env({}, state.env.parent, post_aggregate=post)
    if plan.having is not None:
        state.operators.append(f"|> WHERE {state.render(plan.having)}")


def projection_plan(state: SelectState) -> None:
    """The output columns: (name, expression, explicit alias?) per projection, stars expanded,
    and whether a SELECT is needed at all (not for ``SELECT *`` of the whole FROM, nor when the
    AGGREGATE already outputs exactly the projection)."""
    select = state.select
    expressions = state.plan.projections if state.plan else select.expressions
    local_aliases = [src for src in state.env.sources.values()]
    distinct = bool(select.args.get("distinct"))
    if not state.plan and not distinct and _is_full_star(expressions, local_aliases):
        state.select_needed = False
        state.outputs = [c for src in local_aliases for c in src.ordered()]
        return
    for expression in expressions:
        if isinstance(expression, exp.Star):
            if state.plan:
                raise Unsupported("unsupported:star_with_aggregate")
            for src in local_aliases:
                for col in src.ordered():
                    state.projections.append((col.name, exp.column(col.name, src.alias), False))
            continue
        if isinstance(expression, exp.Column) and isinstance(expression.this, exp.Star):
            source, _ = state.env.find_source(expression.table)
            if source is None:
                raise Unsupported("unsupported:unknown_star_source")
            for col in source.ordered():
                state.projections.append((col.name, exp.column(col.name, source.alias), False))
            continue
        if isinstance(expression, exp.Subquery) and expression.alias:
            # qualify puts a scalar subquery's output alias on the Subquery node itself
            alias = expression.alias
            expression = copied(expression)
            expression.set("alias", None)
            expression = exp.Alias(this=expression, alias=identifier(alias))
        inner = expression.this if isinstance(expression, exp.Alias) else expression
        natural = _natural_name(inner, state.env)
        if isinstance(expression, exp.Alias) and not expression.alias.startswith(AUTO_ALIAS_PREFIX) and not (
            natural is not None and natural.lower() == expression.alias.lower()
        ):
            name = expression.alias
            explicit = True
        elif natural is not None:
            name, explicit = natural, False
        else:
            name = state.names.take(derive_alias(inner))
            explicit = True
            if isinstance(expression, exp.Alias):
                state.renamed[expression.alias.lower()] = name
        state.projections.append((name, inner, explicit))
    typer = make_typer(state.env.column_type)
    state.outputs = [OutputColumn(n, typer(e)) for n, e, _ in state.projections]
    if state.plan and _projection_is_aggregate_output(state):
        state.select_needed = False


def order_plan(state: SelectState) -> None:
    """Whether ORDER BY can follow SELECT: it can when every key is an output column (then its
    terms name them); a key SELECT drops (``ORDER BY age`` with only ``name`` selected) puts
    ORDER BY and LIMIT before SELECT."""
    order = state.select.args.get("order")
    if order is None:
        return
    names = [n.lower() for n, _, _ in state.projections] if state.select_needed else [
        c.name.lower() for c in state.outputs]
    for index, ordered in enumerate(order.expressions):
        term = state.plan.order_terms[index] if state.plan else ordered.this
        name = _output_name_for(term, state, names)
        if name is None:
            if state.plan and state.select.args.get("distinct"):
                raise Unsupported("unsupported:distinct_with_order_by_unselected")
            state.order_before_select = True
            return
        state.late_order_terms.append(_ordered_sql(ordered, _ident(name)))


def early_order_and_limit(state: SelectState) -> None:
    """ORDER BY and LIMIT before SELECT, where every column is still visible."""
    if not state.order_before_select:
        return
    select = state.select
    if select.args.get("distinct"):
        _distinct_ordered_by_unselected(state)
        return
    terms = []
    for index, ordered in enumerate(select.args["order"].expressions):
        term = state.plan.order_terms[index] if state.plan else ordered.this
        terms.append(_ordered_sql(ordered, state.render(_expand_output_alias(term, state))))
    state.operators.append("|> ORDER BY " + ", ".join(terms))
    state.operators.extend(_limit_operators(select, state.env, state.catalog))


def select_operator(state: SelectState) -> None:
    """``|> SELECT`` the output columns (none when the rows are already what SELECT would give);
    DISTINCT becomes a keys-only ``|> AGGREGATE GROUP BY``."""
    if state.grouped_for_order:
        state.operators.append("|> SELECT " + ", ".join(_ident(n) for n, _, _ in state.projections))
        return
    distinct = bool(state.select.args.get("distinct"))
    if not state.select_needed:
        if distinct:
            names = ", ".join(_ident(c.name) for c in state.outputs)
            state.operators.append(f"|> AGGREGATE GROUP BY {names}")
        return
    items = [f"{state.render(expression)} AS {_ident(name)}" if explicit else state.render(expression)
             for name, expression, explicit in state.projections]
    if distinct and not state.plan:
        # SELECT DISTINCT is dropped by sqlglot's pipe parser and standalone DISTINCT is
        # missing in Spark; a keys-only AGGREGATE means the same everywhere.
        if any(e.find(exp.Window) for _, e, _ in state.projections):
            raise Unsupported("unsupported:distinct_window")
        state.operators.append("|> AGGREGATE GROUP BY " + ", ".join(items))
        return
    state.operators.append("|> SELECT " + ", ".join(items))
    if distinct:
        names = ", ".join(_ident(n) for n, _, _ in state.projections)
        state.operators.append(f"|> AGGREGATE GROUP BY {names}")


def late_order_and_limit(state: SelectState) -> None:
    """ORDER BY output names and LIMIT/OFFSET after SELECT."""
    if state.order_before_select:
        return
    if state.late_order_terms:
        state.operators.append("|> ORDER BY " + ", ".join(state.late_order_terms))
    state.operators.extend(_limit_operators(state.select, Env.after(state.outputs, state.env.parent), state.catalog))


def _column_equalities(select: exp.Select) -> list[tuple[tuple[str, str], tuple[str, str]]]:
    """``a.x = b.y`` conjuncts of the JOIN conditions and the WHERE, as ((alias, column), (alias, column))."""
    conditions = [j.args.get("on") for j in select.args.get("joins") or []] + [
        (select.args.get("where") or exp.Where()).this]
    pairs = []
    for condition in conditions:
        for conjunct in (condition.flatten() if isinstance(condition, exp.And) else [condition]):
            if isinstance(conjunct, exp.EQ) and all(isinstance(s, exp.Column) and s.table
                                                    for s in (conjunct.this, conjunct.expression)):
                a, b = conjunct.this, conjunct.expression
                pairs.append(((a.table.lower(), a.name.lower()), (b.table.lower(), b.name.lower())))
    return pairs


def _determined_sources(state: SelectState) -> set[str]:
    """Aliases whose every column is a function of the selected columns: those whose primary key
    is selected, directly or through join equalities (``SELECT DISTINCT w.paperid ... JOIN paper
    AS p ON w.paperid = p.paperid``: one row of ``p`` per selected value)."""
    known = {(e.table.lower(), e.name.lower()) for _, e, _ in state.projections if isinstance(e, exp.Column) and e.table}
    equalities = _column_equalities(state.select)
    grew = True
    while grew:
        grew = False
        for a, b in equalities:
            for x, y in ((a, b), (b, a)):
                if x in known and y not in known:
                    known.add(y)
                    grew = True
    determined = set()
    for alias, source in state.env.sources.items():
        key = state.catalog.primary_key(source)
        if key and all((alias, column) in known for column in key):
            determined.add(alias)
    return determined


def _distinct_ordered_by_unselected(state: SelectState) -> None:
    """``SELECT DISTINCT a FROM t ORDER BY b`` → ``|> AGGREGATE MIN(b) AS min_b GROUP BY a
    |> ORDER BY min_b |> SELECT a``, when ``b`` is a function of ``a`` (its table's primary key
    is selected); otherwise refused as ``unsupported:distinct_order_by_scan_order``.

    SQLite sorts each distinct row by the ``b`` of the first source row it scanned with that
    ``a``: a matter of storage order, which GoogleSQL tables do not have. Only when every row
    of a distinct ``a`` has the same ``b`` is the order defined, and then MIN (MAX when
    descending) is that ``b``.
    """
    select = state.select
    determined = _determined_sources(state)
    keys = []
    names = [n for n, _, _ in state.projections]
    for name, expression, explicit in state.projections:
        text = state.render(expression)
        keys.append(f"{text} AS {_ident(name)}" if explicit else text)
    helpers, terms = [], []
    signatures = [signature(e) for _, e, _ in state.projections]
    for ordered in select.args["order"].expressions:
        term = _expand_output_alias(ordered.this, state)
        name = _output_name_for(term, state, [n.lower() for n in names])
        if name is None and signature(term) in signatures:
            name = names[signatures.index(signature(term))]
        if name is None:
            columns = list(term.find_all(exp.Column))
            if not columns or any(c.table.lower() not in determined for c in columns):
                raise Unsupported("unsupported:distinct_order_by_scan_order")
            call = (exp.Max if ordered.args.get("desc") else exp.Min)(this=copied(term))
            name = state.names.take(derive_alias(call))
            helpers.append(f"{state.render(call)} AS {_ident(name)}")
        terms.append(_ordered_sql(ordered, _ident(name)))
    state.operators.append(f"|> AGGREGATE {', '.join(helpers)} GROUP BY {', '.join(keys)}")
    state.env = Env.after(state.outputs, state.env.parent)
    state.operators.append("|> ORDER BY " + ", ".join(terms))
    state.operators.extend(_limit_operators(select, state.env, state.catalog))
    state.grouped_for_order = True


SELECT_STEPS = (from_clause, joins, where, aggregate_step, projection_plan, order_plan, early_order_and_limit,
                select_operator, late_order_and_limit)


# --------------------------------------------------------------------------- helpers


def _inline_invented_alias_refs(select: exp.Select) -> None:
    """qualify turns ``ORDER BY COUNT(*)`` into ``ORDER BY _col_1``; put the expression back
    so ORDER BY can be matched against the projections after aggregation."""
    order = select.args.get("order")
    if order is None:
        return
    invented = {
        p.alias: p.this for p in select.expressions
        if isinstance(p, exp.Alias) and p.alias.startswith(AUTO_ALIAS_PREFIX)
    }
    if not invented:
        return
    for ordered in order.expressions:
        term = ordered.this
        if isinstance(term, exp.Column) and not term.table and term.name in invented:
            ordered.set("this", copied(invented[term.name]))


@lru_cache(maxsize=4096)
def _ident(name: str) -> str:
    return googlesql(identifier(name))


def _ordered_sql(ordered: exp.Ordered, text: str) -> str:
    desc = bool(ordered.args.get("desc"))
    nulls_first = ordered.args.get("nulls_first")
    suffix = " DESC" if desc else ""
    # SQLite and GoogleSQL agree by default: NULLs first ascending, last descending.
    if nulls_first is not None and bool(nulls_first) == desc:
        suffix += " NULLS FIRST" if nulls_first else " NULLS LAST"
    return text + suffix


def _limit_operators(node: exp.Expr, env: Env, catalog: Catalog) -> list[str]:
    limit, offset = node.args.get("limit"), node.args.get("offset")
    if limit is None and offset is None:
        return []
    if limit is None:
        raise Unsupported("unsupported:offset_without_limit")
    text = f"|> LIMIT {render(limit.expression, env, catalog)}"
    if offset is not None:
        text += f" OFFSET {render(offset.expression, env, catalog)}"
    return [text]


def _source_sql(source: exp.Expr, state: SelectState) -> str:
    alias = source.alias
    if isinstance(source, exp.Table):
        if source.args.get("db") or source.args.get("catalog"):
            raise Unsupported("unsupported:qualified_table_name")
        if not isinstance(source.this, exp.Identifier):
            raise Unsupported("unsupported:table_function")
        alias = alias or source.name
        range_variable = state.env.sources[alias.lower()] = state.catalog.source(alias, source.name)
        display = range_variable.table
        if alias.lower() == display.lower():
            return _ident(display)
        return f"{_ident(display)} AS {_ident(alias)}"
    if isinstance(source, exp.Subquery):
        inner = emit_query(source.this, state.catalog, None)
        if not alias:
            raise Unsupported("unsupported:derived_table_without_alias")
        state.env.sources[alias.lower()] = Source.of(alias, inner.outputs)
        return f"({inner.inline()}) AS {_ident(alias)}"
    raise Unsupported(f"unsupported:source_{source.key}")


def _natural_name(node: exp.Expr, env: Env | None = None) -> str | None:
    """The name GoogleSQL gives an unaliased output expression (only a column has one)."""
    if isinstance(node, exp.Column) and not isinstance(node.this, exp.Star):
        if env is not None and node.table:
            source, _ = env.find_source(node.table)
            if source is not None and node.name.lower() in source.columns:
                return source.columns[node.name.lower()].name
        return node.name
    return None


def _is_full_star(expressions: list[exp.Expr], sources: list[Source]) -> bool:
    if len(expressions) == 1 and isinstance(expressions[0], exp.Star):
        return True
    expected = [(src.alias.lower(), name) for src in sources for name in src.columns]
    if not expected or len(expected) != len(expressions):
        return False
    for expression, (alias, name) in zip(expressions, expected):
        inner = expression.this if isinstance(expression, exp.Alias) else expression
        if not isinstance(inner, exp.Column) or inner.table.lower() != alias or inner.name.lower() != name:
            return False
        if isinstance(expression, exp.Alias) and expression.alias.lower() != name:
            return False
    return True


def _projection_is_aggregate_output(state: SelectState) -> bool:
    produced = [n for n, _ in state.plan.keys] + [n for n, _ in state.plan.aggregates]
    if len(produced) != len(state.projections):
        return False
    for (name, expression, _), want in zip(state.projections, produced):
        if not (isinstance(expression, exp.Column) and not expression.table and expression.name == want == name):
            return False
    return True


def _output_name_for(term: exp.Expr, state: SelectState, names: list[str]) -> str | None:
    """The output column an ORDER BY key denotes, when exactly one does."""
    if isinstance(term, exp.Literal) and not term.is_string and term.this.isdigit():
        position = int(term.this) - 1
        if 0 <= position < len(names) and names.count(names[position]) == 1:
            return names[position] if not state.select_needed else state.projections[position][0]
        return None
    if isinstance(term, exp.Column) and not term.table:
        wanted = state.renamed.get(term.name.lower(), term.name).lower()
        if names.count(wanted) == 1:
            index = names.index(wanted)
            return state.projections[index][0] if state.select_needed else state.outputs[index].name
    text = signature(term)
    matches = [i for i, (_, e, _) in enumerate(state.projections) if signature(e) == text]
    if len(matches) == 1 and names.count(names[matches[0]]) == 1:
        return state.projections[matches[0]][0]
    return None


def _expand_output_alias(term: exp.Expr, state: SelectState) -> exp.Expr:
    """Before SELECT runs, a reference to a SELECT alias must be the aliased expression."""
    if isinstance(term, exp.Column) and not term.table:
        wanted = state.renamed.get(term.name.lower(), term.name).lower()
        for name, expression, explicit in state.projections:
            if name.lower() == wanted and explicit:
                return copied(expression)
    return term


# --------------------------------------------------------------------------- expressions


def render(node: exp.Expr, env: Env, catalog: Catalog) -> str:
    """One expression as GoogleSQL text: subqueries emitted inline, SQLite semantics rewritten,
    identifiers restored to their schema spelling and quoted where needed."""
    if isinstance(node, exp.Column) and _plain_column(node):
        # Almost half the calls. The generator writes such a column as its identifiers joined by
        # dots, each written as it would be alone (its quoting depends on nothing around it).
        name, table = _column_spelling(node, env)
        return f"{_ident(table)}.{_ident(name)}" if table else _ident(name)
    tree = copied(node)
    if isinstance(tree, (exp.Column, exp.Literal)):  # no subquery in these, and no rule rewrites them
        nodes = [tree]
    else:
        nodes = list(tree.walk())  # one walk for all: looking for each kind of node walks the tree again
        tree = _inline_subqueries(tree, nodes, env, catalog)
        tree = apply_rules(tree, make_typer(env.column_type, env.column_is_date), nodes)
    # The rules make no column, so the finished tree's columns are among these; the others were
    # in a subquery, written out as text by now, so finishing them changes nothing written.
    for column in nodes:
        if type(column) in _COLUMN_KINDS:
            _finish_column(column, env)
    return googlesql(tree)


def _plain_column(column: exp.Column) -> bool:
    """A named column with nothing a finished copy of it would keep besides its name and table."""
    return not isinstance(column.this, exp.Star) and not column.comments and all(
        value is None or key in ("this", "table", "db", "catalog") for key, value in column.args.items())


_QUERY_KINDS = kinds(exp.Select, exp.SetOperation)
_COLUMN_KINDS = kinds(exp.Column)


def _inline_subqueries(tree: exp.Expr, nodes: list[exp.Expr], env: Env, catalog: Catalog) -> exp.Expr:
    """``tree`` with each query in it that is in no other (``nodes``: its nodes, breadth
    first) replaced by its pipe SQL as text."""
    queries = [q for q in nodes if type(q) in _QUERY_KINDS]
    queries = [q for q in queries if not any(type(a) in _QUERY_KINDS for a in _ancestors(q, tree))]
    for query in queries:
        if isinstance(query.parent, exp.Exists) and isinstance(query, exp.Select) and _projection_is_irrelevant(query):
            # EXISTS ignores the projection; without one the subquery reads as a pure filter
            query.set("expressions", [exp.Star()])
        pipe = emit_query(query, catalog, env)
        text = pipe.inline()
        if _scalar_may_return_rows(query):
            text += " |> LIMIT 1"
        var = exp.Var(this=text)
        parent = query.parent
        if isinstance(parent, exp.Subquery) and len(pipe.outputs) == 1:
            parent.meta["pipesql_type"] = pipe.outputs[0].type
        if query is tree:
            return exp.Subquery(this=var)
        query.replace(var)
    return tree


def _scalar_may_return_rows(query: exp.Expr) -> bool:
    """Whether a scalar subquery (``x = (SELECT id FROM t WHERE ...)``) can return several rows.
    SQLite then takes the first and GoogleSQL fails, so such a subquery gets ``|> LIMIT 1``
    (the first row in its ORDER BY when it has one). One row is certain for an aggregate
    without GROUP BY and for ``LIMIT 1``; IN and EXISTS take any number of rows."""
    holder = query.parent
    if not isinstance(holder, exp.Subquery) or isinstance(holder.parent, (exp.In, exp.Exists)):
        return False
    if isinstance(holder.parent, (exp.Any, exp.All)):
        return False
    limit = query.args.get("limit")
    if limit is not None and isinstance(limit.expression, exp.Literal) and limit.expression.this == "1":
        return False
    if isinstance(query, exp.Select) and not query.args.get("group") and any(
            e.find(exp.AggFunc) and not e.find(exp.Window) for e in query.expressions):
        return False
    return True


def _projection_is_irrelevant(select: exp.Select) -> bool:
    if select.args.get("group") or select.args.get("having") or select.args.get("distinct"):
        return False
    if select.args.get("limit") or select.args.get("offset"):
        return False
    return not any(e.find(exp.AggFunc, exp.Window) for e in select.expressions)


def _ancestors(node: exp.Expr, root: exp.Expr):
    parent = node.parent
    while parent is not None and parent is not root:
        yield parent
        parent = parent.parent


def _finish_column(column: exp.Column, env: Env) -> None:
    if isinstance(column.this, exp.Star):
        if column.table:
            source, _ = env.find_source(column.table)
            column.set("table", identifier(source.alias if source else column.table))
        return
    name, table = _column_spelling(column, env)
    column.set("this", identifier(name))
    column.set("table", identifier(table) if table else None)
    for part in ("db", "catalog"):
        if column.args.get(part):
            column.set(part, None)


def _column_spelling(column: exp.Column, env: Env) -> tuple[str, str | None]:
    """A column's name as its table spells it, and the range variable it is written with, if any."""
    name = column.name
    table = column.table
    if table:
        source, local = env.find_source(table)
        if source is not None:
            found = source.columns.get(name.lower())
            if found is not None:
                name = found.name
            table = source.alias
            if local and _may_drop_qualifier(name, env):
                table = None
    return name, table or None


def _may_drop_qualifier(name: str, env: Env) -> bool:
    """A single-source SELECT reads better unqualified, unless the name could also mean a
    range variable (``singer.singer``) or a column of an enclosing query."""
    if len(env.sources) != 1:
        return False
    lowered = name.lower()
    outer = env.parent
    while outer is not None:
        if lowered in outer.sources:
            return False
        if any(lowered in src.columns for src in outer.sources.values()):
            return False
        outer = outer.parent
    if lowered in env.sources:
        return False
    source = next(iter(env.sources.values()))
    if source.table and source.table.lower() == lowered:
        return False
    return True
