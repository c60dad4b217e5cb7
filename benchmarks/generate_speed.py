"""How fast `pipesql generate` turns golden pairs into training data, against a baseline.

Baseline (measured in the same run): execute every pair's gold SQL once on SQLite, one process,
with connections reused: the least work any generator that checks its queries must do. Then
the generator itself, with one and with two processes, with tool-calling chats for 30% of pairs.

    python benchmarks/generate_speed.py --golden-pairs GOLDEN.jsonl --db-dir DIR
    python benchmarks/generate_speed.py --spider /work/shared/data/spider   # decompiles its own pairs

Prints seconds, pairs per second and each figure as a ratio to the baseline.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import sys
import tempfile
import time
from pathlib import Path

from pipesql.corpora.items import find_database, load_items
from pipesql.generate import Settings, run
from pipesql.sql.execute import QueryError, connect_readonly, execute


def decompiled_spider_pairs(spider: Path, path: Path) -> int:
    from pipesql.decompile import decompile
    from pipesql.sql.schema import read_sqlite_schema

    schemas: dict = {}
    written = 0
    with path.open("w") as handle:
        for item in load_items("spider", spider, "all"):
            if not item.db_path.is_file():
                continue
            if item.db_id not in schemas:
                schemas[item.db_id] = read_sqlite_schema(item.db_path).sqlglot_mapping()
            result = decompile(item.gold_sql, schemas[item.db_id])
            if result.ok:
                handle.write(json.dumps({"question_id": item.question_id, "db_id": item.db_id, "difficulty": item.difficulty,
                                         "question": item.question, "gold_sql": item.gold_sql, "pipe_sql": result.pipe_sql}) + "\n")
                written += 1
    return written


def baseline_seconds(golden: Path, db_dirs: list[Path]) -> tuple[float, int]:
    """Execute each usable pair's gold SQL once (what any checking generator must at least do)."""
    pairs = [json.loads(line) for line in golden.read_text().splitlines() if line.strip()]
    pairs = [p for p in pairs if p.get("question")]
    conns: dict = {}
    start = time.monotonic()
    for pair in pairs:
        if pair["db_id"] not in conns:
            path = find_database(db_dirs, pair["db_id"])
            conns[pair["db_id"]] = connect_readonly(path) if path else None
        conn = conns[pair["db_id"]]
        if conn is None:
            continue
        with contextlib.suppress(QueryError):
            execute(conn, pair["gold_sql"], timeout_s=10, row_cap=1000)
    return time.monotonic() - start, len(pairs)


def timed_generate(golden: Path, db_dirs: list[Path], out: Path, workers: int) -> tuple[float, dict]:
    start = time.monotonic()
    with contextlib.redirect_stderr(io.StringIO()):
        code = run(Settings(golden_pairs=golden, db_dir=db_dirs, output_dir=out, tool_calling=True, tool_ratio=0.3,
                            workers=workers))
    seconds = time.monotonic() - start
    if code != 0:
        raise SystemExit(f"generate failed with workers={workers}")
    return seconds, json.loads((out / "stats.json").read_text())


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--golden-pairs", type=Path)
    parser.add_argument("--db-dir", type=Path, action="append", default=[])
    parser.add_argument("--spider", type=Path, help="Spider root: decompile all its items into golden pairs first.")
    args = parser.parse_args(argv)
    work = Path(tempfile.mkdtemp(prefix="generate-speed-"))
    golden, db_dirs = args.golden_pairs, list(args.db_dir)
    if args.spider:
        golden = work / "golden.jsonl"
        print(f"decompiled {decompiled_spider_pairs(args.spider, golden)} Spider pairs", file=sys.stderr)
        db_dirs = db_dirs or [args.spider / "database"]
    if golden is None or not db_dirs:
        parser.error("give --golden-pairs and --db-dir, or --spider")

    base, usable = baseline_seconds(golden, db_dirs)
    one, stats = timed_generate(golden, db_dirs, work / "w1", workers=1)
    two, _ = timed_generate(golden, db_dirs, work / "w2", workers=2)
    pairs = stats["pairs"]
    print(f"pairs: {pairs['read']} read, {usable} with a question, {pairs['used']} used; "
          f"{stats['samples']['total']} samples ({stats['samples']['by_kind']})")
    print(f"{'run':<38}{'seconds':>9}{'pairs/s':>10}{'x baseline':>12}")
    for name, seconds in (("baseline: gold SQL once, 1 process", base), ("generate, 1 process", one),
                          ("generate, 2 processes", two)):
        print(f"{name:<38}{seconds:>9.2f}{usable / seconds:>10.0f}{seconds / base:>12.2f}")
    print(f"2 processes vs 1: {one / two:.2f}x faster")
    return 0


if __name__ == "__main__":
    sys.exit(main())
