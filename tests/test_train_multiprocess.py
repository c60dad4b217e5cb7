"""``accelerate launch --num_processes 2`` on the CPU (gloo), through the same ``pipesql train`` and
the same accelerate config a GPU host uses (pipesql/train/accelerate/ddp.yaml, with
``--mixed_precision no``): LoRA and QLoRA each with 2 ranks. Checkpoints, kill-and-resume and the
stability guard must hold: only rank 0 writes, and a NaN on one rank rolls every rank back.

FSDP (fsdp_qlora.yaml) does not run on a CPU: accelerate 1.15's FullyShardedDataParallelPlugin
raises "There are currently no available devices found, must be one of 'XPU', 'CUDA', ..."
(docs/training.md), so QLoRA is exercised here with DDP, one 4-bit copy per rank.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

pytest.importorskip("torch")
pytest.importorskip("accelerate")

from train_fixture import adapter_tensors, as_flags, tiny_run_values, write_fixture  # noqa: E402

from pipesql.train.checkpoints import STAGING, complete_checkpoints  # noqa: E402
from pipesql.train.stability import read_events  # noqa: E402

DDP_CONFIG = Path(__file__).resolve().parents[1] / "pipesql" / "train" / "accelerate" / "ddp.yaml"


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    root = tmp_path_factory.mktemp("mp-data")
    return write_fixture(root / "train.jsonl", 32, seed=0), write_fixture(root / "dev.jsonl", 4, seed=1)


def launch(data, out: Path, **overrides) -> subprocess.CompletedProcess:
    small = dict(max_steps=8, save_steps=4, eval_steps=4, logging_steps=2, per_device_train_batch_size=2)
    values = tiny_run_values(*data, out, **{**small, **overrides})
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PIPESQL_TRAIN_", "ACCELERATE_"))}
    env.update(OMP_NUM_THREADS="1", MASTER_PORT=str(29500 + os.getpid() % 1000))
    command = [sys.executable, "-m", "accelerate.commands.launch", "--config_file", str(DDP_CONFIG),
               "--num_processes", "2", "--mixed_precision", "no", "-m", "pipesql", "train", *as_flags(values)]
    return subprocess.run(command, env=env, cwd=out.parent, capture_output=True, text=True, timeout=600)


def assert_two_ranks_finished(out: Path, steps: int) -> dict:
    summary = json.loads((out / "summary.json").read_text())
    assert summary["runtime"]["world_size"] == 2 and summary["global_step"] == steps
    assert all(p.name.startswith("checkpoint-") for p in complete_checkpoints(out))
    assert not (out / STAGING).exists() or not any((out / STAGING).iterdir())
    import torch

    assert all(torch.isfinite(t).all() for t in adapter_tensors(out).values())
    return summary


def test_two_process_lora_kill_resume_and_rollback(data, tmp_path):
    out = tmp_path / "run"
    killed = launch(data, out, inject_kill_step=4)
    assert killed.returncode != 0 and "kill drill" in killed.stderr
    assert [p.name for p in complete_checkpoints(out)] == ["checkpoint-4"] and not (out / "final").exists()
    # Resume on both ranks, then a NaN on rank 1 alone at step 6: both roll back to checkpoint-4.
    resumed = launch(data, out, inject_nan_step=6)
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    summary = assert_two_ranks_finished(out, 8)
    assert summary["resumed_from"] == "checkpoint-4"
    [event] = read_events(out)  # one line: only rank 0 writes the event log
    assert (event["action"], event["step"], event["to_checkpoint"]) == ("rollback", 6, "checkpoint-4")
    assert summary["rollbacks"] == 1


def test_two_process_qlora_rolls_back_together(data, tmp_path):
    pytest.importorskip("bitsandbytes")
    out = tmp_path / "run"
    result = launch(data, out, load_in_4bit=True, max_steps=6, save_steps=2, eval_steps=0, inject_nan_step=4)
    assert result.returncode == 0, result.stderr[-3000:]
    summary = assert_two_ranks_finished(out, 6)
    assert json.loads((out / "pipesql_run.json").read_text())["load_in_4bit"] is True
    [event] = read_events(out)
    assert (event["action"], event["step"], event["to_checkpoint"]) == ("rollback", 4, "checkpoint-2")
    assert summary["rollbacks"] == 1
