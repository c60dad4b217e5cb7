"""Where validation's time goes, in one process: each kind of ZetaSQL call, loading databases for
ZetaSQL, and each step of the check (summed from the records' own timings).

    python benchmarks/validate_profile.py --data-dir ../shared/data/spider --split dev

Seconds are wall time; the CPU time of the whole run is printed beside it, since other jobs on
a shared machine stretch wall time.
"""

from __future__ import annotations

import argparse
import sys
import time
from collections import defaultdict
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from pipesql.corpora.items import load_items  # noqa: E402
from pipesql.sql import googlesql  # noqa: E402
from pipesql.validate import CheckOptions  # noqa: E402
from pipesql.validate.check import CheckMemo, DatabaseCache, check_item  # noqa: E402
from pipesql.validate.runner import chunks_by_database  # noqa: E402

_calls: dict[str, list] = defaultdict(lambda: [0, 0.0])


def _timed(name_of, function):
    def wrapper(*args, **kwargs):
        start = time.perf_counter()
        try:
            return function(*args, **kwargs)
        finally:
            entry = _calls[name_of(args)]
            entry[0] += 1
            entry[1] += time.perf_counter() - start
    return wrapper


def _instrument() -> None:
    googlesql.Instance.call = _timed(lambda args: args[1], googlesql.Instance.call)
    googlesql.load_database = _timed(lambda args: "load_database", googlesql.load_database)
    googlesql.GoogleSQL._new_client = _timed(lambda args: "new instance", googlesql.GoogleSQL._new_client)


def _check_here(items: list, options: CheckOptions) -> list[dict]:
    """Each item checked in this process, in a worker's order and with its caches, so the
    instrumented calls are seen (``validate_items`` checks in worker processes)."""
    databases, memo = DatabaseCache(), CheckMemo()
    return [check_item(item, options, databases, memo) for chunk in chunks_by_database(items) for _, item in chunk]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data-dir", required=True, help="the Spider folder")
    parser.add_argument("--split", default="dev")
    args = parser.parse_args(argv)

    items = load_items("spider", args.data_dir, args.split, None)
    googlesql.ensure_compiled()
    _instrument()
    start, cpu = time.perf_counter(), time.process_time()
    records = _check_here(items, CheckOptions())
    print(f"{len(records)} items: {time.perf_counter() - start:.1f} s wall, {time.process_time() - cpu:.1f} s CPU")
    steps: dict[str, float] = defaultdict(float)
    for record in records:
        for step, seconds in (record["validation"].get("seconds") or {}).items():
            steps[step] += seconds
    print(f"{'ZetaSQL call':<24}{'calls':>7}{'seconds':>9}")
    for name, (count, seconds) in sorted(_calls.items(), key=lambda kv: -kv[1][1]):
        print(f"{name:<24}{count:>7}{seconds:>9.1f}")
    print(f"{'step':<24}{'':>7}{'seconds':>9}")
    for step, seconds in sorted(steps.items(), key=lambda kv: -kv[1]):
        print(f"{step:<24}{'':>7}{seconds:>9.1f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
