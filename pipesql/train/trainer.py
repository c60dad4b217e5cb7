"""TRL's trainers plus what a long unattended run needs: the divergence guard, atomic
checkpoints that carry the guard's state, and a learning rate that a rollback can lower.

Hooks used (transformers 5.23 / TRL 1.16): ``training_step`` (sum the micro-batch losses of an
optimizer step), ``compute_loss`` (fault injection, token counts), ``_get_grad_norm`` (called
once per optimizer step with the pre-clip norm, right before ``optimizer.step()``: where the
guard decides), ``_maybe_log_save_evaluate`` (no save/eval of a bad step; the time budget),
``_save_checkpoint`` (staging + rename) and ``_load_optimizer_and_scheduler`` (re-target the
learning rate after a rollback).
"""

from __future__ import annotations

import json
import logging
import math
import time
from pathlib import Path
from typing import Any

import torch
from transformers.trainer_utils import rotate_checkpoints
from trl import SFTTrainer

from pipesql.train.checkpoints import STAGING, publish
from pipesql.train.stability import StabilityGuard

log = logging.getLogger(__name__)

GUARD_STATE_NAME = "pipesql_guard.json"
# TRL's fused LM head folds the logits in tiles of [4096 tokens x 32768 vocabulary entries]: 512
# MB of fp32 per tile, with about five temporaries of its size where there is no Triton kernel
# (the CPU), several GB for a 135M model. [1024 x 8192] tiles hold 32 MB and fold to the same
# sums; the matrix products stay large enough to run at full speed.
CPU_LOGPROB_TILE = (1024, 8192)


def use_cpu_logprob_tiles() -> None:
    """Make TRL's fused LM head fold CPU logits in :data:`CPU_LOGPROB_TILE` tiles (both sizes
    are module globals TRL reads at each call)."""
    import trl.kernels.chunked_logprob as kernel
    import trl.trainer.utils as trainer_utils

    kernel.TOKEN_CHUNK_SIZE, trainer_utils._CHUNKED_LOGPROB_CHUNK_SIZE = CPU_LOGPROB_TILE


class SimulatedKill(BaseException):
    """Raised by the kill drill right after a checkpoint; a BaseException so that nothing in the
    training loop swallows it, like a real SIGKILL."""


class GuardMixin:
    """The guard, atomic checkpoints and rollback learning rate for any TRL trainer: put it
    first in the bases (``class X(GuardMixin, SomeTRLTrainer)``)."""

    def __init__(self, *args, guard: StabilityGuard, learning_rate_target: float,
                 inject_nan_step: int | None = None, inject_kill_step: int | None = None,
                 deadline: float | None = None, **kwargs):
        self.guard = guard
        self.deadline = deadline  # time.monotonic() after which training stops at a step boundary
        self.learning_rate_target = learning_rate_target
        self.inject_nan_step = inject_nan_step
        self.inject_kill_step = inject_kill_step
        self.tripped: dict[str, Any] | None = None
        self.tokens_seen = 0
        self.eval_seconds = 0.0
        self._step_loss = None
        super().__init__(*args, **kwargs)
        if self.args.device.type == "cpu":
            use_cpu_logprob_tiles()

    # -- per optimizer step -----------------------------------------------------------------

    def count_tokens(self, inputs) -> int:
        """Tokens a training micro-batch holds (for the run's tokens/s)."""
        mask = inputs.get("attention_mask")
        return int(mask.sum()) if mask is not None else int(inputs["input_ids"].numel())

    def guard_signal(self, loss: float, grad_norm: float | None) -> float:
        """The number the spike test watches: the loss, for a loss that falls as training works."""
        return loss

    def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
        result = super().compute_loss(model, inputs, return_outputs=return_outputs,
                                      num_items_in_batch=num_items_in_batch)
        if not model.training:
            return result
        self.tokens_seen += self.count_tokens(inputs)
        # The last rank only: with several processes, the others must learn of it from the guard.
        last_rank = self.accelerator.process_index == self.accelerator.num_processes - 1
        if self.inject_nan_step is not None and self.state.global_step + 1 == self.inject_nan_step and last_rank:
            loss = result[0] if return_outputs else result
            loss = loss * torch.tensor(float("nan"), device=loss.device)
            log.warning("fault injection: poisoning the loss of step %d with NaN", self.inject_nan_step)
            result = (loss, result[1]) if return_outputs else loss
        return result

    def training_step(self, *args, **kwargs):
        loss = super().training_step(*args, **kwargs)
        self._step_loss = loss if self._step_loss is None else self._step_loss + loss
        return loss

    def _get_grad_norm(self, model, grad_norm=None):
        grad_norm = super()._get_grad_norm(model, grad_norm=grad_norm)
        step_loss = self._step_loss if self._step_loss is not None else torch.tensor(0.0, device=self.args.device)
        self._step_loss = None
        # Every rank must take the same decision: average the loss over ranks (the norm is
        # already global after the gradient all-reduce).
        loss = float(self.accelerator.reduce(step_loss.detach().float(), reduction="mean"))
        norm = None if grad_norm is None else float(grad_norm)
        signal = self.guard_signal(loss, norm) if math.isfinite(loss) else loss
        verdict = self.guard.check(self.state.global_step + 1, signal, norm)
        if verdict is not None:
            self.tripped = verdict
            if self.inject_nan_step is not None and verdict["step"] == self.inject_nan_step:
                verdict["injected"] = True
            # Drop the gradients so the optimizer step leaves the weights as they were.
            model.zero_grad(set_to_none=True)
            self.optimizer.zero_grad(set_to_none=True)
            log.error("stability guard: step %d: %s (loss %s, grad norm %s); stopping to roll back",
                      verdict["step"], verdict["reason"], verdict["loss"], verdict["grad_norm"])
        return grad_norm

    def _maybe_log_save_evaluate(self, tr_loss, grad_norm, *args, **kwargs):
        if self.tripped is not None:
            tr_loss -= tr_loss  # keep the NaN out of the logged running loss
            self.control.should_log = self.control.should_save = self.control.should_evaluate = False
            self.control.should_training_stop = True
            return None
        if self._out_of_time():
            self.control.should_training_stop = True
            self.control.should_evaluate = self.args.eval_strategy != "no"  # the "after" figure
        if self.state.global_step >= self.state.max_steps > 0 or self.control.should_training_stop:
            self.control.should_log = True  # the last, possibly partial, logging window too
        return super()._maybe_log_save_evaluate(tr_loss, grad_norm, *args, **kwargs)

    def _out_of_time(self) -> bool:
        """Past the deadline on any rank (so that every rank stops at the same step)."""
        if self.deadline is None:
            return False
        late = torch.tensor(float(time.monotonic() > self.deadline), device=self.args.device)
        return bool(self.accelerator.reduce(late, reduction="sum") > 0)

    def evaluate(self, *args, **kwargs):
        # Timed so that the run's tokens/s counts training time only.
        start = time.perf_counter()
        try:
            return super().evaluate(*args, **kwargs)
        finally:
            self.eval_seconds += time.perf_counter() - start

    def create_model_card(self, *args, **kwargs):
        # TRL writes one at every checkpoint, linking a local base model as "[None](...)";
        # pipesql train writes its own README.md when the run ends (train.report.model_card).
        return None

    # -- checkpoints ------------------------------------------------------------------------

    def _get_output_dir(self, trial):
        staging = getattr(self, "_staging_dir", None)
        return staging if staging is not None else super()._get_output_dir(trial)

    def _save_checkpoint(self, model, trial):
        run_dir = Path(super()._get_output_dir(trial))
        staging = run_dir / STAGING
        name = f"checkpoint-{self.state.global_step}"
        if self.args.should_save:
            staging.mkdir(parents=True, exist_ok=True)
        self.accelerator.wait_for_everyone()
        self._staging_dir = str(staging)
        try:
            super()._save_checkpoint(model, trial)
        finally:
            self._staging_dir = None
        staged, final = staging / name, run_dir / name
        # The parent recorded paths inside the staging area; point them at where the checkpoint lives.
        best = self.state.best_model_checkpoint
        if best and Path(best).parent == staging:
            self.state.best_model_checkpoint = str(run_dir / Path(best).name)
        if self.args.should_save:
            self.state.save_to_json(str(staged / "trainer_state.json"))
            (staged / GUARD_STATE_NAME).write_text(json.dumps(self.guard.state()))
        self.accelerator.wait_for_everyone()
        if self.args.should_save:
            publish(staged, final)
            rotate_checkpoints(output_dir=str(run_dir), save_total_limit=self.args.save_total_limit,
                               best_model_checkpoint=self.state.best_model_checkpoint, use_mtime=False)
        self.accelerator.wait_for_everyone()
        if self.inject_kill_step is not None and self.state.global_step == self.inject_kill_step:
            raise SimulatedKill(f"kill drill after {final}")

    def _load_from_checkpoint(self, resume_from_checkpoint, model=None):
        # Loading an adapter checkpoint makes PEFT autocast it to fp32, while a fresh QLoRA run
        # trains it in bf16 (TRL's QLoRA recipe): keep the dtype the run started with, so that a
        # resumed run computes exactly what the uninterrupted one does.
        dtypes = {name: p.dtype for name, p in self.model.named_parameters() if p.requires_grad}
        super()._load_from_checkpoint(resume_from_checkpoint, model)
        for name, parameter in self.model.named_parameters():
            if name in dtypes and parameter.dtype != dtypes[name]:
                parameter.data = parameter.data.to(dtypes[name])

    def _load_optimizer_and_scheduler(self, checkpoint):
        super()._load_optimizer_and_scheduler(checkpoint)
        if checkpoint is None:
            return
        guard_state = Path(checkpoint) / GUARD_STATE_NAME
        if guard_state.is_file():
            self.guard.load_state(json.loads(guard_state.read_text()))
        self._retarget_learning_rate()

    def _retarget_learning_rate(self) -> None:
        """The checkpoint's scheduler restores the learning rate it was saved with; after a
        rollback the run continues at ``learning_rate_target`` on the same schedule."""
        scheduler, target = self.lr_scheduler, self.learning_rate_target
        base_lrs = getattr(scheduler, "base_lrs", None)
        if not base_lrs or all(math.isclose(lr, target, rel_tol=1e-9) for lr in base_lrs):
            return
        lambdas = getattr(scheduler, "lr_lambdas", None)
        for index, group in enumerate(self.optimizer.param_groups):
            factor = lambdas[index](scheduler.last_epoch) if lambdas else group["lr"] / base_lrs[index]
            group["initial_lr"] = target
            group["lr"] = target * factor
        scheduler.base_lrs = [target] * len(base_lrs)
        if hasattr(scheduler, "_last_lr"):
            scheduler._last_lr = [group["lr"] for group in self.optimizer.param_groups]
        log.warning("learning rate re-targeted to %.3g after rollback", target)


class GuardedSFTTrainer(GuardMixin, SFTTrainer):
    """TRL's SFTTrainer under the guard."""
