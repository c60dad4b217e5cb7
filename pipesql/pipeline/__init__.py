"""``pipesql pipeline``: the main job. The whole pipeline, small, on the embedded demo corpus, in
one process, offline:

1. validate  - decompile the demo's gold SQL to pipe SQL and prove each pair by execution;
2. generate  - golden pairs -> chat training data (step-by-step and tool-calling chats);
3. train     - a short LoRA run (default SmolLM2-135M, 6 steps of 2 conversations; fp32 on CPU),
   with dev loss and token accuracy before and after;
4. merge     - fold the adapter into a standalone model;
5. evaluate  - execution accuracy of the merged model on the demo's dev questions, as an agent
   (one operator per step, the format the model was trained on), and next-operator accuracy
   on dev trajectory steps.

Each stage is the stage's own ``run(Settings(...))``, so there is one implementation of each
thing; every stage writes into its own folder under ``--out`` (with its manifest), and the
pipeline writes ``pipeline_summary.json``, ``pipeline_stages.png`` and its own manifest there.
A stage whose module is not installed is skipped with a note, and so is what depends on it.
"""

from __future__ import annotations

import sys
import time
from dataclasses import asdict
from pathlib import Path

from pipesql.config.settings import as_dict
from pipesql.pipeline.cpu import use_threads
from pipesql.pipeline.report import PLOT_NAME, SUMMARY_NAME, plot_stages, print_report
from pipesql.pipeline.settings import Settings
from pipesql.pipeline.stages import PipelineError, run_pipeline
from pipesql.storage.files import write_json
from pipesql.storage.manifest import write_manifest

__all__ = ["Settings", "run"]


def run(settings: Settings) -> int:
    started = time.monotonic()
    out = Path(settings.out)
    threads = use_threads(settings)
    try:
        results = run_pipeline(settings)
    except PipelineError as error:
        print(f"pipesql pipeline: {error}", file=sys.stderr)
        return 2
    total = round(time.monotonic() - started, 2)
    summary_path, plot_path = out / SUMMARY_NAME, out / PLOT_NAME
    ok = all(r.status != "failed" for r in results)
    write_json(summary_path, {"settings": as_dict(settings), "threads": threads, "ok": ok, "seconds": total,
                              "stages": [asdict(r) for r in results]})
    plot_stages(results, plot_path)
    # The stage folders too, so that one `python -m pipesql.storage.manifest OUT` checks a moved run.
    stage_dirs = [Path(r.out) for r in results if r.out and Path(r.out).is_dir()]
    write_manifest(out, "pipeline", settings, outputs=[summary_path, plot_path, *stage_dirs], metrics={
        "ok": ok, "seconds": total, **{f"{r.name}_status": r.status for r in results},
        **{f"{r.name}_seconds": r.seconds for r in results}})
    print_report(settings, results, total, summary_path)
    return 0 if ok else 1
