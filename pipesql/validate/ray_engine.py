"""``pipesql validate --engine ray``: the items, sharded by database, checked by Ray actors.

Each actor checks its items in a worker process of its own, as :mod:`pipesql.validate.runner`
does (ZetaSQL, the LRU of open databases and the check memo in it; the worker killed past an
item's budget), so the records are the same; they come back in the items' order.
"""

from __future__ import annotations

import dataclasses
import os
import shutil
from pathlib import Path
from typing import Any, Callable, Iterable

from pipesql.corpora.items import Item
from pipesql.scale.shards import ShardedResults, ShardStore, fingerprint, write_input_shards
from pipesql.validate.check import CheckOptions, crash_record
from pipesql.validate.runner import OneWorker, prepare_googlesql

SHARDS = "shards"


def item_row(item: Item) -> dict[str, Any]:
    return {**dataclasses.asdict(item), "db_path": str(item.db_path)}


def row_item(row: dict[str, Any]) -> Item:
    return Item(**{**row, "db_path": Path(row["db_path"])})


class ValidateJob:
    """What each actor runs: :func:`pipesql.validate.check.check_item` in a supervised worker
    process (:class:`~pipesql.validate.runner.OneWorker`)."""

    def __init__(self, options: CheckOptions, witness_dir: Path | None, cwd: str):
        self.options, self.witness_dir, self.cwd = options, witness_dir, cwd

    def setup(self) -> None:
        if Path(self.cwd).is_dir():  # relative paths (data, witnesses) mean what they meant to the driver
            os.chdir(self.cwd)
        if self.options.googlesql:  # compiled once per node (cached on disk), loaded by each actor's worker
            prepare_googlesql()
        self.worker = OneWorker(self.options, self.witness_dir)

    def handle(self, row: dict[str, Any]) -> dict[str, Any]:
        return self.worker.check(row_item(row))

    def crashed(self, row: dict[str, Any], detail: str) -> dict[str, Any]:
        return crash_record(row_item(row), detail)


def validate_on_ray(items: Callable[[], Iterable[Item]], options: CheckOptions, out: Path,
                    witness_dir: Path | None = None, *, workers: int = 0, shard_items: int = 512,
                    progress: bool = True, job_key: Any = None) -> tuple[ShardedResults, int]:
    """``(records, actors)``: the record of every item of ``items()`` (called twice, streamed), in
    its order, re-iterable. The shards live beside ``out`` (:func:`shard_store`; discard them when
    done); witnesses are saved there too, then copied to ``witness_dir`` and the records point at
    them under ``out``. ``job_key`` says what the items are (a rerun with the same key and check
    options resumes)."""
    from pipesql.scale.engine import run_shards
    from pipesql.validate.report import WITNESSES, moved_witness

    store = shard_store(out)
    saved = store.root / WITNESSES
    write_input_shards(store, lambda: map(item_row, items()), key=lambda row: row["db_id"], weight=lambda row: 1,
                       shard_weight=shard_items, job_fingerprint=fingerprint(job_key, options.key(), shard_items))
    actors = run_shards(ValidateJob(options, saved, os.getcwd()), store, workers, progress, desc="validate")
    if witness_dir and saved.is_dir():
        shutil.copytree(saved, witness_dir, dirs_exist_ok=True)
    return ShardedResults(store, lambda record: moved_witness(record, saved, Path(out) / WITNESSES)), actors


def shard_store(out: Path) -> ShardStore:
    """Beside the output folder, which is replaced whole when a run completes: the shards of a
    killed run must outlive it."""
    out = Path(out)
    return ShardStore(out.parent / f".{out.name}.{SHARDS}")
