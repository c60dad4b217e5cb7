"""``pipesql merge``: fold a trained LoRA adapter into its base model -> ``<run>/merged/``.

The base model is read from the run itself (``pipesql_run.json``, else the adapter's
``adapter_config.json``), never from a flag, so an adapter cannot be merged into the wrong model.

A QLoRA adapter is merged into the base model loaded in full precision (bf16 on GPU, fp32 on
CPU), the way QLoRA adapters of released 7B models are merged, not into its 4-bit quantization
(dequantized) which would bake NF4's rounding into a model that no longer needs to be small. The
merged model then differs from the 4-bit base + adapter that was trained by the base's own
quantization error (measured on the tiny model in tests/test_train_qlora.py: relative logit gap
under 0.15, about the same as 4-bit vs full-precision base alone).
"""

from __future__ import annotations

import json
import logging
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import ClassVar

from pipesql.storage.files import check_replaceable, replace_folder, share_file_modes, write_json
from pipesql.storage.manifest import require_inputs, write_manifest
from pipesql.config.settings import option
from pipesql.models.registry import MERGE_RECORD_NAME

log = logging.getLogger(__name__)

MERGED_DIR = "merged"
RUN_CONFIG_NAME = "pipesql_run.json"  # written by pipesql.train.runner


@dataclass
class Settings:
    stage: ClassVar[str] = "merge"

    output_dir: Path = option(Path("runs/train-1.5b"), "The training run directory (pipesql train --output-dir).")
    checkpoint: str | None = option(None, "Adapter to merge: final (default when present), best, latest, "
                                    "or a checkpoint directory name such as checkpoint-500.")
    merged_dir: Path | None = option(None, "Where the merged model goes (default: <output-dir>/merged).")
    dtype: str = option("auto", "Weights dtype of the merged model: auto (bf16 on GPU, fp32 on CPU), "
                        "bfloat16, float16 or float32.", choices=["auto", "bfloat16", "float16", "float32"])
    device: str = option("auto", "auto (CUDA when available), cpu or cuda.")


def find_adapter(run_dir: Path, checkpoint: str | None) -> Path:
    """The adapter directory that ``--checkpoint`` names inside ``run_dir``."""
    from pipesql.train.checkpoints import complete_checkpoints, latest_checkpoint

    run_dir = Path(run_dir)
    if not run_dir.is_dir():
        raise SystemExit(f"run directory not found: {run_dir}")
    if checkpoint in (None, "final") and (run_dir / "final" / "adapter_config.json").is_file():
        return run_dir / "final"
    if checkpoint == "best":
        summary = run_dir / "summary.json"
        best = json.loads(summary.read_text()).get("best_checkpoint") if summary.is_file() else None
        if not best:
            raise SystemExit(f"{run_dir}: no best checkpoint recorded (was there a dev set?)")
        checkpoint = best
    if checkpoint in (None, "latest"):
        latest = latest_checkpoint(run_dir)
        if latest is None:
            raise SystemExit(f"{run_dir}: no final adapter and no complete checkpoint to merge")
        return latest
    path = run_dir / checkpoint
    if not (path / "adapter_config.json").is_file():
        available = ["final"] * (run_dir / "final").is_dir() + [p.name for p in complete_checkpoints(run_dir)]
        raise SystemExit(f"{path} holds no adapter; available: {', '.join(available) or 'none'}")
    return path


def run_config_of(adapter_dir: Path, run_dir: Path) -> dict:
    """What ``pipesql train`` recorded about the run ({} for an adapter from elsewhere)."""
    for config in (adapter_dir / RUN_CONFIG_NAME, run_dir / RUN_CONFIG_NAME):
        if config.is_file():
            return json.loads(config.read_text())
    return {}


def base_model_of(adapter_dir: Path, run_dir: Path) -> str:
    """The registry name / hub id / path the adapter was trained on."""
    recorded = run_config_of(adapter_dir, run_dir).get("model_name")
    if recorded:
        return recorded
    adapter_config = json.loads((adapter_dir / "adapter_config.json").read_text())
    base = adapter_config.get("base_model_name_or_path")
    if not base:
        raise SystemExit(f"{adapter_dir}: cannot tell which base model this adapter belongs to")
    return base


def merge_adapter(adapter_dir: Path, base_model: str, target: Path, *, dtype: str = "auto",
                  device: str | None = None) -> Path:
    """Write base + adapter, merged, to ``target`` (staged beside it, then renamed). An existing
    ``target`` is replaced only if ``pipesql merge`` made it; anything else raises
    :class:`FileExistsError` before the model loads."""
    from peft import PeftModel

    from pipesql.models.loading import load_model_and_tokenizer, load_tokenizer

    check_replaceable(target, "merge")  # before loading anything
    base, _ = load_model_and_tokenizer(base_model, dtype=dtype, device=device)
    merged = PeftModel.from_pretrained(base, str(adapter_dir)).merge_and_unload()
    # The adapter directory's tokenizer carries the chat template the model was trained for.
    tokenizer = load_tokenizer(adapter_dir)
    staged = target.with_name(f".{target.name}.staging")
    shutil.rmtree(staged, ignore_errors=True)
    merged.save_pretrained(staged)
    tokenizer.save_pretrained(staged)
    share_file_modes(staged)
    return replace_folder(staged, target, "merge")  # only a folder merge made is replaced


def run(settings: Settings) -> int:
    run_dir = Path(settings.output_dir)
    adapter_dir = find_adapter(run_dir, settings.checkpoint)
    require_inputs("merge", [adapter_dir, run_dir])  # the run folder and its adapter must match their manifests
    base_model = base_model_of(adapter_dir, run_dir)
    target = Path(settings.merged_dir) if settings.merged_dir else run_dir / MERGED_DIR
    device = None if settings.device == "auto" else settings.device
    log.info("merging %s into %s", adapter_dir, base_model)
    merge_adapter(adapter_dir, base_model, target, dtype=settings.dtype, device=device)
    weights_dtype = json.loads((target / "config.json").read_text()).get("dtype", settings.dtype)
    write_json(target / MERGE_RECORD_NAME, {
        "base_model": base_model, "adapter": str(adapter_dir),
        "trained_on_4bit_base": bool(run_config_of(adapter_dir, run_dir).get("load_in_4bit")),
        "merged_into": f"full-precision base ({weights_dtype})"})
    write_manifest(target, "merge", settings, inputs=[adapter_dir], outputs=[target],
                   metrics={"base_model": base_model, "adapter": adapter_dir.name})
    print(f"merged {adapter_dir} into {base_model}: {target}")
    return 0
