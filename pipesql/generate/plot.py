"""``stats.png``: sample lengths by kind and step samples by operator, at a glance."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Mapping, Sequence

def plot_stats(path: Path, samples: Sequence[Mapping[str, Any]], lengths: Sequence[int], unit: str,
               by_operator: Mapping[str, int], cut_off_tokens: int) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, (left, right) = plt.subplots(1, 2, figsize=(12, 4.5))
    kinds = sorted({s["kind"] for s in samples})
    low, high = (min(lengths), max(lengths)) if lengths else (0, 1)
    bins = [low + (high - low) * i / 50 for i in range(51)] if high > low else 10  # shared, so kinds compare
    for kind in kinds:
        values = [n for s, n in zip(samples, lengths) if s["kind"] == kind]
        # Outlines over a light fill: kinds of similar length (step, end) overlap, and filled
        # bars would hide whichever is drawn first.
        _, _, patches = left.hist(values, bins=bins, histtype="step", linewidth=1.8, label=f"{kind} ({len(values)})")
        left.hist(values, bins=bins, histtype="stepfilled", alpha=0.15, color=patches[0].get_edgecolor())
    if unit == "tokens":
        left.axvline(cut_off_tokens, color="black", linestyle="--", linewidth=1,
                     label=f"train's cut-off,\n{cut_off_tokens} tokens")
    else:  # the cut-off is in tokens, so it cannot be drawn on this axis
        left.annotate("characters: give --tokenizer for tokens, the unit of train's --max-seq-length",
                      (0.98, 0.75), xycoords="axes fraction", ha="right", fontsize=8, color="tab:gray")
    left.set_xlabel(f"sample length ({unit})")
    left.set_ylabel("samples")
    left.set_title("Sample lengths by kind")
    left.legend(loc="upper right", fontsize=8)  # short labels: the right of the axis holds only the long chats
    names = sorted(by_operator, key=lambda k: -by_operator[k])
    right.barh(names[::-1], [by_operator[n] for n in names[::-1]])
    right.set_xlabel("step samples")
    right.set_title("Step samples by the operator they teach")
    figure.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path, dpi=100, metadata={"Software": None})
    plt.close(figure)
    return path
