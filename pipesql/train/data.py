"""Training conversations -> token ids with an assistant mask.

Rows are what ``pipesql generate`` writes, read by
:func:`pipesql.models.conversation.normalize_conversation`.

Tokenizing here rather than inside TRL keeps three things in our hands: a bad row is reported
with its file and line and skipped; tool-call arguments are decoded to objects, so the text is
exactly what the model's own (Qwen) template renders at inference; and conversations longer
than the context are dropped and counted instead of being cut mid-answer.
"""

from __future__ import annotations

import logging
import random
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable

from pipesql.storage.files import BadLine, read_jsonl
from pipesql.models.chat_template import TRAINING_CHAT_TEMPLATE
from pipesql.models.conversation import ConversationError, normalize_conversation

log = logging.getLogger(__name__)

END_KIND = "end"  # pipesql.generate's kind of the sample that answers the end marker


class TrainingDataError(ValueError):
    """A training or dev file that cannot be trained on at all (missing, or no usable row)."""


def tokenize_conversation(tokenizer, row: dict[str, Any]) -> dict[str, list[int]]:
    """``{"input_ids", "assistant_masks"}`` for one row; the mask is 1 on exactly the tokens the
    assistant wrote (its text, tool calls and closing ``<|im_end|>``)."""
    messages, tools = normalize_conversation(row)
    encoded = tokenizer.apply_chat_template(
        messages, tools=tools, chat_template=TRAINING_CHAT_TEMPLATE, tokenize=True, return_dict=True,
        return_assistant_tokens_mask=True,
    )
    input_ids, mask = list(encoded["input_ids"]), list(encoded["assistant_masks"])
    if 1 not in mask:
        raise ConversationError("the chat template marked no assistant tokens")
    return {"input_ids": input_ids, "assistant_masks": mask}


@dataclass
class DatasetStats:
    path: str
    rows: int = 0
    kept: int = 0
    too_long: int = 0
    # By the row's ``kind`` (step, end, tools): which kinds of conversation train learns from.
    kept_by_kind: Counter = field(default_factory=Counter)
    too_long_by_kind: Counter = field(default_factory=Counter)
    bad: list[str] = field(default_factory=list)
    tokens: int = 0
    assistant_tokens: int = 0

    def as_dict(self) -> dict[str, Any]:
        return {"path": self.path, "rows": self.rows, "kept": self.kept, "too_long": self.too_long,
                "bad": len(self.bad), "bad_examples": self.bad[:10], "tokens": self.tokens,
                "assistant_tokens": self.assistant_tokens, "kept_by_kind": dict(sorted(self.kept_by_kind.items())),
                "too_long_by_kind": dict(sorted(self.too_long_by_kind.items()))}


def tokenize_rows(tokenizer, rows: Iterable[tuple[int, dict[str, Any]]], path: str, max_seq_length: int,
                  stats: DatasetStats) -> list[dict[str, list[int]]]:
    examples = []
    for line, row in rows:
        stats.rows += 1
        try:
            example = tokenize_conversation(tokenizer, row)
        except ConversationError as error:
            stats.bad.append(f"{path}:{line}: {error}")
            continue
        kind = str(row.get("kind") or "unknown")
        if len(example["input_ids"]) > max_seq_length:
            stats.too_long += 1
            stats.too_long_by_kind[kind] += 1
            continue
        stats.kept += 1
        stats.kept_by_kind[kind] += 1
        stats.tokens += len(example["input_ids"])
        stats.assistant_tokens += sum(example["assistant_masks"])
        examples.append(example)
    return examples


def thin_end_samples(rows: list[tuple[int, dict[str, Any]]], share: float, seed: int) -> list[tuple[int, dict]]:
    """Keep end-marker samples (``kind == "end"``: "the query is finished") down to ``share`` of
    the rows, a seeded choice. One per question is more than a short run can afford: a model that
    has seen little else answers the end marker at the first step."""
    ends = [index for index, (_, row) in enumerate(rows) if row.get("kind") == END_KIND]
    others = len(rows) - len(ends)
    keep = min(len(ends), int(share * others / (1 - share))) if share < 1 else len(ends)
    kept = set(random.Random(seed).sample(ends, keep))
    return [item for index, item in enumerate(rows) if index in kept or rows[index][1].get("kind") != END_KIND]


def load_tokenized(tokenizer, path: str | Path, *, max_seq_length: int, limit: int | None = None,
                   end_sample_share: float | None = None, seed: int = 0):
    """A ``datasets.Dataset`` of ``input_ids`` / ``assistant_masks`` and its :class:`DatasetStats`.
    Bad lines and bad conversations are reported (file:line) and skipped; with
    ``end_sample_share``, end-marker samples are thinned to that share (:func:`thin_end_samples`)."""
    from datasets import Dataset

    path = Path(path)
    if not path.is_file():
        raise TrainingDataError(f"training data not found: {path} (write it with `pipesql generate`)")
    stats = DatasetStats(str(path))
    bad_lines: list[BadLine] = []

    def rows():
        for count, item in enumerate(read_jsonl(path, bad_lines)):
            if limit is not None and count >= limit:
                return
            yield item

    selected = list(rows())
    if end_sample_share is not None:
        selected = thin_end_samples(selected, end_sample_share, seed)
    examples = tokenize_rows(tokenizer, selected, str(path), max_seq_length, stats)
    stats.bad = [str(b) for b in bad_lines] + stats.bad
    stats.rows += len(bad_lines)
    for problem in stats.bad[:5]:
        log.warning("skipped %s", problem)
    if stats.too_long:
        log.warning("%s: skipped %d conversations longer than %d tokens (%s)", path, stats.too_long, max_seq_length,
                    ", ".join(f"{kind} {count}" for kind, count in sorted(stats.too_long_by_kind.items())))
    if not examples:
        first_problem = f"; first: {stats.bad[0]}" if stats.bad else ""
        raise TrainingDataError(f"{path}: no usable conversations ({stats.rows} rows, {len(stats.bad)} bad, "
                                f"{stats.too_long} longer than {max_seq_length} tokens{first_problem})")
    columns = {"input_ids": [e["input_ids"] for e in examples],
               "assistant_masks": [e["assistant_masks"] for e in examples]}
    return Dataset.from_dict(columns), stats
