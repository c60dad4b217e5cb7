"""Settings of ``pipesql pipeline``: the main job's own knobs; each stage's settings derive
from them (:mod:`pipesql.pipeline.stages`)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import ClassVar

from pipesql.config.settings import option


@dataclass
class Settings:
    stage: ClassVar[str] = "pipeline"
    out: Path = option(Path("runs/demo"), "Output root: one folder per stage, plus pipeline_summary.json.")
    model: str = option("smollm2-135m", "Base model: a registry name (smollm2-135m; tiny for tests), hub id or folder.")
    max_steps: int = option(6, "Training steps (batch-size conversations each).")
    batch_size: int = option(2, "Conversations per training step, concatenated without padding.")
    skip_train: bool = option(False, "Skip train and merge, and evaluate the base model as it is.")
    limit: int | None = option(None, "Use only the first N demo train questions (default: all 110).")
    eval_limit: int = option(5, "Evaluate the first N demo dev questions (of 57; 0: all).")
    learning_rate: float = option(1e-3, "Peak learning rate of the short LoRA run.")
    dev_steps: int = option(6, "Dev trajectory steps for the dev loss before/after and next-operator accuracy.")
    max_seq_length: int = option(2560, "Longest training conversation, in tokens (longer ones are skipped; "
                                       "every demo conversation, tool chats included, fits).")
    end_sample_share: float = option(0.1, "Share of end-marker samples kept in the training data.")
    device: str = option("auto", "Device for train and evaluate: auto (CUDA when available), cpu or cuda.",
                         choices=["auto", "cpu", "cuda"])
    threads: int = option(0, "CPU threads for torch. 0: the cores idle when the job starts (measured over "
                          "a second), at least one.")
