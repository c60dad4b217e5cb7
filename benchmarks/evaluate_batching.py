"""How much batching speeds up `pipesql evaluate`'s generation, against a baseline.

Baseline (measured in the same run): one-shot generation for N demo questions one at a time
(batch size 1), the way a naive evaluator calls ``generate``. Then the same questions in
batches of 4 and of N. Greedy answers must be identical in every configuration (left padding
must not change them); the script says so or fails.

    python benchmarks/evaluate_batching.py                          # tiny model, 16 questions
    python benchmarks/evaluate_batching.py --model smollm2-135m --questions 8 --max-new-tokens 64

Prints seconds, questions per second and each figure as a ratio to the baseline.
"""

from __future__ import annotations

import argparse
import time

from pipesql.corpora.items import load_items
from pipesql.evaluate.predict import oneshot_chat
from pipesql.models.backends import SamplingParams, TransformersBackend, resolve_model
from pipesql.agent.schema_text import schema_text


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="tiny")
    parser.add_argument("--questions", type=int, default=16)
    parser.add_argument("--max-new-tokens", type=int, default=48)
    parser.add_argument("--device", default="auto")
    args = parser.parse_args()

    items = load_items("demo", None, "dev", args.questions)
    chats = [oneshot_chat(item, schema_text(item.db_path)) for item in items]
    backend = TransformersBackend(resolve_model(args.model), device=args.device, batch_size=1, name=args.model)
    params = SamplingParams(max_new_tokens=args.max_new_tokens)
    backend.complete(chats[:1], params)  # warm-up: first-call allocations are not the method's cost

    rows, baseline, reference = [], None, None
    for batch_size in sorted({1, min(4, len(chats)), len(chats)}):
        backend.batch_size = batch_size
        started = time.perf_counter()
        texts = [c.text for c in backend.complete(chats, params)]
        seconds = time.perf_counter() - started
        if reference is None:
            reference = texts
        same = texts == reference
        baseline = baseline or seconds
        rows.append((batch_size, seconds, len(chats) / seconds, baseline / seconds, same))

    print(f"model {args.model} on {backend.device}, {len(chats)} demo questions, "
          f"{args.max_new_tokens} new tokens at most, greedy")
    print(f"{'batch size':>10} {'seconds':>9} {'questions/s':>12} {'speed-up':>9}  same answers as batch 1")
    for batch_size, seconds, rate, ratio, same in rows:
        print(f"{batch_size:>10} {seconds:>9.2f} {rate:>12.2f} {ratio:>8.2f}x  {same}")
    if not all(row[-1] for row in rows):
        raise SystemExit("batched greedy answers differ from one-at-a-time answers")


if __name__ == "__main__":
    main()
