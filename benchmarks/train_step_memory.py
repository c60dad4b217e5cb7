"""Where one training step of the main job puts its memory: RSS sampled every 5 ms, printed after
the eval on start, at decoder layers 0, 15 and 29 going forward and back, after the step and after
``malloc_trim(0)`` (what the allocator kept but no longer used).

Builds the train stage's trainer as ``pipesql pipeline`` does, on a pipeline run's generated data,
then runs one step by hand. Run it twice to compare glibc's default with pipesql's fixed mmap
threshold (:mod:`pipesql.allocator`): a plain ``python`` process keeps glibc's default, and
``MALLOC_MMAP_THRESHOLD_=262144`` sets what the ``pipesql`` command sets.

    pipesql pipeline --out /tmp/demo        # once, for its generate folder (or stop it after generate)
    python benchmarks/train_step_memory.py /tmp/demo
    MALLOC_MMAP_THRESHOLD_=262144 python benchmarks/train_step_memory.py /tmp/demo
"""

from __future__ import annotations

import ctypes
import sys
import tempfile
import threading
import time
from pathlib import Path

import psutil
import torch

from pipesql.config.settings import resolve
from pipesql.pipeline.settings import Settings as PipelineSettings
from pipesql.pipeline.stages import Layout, _train
from pipesql.train import runner
from pipesql.train.settings import Settings
from pipesql.train.trainer import GuardedSFTTrainer

WATCHED_LAYERS = ("layers.0", "layers.15", "layers.29")


class PeakWatch:
    """The process's RSS, and its highest value since the last report, sampled in a thread."""

    def __init__(self):
        self.process = psutil.Process()
        self.peak = self.rss()
        threading.Thread(target=self._sample, daemon=True).start()

    def rss(self) -> float:
        return self.process.memory_info().rss / 1e6

    def _sample(self) -> None:
        while True:
            self.peak = max(self.peak, self.rss())
            time.sleep(0.005)

    def report(self, label: str) -> None:
        print(f"{label:<22} rss {self.rss():6.0f} MB   peak since last line {self.peak:6.0f} MB", flush=True)
        self.peak = self.rss()


def build_trainer(pipeline_out: Path, run_dir: Path) -> GuardedSFTTrainer:
    values = _train(PipelineSettings(out=pipeline_out), Layout(pipeline_out))
    values.update(output_dir=run_dir, max_steps=1)
    settings = resolve(Settings, values, environ={}, dotenv={})
    runtime = runner.resolve_runtime(settings)
    from pipesql.models.loading import load_tokenizer, resolve_model

    tokenizer = load_tokenizer(resolve_model(settings.model_name))
    train_set, dev_set, _ = runner._load_data(settings, tokenizer)
    model, _ = runner._load_model(settings, runtime)
    trainer = GuardedSFTTrainer(model=model, args=runner.sft_config(settings, runtime, settings.learning_rate, True),
                                train_dataset=train_set, eval_dataset=dev_set, processing_class=tokenizer,
                                peft_config=runner.lora_config(settings),
                                **runner.guard_arguments(settings, settings.learning_rate, []))
    if settings.gradient_checkpointing:  # the trainer turns it on in train(), which this skips
        trainer.model.activation_checkpointing_enable(activation_checkpointing_kwargs={"use_reentrant": False})
    return trainer


def main(pipeline_out: Path) -> None:
    torch.set_num_threads(1)
    watch = PeakWatch()
    with tempfile.TemporaryDirectory() as run_dir:
        trainer = build_trainer(pipeline_out, Path(run_dir))
        model = trainer.model
        trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
        print(f"attention {model.config._attn_implementation}, {trainable:,} trainable parameters")
        watch.report("model and trainer")
        trainer.evaluate()
        watch.report("eval on start")
        for name, module in model.named_modules():
            if name.endswith(WATCHED_LAYERS):
                short = name.split("layers.")[-1]
                module.register_forward_hook(lambda *_, s=short: watch.report(f"forward layer {s}"))
                module.register_full_backward_hook(lambda *_, s=short: watch.report(f"backward layer {s}"))
        model.train()
        batch = trainer._prepare_inputs(next(iter(trainer.get_train_dataloader())))
        print(f"batch: {batch['input_ids'].shape[1]} tokens")
        trainer.compute_loss(model, batch).backward()
        trainer.create_optimizer()
        trainer.optimizer.step()
        watch.report("step")
        ctypes.CDLL("libc.so.6").malloc_trim(0)
        watch.report("after malloc_trim")


if __name__ == "__main__":
    main(Path(sys.argv[1]))
