"""What a finished run leaves for people: a loss / token-accuracy plot and a summary."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

PLOT_NAME = "training_curves.png"
MODEL_CARD_NAME = "README.md"


def series(log_history: list[dict[str, Any]], key: str) -> tuple[list[int], list[float]]:
    steps, values = [], []
    for entry in log_history:
        value = entry.get(key)
        if isinstance(value, (int, float)) and math.isfinite(value) and "step" in entry:
            steps.append(int(entry["step"]))
            values.append(float(value))
    return steps, values


def trailing_mean(values: list[float], window: int) -> list[float]:
    """Each value averaged with the ``window - 1`` before it: per-step train loss on batches of
    one or two conversations jumps by whole units, and its trend is what a person reads."""
    return [sum(values[max(0, i - window + 1):i + 1]) / len(values[max(0, i - window + 1):i + 1])
            for i in range(len(values))]


def smoothing_window(points: int) -> int:
    """About a fifth of the logged points, at least 1, at most 25."""
    return max(1, min(25, points // 5))


def plot_curves(log_history: list[dict[str, Any]], path: str | Path, title: str = "") -> Path | None:
    """Train / eval loss and token accuracy against the optimizer step; None when nothing was logged."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    curves = {key: series(log_history, key) for key in
              ("loss", "eval_loss", "mean_token_accuracy", "eval_mean_token_accuracy")}
    if not any(steps for steps, _ in curves.values()):
        return None
    figure, (loss_axis, accuracy_axis) = plt.subplots(1, 2, figsize=(11, 4))
    # Each train value is measured on its own step's batch, each eval value on the same dev set:
    # at step 1 the two can differ by more than training has changed yet.
    train_label, eval_label = "train (each step's batch)", "eval (dev, the same set each time)"
    for key, label, axis in (("loss", train_label, loss_axis), ("eval_loss", eval_label, loss_axis),
                             ("mean_token_accuracy", train_label, accuracy_axis),
                             ("eval_mean_token_accuracy", eval_label, accuracy_axis)):
        steps, values = curves[key]
        if not steps:
            continue
        if key.startswith("eval"):
            axis.plot(steps, values, marker="o", markersize=4, color="tab:orange", label=label)
            continue
        window = smoothing_window(len(values))
        if window > 1:  # the raw per-step values faint, their trailing mean on top
            axis.plot(steps, values, color="tab:blue", alpha=0.3, linewidth=1, label=f"{label}, per step")
            axis.plot(steps, trailing_mean(values, window), color="tab:blue",
                      label=f"{label}, mean of last {window}")
        else:
            axis.plot(steps, values, color="tab:blue", marker="o", markersize=3, label=label)
    if not curves["eval_loss"][0]:
        loss_axis.annotate("no dev set: train loss only", (0.98, 0.95), xycoords="axes fraction", ha="right",
                           va="top", fontsize=8, color="tab:gray")
    loss_axis.set(xlabel="optimizer step", ylabel="loss (assistant tokens)", title="Loss")
    accuracy_axis.set(xlabel="optimizer step", ylabel="next-token accuracy", title="Token accuracy")
    for axis in (loss_axis, accuracy_axis):
        axis.grid(alpha=0.3)
        axis.legend()
    what, first, last = reported_loss(summarize_history(log_history))
    if first is not None and last is not None:  # the figure the run's summary quotes, named
        title = f"{title}: " if title else ""
        title += f"{what} {first:.3g} → {last:.3g}"
    if title:
        figure.suptitle(title)
    figure.tight_layout()
    path = Path(path)
    tmp = path.with_name(f".{path.name}.tmp.png")
    figure.savefig(tmp, dpi=110)
    plt.close(figure)
    tmp.replace(path)
    return path


def _first_last(log_history, key) -> tuple[float | None, float | None]:
    _, values = series(log_history, key)
    return (values[0], values[-1]) if values else (None, None)


def reported_loss(summary: dict[str, Any]) -> tuple[str, float | None, float | None]:
    """The loss figure to quote for a run, as ``(what it is, first, last)``: the dev-set eval loss
    when there is one (it measures what generalises, on the same conversations each time);
    otherwise the train loss averaged over the last steps (a single step's loss is one or two
    conversations, and jumps by whole units)."""
    if summary.get("final_eval_loss") is not None:
        return "eval loss (dev set)", summary.get("first_eval_loss"), summary["final_eval_loss"]
    window = summary.get("train_loss_window") or 1
    what = f"train loss (mean of the last {window} logged steps)" if window > 1 else "train loss"
    return what, summary.get("first_train_loss"), summary.get("smoothed_final_train_loss")


def summarize_history(log_history: list[dict[str, Any]]) -> dict[str, Any]:
    first_loss, last_loss = _first_last(log_history, "loss")
    _, train_losses = series(log_history, "loss")
    window = smoothing_window(len(train_losses))
    _, eval_losses = series(log_history, "eval_loss")
    first_acc, last_acc = _first_last(log_history, "mean_token_accuracy")
    _, eval_acc = series(log_history, "eval_mean_token_accuracy")
    return {
        "first_train_loss": first_loss, "final_train_loss": last_loss,
        "smoothed_final_train_loss": trailing_mean(train_losses, window)[-1] if train_losses else None,
        "train_loss_window": window if train_losses else None,
        "min_train_loss": min(train_losses) if train_losses else None,
        "first_eval_loss": eval_losses[0] if eval_losses else None,
        "final_eval_loss": eval_losses[-1] if eval_losses else None,
        "best_eval_loss": min(eval_losses) if eval_losses else None,
        "first_token_accuracy": first_acc, "final_token_accuracy": last_acc,
        "first_eval_token_accuracy": eval_acc[0] if eval_acc else None,
        "final_eval_token_accuracy": eval_acc[-1] if eval_acc else None,
    }


def model_card(summary: dict[str, Any], *, base_model: str, base_path: str, train_data: str, lora_r: int,
               lora_alpha: int, learning_rate: float) -> str:
    """The run's README.md. TRL's own card links the base model as a hub id, which reads
    "[None](https://huggingface.co/None)" for a local or registry model; this one names it as
    given, with where it was loaded from."""
    is_hub_id = "/" in base_model and not Path(base_model).exists()
    base = f"[{base_model}](https://huggingface.co/{base_model})" if is_hub_id else f"`{base_model}`"
    what, first, last = reported_loss(summary)
    loss = f"{first:.3g} → {last:.3g}" if first is not None and last is not None else "not logged"
    return "\n".join([
        "---", "library_name: peft", f"base_model: {base_model}", "tags: [pipesql, lora, sft, pipe-sql]", "---", "",
        f"# LoRA adapter of {base_model} for GoogleSQL pipe syntax", "",
        f"A LoRA adapter (r={lora_r}, alpha={lora_alpha}, peak learning rate {learning_rate:g}) of {base}, "
        f"loaded from `{base_path}`, trained by `pipesql train` on `{train_data}` for "
        f"{summary.get('global_step', '?')} optimizer steps.", "",
        f"- {what}: {loss}",
        f"- adapter: `final/`; curves: `{PLOT_NAME}`; figures: `summary.json`",
        "- a standalone model: `pipesql merge --output-dir <this folder>`", "",
    ])
