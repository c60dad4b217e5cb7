"""Decompiler cost per query against sqlglot's own parse + qualify + generate (the floor).

    python benchmarks/decompile_bench.py [--split dev|train] [--limit N]

Both sides run on the same Spider queries with the same schemas, in one process, best of
``--repeat`` passes each; the ratio is decompile time / floor time.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

import sqlglot
from sqlglot.optimizer.qualify import qualify

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from pipesql.decompile import decompile  # noqa: E402
from pipesql.schema import read_sqlite_schema  # noqa: E402

SPIDER = Path(os.environ.get("PIPESQL_SPIDER_DIR") or Path(__file__).resolve().parents[2] / "shared/data/spider")


def load(split: str, limit: int | None):
    files = ["dev.json"] if split == "dev" else ["train_spider.json", "train_others.json"]
    items = [i for f in files for i in json.loads((SPIDER / f).read_text())]
    schemas, work = {}, []
    for item in items:
        path = SPIDER / "database" / item["db_id"] / f"{item['db_id']}.sqlite"
        if not path.is_file():
            continue
        if item["db_id"] not in schemas:
            schemas[item["db_id"]] = read_sqlite_schema(path).sqlglot_mapping()
        work.append((item["query"], schemas[item["db_id"]]))
    return work[:limit] if limit else work


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
    args = parser.parse_args()
    work = load(args.split, args.limit)
    floor_s = timed(floor, work, args.repeat)
    ours_s = timed(decompile, work, args.repeat)
    n = len(work)
    print(f"queries: {n} (Spider {args.split})")
    print(f"sqlglot parse+qualify+generate: {1e3 * floor_s / n:.3f} ms/query")
    print(f"pipesql decompile:              {1e3 * ours_s / n:.3f} ms/query")
    print(f"ratio: {ours_s / floor_s:.2f}x")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
