"""How well models predict the assistant's turns of tool chats they never trained on: the mean
loss and token accuracy over the assistant tokens (tool calls and the final query), each
conversation tokenized as train tokenizes it (:func:`pipesql.train.data.tokenize_conversation`).
The first model is the baseline; the others get the difference against it.

Held-out chats for the main job: the demo's dev questions (which its train stage never sees),
every one with a tool chat:

    pipesql validate --benchmark demo --split dev --out /tmp/heldout/validate
    pipesql generate --golden-pairs /tmp/heldout/validate/golden_pairs.jsonl --benchmark demo \\
        --output-dir /tmp/heldout/generate --tool-calling --tool-ratio 1 --dev-fraction 0
    python benchmarks/tool_chat_loss.py /tmp/heldout/generate/train.jsonl BEFORE/train/merged AFTER/train/merged \
        [--limit 20]
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import torch

from pipesql.models.loading import load_tokenizer
from pipesql.models.registry import resolve_model
from pipesql.train.data import tokenize_conversation


def tool_chats(path: Path) -> list[dict]:
    return [row for row in map(json.loads, path.read_text().splitlines()) if row["kind"] == "tools"]


@torch.no_grad()
def assistant_scores(model, examples: list[dict[str, list[int]]]) -> tuple[float, float, int]:
    """``(mean loss, token accuracy, tokens)`` over the assistant tokens of ``examples``."""
    total_loss, right, count = 0.0, 0, 0
    for example in examples:
        ids = torch.tensor([example["input_ids"]])
        logits = model(input_ids=ids).logits[0, :-1].float()
        targets = ids[0, 1:]
        scored = torch.tensor(example["assistant_masks"][1:], dtype=torch.bool)
        losses = torch.nn.functional.cross_entropy(logits[scored], targets[scored], reduction="sum")
        total_loss += losses.item()
        right += int((logits[scored].argmax(-1) == targets[scored]).sum())
        count += int(scored.sum())
    return total_loss / count, right / count, count


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("chats", type=Path, help="a generate JSONL file; its tool chats are scored")
    parser.add_argument("models", nargs="+", help="model folders or registry names; the first is the baseline")
    parser.add_argument("--limit", type=int, default=None, help="score only the first N tool chats")
    args = parser.parse_args()
    from transformers import AutoModelForCausalLM

    torch.set_num_threads(1)
    chats = tool_chats(args.chats)[:args.limit]
    baseline = None
    for name in args.models:
        path = resolve_model(name)
        tokenizer = load_tokenizer(path)
        examples = [tokenize_conversation(tokenizer, chat) for chat in chats]
        model = AutoModelForCausalLM.from_pretrained(path, dtype=torch.float32).eval()
        loss, accuracy, tokens = assistant_scores(model, examples)
        baseline = baseline or (loss, accuracy)
        print(f"{name}: {len(chats)} tool chats, {tokens} assistant tokens: loss {loss:.3f} "
              f"({loss - baseline[0]:+.3f}), token accuracy {accuracy:.1%} ({accuracy - baseline[1]:+.1%})", flush=True)
        del model


if __name__ == "__main__":
    main()
