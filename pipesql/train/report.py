"""What a finished run leaves for people: a loss / token-accuracy plot and a summary."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

PLOT_NAME = "training_curves.png"


def series(log_history: list[dict[str, Any]], key: str) -> tuple[list[int], list[float]]:
    steps, values = [], []
    for entry in log_history:
        value = entry.get(key)
        if isinstance(value, (int, float)) and math.isfinite(value) and "step" in entry:
            steps.append(int(entry["step"]))
            values.append(float(value))
    return steps, values


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
    for key, label, axis in (("loss", "train", loss_axis), ("eval_loss", "eval", loss_axis),
                             ("mean_token_accuracy", "train", accuracy_axis),
                             ("eval_mean_token_accuracy", "eval", accuracy_axis)):
        steps, values = curves[key]
        if steps:
            axis.plot(steps, values, marker="o" if label == "eval" else None, markersize=3, label=label)
    loss_axis.set(xlabel="optimizer step", ylabel="loss (assistant tokens)", title="Loss")
    accuracy_axis.set(xlabel="optimizer step", ylabel="next-token accuracy", title="Token accuracy")
    for axis in (loss_axis, accuracy_axis):
        axis.grid(alpha=0.3)
        axis.legend()
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


def summarize_history(log_history: list[dict[str, Any]]) -> dict[str, Any]:
    first_loss, last_loss = _first_last(log_history, "loss")
    _, eval_losses = series(log_history, "eval_loss")
    first_acc, last_acc = _first_last(log_history, "mean_token_accuracy")
    _, eval_acc = series(log_history, "eval_mean_token_accuracy")
    return {
        "first_train_loss": first_loss, "final_train_loss": last_loss,
        "first_eval_loss": eval_losses[0] if eval_losses else None,
        "final_eval_loss": eval_losses[-1] if eval_losses else None,
        "best_eval_loss": min(eval_losses) if eval_losses else None,
        "first_token_accuracy": first_acc, "final_token_accuracy": last_acc,
        "first_eval_token_accuracy": eval_acc[0] if eval_acc else None,
        "final_eval_token_accuracy": eval_acc[-1] if eval_acc else None,
    }
