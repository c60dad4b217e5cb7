"""``pipesql train``: load, tokenize, train with the guard, roll back when needed, and leave a
run directory that ``pipesql merge`` and people can use.

Run directory layout::

    checkpoint-N/            complete checkpoints (newest save_total_limit, plus the best by eval loss)
    final/                   the trained LoRA adapter + tokenizer (original chat template, with tools)
    runs/                    TensorBoard logs
    pipesql_run.json         what was trained on what (merge reads the base model from here)
    stability_events.jsonl   every guard decision: trips, rollbacks, give-ups
    training_curves.png      train / eval loss and token accuracy
    summary.json, manifest.json
"""

from __future__ import annotations

import gc
import logging
import shutil
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pipesql.config import machine
from pipesql.progress import on_terminal
from pipesql.storage.files import write_json
from pipesql.storage.manifest import require_inputs, write_manifest
from pipesql.config.settings import as_dict
from pipesql.train.checkpoints import STAGING, complete_checkpoints, latest_checkpoint, publish, remove_incomplete
from pipesql.train.settings import Settings, TrainingRun
from pipesql.train.stability import (
    StabilityGuard, append_event, learning_rate_after, read_events, rollbacks_done,
)

log = logging.getLogger(__name__)

RUN_CONFIG_NAME = "pipesql_run.json"
SUMMARY_NAME = "summary.json"
FINAL_DIR = "final"
LORA_TARGETS = ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]


class TrainingDiverged(RuntimeError):
    """The guard tripped more often than ``max_rollbacks`` allows."""


@dataclass(frozen=True)
class Runtime:
    """Choices that depend on the hardware, resolved once from the settings."""

    device: str
    precision: str  # bf16 | fp16 | fp32
    batching: str  # padded | padding-free | packed
    liger: bool
    attn_implementation: str
    optim: str
    rank: int
    world_size: int

    @property
    def is_main(self) -> bool:
        return self.rank == 0


def _importable(module: str) -> bool:
    import importlib.util

    return importlib.util.find_spec(module) is not None


def resolve_runtime(settings: Settings) -> Runtime:
    device = machine.pick_device(settings.device)
    cuda = device.startswith("cuda")
    if settings.load_in_4bit and not _importable("bitsandbytes"):
        raise SystemExit("--load-in-4bit (QLoRA) needs the bitsandbytes package (pip install 'pipesql[train]')")
    precision = machine.precision_of(settings.precision, device)
    if precision == "fp16" and not cuda:
        raise SystemExit("--precision fp16 needs a CUDA GPU; CPU training runs in fp32 (or bf16)")
    if settings.load_in_4bit and precision == "fp16":
        # bitsandbytes 4-bit layers compute in bf16; the fp16 grad scaler cannot unscale them.
        raise SystemExit("QLoRA needs bf16 compute: use a GPU with bf16 or --no-load-in-4bit")
    batching = settings.batching if settings.batching != "auto" else ("padding-free" if cuda else "padded")
    liger = settings.liger if settings.liger is not None else (cuda and _importable("liger_kernel"))
    if liger and not _importable("liger_kernel"):
        raise SystemExit("--liger needs the liger-kernel package (pip install 'pipesql[gpu]')")
    attn = settings.attn_implementation
    if attn == "auto":
        attn = "flash_attention_2" if cuda and _importable("flash_attn") else "sdpa"
    optim = settings.optim if settings.optim != "auto" else ("adamw_torch_fused" if cuda else "adamw_torch")
    return Runtime(device=device, precision=precision, batching=batching, liger=bool(liger),
                   attn_implementation=attn, optim=optim, rank=machine.rank(),
                   world_size=machine.world_size())


def training_arguments(settings: TrainingRun, runtime: Runtime, learning_rate: float) -> dict[str, Any]:
    """The ``TrainingArguments`` every fine-tuning stage sets the same way (SFT here, GRPO in
    :mod:`pipesql.rl`): batch, optimizer, precision, checkpoints, logging, seeds."""
    return dict(
        output_dir=str(settings.output_dir),
        per_device_train_batch_size=settings.per_device_train_batch_size,
        gradient_accumulation_steps=settings.gradient_accumulation_steps,
        num_train_epochs=settings.num_epochs,
        max_steps=settings.max_steps,
        learning_rate=learning_rate,
        warmup_steps=settings.warmup_ratio,
        weight_decay=settings.weight_decay,
        max_grad_norm=settings.max_grad_norm,
        optim=runtime.optim,
        bf16=runtime.precision == "bf16",
        fp16=runtime.precision == "fp16",
        use_cpu=runtime.device == "cpu",
        activation_checkpointing=settings.gradient_checkpointing,
        activation_checkpointing_kwargs={"use_reentrant": False} if settings.gradient_checkpointing else None,
        logging_steps=settings.logging_steps,
        save_strategy="steps",
        save_steps=settings.save_steps,
        save_total_limit=settings.save_total_limit,
        report_to=[] if settings.report_to == "none" else [settings.report_to],
        seed=settings.seed,
        data_seed=settings.seed,
        dataloader_num_workers=0,
        logging_nan_inf_filter=False,  # the guard, not the logger, decides what a NaN means
        disable_tqdm=not on_terminal(),  # a log file gets the trainer's log lines, not a redrawn bar
    )


def sft_config(settings: Settings, runtime: Runtime, learning_rate: float, has_dev: bool, resuming: bool = False):
    from trl import SFTConfig

    evaluate = has_dev and settings.eval_steps > 0
    return SFTConfig(
        **training_arguments(settings, runtime, learning_rate),
        per_device_eval_batch_size=settings.per_device_eval_batch_size,
        lr_scheduler_type="cosine",
        use_liger_kernel=runtime.liger,
        # Conversations longer than max_seq_length are dropped when tokenizing; TRL only needs the
        # length to size packed rows (and refuses it for padding-free batches, which never cut).
        max_length=None if runtime.batching == "padding-free" else settings.max_seq_length,
        packing=runtime.batching == "packed",
        packing_strategy="bfd",
        padding_free=runtime.batching in ("padding-free", "packed"),
        eval_packing=False,
        assistant_only_loss=False,  # the assistant mask is built in pipesql.train.data
        logging_first_step=False,  # a one-micro-batch loss is noise, not a starting point
        eval_strategy="steps" if evaluate else "no",
        eval_steps=settings.eval_steps if evaluate else None,
        eval_on_start=evaluate and settings.eval_on_start and not resuming,
        metric_for_best_model="eval_loss" if evaluate else None,
        greater_is_better=False if evaluate else None,
        load_best_model_at_end=False,
        ddp_find_unused_parameters=False,
    )


def lora_config(settings: TrainingRun):
    from peft import LoraConfig

    return LoraConfig(r=settings.lora_r, lora_alpha=settings.lora_alpha, lora_dropout=settings.lora_dropout,
                      target_modules=list(LORA_TARGETS), bias="none", task_type="CAUSAL_LM")


def _load_model(settings: Settings, runtime: Runtime):
    from pipesql.models.loading import load_model_and_tokenizer

    # The frozen base may be half precision; PEFT keeps the trainable adapter in fp32, which the
    # fp16 grad scaler needs (it cannot unscale fp16 gradients).
    return load_model_and_tokenizer(settings.model_name, dtype=runtime.precision, device=runtime.device,
                                    load_in_4bit=settings.load_in_4bit,
                                    attn_implementation=runtime.attn_implementation)


def _prepare_run_dir(settings: TrainingRun, runtime: Runtime) -> Path | None:
    """Remove half-written checkpoints; return the checkpoint to resume from, if any."""
    out = Path(settings.output_dir)
    if runtime.is_main:
        out.mkdir(parents=True, exist_ok=True)
        for path in remove_incomplete(out):
            log.warning("removed incomplete checkpoint %s", path)
    checkpoint = latest_checkpoint(out)
    if checkpoint is not None and not settings.resume:
        raise SystemExit(f"{out} already holds {checkpoint.name}; rerun with --resume to continue it, "
                         "or choose a new --output-dir")
    return checkpoint


def _run_config(settings: Settings, base_path: str, runtime: Runtime, stats: dict[str, Any]) -> dict[str, Any]:
    return {"model_name": settings.model_name, "base_model_path": base_path,
            "load_in_4bit": settings.load_in_4bit, "lora_targets": LORA_TARGETS,
            "runtime": runtime.__dict__, "settings": as_dict(settings), "data": stats}


def run_training(settings: Settings) -> int:
    from pipesql.models.loading import load_tokenizer
    from pipesql.models.registry import resolve_model
    from pipesql.models.chat_template import template_to_save

    started = time.time()
    runtime = resolve_runtime(settings)
    out = Path(settings.output_dir)
    resume_from = _prepare_run_dir(settings, runtime)
    base_path = resolve_model(settings.model_name)
    tokenizer = load_tokenizer(base_path)
    # What is saved with the adapter; training renders with TRAINING_CHAT_TEMPLATE explicitly.
    tokenizer.chat_template = template_to_save(tokenizer.chat_template)
    train_set, dev_set, stats = _load_data(settings, tokenizer)
    if runtime.is_main:
        write_json(out / RUN_CONFIG_NAME, _run_config(settings, base_path, runtime, stats))
    trainer, tokens, train_seconds = _train_with_rollbacks(settings, runtime, tokenizer, train_set, dev_set,
                                                           resume_from)
    final = _save_final(trainer, out, runtime)
    if runtime.is_main:
        summary = _write_outputs(settings, runtime, trainer, final, stats, resume_from=resume_from,
                                 tokens=tokens * runtime.world_size, train_seconds=train_seconds,
                                 wall_seconds=time.time() - started)
        print(f"final train loss {summary['final_train_loss']}, eval loss {summary['final_eval_loss']}, "
              f"{summary['tokens_per_second']} tokens/s; adapter: {final}")
    return 0


def _load_data(settings: Settings, tokenizer):
    from pipesql.train.data import load_tokenized

    require_inputs("train", [settings.train_data, settings.dev_data])
    train_set, train_stats = load_tokenized(tokenizer, settings.train_data, max_seq_length=settings.max_seq_length,
                                            limit=settings.limit, end_sample_share=settings.end_sample_share,
                                            seed=settings.seed)
    dev_set, dev_stats = None, None
    # An empty --dev-data arrives as Path("") == Path("."): no dev set.
    dev_path = settings.dev_data if settings.dev_data and str(settings.dev_data) not in ("", ".") else None
    if dev_path and Path(dev_path).is_file():
        dev_limit = settings.dev_limit or (None if settings.limit is None else max(1, settings.limit // 10))
        dev_set, dev_stats = load_tokenized(tokenizer, dev_path, max_seq_length=settings.max_seq_length,
                                            limit=dev_limit)
    elif dev_path:
        log.warning("dev data %s not found: training without evaluation", dev_path)
    return train_set, dev_set, {"train": train_stats.as_dict(), "dev": dev_stats.as_dict() if dev_stats else None}


def guard_arguments(settings: TrainingRun, learning_rate: float, events: list[dict[str, Any]]) -> dict[str, Any]:
    """The :class:`~pipesql.train.trainer.GuardMixin` keyword arguments of one (re)start."""
    injected_already = any(e.get("injected") for e in events)
    return {"guard": StabilityGuard(settings.spike_factor, settings.spike_window, settings.spike_warmup),
            "learning_rate_target": learning_rate,
            "inject_nan_step": None if injected_already else settings.inject_nan_step,
            "inject_kill_step": settings.inject_kill_step}


def _train_with_rollbacks(settings: Settings, runtime: Runtime, tokenizer, train_set, dev_set,
                          resume_from: Path | None):
    from pipesql.train.trainer import GuardedSFTTrainer

    # --max-minutes counts from the start of this run, across rollbacks.
    deadline = None if settings.max_minutes is None else time.monotonic() + 60 * settings.max_minutes

    def make_trainer(learning_rate: float, resume_from: Path | None, events: list[dict[str, Any]]):
        model, _ = _load_model(settings, runtime)
        return GuardedSFTTrainer(
            model=model, args=sft_config(settings, runtime, learning_rate, dev_set is not None,
                                         resuming=resume_from is not None),
            train_dataset=train_set, eval_dataset=dev_set, processing_class=tokenizer,
            peft_config=lora_config(settings), deadline=deadline, **guard_arguments(settings, learning_rate, events))

    return train_with_rollbacks(settings, runtime, make_trainer, resume_from)


def train_with_rollbacks(settings: TrainingRun, runtime: Runtime, make_trainer, resume_from: Path | None):
    """Train to the end, rolling back to the last good checkpoint at a lower learning rate each
    time the guard trips. ``make_trainer(learning_rate, resume_from, events)`` builds a fresh
    guarded trainer (model included) for each (re)start. Returns ``(trainer, tokens seen on this
    rank, seconds spent training)``."""
    import torch
    from transformers import set_seed

    out = Path(settings.output_dir)
    events = read_events(out)
    tokens, seconds = 0, 0.0  # training only: evaluation time is taken out
    while True:
        learning_rate = learning_rate_after(settings.learning_rate, settings.lr_backoff, events)
        # The model is rebuilt at every (re)start, so that a rollback before the first checkpoint
        # starts again from the same initial weights.
        set_seed(settings.seed)
        trainer = make_trainer(learning_rate, resume_from, events)
        if resume_from is not None:
            log.info("resuming from %s at learning rate %.3g", resume_from, learning_rate)
        attempt_start = time.time()
        trainer.train(resume_from_checkpoint=str(resume_from) if resume_from else None)
        seconds += time.time() - attempt_start - trainer.eval_seconds
        tokens += trainer.tokens_seen
        if trainer.tripped is None:
            return trainer, tokens, seconds
        event = {**trainer.tripped, "learning_rate": learning_rate}
        if rollbacks_done(events) >= settings.max_rollbacks:
            if runtime.is_main:
                append_event(out, {**event, "action": "abort"})
            raise TrainingDiverged(
                f"training diverged at step {event['step']} ({event['reason']}) after "
                f"{rollbacks_done(events)} rollbacks; the last good checkpoint is "
                f"{latest_checkpoint(out, before_step=event['step'])}. Lower --learning-rate or raise "
                "--max-rollbacks.")
        resume_from = latest_checkpoint(out, before_step=event["step"])
        event.update(action="rollback", to_checkpoint=resume_from.name if resume_from else None,
                     new_learning_rate=learning_rate * settings.lr_backoff)
        if runtime.is_main:
            append_event(out, event)
        events = events + [event]
        trainer.accelerator.wait_for_everyone()
        del trainer
        gc.collect()
        if torch.cuda.is_available():
            torch.cuda.empty_cache()


def _write_outputs(settings: Settings, runtime: Runtime, trainer, final: Path, stats: dict[str, Any], *,
                   resume_from: Path | None, tokens: int, train_seconds: float, wall_seconds: float) -> dict:
    """Plot, summary and manifest (rank 0 only)."""
    from pipesql.train.report import plot_curves, summarize_history

    out = Path(settings.output_dir)
    history = trainer.state.log_history
    plot = plot_curves(history, out / "training_curves.png", title=f"{settings.model_name} LoRA r={settings.lora_r}")
    events = read_events(out)
    best = trainer.state.best_model_checkpoint
    summary = {
        "model_name": settings.model_name, "global_step": trainer.state.global_step,
        "max_steps": trainer.state.max_steps, "epochs": trainer.state.epoch,
        "resumed_from": None if resume_from is None else resume_from.name,
        "train_seconds": round(train_seconds, 2), "wall_seconds": round(wall_seconds, 2),  # train: no eval
        "tokens_trained": tokens,
        "tokens_per_second": round(tokens / train_seconds, 1) if train_seconds else None,
        "learning_rate_final": learning_rate_after(settings.learning_rate, settings.lr_backoff, events),
        "best_checkpoint": Path(best).name if best else None,
        "checkpoints": [p.name for p in complete_checkpoints(out)],
        "rollbacks": rollbacks_done(events), "stability_events": events,
        "runtime": runtime.__dict__, "data": stats,
        **summarize_history(history),
    }
    write_json(out / SUMMARY_NAME, summary)
    card = _write_model_card(settings, out, summary)
    outputs = [final, out / SUMMARY_NAME, out / RUN_CONFIG_NAME, card] + ([plot] if plot else [])
    write_manifest(out, "train", settings, inputs=[p for p in (settings.train_data, settings.dev_data) if p],
                   outputs=outputs, metrics={k: summary[k] for k in (
                       "global_step", "first_train_loss", "final_train_loss", "final_eval_loss", "tokens_per_second",
                       "rollbacks")})
    log.info("trained %d steps in %.0f s; final adapter in %s", trainer.state.global_step, train_seconds, final)
    return summary


def _write_model_card(settings: Settings, out: Path, summary: dict[str, Any]) -> Path:
    from pipesql.models.registry import resolve_model
    from pipesql.storage.files import atomic_open
    from pipesql.train.report import MODEL_CARD_NAME, model_card

    text = model_card(summary, base_model=settings.model_name, base_path=resolve_model(settings.model_name),
                      train_data=str(settings.train_data), lora_r=settings.lora_r, lora_alpha=settings.lora_alpha,
                      learning_rate=settings.learning_rate)
    with atomic_open(out / MODEL_CARD_NAME, "w") as handle:
        handle.write(text)
    return out / MODEL_CARD_NAME


def _save_final(trainer, out: Path, runtime: Runtime) -> Path:
    """Adapter + tokenizer + run config into ``final/``, atomically (staging, then rename)."""
    staged, final = out / STAGING / FINAL_DIR, out / FINAL_DIR
    if runtime.is_main and staged.exists():
        shutil.rmtree(staged)
    trainer.save_model(str(staged))
    if runtime.is_main:
        shutil.copy2(out / RUN_CONFIG_NAME, staged / RUN_CONFIG_NAME)
        publish(staged, final)
    trainer.accelerator.wait_for_everyone()
    return final
