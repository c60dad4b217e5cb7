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

import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import ClassVar

from pipesql.config.machine import usable_cores
from pipesql.corpora.items import BENCHMARKS, SPLITS, BenchmarkError, load_items
from pipesql.config.settings import option
from pipesql.validate.check import CLASSES, CheckOptions, check_item
from pipesql.validate.runner import validate_items

__all__ = ["CLASSES", "CheckOptions", "Settings", "check_item", "run", "validate_items"]


@dataclass
class Settings(CheckOptions):
    """What to validate and where the outputs go; how each item is proven is
    :class:`~pipesql.validate.check.CheckOptions`, inherited, its defaults unchanged."""

    stage: ClassVar[str] = "validate"

    benchmark: str = option("demo", "Benchmark to validate.", choices=BENCHMARKS)
    data_dir: Path | None = option(None, "Benchmark folder (Spider/BIRD layout); for demo, where to build it "
                                         "(default: the cache).")
    split: str = option("all", "Which split.", choices=SPLITS)
    limit: int | None = option(None, "Validate only the first N items.")
    out: Path = option(Path("out/validate"), "Output folder.")
    workers: int = option(0, "Worker processes (0: all cores).")
    progress: bool = option(True, "Show a progress bar on stderr.")


def run(settings: Settings) -> int:
    from pipesql.storage.files import staged_folder
    from pipesql.storage.manifest import write_manifest
    from pipesql.validate.report import WITNESSES, moved_witnesses, summarize, write_outputs

    if settings.data_dir is None and settings.benchmark != "demo":
        print(f"pipesql validate: --data-dir is required for {settings.benchmark}", file=sys.stderr)
        return 2
    from pipesql.corpora.demo import DemoCorpusError

    try:
        items = load_items(settings.benchmark, settings.data_dir, settings.split, settings.limit)
    except (BenchmarkError, DemoCorpusError) as error:
        print(f"pipesql validate: {error}", file=sys.stderr)
        return 2
    workers = settings.workers or usable_cores()
    out = Path(settings.out)
    with staged_folder(out, Settings.stage) as staging:  # the outputs appear together or not at all
        start = time.monotonic()
        records = validate_items(items, workers=workers, options=settings, progress=settings.progress,
                                 witness_dir=staging / WITNESSES)
        seconds = time.monotonic() - start
        moved_witnesses(records, staging, out)
        summary = summarize(records, seconds, workers)
        summary.update(benchmark=settings.benchmark, split=settings.split, variants=settings.variants)
        title = f"{settings.benchmark} {settings.split}" + (f" (first {settings.limit})" if settings.limit else "")
        outputs = write_outputs(staging, records, summary, title)
        outputs += sorted((staging / WITNESSES).glob("*.sqlite"))
        inputs = [settings.data_dir] if settings.data_dir else []
        if settings.benchmark == "demo":
            from pipesql.corpora.demo import ensure_corpus

            inputs = [ensure_corpus(settings.data_dir)]
        write_manifest(staging, Settings.stage, settings, inputs=inputs, outputs=outputs, metrics=summary)
    classes = ", ".join(f"{k} {v}" for k, v in summary["classes"].items())
    print(f"validated {summary['items']} items in {seconds:.1f} s: {classes}; match rate "
          f"{summary['match_rate']}; googlesql ok rate {summary['googlesql_ok_rate']} -> {out}")
    return 0
