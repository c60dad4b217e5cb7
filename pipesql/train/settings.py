"""Settings of ``pipesql train``: the replaced system's flags, plus presets for the recommended
1.5B / 7B recipes and a seconds-long smoke run."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import ClassVar

from pipesql.config.machine import PRECISIONS
from pipesql.config.settings import option

QWEN_1_5B = "Qwen/Qwen2.5-Coder-1.5B-Instruct"
QWEN_7B = "Qwen/Qwen2.5-Coder-7B-Instruct"

BATCHING = ("auto", "padded", "padding-free", "packed")


@dataclass
class TrainingRun:
    """What every fine-tuning stage shares (SFT here, GRPO in :mod:`pipesql.rl`), declared once, as
    TRL's ``TrainingArguments`` is for ``SFTConfig`` and ``GRPOConfig``: the optimizer and its
    schedule, hardware and precision, LoRA / QLoRA, checkpoints and resume, the stability guard
    and the fault drills. The defaults are the SFT stage's 1.5B recipe; a stage that needs other
    ones restates only those (:func:`pipesql.config.settings.restate`). The train stage's runtime
    resolution, ``TrainingArguments``, LoRA config and rollback loop read these fields."""

    output_dir: Path = option(Path("runs/train-1.5b"), "Run directory: checkpoints, final adapter, logs, plots.")
    # The optimizer and its schedule
    per_device_train_batch_size: int = option(4, "Conversations (or packed rows) per device per micro-batch.")
    gradient_accumulation_steps: int = option(8, "Micro-batches per optimizer step.")
    num_epochs: float = option(2.0, "Passes over the training data.")
    max_steps: int = option(-1, "Stop after this many optimizer steps (-1: run num_epochs).")
    learning_rate: float = option(2e-4, "Peak learning rate (cosine decay after warm-up).")
    warmup_ratio: float = option(0.03, "Fraction of the optimizer steps spent warming up the learning rate.")
    weight_decay: float = option(0.0, "AdamW weight decay.")
    max_grad_norm: float = option(1.0, "Clip the gradient norm to this (0: no clipping).")
    load_in_4bit: bool = option(False, "QLoRA: load the base model in 4-bit NF4 (CUDA + bitsandbytes).",
                                aliases=["--no-4bit"])
    lora_r: int = option(16, "LoRA rank.")
    lora_alpha: int = option(32, "LoRA alpha.")
    lora_dropout: float = option(0.05, "LoRA dropout.")
    save_steps: int = option(500, "Checkpoint every N optimizer steps.")
    save_total_limit: int = option(3, "Keep the newest N checkpoints (SFT: plus the best by eval loss).")
    logging_steps: int = option(10, "Log train loss / accuracy every N optimizer steps.")
    seed: int = option(42, "Seed for LoRA initialisation, dropout and data order.")
    precision: str = option("auto", "auto: bf16 on GPUs that have it, fp16 on older GPUs, fp32 on CPU.",
                            choices=list(PRECISIONS))
    attn_implementation: str = option("auto", "auto: flash_attention_2 when installed on CUDA, else sdpa.")
    gradient_checkpointing: bool = option(True, "Recompute activations in backward (use_reentrant=False).")
    device: str = option("auto", "auto (CUDA when available, else CPU), cpu or cuda.")
    optim: str = option("auto", "Optimizer name for transformers (auto: fused AdamW on CUDA, AdamW on CPU).")
    resume: bool = option(True, "Continue from the newest complete checkpoint in output-dir when there is one.")
    report_to: str = option("tensorboard", "Where metrics go besides the console (tensorboard or none).")
    # Stability guard
    spike_factor: float = option(3.0, "A step loss above this multiple of the running median is a spike.")
    spike_window: int = option(50, "Steps in the running median of the guard's signal (SFT: the loss; GRPO: "
                               "the gradient norm).")
    spike_warmup: int = option(20, "Optimizer steps before spike detection starts.")
    max_rollbacks: int = option(3, "Rollbacks to the last good checkpoint before giving up.")
    lr_backoff: float = option(0.5, "Learning-rate multiplier applied at each rollback.")
    # Fault injection, for tests and drills of the guard and of resume.
    inject_nan_step: int | None = option(None, "Testing: poison the loss with NaN at this optimizer step "
                                         "(once; on the last rank only).")
    inject_kill_step: int | None = option(None, "Testing: die abruptly right after the checkpoint of this step.")


@dataclass
class Settings(TrainingRun):
    """SFT with TRL's ``SFTTrainer``. Keeps every default of :class:`TrainingRun` (they are this
    stage's 1.5B recipe) and adds the model, the data and what only SFT has: evaluation on a dev
    set, sequence length, batching."""

    stage: ClassVar[str] = "train"
    # The reproduction guide's recommended configurations (full dataset, 2 epochs), plus a smoke
    # run. Each states only what differs from the defaults, which are the 1.5B recipe.
    PRESETS: ClassVar[dict[str, dict]] = {
        "1.5b": {},
        "7b": {
            "model_name": QWEN_7B, "load_in_4bit": True, "per_device_train_batch_size": 1,
            "gradient_accumulation_steps": 32, "learning_rate": 5e-5, "max_grad_norm": 0.5,
            "eval_steps": 1000, "save_steps": 1000, "output_dir": Path("runs/train-7b"),
        },
        # Minutes on a CPU: a few dozen small steps at a learning rate that suits a pretrained
        # model (SmolLM2); activations are kept, not recomputed, since memory is not the limit.
        "smoke": {
            "model_name": "tiny", "per_device_train_batch_size": 2, "gradient_accumulation_steps": 1,
            "num_epochs": 1.0, "max_steps": 30, "warmup_ratio": 0.1, "max_seq_length": 1024,
            "eval_steps": 15, "save_steps": 15, "logging_steps": 5, "limit": 200,
            "gradient_checkpointing": False, "output_dir": Path("runs/train-smoke"),
        },
    }

    preset: str = option("1.5b", "Recipe whose values fill every flag not given.", choices=list(PRESETS))
    model_name: str = option(QWEN_1_5B, "Base model: a hub id, a directory, or a registry name (tiny, smollm2-135m).")
    train_data: Path = option(Path("out/generate/train.jsonl"), "Training conversations (JSONL from pipesql generate).")
    dev_data: Path | None = option(Path("out/generate/dev.jsonl"), "Dev conversations for eval loss; empty: none.")
    max_seq_length: int = option(4096, "Longest conversation in tokens; longer ones are skipped and counted.")
    per_device_eval_batch_size: int = option(8, "Conversations per device per eval batch.")
    max_minutes: float | None = option(None, "Also stop, after an eval and with the final adapter saved, once "
                                       "training has run this many minutes (a time-boxed run).")
    eval_steps: int = option(500, "Evaluate on the dev set every N optimizer steps.")
    eval_on_start: bool = option(True, "Also evaluate before the first step (not when resuming): the baseline.")
    limit: int | None = option(None, "Use only the first N training conversations (and a tenth as many dev ones).")
    dev_limit: int | None = option(None, "Use only the first N dev conversations (default: a tenth of --limit, "
                                   "or all).")
    end_sample_share: float | None = option(None, "Thin the end-marker samples (kind \"end\") of the training "
                                            "data to this share, a seeded choice (none: keep all).")
    batching: str = option("auto", "How micro-batches are formed. auto: padding-free on CUDA, padded on CPU; "
                           "packed: several conversations per max-seq-length row (best-fit decreasing).",
                           choices=list(BATCHING))
    liger: bool | None = option(None, "Liger kernels (RMSNorm, RoPE, SwiGLU); default: on when CUDA and "
                                "liger-kernel are available.")
