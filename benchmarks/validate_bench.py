"""Validation throughput: items per second in one process (the baseline) and on all workers,
with and without the GoogleSQL check, printed as ratios to the baseline measured in this run.

    python benchmarks/validate_bench.py                       # the demo corpus
    python benchmarks/validate_bench.py --benchmark spider --data-dir ../shared/data/spider --limit 400

Each configuration validates the same items from a cold start of its worker processes (their
start-up is part of what a user waits for). The ZetaSQL module is compiled before timing starts.
"""

from __future__ import annotations

import argparse
import sys
import time
from dataclasses import replace

from pipesql.corpora.items import load_items
from pipesql.validate import CheckOptions, validate_items
from pipesql.config.machine import usable_cores


def measure(items, workers: int, options: CheckOptions) -> tuple[float, int]:
    start = time.perf_counter()
    records = validate_items(items, workers=workers, options=options, progress=False)
    seconds = time.perf_counter() - start
    matched = sum(r["validation"]["class"] == "MATCH" for r in records)
    return len(items) / seconds, matched


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--benchmark", default="demo", choices=("demo", "spider", "bird"))
    parser.add_argument("--data-dir", default=None)
    parser.add_argument("--split", default="all")
    parser.add_argument("--limit", type=int, default=None)
    parser.add_argument("--workers", type=int, default=usable_cores())
    args = parser.parse_args(argv)

    items = [i for i in load_items(args.benchmark, args.data_dir, args.split, None) if i.db_path.is_file()]
    items = items[: args.limit] if args.limit else items
    from pipesql.sql import googlesql

    googlesql.ensure_compiled()
    with_googlesql = CheckOptions()
    without = replace(with_googlesql, googlesql=False)

    print(f"{len(items)} {args.benchmark} items, {args.workers} workers", file=sys.stderr)
    baseline, matched = measure(items, 1, without)
    rows = [("1 process, no GoogleSQL (baseline)", baseline, matched)]
    for label, workers, options in ((f"{args.workers} workers, no GoogleSQL", args.workers, without),
                                    ("1 process, with GoogleSQL", 1, with_googlesql),
                                    (f"{args.workers} workers, with GoogleSQL", args.workers, with_googlesql)):
        rate, matched = measure(items, workers, options)
        rows.append((label, rate, matched))
    print(f"{'configuration':<40} {'items/s':>9} {'x baseline':>11} {'matched':>8}")
    for label, rate, matched in rows:
        print(f"{label:<40} {rate:>9.1f} {rate / baseline:>11.2f} {matched:>8}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
