"""``stats.json``: what went in, what came out, and how long the samples are.

Everything here is a pure function of the samples and pairs, with sorted keys, so the file is
byte-identical across runs with the same inputs and seed (timings go to the manifest instead).
"""

from __future__ import annotations

import math
from collections import Counter
from typing import Any, Callable, Iterable, Mapping, Sequence


def percentiles(values: Sequence[int]) -> dict[str, float | int]:
    """Nearest-rank p50 / p90 / p99, max and mean (0 for an empty list)."""
    if not values:
        return {"p50": 0, "p90": 0, "p99": 0, "max": 0, "mean": 0}
    ordered = sorted(values)

    def rank(q: float) -> int:
        return ordered[max(0, math.ceil(q * len(ordered)) - 1)]

    return {"p50": rank(0.50), "p90": rank(0.90), "p99": rank(0.99), "max": ordered[-1],
            "mean": round(sum(ordered) / len(ordered), 2)}


def sample_chars(sample: Mapping[str, Any]) -> int:
    """Characters the model reads: message texts, tool-call arguments and the tool specs."""
    total = len(sample.get("tools") or "")
    for message in sample["messages"]:
        total += len(message.get("content") or "")
        for call in message.get("tool_calls") or ():
            total += len(call["function"]["name"]) + len(call["function"]["arguments"])
    return total


def token_lengths(tokenizer: Any, batch_size: int = 512) -> Callable[[Sequence[Mapping[str, Any]]], list[int]]:
    """Tokens of each sample as train counts them against ``--max-seq-length``: rendered with
    the training chat template (tools in the system turn, tool-call arguments as objects;
    :func:`pipesql.models.conversation.normalize_conversation`), whatever template the tokenizer ships
    with (SmolLM2's own drops the tools and the calls). Tokenizes in batches (fast)."""
    from pipesql.models.chat_template import CHAT_TEMPLATE
    from pipesql.models.conversation import normalize_conversation

    def render(sample: Mapping[str, Any]) -> str:
        messages, tools = normalize_conversation(dict(sample))
        return tokenizer.apply_chat_template(messages, tools=tools, chat_template=CHAT_TEMPLATE, tokenize=False)

    def lengths(samples: Sequence[Mapping[str, Any]]) -> list[int]:
        out: list[int] = []
        for start in range(0, len(samples), batch_size):
            texts = [render(s) for s in samples[start:start + batch_size]]
            out += [len(ids) for ids in tokenizer(texts, add_special_tokens=False)["input_ids"]]
        return out
    return lengths


def char_lengths(samples: Sequence[Mapping[str, Any]]) -> list[int]:
    return [sample_chars(s) for s in samples]


def _sorted_counts(counter: Counter) -> dict[str, int]:
    # Numbers in numeric order (a histogram), names in alphabetical order.
    return {str(k): counter[k] for k in sorted(counter, key=lambda k: (isinstance(k, str), k))}


def sample_stats(samples: Iterable[Mapping[str, Any]], lengths: Sequence[int]) -> dict[str, Any]:
    samples = list(samples)
    kinds = Counter(s["kind"] for s in samples)
    operators = Counter(s["operator"] for s in samples if s["operator"])
    difficulty = Counter(s["difficulty"] or "unknown" for s in samples)
    databases = Counter(s["db_id"] for s in samples)
    patterns = Counter(s["pattern"] for s in samples if s.get("pattern"))
    return {
        "total": len(samples),
        "by_kind": _sorted_counts(kinds),
        "by_operator": _sorted_counts(operators),
        "by_difficulty": _sorted_counts(difficulty),
        "by_database": _sorted_counts(databases),
        "by_tool_pattern": _sorted_counts(patterns),
        "length": percentiles(lengths),
    }


def lengths_by_kind(samples: Sequence[Mapping[str, Any]], lengths: Sequence[int],
                    cut_off: int | None) -> dict[str, dict[str, int | None]]:
    """Per kind: how many samples, their shortest, median and longest length, and how many are
    longer than ``cut_off`` (train's ``--max-seq-length``; None when lengths are not in tokens),
    which train would skip."""
    by_kind: dict[str, list[int]] = {}
    for sample, length in zip(samples, lengths):
        by_kind.setdefault(sample["kind"], []).append(length)
    return {kind: {"count": len(values), "min": min(values), "p50": percentiles(values)["p50"], "max": max(values),
                   "over_cut_off": None if cut_off is None else sum(1 for n in values if n > cut_off)}
            for kind, values in sorted(by_kind.items())}


def samples_per_pair(samples: Iterable[Mapping[str, Any]]) -> dict[str, Any]:
    per_pair = Counter(s["question_id"] for s in samples)
    counts = list(per_pair.values())
    summary = percentiles(counts)
    return {"mean": summary["mean"], "p50": summary["p50"], "max": summary["max"],
            "histogram": _sorted_counts(Counter(counts))}
