"""What the SQL sandbox costs, against plain sqlite3 measured in the same run.

Runs every Spider dev gold query whose database is present twice: on a plain read-only
``sqlite3`` connection (the baseline: ``execute`` + ``fetchall``), and through
:func:`pipesql.sql.execute.execute` on a :func:`connect_readonly` connection (gate, authorizer,
limits, deadline, streaming). Also times the query-only gate alone, and the tools' path: the
same query through :mod:`pipesql.sql.isolated` (a child process killed at the deadline), whose
CPU time is this process's plus the child's. Connections are opened once per database, so the
figures are per query.

    python benchmarks/sandbox_cost.py --data-dir ../shared/data/spider

Prints CPU seconds per query for each and the sandbox as a ratio to the baseline.
"""

from __future__ import annotations

import argparse
import os
import sqlite3
import time
from pathlib import Path

from pipesql.corpora.items import load_items
from pipesql.sql.execute import QueryError, connect_readonly, execute, require_query
from pipesql.sql.isolated import connect_isolated


def _cpu_seconds() -> float:
    """CPU time of this process and of its children still running (the isolated path's child)."""
    total = time.process_time()
    for children in Path("/proc/self/task").glob("*/children"):
        for pid in children.read_text().split():
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
            total += (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")  # utime + stime
    return total


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data-dir", type=Path, default=Path("../shared/data/spider"))
    parser.add_argument("--repeat", type=int, default=3, help="passes over the queries; the fastest counts")
    args = parser.parse_args()

    items = [i for i in load_items("spider", args.data_dir, "dev") if i.problem is None and i.db_path.is_file()]
    plain = {p: sqlite3.connect(f"{p.resolve().as_uri()}?mode=ro", uri=True) for p in {i.db_path for i in items}}
    for conn in plain.values():
        conn.text_factory = lambda raw: raw.decode("utf-8", errors="replace")
    sandboxed = {p: connect_readonly(p) for p in plain}

    def plain_pass() -> None:
        for item in items:
            try:
                plain[item.db_path].execute(item.gold_sql).fetchall()
            except sqlite3.Error:
                pass

    def sandbox_pass() -> None:
        for item in items:
            try:
                execute(sandboxed[item.db_path], item.gold_sql)
            except QueryError:
                pass

    isolated = {p: connect_isolated(p) for p in plain}

    def isolated_pass() -> None:
        for item in items:
            try:
                execute(isolated[item.db_path], item.gold_sql)
            except QueryError:
                pass

    def gate_pass() -> None:
        for item in items:
            require_query(item.gold_sql)

    timings = {}
    passes = [("plain sqlite3", plain_pass), ("sandbox", sandbox_pass), ("gate alone", gate_pass),
              ("child process", isolated_pass)]
    for name, one_pass in passes:
        one_pass()  # warm-up: page cache, imports, the child's start
        best = float("inf")
        for _ in range(args.repeat):
            start = _cpu_seconds()
            one_pass()
            best = min(best, _cpu_seconds() - start)
        timings[name] = best

    baseline = timings["plain sqlite3"]
    print(f"{len(items)} Spider dev gold queries on {len(plain)} databases, best of {args.repeat} passes, CPU time")
    print(f"{'':>14} {'ms/query':>9} {'vs plain':>9}")
    for name, seconds in timings.items():
        print(f"{name:>14} {seconds / len(items) * 1000:>9.3f} {seconds / baseline:>8.2f}x")


if __name__ == "__main__":
    main()
