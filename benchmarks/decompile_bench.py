"""Decompiler cost per query against sqlglot's own parse + qualify + generate (the floor), and
validation throughput on the same queries.

    python benchmarks/decompile_bench.py [--split dev|train] [--limit N] [--workers N]

Both sides run on the same Spider queries with the same schemas, in one process, best of
``--repeat`` passes each; the ratio is decompile time / floor time. Validation (execute gold,
decompile, round trip, execute, compare) then runs once on the same items, without and with the
ZetaSQL check, and is printed as items/s and as a multiple of the floor's cost per query.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

import sqlglot
from sqlglot.optimizer.qualify import qualify

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from pipesql.corpora.items import load_items  # noqa: E402
from pipesql.decompile import decompile  # noqa: E402
from pipesql.sql.schema import read_sqlite_schema  # noqa: E402
from pipesql.validate import CheckOptions, validate_items  # noqa: E402

SPIDER = Path(os.environ.get("PIPESQL_SPIDER_DIR") or Path(__file__).resolve().parents[2] / "shared/data/spider")


def load(split: str, limit: int | None):
    """The benchmark items whose database is present, and (gold SQL, schema) for each."""
    items = [i for i in load_items("spider", SPIDER, split) if i.db_path.is_file()]
    items = items[:limit] if limit else items
    schemas = {}
    for item in items:
        if item.db_id not in schemas:
            schemas[item.db_id] = read_sqlite_schema(item.db_path).sqlglot_mapping()
    return items, [(item.gold_sql, schemas[item.db_id]) for item in items]


def validation_seconds(items, workers: int, googlesql: bool) -> float:
    start = time.perf_counter()
    validate_items(items, workers=workers, options=CheckOptions(googlesql=googlesql), progress=False)
    return time.perf_counter() - start


def floor(sql, schema):
    try:
        tree = sqlglot.parse_one(sql, read="sqlite")
        tree = qualify(tree, schema=schema, dialect="sqlite", validate_qualify_columns=False)
        return tree.sql(dialect="bigquery")
    except Exception:  # noqa: BLE001 - a failing query still costs what it cost
        return None


def timed(fn, work, repeat):
    best = float("inf")
    for _ in range(repeat):
        start = time.perf_counter()
        for sql, schema in work:
            fn(sql, schema)
        best = min(best, time.perf_counter() - start)
    return best


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--split", choices=["dev", "train"], default="dev")
    parser.add_argument("--limit", type=int, default=None)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--workers", type=int, default=1, help="validation worker processes")
    args = parser.parse_args()
    items, work = load(args.split, args.limit)
    floor_s = timed(floor, work, args.repeat)
    ours_s = timed(decompile, work, args.repeat)
    n = len(work)
    print(f"queries: {n} (Spider {args.split})")
    print(f"sqlglot parse+qualify+generate: {1e3 * floor_s / n:.3f} ms/query")
    print(f"pipesql decompile:              {1e3 * ours_s / n:.3f} ms/query")
    print(f"ratio: {ours_s / floor_s:.2f}x")
    for googlesql in (False, True):
        seconds = validation_seconds(items, args.workers, googlesql)
        label = "with ZetaSQL" if googlesql else "without ZetaSQL"
        print(f"validate ({label}, {args.workers} worker(s)): {n / seconds:.1f} items/s, "
              f"{1e3 * seconds / n:.2f} ms/item = {seconds / floor_s:.1f}x the floor")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
