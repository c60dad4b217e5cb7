"""Settings of ``pipesql rl``: GRPO after SFT.

What every fine-tuning stage shares (runtime, LoRA, checkpoints, stability guard, fault drills)
is :class:`pipesql.train.settings.TrainingRun`, inherited, so the train stage's runtime
resolution, LoRA config, checkpoint handling and rollback loop run on these settings unchanged.
The values of the recipes and why are in docs/rl.md.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import ClassVar

from pipesql.config.settings import option, restate
from pipesql.corpora.items import BENCHMARKS
from pipesql.train.settings import TrainingRun

PROMPT_FORMATS = ("oneshot", "step")


@dataclass
class Settings(TrainingRun):
    """GRPO with TRL's ``GRPOTrainer``. Restates these defaults of :class:`TrainingRun`: the run
    directory, the batch, epochs, steps, learning rate and warm-up of GRPO's recipe, checkpoints
    and logging every few steps, and the spike factor (the guard watches the gradient norm). Adds the policy's
    start, the prompts, GRPO's sampling and the reward's limits."""

    stage: ClassVar[str] = "rl"
    # GRPO batches are made by TRL (prompts repeated num-generations times, padded); the train
    # stage's runtime resolution reads these two.
    batching: ClassVar[str] = "padded"
    liger: ClassVar[bool] = False
    # After SFT of the 1.5B / 7B recipes (see docs/rl.md for each value); each states only what
    # differs from the defaults.
    PRESETS: ClassVar[dict[str, dict]] = {
        "1.5b": {"reward_workers": 4},
        "7b": {"load_in_4bit": True, "reward_workers": 4, "output_dir": Path("runs/grpo-7b")},
        # Seconds on a CPU with the tiny model: the machinery, not a model worth keeping.
        "smoke": {
            "num_generations": 4, "per_device_train_batch_size": 4, "gradient_accumulation_steps": 1,
            "learning_rate": 1e-5, "beta": 0.0, "temperature": 1.0, "max_completion_length": 32, "max_steps": 4,
            "save_steps": 2, "limit": 16, "gradient_checkpointing": False, "output_dir": Path("runs/grpo-smoke"),
        },
    }

    preset: str = option("1.5b", "Recipe whose values fill every flag not given.", choices=list(PRESETS))
    # Where the policy starts
    model_name: str = option("", "Start from this merged SFT model (a directory or registry name such as tiny); "
                             "a new LoRA adapter is trained on it.")
    adapter: Path | None = option(None, "Start from this SFT adapter instead (a pipesql train run's final/ or "
                                  "checkpoint-N/): it keeps training, on the base model its run names.")
    # What it learns from
    golden_pairs: Path = option(Path("data/golden_pairs/golden_pairs.jsonl"),
                                "Golden pairs (pipesql validate) whose questions are the prompts.")
    benchmark: str = option("demo", "Benchmark whose databases the pairs name.", choices=BENCHMARKS)
    data_dir: Path | None = option(None, "Benchmark folder; demo builds its own when unset.")
    prompt_format: str = option("oneshot", "oneshot: the whole query in one answer; step: one operator per answer "
                                "after the gold query so far, as the step-by-step agent asks.",
                                choices=list(PROMPT_FORMATS))
    limit: int | None = option(None, "Use only the first N golden pairs.")
    output_dir: Path = restate(TrainingRun, "output_dir", Path("runs/grpo-1.5b"),
                               "Run directory: checkpoints, final adapter, logs.")
    # GRPO
    num_generations: int = option(8, "Group size: completions sampled per prompt.")
    max_completion_length: int = option(384, "Longest completion in tokens (a step answer needs far fewer).")
    temperature: float = option(0.8, "Sampling temperature of the rollouts.")
    beta: float = option(0.001, "KL coefficient against the starting policy (0: no reference model).")
    format_weight: float = option(0.1, "Weight of the format reward beside the execution match (0 or 1 each).")
    per_device_train_batch_size: int = restate(TrainingRun, "per_device_train_batch_size", 8,
                                               "Completions per device per micro-batch (a multiple of "
                                               "num-generations divides the effective batch).")
    num_epochs: float = restate(TrainingRun, "num_epochs", 1.0, "Passes over the prompts.")
    max_steps: int = restate(TrainingRun, "max_steps", 500)
    learning_rate: float = restate(TrainingRun, "learning_rate", 5e-6, "Peak learning rate (constant after warm-up).")
    warmup_ratio: float = restate(TrainingRun, "warmup_ratio", 0.0)
    # Reward
    reward_workers: int = option(2, "Processes scoring completions (0: score in the training process).")
    sql_timeout_s: float = option(5.0, "Time limit of one SQL query while scoring, in seconds.")
    reward_deadline_s: float = option(30.0, "Longest scoring of one completion; past it, it scores 0.")
    row_cap: int = option(100_000, "Most rows read from one query result.")
    # Checkpoints and the stability guard (the rest of pipesql train's TrainingRun fields apply as they are)
    save_steps: int = restate(TrainingRun, "save_steps", 50)
    logging_steps: int = restate(TrainingRun, "logging_steps", 1, "Log rewards and loss every N optimizer steps.")
    # On the gradient norm, since a GRPO loss hovers around 0 with either sign.
    spike_factor: float = restate(TrainingRun, "spike_factor", 10.0,
                                  "A step gradient norm above this multiple of the running median is a spike.")
