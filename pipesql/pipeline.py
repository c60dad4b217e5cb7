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

import gc
import importlib
import json
import os
import shutil
import sys
import textwrap
import time
import traceback
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Callable, ClassVar

from pipesql.cli import COMMANDS
from pipesql.storage.files import write_json
from pipesql.storage.manifest import MANIFEST_NAME, write_manifest
from pipesql.config.settings import as_dict, option, resolve

SUMMARY_NAME = "pipeline_summary.json"
# Marks an output root as the pipeline's, so that a rerun may replace its stage folders.
MARKER_NAME = ".pipesql-pipeline"
PLOT_NAME = "pipeline_stages.png"
DEMO = "demo"


@dataclass
class Settings:
    stage: ClassVar[str] = "pipeline"
    out: Path = option(Path("runs/demo"), "Output root: one folder per stage, plus pipeline_summary.json.")
    model: str = option("smollm2-135m", "Base model: a registry name (smollm2-135m; tiny for tests), hub id or folder.")
    max_steps: int = option(6, "Training steps (batch-size conversations each).")
    batch_size: int = option(2, "Conversations per training step, concatenated without padding.")
    skip_train: bool = option(False, "Skip train and merge, and evaluate the base model as it is.")
    limit: int | None = option(None, "Use only the first N demo train questions (default: all 110).")
    eval_limit: int = option(5, "Evaluate the first N demo dev questions (of 57; 0: all).")
    learning_rate: float = option(1e-3, "Peak learning rate of the short LoRA run.")
    dev_steps: int = option(6, "Dev trajectory steps for the dev loss before/after and next-operator accuracy.")
    max_seq_length: int = option(1024, "Longest training conversation, in tokens (longer ones are skipped).")
    end_sample_share: float = option(0.1, "Share of end-marker samples kept in the training data.")
    device: str = option("auto", "Device for train and evaluate: auto (CUDA when available), cpu or cuda.",
                         choices=["auto", "cpu", "cuda"])
    threads: int = option(0, "CPU threads for torch. 0: the cores idle when the job starts (measured over "
                          "a second), at least one.")


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
    # The smoke preset, made fast on two CPU cores (benchmarks/cpu_train_speed.py measures each
    # choice): a few conversations a step concatenated without padding, conversations up to 1024
    # tokens (the long tool chats are skipped), one checkpoint at the end, no warm-up (of six
    # steps, one would be spent at a learning rate near zero). End-marker samples are thinned, or
    # a short run learns to stop. Activations are recomputed in the backward pass: kept, those of
    # SmolLM2's 30 layers with LoRA on every projection take about 2.4 MB a token, 4 GB for a
    # step's 1,600 tokens, more than the rest of the job together (docs/training.md, memory).
    # The loss is logged every step, on that step's own conversations (a few dozen answer
    # tokens: it jumps from step to step); the dev loss and token accuracy, on the same dev
    # conversations each time, before the first step, half-way and after the last (a dev pass
    # costs less than a training step), so the summary has a before and an after and
    # training_curves.png a dev curve with a middle.
    return {"preset": "smoke", "model_name": settings.model, "train_data": layout.generate / "train.jsonl",
            "dev_data": layout.generate / "dev.jsonl", "output_dir": layout.train, "max_steps": settings.max_steps,
            "max_seq_length": settings.max_seq_length, "device": settings.device, "limit": None,
            "per_device_train_batch_size": settings.batch_size, "batching": "padding-free",
            "end_sample_share": settings.end_sample_share, "gradient_checkpointing": True, "warmup_ratio": 0.0,
            "save_steps": settings.max_steps, "logging_steps": 1, "eval_steps": max(1, settings.max_steps // 2),
            "eval_on_start": True, "dev_limit": settings.dev_steps, "learning_rate": settings.learning_rate}


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


def _cpu_times() -> tuple[int, int] | None:
    """(idle, total) jiffies of all CPUs since boot, from /proc/stat (Linux); None elsewhere."""
    try:
        with open("/proc/stat", encoding="ascii") as stat:
            fields = [int(x) for x in stat.readline().split()[1:]]
    except (OSError, ValueError):
        return None
    return fields[3] + (fields[4] if len(fields) > 4 else 0), sum(fields)  # idle + iowait


def idle_cores(sample_s: float = 1.0) -> int:
    """The cores no other work is using right now (CPU idle time over ``sample_s``; the 1-minute
    load average where /proc/stat is missing); at least one.

    On a busy machine torch's default (a thread per core) is the slowest choice: its threads
    wait for one another at every operation, and one of them is always waiting for a core.
    Measured on a 2-core machine at load 4-5 (SmolLM2, one 733-token prompt): one thread
    decoded 7.6x and prefilled 2x faster than two."""
    from pipesql.validate.runner import default_workers  # the usable cores

    cores = default_workers()
    before = _cpu_times()
    if before is not None:
        time.sleep(sample_s)
        after = _cpu_times()
        total = after[1] - before[1] if after else 0
        if total > 0:
            return max(1, min(cores, round(cores * (after[0] - before[0]) / total)))
    try:
        busy = round(os.getloadavg()[0])
    except OSError:  # no load average on this platform
        busy = 0
    return max(1, cores - busy)


def use_threads(settings: Settings) -> int | None:
    try:
        import torch
    except ImportError:  # train and evaluate will be skipped as not installed
        return None
    threads = settings.threads or idle_cores()
    torch.set_num_threads(threads)
    print(f"pipeline: torch on {threads} CPU thread(s)", file=sys.stderr)
    return threads


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


# --------------------------------------------------------------------------------------------
# what it measured, for people


def _percent(value: Any) -> str:
    return f"{100 * value:.1f}%" if isinstance(value, (int, float)) else "?"


def _number(value: Any, digits: int = 3) -> str:
    return f"{value:.{digits}g}" if isinstance(value, (int, float)) else "?"


def measured(result: StageResult) -> str:
    """One line of what a stage measured."""
    m = result.metrics
    if result.status != "ok":
        return result.note
    if result.name == "validate":
        return (f"match rate {_percent(m.get('match_rate'))}: {m.get('golden_pairs', '?')} golden pairs "
                f"of {m.get('gold_executed', '?')} executable gold queries")
    if result.name == "generate":
        return f"{m.get('samples', '?'):,} samples (train {m.get('train_samples', '?')}, dev {m.get('dev_samples', '?')})"
    if result.name == "train":
        from pipesql.train.report import reported_loss

        what, first, last = reported_loss(m)
        return (f"{what} {_number(first)} -> {_number(last)}, "
                f"dev token accuracy {_percent(m.get('first_eval_token_accuracy'))} -> "
                f"{_percent(m.get('final_eval_token_accuracy'))} in {m.get('global_step', '?')} steps "
                f"({_number(m.get('tokens_per_second'))} tokens/s)")
    if result.name == "evaluate":
        steps = m.get("next_operator") or {}
        return (f"execution accuracy {_percent(m.get('execution_accuracy'))} "
                f"({m.get('matches', '?')}/{m.get('questions', '?')}), answers that parse "
                f"{_percent(m.get('answers_parse'))}; next operator {_percent(steps.get('exact'))} exact, "
                f"{_percent(steps.get('kind'))} right kind ({steps.get('samples', '?')} dev steps)")
    return ""


def artifacts(layout: Layout) -> list[tuple[str, Path]]:
    """What a person opens after a run, in data-flow order: every plot, the pairs, the training
    data, the model, the per-question results. Only those that exist."""
    from pipesql.evaluate import CHART_NAME, RESULTS_NAME
    from pipesql.train.report import PLOT_NAME as TRAINING_PLOT
    from pipesql.validate.report import CHART, GOLDEN_PAIRS

    wanted = [
        ("golden pairs", layout.validate / GOLDEN_PAIRS), ("validation classes", layout.validate / CHART),
        ("training data", layout.generate / "train.jsonl"), ("sample lengths", layout.generate / "stats.png"),
        ("training curves", layout.train / TRAINING_PLOT), ("merged model", layout.merged),
        ("per-question results", layout.evaluate / RESULTS_NAME), ("accuracy chart", layout.evaluate / CHART_NAME),
        ("stage times", layout.root / PLOT_NAME), ("summary", layout.root / SUMMARY_NAME),
    ]
    return [(what, path) for what, path in wanted if path.exists()]


# What the figures mean at this size, for the report's last lines.
READING = (
    "How to read this: the demo trains a 135M model for a few minutes on a CPU. It learns the format "
    "(dev loss falls, token accuracy rises, answers become single pipe operators) before it learns to "
    "write whole queries, so 0% execution accuracy at this size is expected, not a failure; next-operator "
    "accuracy shows what it did learn. A GPU run (Qwen2.5-Coder-1.5B LoRA on the Spider training data, "
    "docker compose run train-1.5b) is what is meant to answer questions; see docs/training.md.")


def print_report(settings: Settings, results: list[StageResult], total_seconds: float, summary_path: Path) -> None:
    print(f"\npipesql pipeline: model {settings.model}, output {settings.out}")
    print(f"{'stage':<9} {'status':<8} {'seconds':>8}  {'output':<34} measured")
    for result in results:
        seconds = f"{result.seconds:.1f}" if result.status != "skipped" else "-"
        print(f"{result.name:<9} {result.status:<8} {seconds:>8}  {result.out or '-':<34} {measured(result)}")
    print(f"{'total':<9} {'':<8} {total_seconds:>8.1f}")
    print("\nartifacts:")
    for what, path in artifacts(Layout(Path(settings.out))):
        print(f"  {what:<21} {path}")
    print(f"summary: {summary_path}")
    print(textwrap.fill(READING, width=100))


def _seconds_label(seconds: float) -> str:
    if seconds < 1:
        return f"{seconds:.2f} s"
    return f"{seconds:.1f} s" if seconds < 120 else f"{seconds / 60:.1f} min"


def plot_stages(results: list[StageResult], path: Path) -> Path:
    """Seconds per stage on a linear axis (a bar's length is its share of the wall time), each
    bar labelled with its time, so a stage too short to see still reads as a number; what each
    stage measured in a column of its own beside the axis."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    colors = {"ok": "tab:green", "failed": "tab:red", "skipped": "tab:gray"}
    shown = results[::-1]  # the first stage at the top
    longest = max([r.seconds for r in results] + [1.0])
    figure, axis = plt.subplots(figsize=(10, 0.55 * len(results) + 1.4))  # notes wrap to 3 lines
    widths = [0.0 if r.status == "skipped" else r.seconds for r in shown]
    bars = axis.barh([r.name for r in shown], widths, color=[colors[r.status] for r in shown])
    axis.set_xlim(0, longest * 1.3)  # room for the time label after the longest bar
    for bar, result in zip(bars, shown):
        middle = bar.get_y() + bar.get_height() / 2
        label = f"{result.seconds:.1f} s" if result.status != "skipped" else "skipped"
        axis.annotate(f" {label}", (bar.get_x() + bar.get_width(), middle), va="center", fontsize=8)
        note = measured(result) if result.status == "ok" else f"{result.status}: {measured(result)}"
        axis.annotate(textwrap.fill(note, 60), (1.02, middle), xycoords=("axes fraction", "data"), va="center", fontsize=8,
                      annotation_clip=False)
    axis.set_xlabel("seconds")
    total = sum(r.seconds for r in results)
    axis.set_title(f"pipesql pipeline on the demo corpus: {_seconds_label(total)} in all", loc="left")
    figure.subplots_adjust(left=0.1, right=0.55, bottom=0.8 / figure.get_figheight(),
                           top=1 - 0.45 / figure.get_figheight())
    tmp = path.with_name(f".{path.name}.tmp.png")
    figure.savefig(tmp, dpi=110)
    plt.close(figure)
    tmp.replace(path)
    return path


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
