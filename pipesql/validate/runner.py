"""Validate many items over all cores.

Items are grouped by database and cut into chunks, so a worker keeps one database's connection,
schema and ZetaSQL catalog warm across a chunk, and an item whose gold query it checked before
(Spider asks most twice) copies that outcome (:class:`~pipesql.validate.check.CheckMemo`). Workers are spawned (not forked), each with
its own caches and its own ZetaSQL instance; the parent compiles the ZetaSQL module once before
they start, so they only load it.
"""

from __future__ import annotations

import multiprocessing
import sys
from pathlib import Path
from typing import Any, Iterable, Sequence

from pipesql.config.machine import usable_cores
from pipesql.corpora.items import Item
from pipesql.progress import progress_bar
from pipesql.validate.check import CheckMemo, CheckOptions, DatabaseCache, check_item

CHUNK_SIZE = 24

_options: CheckOptions | None = None
_witness_dir: Path | None = None
_databases: DatabaseCache | None = None
_memo: CheckMemo | None = None


def _init_worker(options: CheckOptions, witness_dir: Path | None) -> None:
    global _options, _witness_dir, _databases, _memo
    _options, _witness_dir = options, witness_dir
    _databases = DatabaseCache()
    _memo = CheckMemo()


def _check_chunk(chunk: list[tuple[int, Item]]) -> list[tuple[int, dict[str, Any]]]:
    assert _options is not None and _databases is not None
    return [(index, check_item(item, _options, _databases, _memo, _witness_dir)) for index, item in chunk]


def chunks_by_database(items: Sequence[Item], size: int = CHUNK_SIZE) -> list[list[tuple[int, Item]]]:
    """``(index, item)`` chunks of at most ``size``, each holding items of one database; big
    databases' chunks first, so the slowest work does not start last."""
    by_db: dict[str, list[tuple[int, Item]]] = {}
    for index, item in enumerate(items):
        by_db.setdefault(str(item.db_path), []).append((index, item))
    chunks = [group[i : i + size] for group in by_db.values() for i in range(0, len(group), size)]
    return sorted(chunks, key=len, reverse=True)


def validate_items(items: Iterable[Item], *, workers: int | None = None, options: CheckOptions | None = None,
                   progress: bool = True, witness_dir: Path | None = None) -> list[dict[str, Any]]:
    """The validation record of every item, in the items' order (see
    :func:`pipesql.validate.check.check_item`). ``workers=1`` runs in this process. ``options``
    may be the validate stage's settings (they extend :class:`CheckOptions`)."""
    options = options or CheckOptions()
    items = list(items)
    workers = max(1, min(workers or usable_cores(), len(items) or 1))
    records: list[dict[str, Any] | None] = [None] * len(items)
    if options.googlesql:
        prepare_googlesql()
    chunks = chunks_by_database(items)
    with progress_bar(len(items), "validate", "item", disable=not progress) as bar:
        if workers == 1:
            _init_worker(options, witness_dir)
            for chunk in chunks:
                for index, record in _check_chunk(chunk):
                    records[index] = record
                bar.update(len(chunk))
        else:
            context = multiprocessing.get_context("spawn")
            with context.Pool(workers, initializer=_init_worker, initargs=(options, witness_dir)) as pool:
                for done in pool.imap_unordered(_check_chunk, chunks):
                    for index, record in done:
                        records[index] = record
                    bar.update(len(done))
    return [r for r in records if r is not None]


def prepare_googlesql() -> None:
    # Compile (or find) the cached ZetaSQL module once here, so workers never compile it side by side.
    try:
        from pipesql.sql import googlesql

        googlesql.ensure_compiled()
    except Exception as error:  # workers will record the engine as unavailable
        print(f"warning: GoogleSQL check unavailable: {type(error).__name__}: {error}", file=sys.stderr)
