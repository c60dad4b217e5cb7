"""Shards on disk: the plan, each shard's input, its results in progress, its output and marker.

A job's units (JSON objects) are written once into ``input/NNNNN.jsonl``, grouped by a key (the
database), each line ``{"index": i, "unit": ...}`` in input order. Working on shard ``n``:

- before a unit, its index is appended to ``partial/n.started``; after it, its result to
  ``partial/n.jsonl`` (both flushed, so a killed process loses at most the unit in flight);
- a shard started again (a retried task, a rerun) keeps the results it has and goes on; a unit
  started twice without a result is one that kills its worker: it gets the job's crash result
  instead of a third try;
- finished, ``partial/n.jsonl`` becomes ``output/n.jsonl`` and ``done/n.json`` is written: a
  rerun skips every shard that has its marker.

Every file appears by rename, so a reader never sees half of one. Nothing here imports Ray.
"""

from __future__ import annotations

import hashlib
import heapq
import json
import os
import shutil
import time
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterable, Iterator

from pipesql.storage.files import write_json

PLAN = "plan.json"
# Lines held in memory while the input shards are written (all shards together).
WRITE_BUFFER_LINES = 20_000
# Tries of one unit before it counts as the one that kills its worker.
CRASH_TRIES = 2


def fingerprint(*parts: Any) -> str:
    """What a job's shards depend on: a rerun with another fingerprint starts from scratch."""
    text = json.dumps(parts, sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def pack(weights: Counter, shard_weight: int) -> dict[str, int]:
    """``{key: shard}``: keys in decreasing weight, cut into shards of about ``shard_weight``; a key
    heavier than that gets a shard of its own (a key is never split)."""
    shard_of, shard, filled = {}, 0, 0
    for key, weight in sorted(weights.items(), key=lambda kv: (-kv[1], kv[0])):
        if filled and filled + weight > shard_weight:
            shard, filled = shard + 1, 0
        shard_of[key] = shard
        filled += weight
    return shard_of


@dataclass(frozen=True)
class ShardStore:
    root: Path

    def _file(self, folder: str, shard: int, suffix: str) -> Path:
        return self.root / folder / f"{shard:05d}{suffix}"

    def input(self, shard: int) -> Path:
        return self._file("input", shard, ".jsonl")

    def partial(self, shard: int) -> Path:
        return self._file("partial", shard, ".jsonl")

    def started(self, shard: int) -> Path:
        return self._file("partial", shard, ".started")

    def output(self, shard: int) -> Path:
        return self._file("output", shard, ".jsonl")

    def marker(self, shard: int) -> Path:
        return self._file("done", shard, ".json")

    def plan(self) -> dict | None:
        try:
            return json.loads((self.root / PLAN).read_text())
        except (FileNotFoundError, ValueError):
            return None

    def shards(self) -> list[int]:
        """Every shard, heaviest first (the slowest work does not start last)."""
        return list((self.plan() or {}).get("order", []))

    def pending(self) -> list[int]:
        return [shard for shard in self.shards() if not self.marker(shard).is_file()]

    def discard(self) -> None:
        shutil.rmtree(self.root, ignore_errors=True)


def write_input_shards(store: ShardStore, units: Callable[[], Iterable[dict]], key: Callable[[dict], str],
                       weight: Callable[[dict], int], shard_weight: int, job_fingerprint: str) -> dict:
    """Cut ``units()`` into input shards, unless the store already holds this job's (a rerun).
    ``units`` is called twice (weights first, then the lines), so it must stream the same units
    each time; memory holds the weights per key and a bounded buffer, never the units."""
    plan = store.plan()
    if plan and plan.get("fingerprint") == job_fingerprint:
        return plan
    store.discard()  # another job's shards, or a cut that did not finish
    weights: Counter = Counter()
    for unit in units():
        weights[key(unit)] += weight(unit)
    shard_of = pack(weights, shard_weight)
    staging = store.root / "input.partial"
    staging.mkdir(parents=True)
    sizes: Counter = Counter()
    buffered: dict[int, list[str]] = {}
    held = count = 0
    for index, unit in enumerate(units()):
        count = index + 1
        shard = shard_of[key(unit)]
        buffered.setdefault(shard, []).append(json.dumps({"index": index, "unit": unit}, ensure_ascii=False) + "\n")
        sizes[shard] += weight(unit)
        held += 1
        if held >= WRITE_BUFFER_LINES:
            _append_all(staging, buffered)
            buffered, held = {}, 0
    _append_all(staging, buffered)
    staging.rename(store.root / "input")
    plan = {"fingerprint": job_fingerprint, "units": count, "weight": sum(weights.values()),
            "order": sorted(sizes, key=lambda s: (-sizes[s], s)), "sizes": {str(s): n for s, n in sizes.items()}}
    write_json(store.root / PLAN, plan)  # last: a plan says the input shards are complete
    return plan


def _append_all(folder: Path, buffered: dict[int, list[str]]) -> None:
    for shard, lines in buffered.items():
        with (folder / f"{shard:05d}.jsonl").open("a", encoding="utf-8") as handle:
            handle.writelines(lines)


def _kept_results(path: Path) -> set[int]:
    """Indices with a result in a shard's partial file; a torn last line (killed mid-write) is cut."""
    if not path.is_file():
        return set()
    done, good_bytes = set(), 0
    with path.open("rb") as handle:
        for line in handle:
            try:
                done.add(json.loads(line)["index"])
            except (ValueError, KeyError):
                break
            good_bytes += len(line)
    os.truncate(path, good_bytes)
    return done


def _start_counts(path: Path) -> Counter:
    if not path.is_file():
        return Counter()
    return Counter(int(line) for line in path.read_text().split() if line.isdigit())


def process_shard(store: ShardStore, shard: int, handle: Callable[[dict], Any],
                  crashed: Callable[[dict, str], Any]) -> dict:
    """Work one shard to its output and marker (see the module docstring); returns the marker."""
    if store.marker(shard).is_file():  # a retried task whose first try finished
        return json.loads(store.marker(shard).read_text())
    start = time.monotonic()
    partial, started = store.partial(shard), store.started(shard)
    partial.parent.mkdir(parents=True, exist_ok=True)
    done, tries = _kept_results(partial), _start_counts(started)
    units = 0
    with partial.open("a", encoding="utf-8") as results, started.open("a") as journal, \
            store.input(shard).open(encoding="utf-8") as lines:
        for line in lines:
            entry = json.loads(line)
            index, units = entry["index"], units + 1
            if index in done:
                continue
            if tries[index] >= CRASH_TRIES:
                result = crashed(entry["unit"], f"the worker process died {tries[index]} times working on it")
            else:
                journal.write(f"{index}\n")
                journal.flush()
                result = handle(entry["unit"])
            results.write(json.dumps({"index": index, "result": result}, ensure_ascii=False) + "\n")
            results.flush()
    store.output(shard).parent.mkdir(parents=True, exist_ok=True)
    os.replace(partial, store.output(shard))
    marker = {"shard": shard, "units": units, "seconds": round(time.monotonic() - start, 2), "pid": os.getpid()}
    write_json(store.marker(shard), marker)
    started.unlink(missing_ok=True)
    return marker


def iter_results(store: ShardStore) -> Iterator[Any]:
    """Every result of a finished job in input order: the shards' outputs merged by index, one
    line of each open at a time."""
    _raise_open_file_limit(len(store.shards()))
    streams = [_indexed(store.output(shard)) for shard in store.shards()]
    for _, result in heapq.merge(*streams, key=lambda entry: entry[0]):
        yield result


def _indexed(path: Path) -> Iterator[tuple[int, Any]]:
    with path.open(encoding="utf-8") as handle:
        for line in handle:
            entry = json.loads(line)
            yield entry["index"], entry["result"]


def _raise_open_file_limit(needed: int) -> None:
    try:
        import resource
    except ImportError:  # not on POSIX: nothing to raise
        return
    wanted = needed + 64  # the merge holds every shard's output open at once
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft != resource.RLIM_INFINITY and soft < wanted:
        resource.setrlimit(resource.RLIMIT_NOFILE, (wanted if hard == resource.RLIM_INFINITY else min(hard, wanted), hard))


class ShardedResults:
    """The results of a finished job, iterable again and again (each pass streams the shards)."""

    def __init__(self, store: ShardStore, convert: Callable[[Any], Any] = lambda result: result):
        self.store, self.convert = store, convert

    def __iter__(self) -> Iterator[Any]:
        return map(self.convert, iter_results(self.store))
