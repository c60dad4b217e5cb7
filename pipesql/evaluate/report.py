"""Summaries and the chart of an evaluation run, from its per-question records."""

from __future__ import annotations

from collections import Counter
from pathlib import Path
from typing import Any, Iterable, Sequence

from pipesql.evaluate.scoring import EXEC_ERROR, MATCH, MISMATCH, STATUSES

# Known difficulty labels in the order people read them; anything else follows, sorted.
DIFFICULTY_ORDER = ("easy", "medium", "hard", "extra", "simple", "moderate", "challenging")
UNKNOWN_DIFFICULTY = "unknown"
STATUS_COLOURS = {
    "match": "#2e7d32", "mismatch": "#f9a825", "exec_error": "#c62828",
    "transpile_error": "#6a1b9a", "no_prediction": "#757575", "gold_error": "#37474f",
}


def difficulty_of(record: dict[str, Any]) -> str:
    return record.get("difficulty") or UNKNOWN_DIFFICULTY


def ordered_difficulties(labels: Iterable[str]) -> list[str]:
    labels = set(labels)
    known = [d for d in DIFFICULTY_ORDER if d in labels]
    return known + sorted(labels - set(known))


def _accuracy(matches: int, total: int) -> float:
    return matches / total if total else 0.0


def _test_suite(records: Sequence[dict[str, Any]]) -> dict[str, Any]:
    """Test-suite accuracy (Zhong, Yu & Klein, 2020): matches that also agreed on every variant
    (``None`` when the run asked no variants: ``--variants 0``, or scored by an older version)."""
    asked = [r for r in records if r["status"] == MATCH and r.get("test_suite") is not None]
    if not asked and any(r["status"] == MATCH for r in records):
        return {"test_suite_matches": None, "test_suite_accuracy": None}
    agreed = sum(bool(r["test_suite"]) for r in asked)
    return {"test_suite_matches": agreed, "test_suite_accuracy": _accuracy(agreed, len(records))}


def summarize(records: Sequence[dict[str, Any]], *, seconds: float, generation_seconds: float,
              context: dict[str, Any]) -> dict[str, Any]:
    """``eval_summary.json``: execution accuracy overall and by difficulty, status counts,
    throughput and, for agent runs, how the agents behaved. Every question counts in the
    denominator, whatever happened to it."""
    total = len(records)
    statuses = Counter(r["status"] for r in records)
    by_difficulty: dict[str, Any] = {}
    for label in ordered_difficulties(difficulty_of(r) for r in records):
        group = [r for r in records if difficulty_of(r) == label]
        counts = Counter(r["status"] for r in group)
        by_difficulty[label] = {
            "questions": len(group),
            "matches": counts[MATCH],
            "execution_accuracy": _accuracy(counts[MATCH], len(group)),
            **_test_suite(group),
            "status_counts": {s: counts[s] for s in STATUSES},
        }
    summary = {
        **context,
        "questions": total,
        "matches": statuses[MATCH],
        "execution_accuracy": _accuracy(statuses[MATCH], total),
        **_test_suite(records),
        "by_difficulty": by_difficulty,
        "status_counts": {s: statuses[s] for s in STATUSES},
        # Answers that are pipe SQL at all (they ran, right or wrong): what a small model learns first.
        "answers_parse": _accuracy(statuses[MATCH] + statuses[MISMATCH] + statuses[EXEC_ERROR], total),
        "seconds": round(seconds, 3),
        "generation_seconds": round(generation_seconds, 3),
        "questions_per_s": round(total / seconds, 4) if seconds > 0 else None,
    }
    agent_records = [r for r in records if r.get("steps") is not None]
    if agent_records:
        summary["agent"] = {
            "mean_model_calls": sum(len(r["steps"]) for r in agent_records) / len(agent_records),
            "mean_operators": sum(sum(1 for s in r["steps"] if s.get("accepted")) for r in agent_records) / len(agent_records),
            "mean_tool_calls": sum(r.get("tool_calls", 0) for r in agent_records) / len(agent_records),
            "rejected_candidates": sum(sum(1 for s in r["steps"] if s.get("tool") and not s["tool"]["ok"]) for r in agent_records),
            "finish_counts": dict(Counter(r.get("finish") or "none" for r in agent_records)),
        }
    return summary


def plot_summary(summary: dict[str, Any], path: str | Path) -> Path:
    """Two panels: execution accuracy by difficulty (with the overall bar), and what happened to
    the questions of each difficulty (share of each status)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from pipesql.storage.files import atomic_open

    labels = list(summary["by_difficulty"])
    groups = [summary["by_difficulty"][d] for d in labels]
    names = labels + ["all"]
    accuracies = [g["execution_accuracy"] * 100 for g in groups] + [summary["execution_accuracy"] * 100]
    counts = [g["questions"] for g in groups] + [summary["questions"]]

    figure, (left, right) = plt.subplots(1, 2, figsize=(12, 4.5))
    bars = left.bar(names, accuracies, color=["#1565c0"] * len(labels) + ["#0d47a1"])
    for bar, accuracy, count in zip(bars, accuracies, counts):
        inside = accuracy > 85  # a label above a tall bar would need an axis past 100%
        left.annotate(f"{accuracy:.1f}%\nn={count}", (bar.get_x() + bar.get_width() / 2, bar.get_height()),
                      xytext=(0, -3 if inside else 2), textcoords="offset points", ha="center",
                      va="top" if inside else "bottom", fontsize=8, color="white" if inside else "black")
    left.set_ylim(0, 100)
    if not summary["execution_accuracy"]:  # all bars are empty: say so, and where to look instead
        left.text(0.5, 0.55, f"no question answered right (0 of {summary['questions']});\n"
                  "the right panel shows what the answers did instead", transform=left.transAxes,
                  ha="center", va="center", fontsize=9, color="tab:gray")
    left.set_ylabel("execution accuracy (%)")
    left.set_title("Execution accuracy by difficulty")

    bottoms = [0.0] * len(names)
    status_groups = [g["status_counts"] for g in groups] + [summary["status_counts"]]
    for status in STATUS_COLOURS:
        shares = [100 * s.get(status, 0) / c if c else 0 for s, c in zip(status_groups, counts)]
        if not any(shares):
            continue
        right.barh(names, shares, left=bottoms, color=STATUS_COLOURS[status], label=status)
        bottoms = [b + s for b, s in zip(bottoms, shares)]
    right.set_xlim(0, 100)
    right.set_xlabel("share of questions (%)")
    right.set_title("Outcome by difficulty")
    right.invert_yaxis()
    right.legend(loc="upper center", bbox_to_anchor=(0.5, -0.16), ncol=3, fontsize=8, frameon=False)

    model = summary.get("model_description") or summary.get("model", "?")
    test_suite = summary.get("test_suite_accuracy")
    figure.suptitle(f"{model} on {summary.get('benchmark', '?')} {summary.get('split', '')} "
                    f"({summary.get('mode', '?')}): {summary['execution_accuracy'] * 100:.1f}% of {summary['questions']}"
                    + ("" if test_suite is None else f", test-suite {test_suite * 100:.1f}%"))
    figure.tight_layout()
    path = Path(path)
    with atomic_open(path, "wb") as handle:
        figure.savefig(handle, format="png", dpi=110, bbox_inches="tight")
    plt.close(figure)
    return path
