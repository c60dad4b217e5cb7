"""Training throughput: the replaced system's recipe against ours, same model, same samples.

Builds Qwen2.5-Coder-1.5B and -7B from their public configs with random weights (nothing is
downloaded), and runs a few optimizer steps of ``pipesql train``'s own trainer under two
settings on the same synthetic conversations (lengths drawn like real training data, or read
from --lengths-from a train.jsonl):

* replaced: fp16 AMP (QLoRA: bf16 compute, as its fix did), padded micro-batches, no Liger,
  SDPA attention; 1.5B batch 4 x 8, 7B QLoRA batch 1 x 32.
* ours: bf16, padding-free micro-batches, Liger kernels and flash-attention when installed;
  the same batch x accumulation, so every optimizer step sees the same samples and tokens.
  For 7B also "ours-mb8": 8 x 4, which padding-free batching makes affordable.

Prints tokens/s (real, non-pad tokens), peak GPU memory and MFU of each, and ratios against
the replaced recipe measured in the same run. MFU counts 4 x (matmul parameters) FLOPs per token
(LoRA: forward + input-gradient backward; frozen weights get no weight gradient) plus causal
attention, against the GPU's dense bf16 peak.

    python benchmarks/train_bench.py                 # both models (needs a CUDA GPU)
    python benchmarks/train_bench.py --models 1.5b --steps 4
    python benchmarks/train_bench.py --dry-run-cpu   # logic check with a tiny config on CPU
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import random
import statistics
import sys
import tempfile
import time
from pathlib import Path

# Public config.json values of the Qwen2.5-Coder instruct models.
QWEN_CONFIGS = {
    "1.5b": dict(hidden_size=1536, intermediate_size=8960, num_hidden_layers=28, num_attention_heads=12,
                 num_key_value_heads=2, vocab_size=151936, max_position_embeddings=32768, rope_theta=1000000.0,
                 rms_norm_eps=1e-6, tie_word_embeddings=True, hidden_act="silu"),
    "7b": dict(hidden_size=3584, intermediate_size=18944, num_hidden_layers=28, num_attention_heads=28,
               num_key_value_heads=4, vocab_size=152064, max_position_embeddings=32768, rope_theta=1000000.0,
               rms_norm_eps=1e-6, tie_word_embeddings=False, hidden_act="silu"),
    "tiny": dict(hidden_size=64, intermediate_size=128, num_hidden_layers=2, num_attention_heads=4,
                 num_key_value_heads=2, vocab_size=1028, max_position_embeddings=4096, rope_theta=10000.0,
                 rms_norm_eps=1e-6, tie_word_embeddings=True, hidden_act="silu"),
}
QWEN_CONFIGS["tiny-4bit"] = QWEN_CONFIGS["tiny"]
# (batch, accumulation, QLoRA) of the replaced system's recommended recipes; the tiny ones are
# their CPU stand-ins for --dry-run-cpu (bitsandbytes runs NF4 on the CPU too).
RECIPES = {"1.5b": (4, 8, False), "7b": (1, 32, True), "tiny": (4, 2, False), "tiny-4bit": (1, 4, True)}
# Dense bf16 peak of common training GPUs, TFLOP/s (no sparsity).
PEAK_TFLOPS = {"H200": 989.0, "H100": 989.0, "A100": 312.0, "L40S": 362.0, "L4": 121.0, "A10": 125.0,
               "RTX 4090": 165.0, "RTX 4080": 97.5, "CPU": 0.0}


@dataclasses.dataclass
class Variant:
    name: str
    precision: str
    batching: str
    liger: bool | None
    attn: str
    batch: int
    accumulation: int


def variants(model: str, cpu: bool) -> list[Variant]:
    batch, accumulation, _ = RECIPES[model]
    qlora = RECIPES[model][2]
    if cpu:
        found = [Variant("replaced", "fp32", "padded", False, "sdpa", batch, accumulation),
                 Variant("ours", "fp32", "padding-free", False, "sdpa", batch, accumulation)]
        return found + ([] if qlora else [Variant("ours-packed", "fp32", "packed", False, "sdpa", batch,
                                                  accumulation)])
    found = [Variant("replaced", "fp16", "padded", False, "sdpa", batch, accumulation),
             Variant("ours", "bf16", "padding-free", None, "auto", batch, accumulation)]
    if not qlora:  # packed rows of max-seq-length tokens: fewer, fuller micro-batches
        found.append(Variant("ours-packed", "bf16", "packed", None, "auto", batch, accumulation))
    if batch * accumulation >= 32 and batch < 8:
        found.append(Variant("ours-mb8", "bf16", "padding-free", None, "auto", 8, batch * accumulation // 8))
    return found


def sample_lengths(count: int, seed: int, lengths_from: Path | None, tokenizer=None) -> list[int]:
    """Conversation lengths in tokens: measured from a train.jsonl when given, else a log-normal
    around 700 tokens (schema-heavy step prompts, a tail of long tool-calling chats)."""
    if lengths_from is not None:
        from pipesql.train.data import load_tokenized

        dataset, _ = load_tokenized(tokenizer, lengths_from, max_seq_length=4096)
        lengths = [len(ids) for ids in dataset["input_ids"]]
        rng = random.Random(seed)
        return [rng.choice(lengths) for _ in range(count)]
    rng = random.Random(seed)
    return [max(128, min(4096, int(rng.lognormvariate(6.5, 0.5)))) for _ in range(count)]


def synthetic_dataset(lengths: list[int], vocab_size: int, seed: int):
    """Random token ids; the last fifth of each conversation is the assistant's."""
    from datasets import Dataset

    rng = random.Random(seed)
    ids, masks = [], []
    for length in lengths:
        ids.append([rng.randrange(10, vocab_size) for _ in range(length)])
        answer = max(1, length // 5)
        masks.append([0] * (length - answer) + [1] * answer)
    return Dataset.from_dict({"input_ids": ids, "assistant_masks": masks})


def build_random_model(model: str, directory: Path, dtype) -> Path:
    """Random weights from the public config, saved so that QLoRA can load them quantized."""
    import torch
    from transformers import Qwen2Config, Qwen2ForCausalLM

    if (directory / "config.json").is_file():
        return directory
    config = Qwen2Config(**QWEN_CONFIGS[model], bos_token_id=None, eos_token_id=2, pad_token_id=0)
    torch.manual_seed(0)
    with torch.device("cuda" if torch.cuda.is_available() else "cpu"):
        weights = Qwen2ForCausalLM(config).to(dtype)
    weights.save_pretrained(directory)
    del weights
    return directory


def matmul_parameters(config: dict) -> int:
    h, i, layers = config["hidden_size"], config["intermediate_size"], config["num_hidden_layers"]
    kv = h // config["num_attention_heads"] * config["num_key_value_heads"]
    per_layer = h * h * 2 + h * kv * 2 + 3 * h * i
    return layers * per_layer + h * config["vocab_size"]


def flops_per_token(config: dict, mean_length: float) -> float:
    attention = 6 * config["num_hidden_layers"] * config["hidden_size"] * mean_length  # causal, fwd + bwd
    return 4 * matmul_parameters(config) + attention


def peak_flops(override: float | None) -> float:
    import torch

    if override:
        return override * 1e12
    if not torch.cuda.is_available():
        return 0.0
    name = torch.cuda.get_device_name(0)
    for key, tflops in PEAK_TFLOPS.items():
        if key in name:
            return tflops * 1e12
    print(f"unknown GPU {name!r}: pass --peak-tflops for MFU", file=sys.stderr)
    return 0.0


def measure(model: str, variant: Variant, model_dir: Path, dataset, tokenizer, args, work: Path) -> dict:
    import torch
    from transformers import TrainerCallback

    from pipesql.config.settings import resolve
    from pipesql.train import Settings
    from pipesql.train.runner import lora_config, resolve_runtime, sft_config
    from pipesql.train.stability import StabilityGuard
    from pipesql.train.trainer import GuardedSFTTrainer
    from pipesql.models.loading import load_model_and_tokenizer

    qlora = RECIPES[model][2]
    settings = resolve(Settings, dict(
        model_name=str(model_dir), train_data=Path("unused"), dev_data=None, output_dir=work / variant.name,
        per_device_train_batch_size=variant.batch, gradient_accumulation_steps=variant.accumulation,
        max_steps=args.warmup + args.steps, save_steps=10**9, logging_steps=10**9, report_to="none",
        precision=variant.precision, batching=variant.batching, liger=variant.liger,
        attn_implementation=variant.attn, load_in_4bit=qlora, device="cpu" if args.dry_run_cpu else "auto",
        gradient_checkpointing=not args.dry_run_cpu, max_seq_length=args.max_seq_length, warmup_ratio=0.0,
        learning_rate=5e-5), environ={}, dotenv={})
    runtime = resolve_runtime(settings)
    if qlora and runtime.precision == "fp16":
        runtime = dataclasses.replace(runtime, precision="bf16")  # the replaced system's own QLoRA fix
    dtype = {"bf16": torch.bfloat16, "fp16": torch.float16, "fp32": torch.float32}[runtime.precision]
    network, _ = load_model_and_tokenizer(model_dir, dtype=dtype, device=runtime.device, load_in_4bit=qlora,
                                          attn_implementation=runtime.attn_implementation)
    step_times: list[float] = []
    tokens: list[int] = []

    class Clock(TrainerCallback):
        def on_step_begin(self, *_, **__):
            if torch.cuda.is_available():
                torch.cuda.synchronize()
            self.start = time.perf_counter()

        def on_step_end(self, *_, **__):
            if torch.cuda.is_available():
                torch.cuda.synchronize()
            step_times.append(time.perf_counter() - self.start)

    trainer = GuardedSFTTrainer(model=network, args=sft_config(settings, runtime, 5e-5, has_dev=False),
                                train_dataset=dataset, processing_class=tokenizer, peft_config=lora_config(settings),
                                guard=StabilityGuard(), learning_rate_target=5e-5, callbacks=[Clock()])
    original_step = trainer.training_step

    def counting_step(model_, inputs, *rest, **kwargs):
        mask = inputs.get("attention_mask")
        tokens.append(int(mask.sum()) if mask is not None else int(inputs["input_ids"].numel()))
        return original_step(model_, inputs, *rest, **kwargs)

    trainer.training_step = counting_step
    if torch.cuda.is_available():
        torch.cuda.reset_peak_memory_stats()
    trainer.train()
    per_step_tokens = [sum(tokens[i * variant.accumulation:(i + 1) * variant.accumulation])
                       for i in range(len(step_times))]
    timed = list(zip(step_times, per_step_tokens))[args.warmup:]
    seconds = sum(t for t, _ in timed)
    real_tokens = sum(n for _, n in timed)
    result = {
        "model": model, "variant": variant.name, "precision": runtime.precision, "batching": runtime.batching,
        "liger": runtime.liger, "attention": runtime.attn_implementation, "qlora": qlora,
        "batch": f"{variant.batch}x{variant.accumulation}", "steps_timed": len(timed),
        "tokens_per_step": statistics.mean(n for _, n in timed), "seconds_per_step": seconds / len(timed),
        "tokens_per_second": real_tokens / seconds,
        "peak_memory_gib": torch.cuda.max_memory_allocated() / 2**30 if torch.cuda.is_available() else None,
        # Same samples, same steps: the variants' losses must agree (up to precision), or the
        # comparison is not of the same work.
        "train_loss": next((e["train_loss"] for e in reversed(trainer.state.log_history) if "train_loss" in e), None),
    }
    del trainer, network
    if torch.cuda.is_available():
        torch.cuda.empty_cache()
    return result


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--models", nargs="+", default=["1.5b", "7b"], choices=["1.5b", "7b"])
    parser.add_argument("--steps", type=int, default=3, help="timed optimizer steps per variant")
    parser.add_argument("--warmup", type=int, default=1, help="untimed optimizer steps first")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--lengths-from", type=Path, help="train.jsonl whose conversation lengths to sample")
    parser.add_argument("--tokenizer", default="tiny",
                        help="tokenizer that measures --lengths-from (a local Qwen2.5 tokenizer directory gives the "
                             "real lengths; the default tiny one overstates them)")
    parser.add_argument("--peak-tflops", type=float, help="dense bf16 peak of the GPU, for MFU")
    parser.add_argument("--max-seq-length", type=int, default=4096, help="longest row (packed rows are this long)")
    parser.add_argument("--work-dir", type=Path, help="where random weights are written (default: a temp dir)")
    parser.add_argument("--json", type=Path, help="also write the results here")
    parser.add_argument("--dry-run-cpu", action="store_true",
                        help="check the benchmark's logic on CPU with a tiny config (figures mean nothing)")
    args = parser.parse_args(argv)

    try:
        import torch
    except ImportError:
        print("train_bench: torch is not installed (pip install 'pipesql[train]')", file=sys.stderr)
        return 2
    if not args.dry_run_cpu and not torch.cuda.is_available():
        print("train_bench: no CUDA GPU visible; this benchmark measures GPU training throughput. "
              "Run it on a GPU machine, or use --dry-run-cpu to check its logic.", file=sys.stderr)
        return 2
    torch.backends.cuda.matmul.allow_tf32 = True
    from pipesql.models.loading import load_tokenizer

    tokenizer = load_tokenizer("tiny")  # the trainer only uses its pad id: the data are token ids already
    length_tokenizer = load_tokenizer(args.tokenizer) if args.lengths_from else None
    models = ["tiny", "tiny-4bit"] if args.dry_run_cpu else args.models
    peak = peak_flops(args.peak_tflops)
    results = []
    with tempfile.TemporaryDirectory(prefix="train_bench.") as scratch:
        work = args.work_dir or Path(scratch)
        for model in models:
            batch, accumulation, _ = RECIPES[model]
            samples = batch * accumulation * (args.warmup + args.steps)
            lengths = sample_lengths(samples, args.seed, args.lengths_from, length_tokenizer)
            dataset = synthetic_dataset(lengths, QWEN_CONFIGS[model]["vocab_size"], args.seed)
            # Keep the sample order fixed so that every variant sees the same steps.
            weights_dtype = torch.float32 if args.dry_run_cpu else torch.bfloat16
            model_dir = build_random_model(model, work / f"qwen-{model}", weights_dtype)
            fpt = flops_per_token(QWEN_CONFIGS[model], statistics.mean(lengths))
            for variant in variants(model, args.dry_run_cpu):
                print(f"[{model}] {variant.name}: {variant.precision}, {variant.batching}, "
                      f"batch {variant.batch}x{variant.accumulation} ...", file=sys.stderr)
                result = measure(model, variant, model_dir, dataset, tokenizer, args, work / f"runs-{model}")
                result["mfu"] = result["tokens_per_second"] * fpt / peak if peak else None
                results.append(result)
    print_table(results)
    if args.json:
        args.json.write_text(json.dumps(results, indent=2))
    return 0


def print_table(results: list[dict]) -> None:
    header = f"{'model':<6} {'variant':<9} {'prec':<5} {'batching':<13} {'batch':<6} {'tok/step':>9} " \
             f"{'tok/s':>10} {'x base':>7} {'peak GiB':>9} {'x base':>7} {'MFU':>6} {'loss':>7}"
    print(header)
    print("-" * len(header))
    for result in results:
        base = next(r for r in results if r["model"] == result["model"] and r["variant"] == "replaced")
        memory = result["peak_memory_gib"]
        memory_ratio = memory / base["peak_memory_gib"] if memory and base["peak_memory_gib"] else None
        print(f"{result['model']:<6} {result['variant']:<9} {result['precision']:<5} {result['batching']:<13} "
              f"{result['batch']:<6} {result['tokens_per_step']:>9.0f} {result['tokens_per_second']:>10.0f} "
              f"{result['tokens_per_second'] / base['tokens_per_second']:>7.2f} "
              f"{memory if memory is not None else float('nan'):>9.2f} "
              f"{memory_ratio if memory_ratio is not None else float('nan'):>7.2f} "
              f"{result['mfu'] * 100 if result['mfu'] else float('nan'):>5.1f}% "
              f"{result['train_loss'] if result['train_loss'] is not None else float('nan'):>7.4f}")


if __name__ == "__main__":
    sys.exit(main())
