"""How many deliberately broken queries validation catches, on the database alone and with variants.

    python benchmarks/mutation_bench.py [--benchmark spider|bird] [--data-dir DIR] [--split dev]
                                        [--limit N] [--variants 1,2,3,5] [--dump-uncaught FILE]

The demo corpus is always measured; ``--benchmark`` adds Spider (default, at
``$PIPESQL_SPIDER_DIR`` or ``../shared/data/spider``) or any BIRD-layout folder (``--data-dir``).
Besides the catch rates it times the variant check of each gold query alone (K variants built
and the gold run on each, the gold as its own candidate so no variant is skipped early): the
cost validation pays per pair.

Each gold query is mutated the way a wrong decompilation would be wrong (one mutation per
mutant): a WHERE/HAVING conjunct dropped or negated, an ORDER BY direction flipped, ``<``/``>``
swapped with ``<=``/``>=``, an inner join made LEFT (or a LEFT join inner), DISTINCT dropped
(``SELECT DISTINCT`` and ``COUNT(DISTINCT)``), an aggregate swapped (MAX↔MIN, SUM↔AVG). An inner
join is not made LEFT when that is the same query (a later condition rejects the NULLs it adds, or
``HAVING COUNT(*) >= 2`` drops the one-row groups it adds), ``HAVING COUNT(*) >= 1`` is not
dropped, and DISTINCT is not dropped from an operand of a (distinct) set operation. A mutant
counts as caught when validation would quarantine it as a decompilation of the gold: it fails to
run, or its result differs (tie-aware, :func:`pipesql.sql.compare.compare_results`) on the
database (today's check) or on one of K generated variants (:mod:`pipesql.validate.variants`).
All figures come from one run, on Spider and on the demo corpus; mutants that are equivalent to
the gold stay in the denominator, since telling them apart is the point.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import sys
import time
from collections import Counter
from pathlib import Path

import sqlglot
from sqlglot import exp

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from pipesql.corpora.items import load_items  # noqa: E402
from pipesql.sql.compare import compare_results  # noqa: E402
from pipesql.sql.execute import QueryError, connect_readonly, execute  # noqa: E402
from pipesql.storage.files import write_jsonl  # noqa: E402
from pipesql.validate.variants import first_disagreement, source_of  # noqa: E402

SPIDER = Path(os.environ.get("PIPESQL_SPIDER_DIR") or Path(__file__).resolve().parents[2] / "shared/data/spider")
_FLIP = {exp.GT: exp.GTE, exp.GTE: exp.GT, exp.LT: exp.LTE, exp.LTE: exp.LT}
_AGGREGATE_SWAP = {exp.Max: exp.Min, exp.Min: exp.Max, exp.Sum: exp.Avg, exp.Avg: exp.Sum}


def _is_conjunct(node: exp.Expr) -> bool:
    """A condition of WHERE/HAVING that must hold on its own (a top-level AND term)."""
    if isinstance(node, exp.And):
        return False
    parent = node.parent
    while isinstance(parent, exp.And):
        parent = parent.parent
    return isinstance(parent, (exp.Where, exp.Having)) and node.parent is not None


def _drop_predicate(node: exp.Expr) -> None:
    if isinstance(node.parent, (exp.Where, exp.Having)):
        node.parent.pop()
    else:
        node.replace(exp.true())


_STRICT = (exp.EQ, exp.NEQ, exp.GT, exp.GTE, exp.LT, exp.LTE, exp.Like, exp.ILike, exp.In, exp.Between)


def _rejects_nulls(condition: exp.Expr | None, alias: str) -> bool:
    """Whether ``condition`` is false or NULL whenever the columns of ``alias`` are all NULL."""
    if isinstance(condition, exp.Paren):
        return _rejects_nulls(condition.this, alias)
    if isinstance(condition, exp.And):
        return _rejects_nulls(condition.this, alias) or _rejects_nulls(condition.expression, alias)
    if isinstance(condition, exp.Or):
        return _rejects_nulls(condition.this, alias) and _rejects_nulls(condition.expression, alias)
    if isinstance(condition, _STRICT):
        operands = [condition.this, condition.args.get("expression")]
        return any(isinstance(o, exp.Column) and o.table.lower() == alias for o in operands)
    return False


def _count_bound(condition: exp.Expr | None) -> int | None:
    """n for ``COUNT(*) >= n`` (``COUNT(*) > n`` is ``>= n + 1``), the least rows a group must have."""
    if isinstance(condition, (exp.GT, exp.GTE)) and isinstance(condition.this, exp.Count) \
            and isinstance(condition.expression, exp.Literal) and condition.expression.is_int:
        return int(condition.expression.this) + isinstance(condition, exp.GT)
    return None


_NULL_IGNORING = (exp.Sum, exp.Avg, exp.Max, exp.Min, exp.Count)


def _only_null_ignoring_aggregates(select: exp.Select, alias: str) -> bool:
    """``SELECT AVG(t2.x) FROM t1 JOIN t2 ...`` without GROUP BY or HAVING: every output is an
    aggregate of ``alias``'s columns that skips NULLs, so the rows a LEFT join adds (NULLs in
    those columns) change nothing, and an aggregate of no value is NULL (COUNT: 0) either way."""
    if select.args.get("group") or select.args.get("having") or not select.expressions:
        return False
    for projection in select.expressions:
        aggregate = projection.this if isinstance(projection, exp.Alias) else projection
        argument = aggregate.this if isinstance(aggregate, _NULL_IGNORING) else None
        if isinstance(argument, exp.Distinct) and len(argument.expressions) == 1:
            argument = argument.expressions[0]
        # a bare column only: COALESCE(t2.x, 0) would count the added rows
        if not isinstance(argument, exp.Column) or argument.table.lower() != alias:
            return False
    return True


def _equivalent_left_join(join: exp.Join) -> bool:
    """An inner join made LEFT gives the same query when a later condition rejects the NULLs the
    LEFT join would add (``... LEFT JOIN t3 ... WHERE t3.x = 1``; unqualified columns count once
    :func:`qualify` has named their table), when the groups it adds, one row each, fall to
    ``HAVING COUNT(*) >= 2``, or when only NULL-skipping aggregates read the joined table
    (:func:`_only_null_ignoring_aggregates`): such mutants are not made."""
    select = join.parent
    if join.side or not isinstance(select, exp.Select):
        return False
    alias = join.this.alias_or_name.lower()
    joins = select.args.get("joins") or []
    later = joins[joins.index(join) + 1:] if join in joins else []
    conditions = [(select.args.get("where") or exp.Where()).this] + [j.args.get("on") for j in later if not j.side]
    having = (select.args.get("having") or exp.Having()).this
    return any(_rejects_nulls(c, alias) for c in conditions if c is not None) or (_count_bound(having) or 0) >= 2 \
        or _only_null_ignoring_aggregates(select, alias)


def qualify(tree: exp.Expr, columns: dict[str, set[str]]) -> exp.Expr:
    """Give an unqualified column the alias of the one table of its SELECT that has it
    (``columns``: lower-cased table -> its lower-cased column names), so the rules above see
    which table ``WHERE IsOfficial = 'T'`` reads. Columns that more tables have stay as they are."""
    for select in tree.find_all(exp.Select):
        tables = [t for t in [select.args.get("from") and select.args["from"].this,
                              *[j.this for j in select.args.get("joins") or []]] if isinstance(t, exp.Table)]
        for column in select.find_all(exp.Column):
            if column.table or column.find_ancestor(exp.Select) is not select:
                continue
            owners = [t for t in tables if column.name.lower() in columns.get(t.name.lower(), set())]
            if len(owners) == 1:
                column.set("table", exp.to_identifier(owners[0].alias_or_name))
    return tree


def _distinct_set_operand(select: exp.Select) -> bool:
    """An operand of UNION/INTERSECT/EXCEPT (DISTINCT): its own DISTINCT changes nothing."""
    parent = select.parent
    return isinstance(parent, exp.SetOperation) and bool(parent.args.get("distinct"))


def _equivalent_drop(node: exp.Expr) -> bool:
    """``HAVING COUNT(*) >= 1`` holds for every group: dropping it is the same query."""
    return isinstance(node.parent, exp.Having) and _count_bound(node) == 1


def _mutations():
    """``(name, node types, mutate)``: each mutant applies ``mutate`` to one node of those types."""
    def negate(node):
        node.replace(exp.Not(this=exp.Paren(this=node.copy())))

    def flip_order(node):
        node.set("desc", not node.args.get("desc"))

    def off_by_one(node):
        node.replace(_FLIP[type(node)](this=node.this, expression=node.expression))

    def join_type(node):
        node.set("side", None if node.side else "LEFT")
        node.set("kind", None)

    def missing_distinct(node):
        if isinstance(node, exp.Select):
            node.set("distinct", None)
        else:
            node.replace(node.expressions[0] if node.expressions else node.this)

    def wrong_aggregate(node):
        node.replace(_AGGREGATE_SWAP[type(node)](this=node.this))

    return [
        ("dropped predicate", (exp.Condition,), _drop_predicate, lambda n: _is_conjunct(n) and not _equivalent_drop(n)),
        ("negated predicate", (exp.Condition,), negate, _is_conjunct),
        ("flipped order", (exp.Ordered,), flip_order, lambda n: True),
        ("off-by-one comparison", tuple(_FLIP), off_by_one, lambda n: True),
        ("join type", (exp.Join,), join_type,
         lambda n: n.args.get("on") is not None and n.side in ("", "LEFT", None) and not _equivalent_left_join(n)),
        ("missing distinct", (exp.Select, exp.Distinct), missing_distinct,
         lambda n: (bool(n.args.get("distinct")) and not _distinct_set_operand(n)) if isinstance(n, exp.Select)
         else isinstance(n.parent, exp.Count)),
        ("wrong aggregate", tuple(_AGGREGATE_SWAP), wrong_aggregate, lambda n: True),
    ]


def mutants(sql: str, columns: dict[str, set[str]] | None = None) -> list[tuple[str, str]]:
    """``(mutation, mutant SQL)`` for every applicable mutation site of ``sql``, distinct texts
    only; with the database's ``columns``, unqualified columns are qualified first (:func:`qualify`)."""
    try:
        tree = sqlglot.parse_one(sql, read="sqlite")
        if columns:
            tree = qualify(tree, columns)
    except Exception:  # noqa: BLE001 - nothing to mutate
        return []
    original = tree.sql("sqlite")
    seen, found = {original}, []
    for name, types, mutate, applies in _mutations():
        sites = [n for n in tree.find_all(*types) if applies(n)]
        for position in range(len(sites)):
            copy = tree.copy()
            site = [n for n in copy.find_all(*types) if applies(n)][position]
            mutate(site)
            text = copy.sql("sqlite")
            if text not in seen:
                seen.add(text)
                found.append((name, text))
    return found


def columns_of(db_path) -> dict[str, set[str]]:
    """Lower-cased table -> lower-cased column names, from the schema the variants read."""
    return {t.name.lower(): {c.name.lower() for c in t.columns} for t in source_of(str(db_path)).tables}


def measure(items, variant_counts: list[int]) -> dict:
    """Catch counts per mutation, on the database alone and with each K of variants."""
    totals, single = Counter(), Counter()
    with_variants = {k: Counter() for k in variant_counts}
    seconds = {k: 0.0 for k in variant_counts}
    check_seconds: list[float] = []
    uncaught: list[dict] = []  # the mutants past every variant: mutation, question, database, gold, mutant
    connections = {}
    for item in items:
        conn = connections.get(item.db_path) or connections.setdefault(item.db_path, connect_readonly(item.db_path))
        try:
            gold = execute(conn, item.gold_sql, timeout_s=5).rows
        except QueryError:
            continue
        survivors = []
        for name, sql in mutants(item.gold_sql, columns_of(item.db_path)):
            totals[name] += 1
            try:
                caught = not compare_results(item.gold_sql, gold, execute(conn, sql, timeout_s=5).rows,
                                             rerun=lambda q: execute(conn, q, timeout_s=5).rows).match
            except QueryError:
                caught = True
            if caught:
                single[name] += 1
            else:
                survivors.append((name, sql))
        start = time.perf_counter()
        first_disagreement(item.db_path, item.gold_sql, [item.gold_sql], count=max(variant_counts))
        check_seconds.append(time.perf_counter() - start)
        for k in variant_counts:
            start = time.perf_counter()
            found = first_disagreement(item.db_path, item.gold_sql, [sql for _, sql in survivors], count=k) \
                if survivors else []
            seconds[k] += time.perf_counter() - start
            for (name, sql), witness in zip(survivors, found):
                with_variants[k][name] += witness is not None
                if k == max(variant_counts) and witness is None:
                    uncaught.append({"mutation": name, "question_id": item.question_id, "db_id": item.db_id,
                                     "gold": item.gold_sql, "mutant": sql})
    for conn in connections.values():
        conn.close()
    return {"totals": totals, "single": single, "with_variants": with_variants, "seconds": seconds,
            "check_seconds": check_seconds, "uncaught": uncaught}


def report(title: str, result: dict, variant_counts: list[int], show: int = 0) -> None:
    totals, single = result["totals"], result["single"]
    n = sum(totals.values())
    print(f"\n{title}: {n} mutants")
    header = f"{'mutation':24} {'mutants':>7} {'database only':>14}" + "".join(f" {'+ K=' + str(k):>9}" for k in variant_counts)
    print(header)
    for name in [m[0] for m in _mutations()] + ["all"]:
        total = n if name == "all" else totals[name]
        if not total:
            continue
        caught = sum(single.values()) if name == "all" else single[name]
        cells = "".join(
            f" {(caught + (sum(result['with_variants'][k].values()) if name == 'all' else result['with_variants'][k][name])) / total:>9.1%}"
            for k in variant_counts)
        print(f"{name:24} {total:>7} {caught / total:>14.1%}{cells}")
    print("variant time: " + ", ".join(f"K={k} {result['seconds'][k]:.1f} s" for k in variant_counts))
    checks = result["check_seconds"]
    if checks:
        print(f"variant check per gold query (K={max(variant_counts)}): mean {1000 * sum(checks) / len(checks):.1f} ms "
              f"over {len(checks)} queries, total {sum(checks):.1f} s")
    for u in result["uncaught"][:show]:
        print(f"uncaught {u['mutation']} [{u['question_id']}, {u['db_id']}]: {u['gold']}\n    -> {u['mutant']}")


def write_mutant_predictions(items, path: Path) -> int:
    """Scripted predictions with known wrong answers: for each question, one of its gold query's
    mutants (picked by a hash of the question id; the gold itself where it has none), as the
    JSONL ``pipesql evaluate --predictions`` reads. Returns how many are mutants."""
    lines, wrong = [], 0
    for item in items:
        found = mutants(item.gold_sql, columns_of(item.db_path) if item.db_path.is_file() else None)
        pick = int(hashlib.sha256(item.question_id.encode()).hexdigest(), 16) % len(found) if found else None
        lines.append(json.dumps({"question_id": item.question_id,
                                 "sql": found[pick][1] if found else item.gold_sql,
                                 "mutation": found[pick][0] if found else None}))
        wrong += bool(found)
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return wrong


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--benchmark", choices=["spider", "bird", "demo"], default="spider")
    parser.add_argument("--data-dir", type=Path, default=None, help="its folder (Spider: the shared copy)")
    parser.add_argument("--split", "--spider-split", choices=["dev", "train"], default="dev")
    parser.add_argument("--limit", type=int, default=None, help="first N items of the benchmark")
    parser.add_argument("--variants", default="1,2,3,5", help="K values to measure, comma-separated")
    parser.add_argument("--show-uncaught", type=int, default=0, help="print up to N mutants no variant caught")
    parser.add_argument("--dump-uncaught", type=Path, default=None,
                        help="write the mutants no variant caught (largest K), one JSON object a line, to this file")
    parser.add_argument("--predictions-out", type=Path, default=None,
                        help="only write one mutant per question of the benchmark split (demo: --benchmark demo) "
                             "as a JSONL for `pipesql evaluate --predictions`")
    args = parser.parse_args()
    if args.predictions_out:
        data_dir = args.data_dir or (SPIDER if args.benchmark == "spider" else None)
        items = load_items(args.benchmark, data_dir, args.split, args.limit)
        wrong = write_mutant_predictions(items, args.predictions_out)
        print(f"{args.predictions_out}: {len(items)} predictions, {wrong} of them mutants")
        return 0
    variant_counts = [int(k) for k in args.variants.split(",")]
    corpora = [("demo (all)", load_items("demo", None, "all"))]
    data_dir = args.data_dir or (SPIDER if args.benchmark == "spider" else None)
    if args.benchmark == "demo":
        pass
    elif data_dir is not None and data_dir.is_dir():
        items = [i for i in load_items(args.benchmark, data_dir, args.split) if i.problem is None and i.db_path.is_file()]
        corpora.append((f"{args.benchmark} {args.split} ({data_dir})", items[: args.limit] if args.limit else items))
    else:
        print(f"{args.benchmark} not found at {data_dir}: measuring the demo corpus only")
    uncaught = []
    for title, items in corpora:
        result = measure(items, variant_counts)
        report(title, result, variant_counts, args.show_uncaught)
        uncaught += [{"corpus": title, **u} for u in result["uncaught"]]
    if args.dump_uncaught:
        write_jsonl(args.dump_uncaught, uncaught)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
