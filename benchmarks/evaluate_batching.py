"""How much batching and prefix caching speed up `pipesql evaluate`'s generation, against a baseline.

One-shot: baseline (measured in the same run) is generation for N demo questions one at a time
(batch size 1), the way a naive evaluator calls ``generate``; then the same questions in batches
of 4 and of N. Agent (``--agent``): the agent loop on the same questions, batched (every
unfinished question's step in one batch) against the prefix cache (one prompt at a time, each
step reusing the keys and values of the question's earlier steps). Greedy answers must be
identical in every configuration; the script says so or fails.

    python benchmarks/evaluate_batching.py                          # tiny model, 16 questions
    python benchmarks/evaluate_batching.py --model smollm2-135m --questions 8 --max-new-tokens 64
    python benchmarks/evaluate_batching.py --model smollm2-135m --questions 4 --agent

Prints seconds, questions per second and each figure as a ratio to the baseline.
"""

from __future__ import annotations

import argparse
import time

from pipesql.corpora.items import load_items
from pipesql.evaluate.predict import GenerationOptions, oneshot_chat, predict_agent
from pipesql.models.backends import SamplingParams, TransformersBackend
from pipesql.models.registry import resolve_model
from pipesql.models.prefix_cache import PrefixCache
from pipesql.agent.schema_text import schema_text


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="tiny")
    parser.add_argument("--questions", type=int, default=16)
    parser.add_argument("--max-new-tokens", type=int, default=48)
    parser.add_argument("--device", default="auto")
    parser.add_argument("--agent", action="store_true", help="Time the agent loop, batched against the prefix cache.")
    args = parser.parse_args()

    items = load_items("demo", None, "dev", args.questions)
    schemas = [schema_text(item.db_path) for item in items]
    backend = TransformersBackend(resolve_model(args.model), device=args.device, batch_size=1, prefix_cache=0,
                                  name=args.model)
    if args.agent:
        return agent(backend, items, schemas, args.max_new_tokens)
    chats = [oneshot_chat(item, schema) for item, schema in zip(items, schemas)]
    oneshot(backend, chats, args.max_new_tokens)


def oneshot(backend: TransformersBackend, chats, max_new_tokens: int) -> None:
    params = SamplingParams(max_new_tokens=max_new_tokens)
    backend.complete(chats[:1], params)  # warm-up: first-call allocations are not the method's cost
    rows, baseline, reference = [], None, None
    for batch_size in sorted({1, min(4, len(chats)), len(chats)}):
        backend.batch_size = batch_size
        started = time.perf_counter()
        texts = [c.text for c in backend.complete(chats, params)]
        seconds = time.perf_counter() - started
        reference = reference or texts
        baseline = baseline or seconds
        rows.append((batch_size, f"{seconds:.2f}", f"{len(chats) / seconds:.2f}", f"{baseline / seconds:.2f}x",
                     texts == reference))
    print_table(f"model {backend.name} on {backend.device}, {len(chats)} demo questions, "
                f"{max_new_tokens} new tokens at most, greedy",
                ("batch size", "seconds", "questions/s", "speed-up", "same answers as batch 1"), rows)


def agent(backend: TransformersBackend, items, schemas, max_new_tokens: int) -> None:
    # Retries decode greedily here too: a sampled retry draws from the random stream in another
    # order when prompts go one at a time, and the comparison needs the same answers.
    options = GenerationOptions(batch_size=len(items), step_max_new_tokens=max_new_tokens, retry_temperature=0.0)
    rows, baseline, reference = [], None, None
    for label, cache in (("batched", None), ("prefix cache", PrefixCache())):
        backend.prefix_cache = cache
        started = time.perf_counter()
        predictions = predict_agent(items, schemas, backend, options)
        seconds = time.perf_counter() - started
        answers = [[step["answer"] for step in p.steps] for p in predictions]
        reference = reference or answers
        baseline = baseline or seconds
        reused = f"{cache.reused_tokens / (cache.reused_tokens + cache.computed_tokens):.0%}" if cache else "-"
        rows.append((label, f"{seconds:.2f}", sum(map(len, answers)), reused, f"{baseline / seconds:.2f}x",
                     answers == reference))
    print_table(f"model {backend.name} on {backend.device}, agent on {len(items)} demo questions, "
                f"{max_new_tokens} new tokens a step at most, greedy",
                ("generation", "seconds", "model calls", "prompt reused", "speed-up", "same answers"), rows)


def print_table(title: str, header: tuple, rows: list[tuple]) -> None:
    """Print the rows under ``header``; fail when a row's last column (same answers) is False."""
    widths = [max(len(str(v)) for v in column) for column in zip(header, *rows)]
    print(title)
    for row in (header, *rows):
        print("  ".join(str(v).rjust(w) for v, w in zip(row, widths)))
    if not all(row[-1] for row in rows):
        raise SystemExit("answers differ from the baseline's")


if __name__ == "__main__":
    main()
