"""``pipesql rl``: TRL's GRPOTrainer on the golden pairs' questions, rewarded by execution.

The policy starts from an SFT result, in either of the two forms the train stage leaves:

- ``--adapter RUN/final``: the SFT LoRA adapter keeps training on its base model (read from the
  run's ``pipesql_run.json``, as merge does); TRL keeps a frozen copy of it as the KL reference.
- ``--model-name RUN/merged``: a new LoRA adapter on the merged model, whose disabled adapter
  is the KL reference.

Everything a long run needs comes from the train stage, unchanged: runtime resolution, LoRA
config, run-directory preparation (half-written checkpoints removed, resume from the newest
complete one), the rollback loop and the guarded trainer (atomic checkpoints, guard state in
each checkpoint, learning rate lowered after a rollback), the final adapter's atomic save.

The run directory is the train stage's (checkpoint-N/, final/, pipesql_run.json,
stability_events.jsonl, summary.json, manifest.json), so ``pipesql merge --output-dir RUN``
folds the GRPO adapter into its model like an SFT one.
"""

from __future__ import annotations

import logging
import math
import time
from pathlib import Path
from typing import Any

from pipesql.config.settings import as_dict
from pipesql.evaluate.scoring import Limits
from pipesql.rl.data import load_prompts
from pipesql.rl.reward import ExecutionReward, RewardPool
from pipesql.rl.settings import Settings
from pipesql.storage.files import write_json
from pipesql.storage.manifest import require_inputs, write_manifest
from pipesql.train.runner import (
    LORA_TARGETS, RUN_CONFIG_NAME, SUMMARY_NAME, Runtime, _prepare_run_dir, _save_final, guard_arguments,
    lora_config, resolve_runtime, train_with_rollbacks, training_arguments,
)
from pipesql.train.stability import learning_rate_after, read_events, rollbacks_done

log = logging.getLogger(__name__)

# What TRL logs per step: the mean total reward, and the two parts ExecutionReward logs.
REWARD_KEYS = ("reward", "execution_match", "well_formed")


def grpo_config(settings: Settings, runtime: Runtime, learning_rate: float):
    from trl import GRPOConfig

    return GRPOConfig(
        **training_arguments(settings, runtime, learning_rate),
        lr_scheduler_type="constant_with_warmup",
        num_generations=settings.num_generations,
        max_completion_length=settings.max_completion_length,
        temperature=settings.temperature,
        beta=settings.beta,
        # Truncated completions still count: the format reward already marks them as not stopped.
        mask_truncated_completions=False,
    )


def _guarded_grpo_trainer_class():
    from trl import GRPOTrainer

    from pipesql.train.trainer import GuardMixin

    class GuardedGRPOTrainer(GuardMixin, GRPOTrainer):
        """GRPO under the train stage's guard. The spike test watches the gradient norm: a GRPO
        loss is an advantage-weighted sum near 0 of either sign, so a multiple of its median
        means nothing; non-finite losses and norms still trip at once."""

        def count_tokens(self, inputs) -> int:
            mask = inputs.get("completion_mask")
            return int(mask.sum()) if mask is not None else 0

        def guard_signal(self, loss: float, grad_norm: float | None) -> float:
            # A non-finite norm is passed on as the norm itself, for the guard to name it.
            return grad_norm if grad_norm is not None and math.isfinite(grad_norm) else abs(loss)

    return GuardedGRPOTrainer


def base_model_of_run(settings: Settings) -> str:
    """The model the trained adapter sits on: the adapter's base, or the merged model."""
    if settings.adapter is not None:
        from pipesql.merge import base_model_of

        adapter = Path(settings.adapter)
        if not (adapter / "adapter_config.json").is_file():
            raise SystemExit(f"pipesql rl: {adapter} holds no adapter (adapter_config.json)")
        return base_model_of(adapter, adapter.parent)
    if not settings.model_name:
        raise SystemExit("pipesql rl: give --model-name (a merged SFT model) or --adapter (an SFT adapter)")
    return settings.model_name


def load_policy(settings: Settings, runtime: Runtime, base_model: str):
    """``(model, peft_config)`` for GRPOTrainer: a trainable copy of the SFT adapter on its base,
    or the merged model and the LoRA config of a new adapter."""
    import torch

    from pipesql.models.loading import load_model_and_tokenizer

    dtype = {"bf16": torch.bfloat16, "fp16": torch.float16, "fp32": torch.float32}[runtime.precision]
    model, _ = load_model_and_tokenizer(base_model, dtype=dtype, device=runtime.device,
                                        load_in_4bit=settings.load_in_4bit,
                                        attn_implementation=runtime.attn_implementation)
    if settings.adapter is None:
        return model, lora_config(settings)
    from peft import PeftModel

    return PeftModel.from_pretrained(model, str(settings.adapter), is_trainable=True), None


def _tokenizer(settings: Settings, base_model: str):
    """The SFT run's tokenizer: its saved chat template is the one the model was trained on."""
    from pipesql.models.loading import load_tokenizer

    tokenizer = load_tokenizer(settings.adapter if settings.adapter is not None else base_model)
    tokenizer.padding_side = "left"  # generation continues the prompt's right end
    return tokenizer


def eos_token_ids(model, tokenizer) -> list[int]:
    ids = model.generation_config.eos_token_id
    ids = [] if ids is None else [ids] if isinstance(ids, int) else list(ids)
    return sorted({*ids, tokenizer.eos_token_id} - {None})


def run_grpo(settings: Settings) -> int:
    started = time.time()
    runtime = resolve_runtime(settings)
    out = Path(settings.output_dir)
    require_inputs("rl", [settings.golden_pairs, settings.adapter])
    resume_from = _prepare_run_dir(settings, runtime)
    base_model = base_model_of_run(settings)
    tokenizer = _tokenizer(settings, base_model)
    prompts, data_stats = load_prompts(settings)
    if runtime.is_main:
        from pipesql.models.registry import resolve_model

        write_json(out / RUN_CONFIG_NAME, {
            "model_name": base_model, "base_model_path": resolve_model(base_model),
            "started_from": {"adapter": str(settings.adapter)} if settings.adapter else {"model": base_model},
            "load_in_4bit": settings.load_in_4bit, "lora_targets": LORA_TARGETS, "runtime": runtime.__dict__,
            "settings": as_dict(settings), "data": data_stats})
    limits = Limits(timeout_s=settings.sql_timeout_s, row_cap=settings.row_cap)
    trainer_class = _guarded_grpo_trainer_class()
    with RewardPool(settings.reward_workers, limits, settings.reward_deadline_s) as pool:
        rewards: list[ExecutionReward] = []

        def make_trainer(learning_rate: float, resume_from: Path | None, events: list[dict[str, Any]]):
            model, peft_config = load_policy(settings, runtime, base_model)
            reward = ExecutionReward(pool, settings.prompt_format, settings.format_weight,
                                     eos_token_ids(model, tokenizer))
            rewards.append(reward)
            return trainer_class(model=model, reward_funcs=[reward], args=grpo_config(settings, runtime, learning_rate),
                                 train_dataset=prompts, processing_class=tokenizer, peft_config=peft_config,
                                 **guard_arguments(settings, learning_rate, events))

        trainer, tokens, train_seconds = train_with_rollbacks(settings, runtime, make_trainer, resume_from)
    final = _save_final(trainer, out, runtime)
    if runtime.is_main:
        status_counts: dict[str, int] = {}
        for reward in rewards:
            for status, count in reward.status_counts.items():
                status_counts[status] = status_counts.get(status, 0) + count
        summary = _write_outputs(settings, trainer, final, data_stats, resume_from=resume_from,
                                 status_counts=status_counts, completion_tokens=tokens * runtime.world_size,
                                 train_seconds=train_seconds, wall_seconds=time.time() - started)
        print(f"GRPO: {summary['global_step']} steps, reward {summary['first_reward']} -> {summary['final_reward']}, "
              f"execution match {summary['first_execution_match']} -> {summary['final_execution_match']}; "
              f"adapter: {final}")
    return 0


def _first_last(history: list[dict[str, Any]], key: str) -> tuple[float | None, float | None]:
    values = [e[key] for e in history if isinstance(e.get(key), (int, float)) and math.isfinite(e[key])]
    return (values[0], values[-1]) if values else (None, None)


def _write_outputs(settings: Settings, trainer, final: Path, data_stats: dict[str, Any], *,
                   resume_from: Path | None, status_counts: dict[str, int], completion_tokens: int,
                   train_seconds: float, wall_seconds: float) -> dict[str, Any]:
    from pipesql.train.checkpoints import complete_checkpoints

    out = Path(settings.output_dir)
    history = trainer.state.log_history
    events = read_events(out)
    summary: dict[str, Any] = {
        "started_from": str(settings.adapter) if settings.adapter else settings.model_name,
        "prompt_format": settings.prompt_format, "global_step": trainer.state.global_step,
        "max_steps": trainer.state.max_steps, "resumed_from": None if resume_from is None else resume_from.name,
        "train_seconds": round(train_seconds, 2), "wall_seconds": round(wall_seconds, 2),
        "completion_tokens": completion_tokens,
        "learning_rate_final": learning_rate_after(settings.learning_rate, settings.lr_backoff, events),
        "checkpoints": [p.name for p in complete_checkpoints(out)],
        "rollbacks": rollbacks_done(events), "stability_events": events,
        "reward_status_counts": dict(sorted(status_counts.items())), "data": data_stats,
    }
    for key, name in zip(REWARD_KEYS, ("reward", "execution_match", "well_formed")):
        summary[f"first_{name}"], summary[f"final_{name}"] = _first_last(history, key)
    write_json(out / SUMMARY_NAME, summary)
    write_manifest(out, "rl", settings, inputs=[p for p in (settings.golden_pairs, settings.adapter) if p],
                   outputs=[final, out / SUMMARY_NAME, out / RUN_CONFIG_NAME],
                   metrics={k: summary[k] for k in ("global_step", "first_reward", "final_reward",
                                                    "final_execution_match", "rollbacks")})
    return summary
