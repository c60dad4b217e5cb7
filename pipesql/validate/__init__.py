"""``pipesql validate``: decompile a benchmark's gold SQL and prove each pair by execution.

::

    pipesql validate --benchmark spider --data-dir data/spider --split dev --out out/validate/spider-dev

For each item: gold SQL on SQLite → pipe SQL (decompiler) → SQLite again (round trip) →
same result? Items that match are golden pairs; every other item goes to quarantine with its
class and diagnostics. GoogleSQL (ZetaSQL) is asked about every pipe query too. Outputs, in
``--out``: ``golden_pairs.jsonl``, ``quarantine.jsonl``, ``summary.json``, ``report.md``,
``classes.png``, ``manifest.json`` and ``witnesses/`` (the generated database variants on which a
pair that matched on its own database disagreed: class ``VARIANT_MISMATCH``).

Python API: :func:`validate_items` (records for any list of :class:`pipesql.corpora.items.Item`).
"""

from __future__ import annotations

import shutil
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import ClassVar, Iterable

from pipesql.corpora.items import BENCHMARKS, SPLITS, BenchmarkError, iter_items, load_items
from pipesql.config.settings import option
from pipesql.scale import ENGINES
from pipesql.sql.execute import DEFAULT_ROW_CAP, DEFAULT_TIMEOUT_S
from pipesql.sql.googlesql import DEFAULT_MAX_WORK
from pipesql.validate.check import CLASSES, CheckOptions, check_item
from pipesql.validate.runner import default_workers, validate_items
from pipesql.validate.variants import DEFAULT_ROWS, DEFAULT_VARIANTS

__all__ = ["CLASSES", "CheckOptions", "Settings", "check_item", "run", "validate_items"]


@dataclass
class Settings:
    stage: ClassVar[str] = "validate"

    benchmark: str = option("demo", "Benchmark to validate.", choices=BENCHMARKS)
    data_dir: Path | None = option(None, "Benchmark folder (Spider/BIRD layout); for demo, where to build it "
                                         "(default: the cache).")
    split: str = option("all", "Which split.", choices=SPLITS)
    limit: int | None = option(None, "Validate only the first N items.")
    out: Path = option(Path("out/validate"), "Output folder.")
    workers: int = option(0, "Worker processes, or Ray actors (0: all cores, or all the cluster's CPUs).")
    engine: str = option("local", "local: processes on this machine; ray: a Ray Data pipeline on the cluster at "
                                  "RAY_ADDRESS, else on a local one (docs/scale.md).", choices=ENGINES)
    shard_items: int = option(512, "Ray engine: about this many items per shard, whole databases (the unit "
                                   "a rerun skips once done).")
    timeout_s: float = option(DEFAULT_TIMEOUT_S, "Time limit per SQL execution, seconds.")
    row_cap: int = option(DEFAULT_ROW_CAP, "Most rows read from one result.")
    googlesql: bool = option(True, "Check every pipe query with GoogleSQL (ZetaSQL) too.")
    googlesql_execute_rows: int = option(5_000, "Execute on ZetaSQL too when the database has at most this many "
                                                "rows (its reference engine is slow; 0: never).")
    googlesql_timeout_s: float = option(2.0, "Time limit per ZetaSQL execution, seconds.")
    googlesql_max_work: int = option(DEFAULT_MAX_WORK, "Analyze only (do not execute on ZetaSQL) a query predicted to "
                                                       "visit more rows than this (0: no bound).")
    variants: int = option(DEFAULT_VARIANTS, "Also prove each match on this many generated variants of its database "
                                             "(0: only on the database itself).")
    variant_rows: int = option(DEFAULT_ROWS, "Most rows per table in a variant.")
    progress: bool = option(True, "Show a progress bar on stderr.")


def run(settings: Settings) -> int:
    from pipesql.storage.manifest import write_manifest
    from pipesql.validate.report import WITNESSES, summarize, write_outputs

    if settings.data_dir is None and settings.benchmark != "demo":
        print(f"pipesql validate: --data-dir is required for {settings.benchmark}", file=sys.stderr)
        return 2
    from pipesql.corpora.demo import DemoCorpusError

    out = Path(settings.out)
    options = CheckOptions(timeout_s=settings.timeout_s, row_cap=settings.row_cap, googlesql=settings.googlesql,
                           googlesql_execute_rows=settings.googlesql_execute_rows,
                           googlesql_timeout_s=settings.googlesql_timeout_s,
                           googlesql_max_work=settings.googlesql_max_work, variants=settings.variants,
                           variant_rows=settings.variant_rows, witness_dir=str(out / WITNESSES))
    start = time.monotonic()
    try:
        records, workers = _records(settings, options)
    except (BenchmarkError, DemoCorpusError) as error:
        print(f"pipesql validate: {error}", file=sys.stderr)
        return 2
    seconds = time.monotonic() - start
    summary = summarize(records, seconds, workers)
    summary.update(benchmark=settings.benchmark, split=settings.split, variants=settings.variants)
    title = f"{settings.benchmark} {settings.split}" + (f" (first {settings.limit})" if settings.limit else "")
    outputs = write_outputs(out, records, summary, title)
    outputs += sorted((out / WITNESSES).glob("*.sqlite"))
    inputs = [settings.data_dir] if settings.data_dir else []
    if settings.benchmark == "demo":
        from pipesql.corpora.demo import ensure_corpus

        inputs = [ensure_corpus(settings.data_dir)]
    write_manifest(out, Settings.stage, settings, inputs=inputs, outputs=outputs, metrics=summary)
    classes = ", ".join(f"{k} {v}" for k, v in summary["classes"].items())
    print(f"validated {summary['items']} items in {seconds:.1f} s: {classes}; match rate "
          f"{summary['match_rate']}; googlesql ok rate {summary['googlesql_ok_rate']} -> {out}")
    if settings.engine == "ray":
        records.store.discard()  # the outputs hold every record now
    return 0


def _records(settings: Settings, options: CheckOptions) -> tuple[Iterable[dict], int]:
    """``(records, workers)`` from the chosen engine: a list (local), or streamed from shards (ray)."""
    from pipesql.validate.report import WITNESSES

    if settings.engine == "ray":
        from pipesql.validate.ray_engine import validate_on_ray

        def items():
            return iter_items(settings.benchmark, settings.data_dir, settings.split, settings.limit)

        return validate_on_ray(items, options, Path(settings.out), workers=settings.workers,
                               shard_items=settings.shard_items, progress=settings.progress,
                               job_key=(settings.benchmark, settings.data_dir, settings.split, settings.limit))
    items = load_items(settings.benchmark, settings.data_dir, settings.split, settings.limit)
    shutil.rmtree(Path(settings.out) / WITNESSES, ignore_errors=True)  # witnesses of an earlier run in the same folder
    workers = settings.workers or default_workers()
    return validate_items(items, workers=workers, options=options, progress=settings.progress), workers
