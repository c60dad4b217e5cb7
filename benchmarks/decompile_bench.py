"""Decompiler cost per query against sqlglot's own parse + qualify + generate (the floor) and
against the decompiler pipesql replaces, in one interleaved run; then, optionally, validation
throughput on the same queries.

    python benchmarks/decompile_bench.py [--split dev|train] [--limit N] [--repeat 5]
        [--replaced PATH] [--validation --workers N]

Each round times one pass of every side over the same Spider queries, in turn (ours, the floor,
the replaced decompiler), so machine load hits all sides alike; the best round of each is
reported. Ours builds each database's schema once per pass (:func:`pipesql.decompile.prepare_schema`)
and that is inside its time. The floor is ``sqlglot.parse_one`` + ``qualify(schema=...)`` +
``.sql("bigquery")`` per query, as a sqlglot user would write it.

``--replaced PATH`` is a scratch checkout of ``nittygritty-zzy/sqlglot`` (its ``sqlglot/`` and
``pipe_sql/``) kept outside this repository; its ``pipe_sql.decompiler.decompile(sql)`` runs in a
child process on that checkout's own sqlglot, timed there, one pass per round. Without it (or
when ``/work/scratch/replaced`` is absent) that comparison is skipped and the script says so.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import sqlglot
from sqlglot.optimizer.qualify import qualify

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from pipesql.corpora.items import load_items  # noqa: E402
from pipesql.decompile import decompile, prepare_schema  # noqa: E402
from pipesql.sql.schema import read_sqlite_schema  # noqa: E402
from pipesql.validate import CheckOptions, validate_items  # noqa: E402
from pipesql.validate.check import primary_keys  # noqa: E402

SPIDER = Path(os.environ.get("PIPESQL_SPIDER_DIR") or Path(__file__).resolve().parents[2] / "shared/data/spider")
DEFAULT_REPLACED = Path("/work/scratch/replaced")

# Runs in the child process, on the replaced checkout's sqlglot: one timed pass per input line.
_REPLACED_WORKER = """
import json, sys, time
from pipe_sql.decompiler import decompile
queries = json.load(open(sys.argv[1]))
for _ in sys.stdin:
    start = time.perf_counter()
    for sql in queries:
        try:
            decompile(sql)
        except Exception:
            pass
    print(time.perf_counter() - start, flush=True)
"""


def load(split: str, limit: int | None):
    """The benchmark items whose database is present, and (gold SQL, db_id, schema, keys) for each."""
    items = [i for i in load_items("spider", SPIDER, split) if i.db_path.is_file()]
    items = items[:limit] if limit else items
    schemas = {}
    for item in items:
        if item.db_id not in schemas:
            schema = read_sqlite_schema(item.db_path)
            schemas[item.db_id] = (schema.sqlglot_mapping(), primary_keys(schema))
    return items, [(item.gold_sql, item.db_id, *schemas[item.db_id]) for item in items]


def ours_pass(work) -> float:
    start = time.perf_counter()
    prepared = {}
    for sql, db_id, mapping, keys in work:
        schema = prepared.get(db_id) or prepared.setdefault(db_id, prepare_schema(mapping, keys))
        decompile(sql, schema)
    return time.perf_counter() - start


def floor(sql, schema):
    try:
        tree = sqlglot.parse_one(sql, read="sqlite")
        tree = qualify(tree, schema=schema, dialect="sqlite", validate_qualify_columns=False)
        return tree.sql(dialect="bigquery")
    except Exception:  # noqa: BLE001 - a failing query still costs what it cost
        return None


def floor_pass(work) -> float:
    start = time.perf_counter()
    for sql, _, mapping, _ in work:
        floor(sql, mapping)
    return time.perf_counter() - start


class Replaced:
    """The replaced decompiler in a child process on its own checkout (its own sqlglot)."""

    def __init__(self, path: Path, queries: list[str]):
        self._queries = tempfile.NamedTemporaryFile("w", suffix=".json", delete=False)
        json.dump(queries, self._queries)
        self._queries.close()
        env = dict(os.environ, PYTHONPATH=str(path))
        self._child = subprocess.Popen([sys.executable, "-c", _REPLACED_WORKER, self._queries.name], cwd=path,
                                       env=env, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                       stderr=subprocess.DEVNULL, text=True)

    def one_pass(self) -> float:
        self._child.stdin.write("go\n")
        self._child.stdin.flush()
        line = self._child.stdout.readline()
        if not line:
            raise RuntimeError("the replaced decompiler's process ended")
        return float(line)

    def close(self) -> None:
        self._child.stdin.close()
        self._child.wait(timeout=30)
        os.unlink(self._queries.name)


def validation_seconds(items, workers: int, googlesql: bool) -> float:
    start = time.perf_counter()
    validate_items(items, workers=workers, options=CheckOptions(googlesql=googlesql), progress=False)
    return time.perf_counter() - start


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--split", choices=["dev", "train"], default="dev")
    parser.add_argument("--limit", type=int, default=None)
    parser.add_argument("--repeat", type=int, default=5, help="interleaved rounds; the best of each side counts")
    parser.add_argument("--replaced", type=Path, default=None,
                        help=f"checkout of nittygritty-zzy/sqlglot (default: {DEFAULT_REPLACED} when present)")
    parser.add_argument("--validation", action="store_true", help="also time validation, without and with ZetaSQL")
    parser.add_argument("--workers", type=int, default=1, help="validation worker processes")
    args = parser.parse_args()
    items, work = load(args.split, args.limit)
    replaced_path = args.replaced or (DEFAULT_REPLACED if DEFAULT_REPLACED.is_dir() else None)
    replaced = Replaced(replaced_path, [w[0] for w in work]) if replaced_path else None
    best = {"ours": float("inf"), "floor": float("inf"), "replaced": float("inf")}
    try:
        ours_pass(work[:50])  # warm-up: imports and first-use caches, on all sides
        floor_pass(work[:50])
        for _ in range(args.repeat):
            best["ours"] = min(best["ours"], ours_pass(work))
            best["floor"] = min(best["floor"], floor_pass(work))
            if replaced:
                best["replaced"] = min(best["replaced"], replaced.one_pass())
    finally:
        if replaced:
            replaced.close()
    n = len(work)
    print(f"queries: {n} (Spider {args.split}), best of {args.repeat} interleaved rounds")
    print(f"sqlglot parse+qualify+generate: {1e3 * best['floor'] / n:.3f} ms/query")
    print(f"pipesql decompile:              {1e3 * best['ours'] / n:.3f} ms/query "
          f"({n / best['ours']:.0f} queries/s)")
    print(f"ours / sqlglot floor: {best['ours'] / best['floor']:.2f}x")
    if replaced:
        print(f"replaced decompiler:            {1e3 * best['replaced'] / n:.3f} ms/query "
              f"({n / best['replaced']:.0f} queries/s)")
        print(f"ours / replaced: {best['ours'] / best['replaced']:.2f}x")
    else:
        print("replaced decompiler: skipped (no --replaced checkout, and /work/scratch/replaced is absent)")
    if args.validation:
        for googlesql in (False, True):
            seconds = validation_seconds(items, args.workers, googlesql)
            label = "with ZetaSQL" if googlesql else "without ZetaSQL"
            print(f"validate ({label}, {args.workers} worker(s)): {n / seconds:.1f} items/s, "
                  f"{1e3 * seconds / n:.2f} ms/item")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
