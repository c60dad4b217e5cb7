"""The pipeline's stages, in order: what each needs to have run, how its settings are made from
the pipeline's, where it writes; and running them, each through the stage's own ``run``."""

from __future__ import annotations

import gc
import importlib
import json
import shutil
import sys
import time
import traceback
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

from pipesql.cli import COMMANDS
from pipesql.config.settings import resolve
from pipesql.pipeline.settings import Settings
from pipesql.storage.manifest import MANIFEST_NAME

# Marks an output root as the pipeline's, so that a rerun may replace its stage folders.
MARKER_NAME = ".pipesql-pipeline"
DEMO = "demo"
# The train stage's fixed settings in the main job (a recipe, read below the values _train gives).
TRAIN_RECIPE = Path(__file__).with_name("train.yaml")


@dataclass
class Layout:
    """Where each stage writes, under the output root."""

    root: Path

    @property
    def validate(self) -> Path:
        return self.root / "validate"

    @property
    def generate(self) -> Path:
        return self.root / "generate"

    @property
    def train(self) -> Path:
        return self.root / "train"

    @property
    def merged(self) -> Path:
        return self.train / "merged"  # where pipesql merge puts a run's merged model

    @property
    def evaluate(self) -> Path:
        return self.root / "evaluate"


@dataclass
class StageResult:
    name: str
    status: str  # ok | failed | skipped
    seconds: float = 0.0
    out: str | None = None
    metrics: dict[str, Any] = field(default_factory=dict)
    note: str = ""


def _stage_settings(module: Any, values: dict[str, Any]) -> Any:
    # Through resolve() so a stage's presets apply; no environment or .env, so the demo is the
    # same everywhere (the pipeline's own flags are its knobs).
    return resolve(module.Settings, values, environ={}, dotenv={})


# Each stage: name -> (what it needs to have run, how its settings are made, its output folder).
def _validate(settings: Settings, layout: Layout) -> dict[str, Any]:
    # The train split only: evaluate scores the dev split, which training must not have seen.
    return {"benchmark": DEMO, "split": "train", "limit": settings.limit, "out": layout.validate}


def _generate(settings: Settings, layout: Layout) -> dict[str, Any]:
    # The model's own tokenizer, so stats.png measures lengths in tokens, the unit of train's cut-off.
    return {"golden_pairs": layout.validate / "golden_pairs.jsonl", "benchmark": DEMO,
            "output_dir": layout.generate, "tool_calling": True, "tokenizer": settings.model,
            "cut_off_tokens": settings.max_seq_length}


def _train(settings: Settings, layout: Layout) -> dict[str, Any]:
    # TRAIN_RECIPE holds what is fixed (the smoke preset made fast on two CPU cores, and why);
    # here is what comes from the pipeline's own settings: one checkpoint, at the end; the dev
    # set (the same conversations each time) evaluated before the first step, half-way and after
    # the last (a dev pass costs less than a training step), so the summary has a before and an
    # after and training_curves.png a dev curve with a middle; end-marker samples thinned, or a
    # short run learns to stop.
    return {"config": TRAIN_RECIPE, "model_name": settings.model, "train_data": layout.generate / "train.jsonl",
            "dev_data": layout.generate / "dev.jsonl", "output_dir": layout.train, "max_steps": settings.max_steps,
            "max_seq_length": settings.max_seq_length, "device": settings.device,
            "per_device_train_batch_size": settings.batch_size, "end_sample_share": settings.end_sample_share,
            "save_steps": settings.max_steps, "eval_steps": max(1, settings.max_steps // 2), "dev_limit": settings.dev_steps,
            "learning_rate": settings.learning_rate}


def _merge(settings: Settings, layout: Layout) -> dict[str, Any]:
    return {"output_dir": layout.train, "merged_dir": layout.merged}


def _evaluate(settings: Settings, layout: Layout) -> dict[str, Any]:
    model = settings.model if settings.skip_train else str(layout.merged)
    # Agent mode (one operator per step, each prefix checked with the tools) is what the step
    # conversations of generate teach; a one-shot prompt is one the model never trained on.
    # A step is one short line: 64 tokens hold 476 of the demo's 483 steps (6 at the median), and
    # a rejected step gets one sampled retry (there a barely trained model mostly writes prose).
    return {"model": model, "benchmark": DEMO, "split": "dev", "mode": "agent", "out": layout.evaluate,
            "limit": settings.eval_limit or None, "device": settings.device,
            "step_max_new_tokens": 64, "max_retries": 1,
            "trajectories": layout.generate / "dev.jsonl", "trajectory_limit": settings.dev_steps}


STAGES: list[tuple[str, tuple[str, ...], Callable[[Settings, Layout], dict[str, Any]], Callable[[Layout], Path]]] = [
    ("validate", (), _validate, lambda layout: layout.validate),
    ("generate", ("validate",), _generate, lambda layout: layout.generate),
    ("train", ("generate",), _train, lambda layout: layout.train),
    ("merge", ("train",), _merge, lambda layout: layout.merged),
    ("evaluate", ("merge",), _evaluate, lambda layout: layout.evaluate),
]


def _read_metrics(out: Path) -> dict[str, Any]:
    """A stage's figures, from the manifest every stage writes (train's summary has more)."""
    metrics: dict[str, Any] = {}
    for name in (MANIFEST_NAME, "summary.json"):
        path = out / name
        if path.is_file():
            data = json.loads(path.read_text(encoding="utf-8"))
            metrics.update(data.get("metrics", {}) if name == MANIFEST_NAME else data)
    return metrics


def _load_stage(name: str) -> Any | None:
    module_name = COMMANDS[name][0]
    try:
        return importlib.import_module(module_name)
    except ModuleNotFoundError as error:
        if error.name and module_name.startswith(error.name):
            return None  # the stage itself is absent, not one of its imports
        raise


def run_stage(name: str, module: Any, values: dict[str, Any], out: Path) -> StageResult:
    print(f"\n=== pipeline: {name} ===", file=sys.stderr, flush=True)
    started = time.monotonic()
    try:
        code = module.run(_stage_settings(module, values))
        status, note = ("ok", "") if not code else ("failed", f"exit status {code}")
    except SystemExit as error:  # stages report bad settings or input this way
        status, note = ("ok", "") if not error.code else ("failed", str(error.code))
    except Exception as error:  # noqa: BLE001 - reported in the summary, with the traceback on stderr
        traceback.print_exc()
        status, note = "failed", f"{type(error).__name__}: {error}"
    seconds = round(time.monotonic() - started, 2)
    return StageResult(name, status, seconds, str(out), _read_metrics(out) if out.is_dir() else {}, note)


class PipelineError(Exception):
    pass


def _made_by_pipeline(root: Path) -> bool:
    """The marker written when a run starts, or the manifest of a finished run."""
    if (root / MARKER_NAME).is_file():
        return True
    try:
        return json.loads((root / MANIFEST_NAME).read_text(encoding="utf-8")).get("stage") == "pipeline"
    except (OSError, ValueError):
        return False


def prepare_output_root(layout: Layout) -> None:
    """Start from empty stage folders: a rerun replaces the previous run's (train would
    otherwise resume its finished checkpoint), but never folders the pipeline did not make."""
    stage_dirs = [out_of(layout) for *_, out_of in STAGES if out_of(layout).parent == layout.root]
    existing = [d for d in stage_dirs if d.exists()]
    if existing and not _made_by_pipeline(layout.root):
        raise PipelineError(f"{layout.root} holds {', '.join(d.name for d in existing)} not written by "
                            "pipesql pipeline; choose another --out")
    layout.root.mkdir(parents=True, exist_ok=True)
    (layout.root / MARKER_NAME).touch()
    for folder in existing:
        print(f"pipeline: replacing the previous run's {folder}", file=sys.stderr)
        shutil.rmtree(folder)


def run_pipeline(settings: Settings) -> list[StageResult]:
    layout = Layout(Path(settings.out))
    prepare_output_root(layout)
    results: dict[str, StageResult] = {}
    for name, needs, make_values, out_of in STAGES:
        if settings.skip_train and name in ("train", "merge"):
            results[name] = StageResult(name, "skipped", note="--skip-train")
            continue
        needs = tuple(n for n in needs if not (settings.skip_train and n == "merge"))
        unmet = [n for n in needs if results[n].status != "ok"]
        if unmet:
            results[name] = StageResult(name, "skipped", note=f"needs {', '.join(unmet)}")
            continue
        module = _load_stage(name)
        if module is None:
            results[name] = StageResult(name, "skipped", note=f"module {COMMANDS[name][0]} is not installed")
            continue
        results[name] = run_stage(name, module, make_values(settings, layout), out_of(layout))
        gc.collect()  # a stage's models and trainer, often in reference cycles, go before the next loads its own
        if results[name].status == "failed":
            break
    return [results.get(name) or StageResult(name, "skipped", note="not reached") for name, *_ in STAGES]
