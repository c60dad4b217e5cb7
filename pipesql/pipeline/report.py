"""What a pipeline run measured, for people: one line per stage from the figures each stage's
manifest holds, the artifacts to open, the printed report and the stage-time chart."""

from __future__ import annotations

import textwrap
from pathlib import Path
from typing import Any

from pipesql.pipeline.settings import Settings
from pipesql.pipeline.stages import Layout, StageResult

SUMMARY_NAME = "pipeline_summary.json"
PLOT_NAME = "pipeline_stages.png"


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
