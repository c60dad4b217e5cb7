"""``pipesql generate --engine ray``: each database's pairs is one unit, worked by Ray actors.

A unit is what :func:`pipesql.generate.worker.generate_for_database` takes (one database and its
pairs), so the samples are the same as the local processes'; the driver then splits and writes
them exactly as it does for the local engine.
"""

from __future__ import annotations

import dataclasses
import os
from pathlib import Path
from typing import Any

from pipesql.generate.pairs import GoldenPair, Problem
from pipesql.generate.worker import DatabaseResult, DatabaseWork, WorkOptions, generate_for_database
from pipesql.scale.shards import ShardStore, fingerprint, iter_results, write_input_shards

SHARDS = "shards"
WORKER_CRASHED = "worker_crashed"  # a skipped.jsonl reason: the database kept killing its worker


def work_row(work: DatabaseWork) -> dict[str, Any]:
    return {"db_id": work.db_id, "db_path": str(work.db_path), "pairs": [dataclasses.asdict(p) for p in work.pairs]}


def row_work(row: dict[str, Any]) -> DatabaseWork:
    return DatabaseWork(row["db_id"], Path(row["db_path"]), [GoldenPair(**pair) for pair in row["pairs"]])


def result_row(result: DatabaseResult) -> dict[str, Any]:
    return {"db_id": result.db_id, "samples": [[line, samples] for line, samples in result.samples.items()],
            "problems": [dataclasses.asdict(p) for p in result.problems],
            "notes": [dataclasses.asdict(p) for p in result.notes], "seconds": result.seconds}


def row_result(row: dict[str, Any]) -> DatabaseResult:
    return DatabaseResult(row["db_id"], {line: samples for line, samples in row["samples"]},
                          [Problem(**p) for p in row["problems"]], [Problem(**p) for p in row["notes"]], row["seconds"])


class GenerateJob:
    def __init__(self, options: WorkOptions, cwd: str):
        self.options, self.cwd = options, cwd

    def setup(self) -> None:
        if Path(self.cwd).is_dir():  # relative database paths mean what they meant to the driver
            os.chdir(self.cwd)

    def handle(self, row: dict[str, Any]) -> dict[str, Any]:
        return result_row(generate_for_database(row_work(row), self.options))

    def crashed(self, row: dict[str, Any], detail: str) -> dict[str, Any]:
        work = row_work(row)
        problems = [Problem(self.options.golden_pairs, p.line, p.question_id, WORKER_CRASHED, detail) for p in work.pairs]
        return result_row(DatabaseResult(work.db_id, problems=problems))


def run_work_on_ray(work: list[DatabaseWork], options: WorkOptions, out: Path, workers: int = 0,
                    shard_pairs: int = 512, progress: bool = True) -> tuple[list[DatabaseResult], int]:
    """``(results in database-name order, actors)``, as :func:`pipesql.generate.job.run_work`
    returns them; the shards beside ``out`` are removed once read."""
    from pipesql.scale.engine import run_shards

    out = Path(out)
    store = ShardStore(out.parent / f".{out.name}.{SHARDS}")  # beside the output, which is replaced whole
    rows = [work_row(w) for w in work]
    write_input_shards(store, lambda: rows, key=lambda row: row["db_id"], weight=lambda row: len(row["pairs"]),
                       shard_weight=shard_pairs, job_fingerprint=fingerprint(rows, options, shard_pairs))
    actors = run_shards(GenerateJob(options, os.getcwd()), store, workers, progress, desc="generate")
    results = sorted((row_result(row) for row in iter_results(store)), key=lambda result: result.db_id)
    store.discard()
    return results, actors
