"""CPU training speed of the main job's model: what each choice buys, as ratios against the main
job's former settings, all measured in one run on the same demo training data.

Each variant is a short ``pipesql train`` run (same code path as the main job and the GPU runs);
tokens/s counts real (non-pad) tokens over training time only. Variants:

* before: the former main job - one conversation a step, padded, conversations up to 2048 tokens;
* threads-1: the same on one intra-op thread (the default is one per core);
* padding-free-4: four conversations a step, concatenated without padding;
* packed: rows of up to max-seq-length tokens filled with several conversations;
* budget-1024: padding-free-4 with conversations up to 1024 tokens (the long tool chats skipped);
* now: the main job's settings now: two conversations a step, padding-free, up to 1024 tokens,
  torch on the cores idle when the variant starts (:func:`pipesql.pipeline.cpu.idle_cores`).

By default only "before" and "now" run (``--variants`` picks others): on a shared 2-core
machine one SmolLM2 conversation takes minutes.

    python benchmarks/cpu_train_speed.py --model smollm2-135m --steps 6
    python benchmarks/cpu_train_speed.py --model tiny --steps 2     # a quick logic check
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

VARIANTS = {
    "before": dict(per_device_train_batch_size=1, batching="padded", max_seq_length=2048),
    "threads-1": dict(per_device_train_batch_size=1, batching="padded", max_seq_length=2048, threads=1),
    "padding-free-4": dict(per_device_train_batch_size=4, batching="padding-free", max_seq_length=2048),
    "packed": dict(per_device_train_batch_size=1, batching="packed", max_seq_length=2048),
    "budget-1024": dict(per_device_train_batch_size=4, batching="padding-free", max_seq_length=1024),
    # the main job now: 2 conversations a step, padding-free, up to 1024 tokens, torch on the idle cores
    "now": dict(per_device_train_batch_size=2, batching="padding-free", max_seq_length=1024, threads="idle"),
}
# The main job's settings before and after (pipesql.pipeline): measured by default.
DEFAULT_VARIANTS = ["before", "now"]


def demo_training_data(work: Path) -> Path:
    """validate + generate on the demo corpus's train split (no ZetaSQL check): its train.jsonl."""
    from pipesql import generate, validate
    from pipesql.config.settings import resolve

    validate.run(resolve(validate.Settings, {"benchmark": "demo", "split": "train", "out": work / "validate",
                                             "googlesql": False, "progress": False}, environ={}, dotenv={}))
    generate.run(resolve(generate.Settings, {
        "golden_pairs": work / "validate" / "golden_pairs.jsonl", "benchmark": "demo",
        "output_dir": work / "generate", "tool_calling": True, "progress": False}, environ={}, dotenv={}))
    return work / "generate" / "train.jsonl"


def measure(name: str, values: dict, model: str, train_data: Path, steps: int, work: Path) -> dict:
    import torch

    from pipesql import train
    from pipesql.config.settings import resolve

    values = dict(values)
    threads = values.pop("threads", None)
    if threads == "idle":
        from pipesql.pipeline.cpu import idle_cores

        threads = idle_cores()
    before = torch.get_num_threads()
    if threads:
        torch.set_num_threads(threads)
    settings = resolve(train.Settings, {
        "preset": "smoke", "model_name": model, "train_data": train_data, "dev_data": None,
        "output_dir": work / name, "max_steps": steps, "save_steps": 10**9, "logging_steps": 10**9,
        "report_to": "none", "gradient_checkpointing": False, "device": "cpu", "limit": None, **values},
        environ={}, dotenv={})
    started = time.monotonic()
    try:
        train.run(settings)
    finally:
        torch.set_num_threads(before)
    summary = json.loads((work / name / "summary.json").read_text())
    return {"variant": name, **{k: v for k, v in values.items()}, "threads": threads or before,
            "steps": summary["global_step"], "tokens": summary["tokens_trained"],
            "train_seconds": summary["train_seconds"], "tokens_per_second": summary["tokens_per_second"],
            "wall_seconds": round(time.monotonic() - started, 1)}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default="smollm2-135m")
    parser.add_argument("--steps", type=int, default=6, help="optimizer steps per variant")
    parser.add_argument("--variants", nargs="+", default=DEFAULT_VARIANTS, choices=list(VARIANTS))
    parser.add_argument("--json", type=Path, help="also write the results here")
    args = parser.parse_args(argv)
    results = []
    with tempfile.TemporaryDirectory(prefix="cpu_train_speed.") as scratch:
        work = Path(scratch)
        train_data = demo_training_data(work / "data")
        for name in args.variants:
            print(f"[{name}] ...", file=sys.stderr, flush=True)
            results.append(measure(name, VARIANTS[name], args.model, train_data, args.steps, work))
    base = next((r for r in results if r["variant"] == "before"), results[0])
    print(f"\n{'variant':<15} {'batch':>5} {'batching':<13} {'max len':>7} {'threads':>7} {'tokens':>7} "
          f"{'tok/s':>8} {'x before':>8}")
    for r in results:
        print(f"{r['variant']:<15} {r['per_device_train_batch_size']:>5} {r['batching']:<13} {r['max_seq_length']:>7} "
              f"{r['threads']:>7} {r['tokens']:>7} {r['tokens_per_second']:>8.1f} "
              f"{r['tokens_per_second'] / base['tokens_per_second']:>8.2f}")
    if args.json:
        args.json.write_text(json.dumps(results, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
