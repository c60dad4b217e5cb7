"""The machine facts every stage asks pipesql.config.machine for."""

import os

import pytest

from pipesql.config import machine


def test_usable_cores_follow_the_affinity_not_the_host(monkeypatch):
    monkeypatch.setattr(os, "sched_getaffinity", lambda _: {3, 5}, raising=False)
    monkeypatch.setattr(os, "cpu_count", lambda: 64)
    assert machine.usable_cores() == 2


def test_auto_device_is_this_ranks_gpu_or_the_cpu(monkeypatch):
    monkeypatch.setenv("LOCAL_RANK", "3")
    monkeypatch.setattr(machine, "cuda_available", lambda: True)
    assert machine.pick_device("auto") == machine.pick_device(None) == machine.pick_device("cuda") == "cuda:3"
    assert machine.pick_device("cuda:1") == "cuda:1" and machine.pick_device("cpu") == "cpu"
    monkeypatch.setattr(machine, "cuda_available", lambda: False)
    assert machine.pick_device("auto") == "cpu"
    with pytest.raises(SystemExit, match="no CUDA GPU is visible"):
        machine.pick_device("cuda")


def test_precision_names_and_auto(monkeypatch):
    assert machine.precision_of("auto", "cpu") == machine.precision_of(None, "cpu") == "fp32"
    assert machine.precision_of("bfloat16", "cpu") == "bf16" and machine.precision_of("fp16", "cuda:0") == "fp16"
    with pytest.raises(ValueError, match="unknown dtype 'half'"):
        machine.precision_of("half", "cpu")
    torch = pytest.importorskip("torch")
    assert machine.torch_dtype("auto", "cpu") is torch.float32
    assert machine.torch_dtype(torch.bfloat16, "cpu") is torch.bfloat16


def test_distributed_position_defaults_to_a_lone_process(monkeypatch):
    for name in ("RANK", "LOCAL_RANK", "WORLD_SIZE"):
        monkeypatch.delenv(name, raising=False)
    assert (machine.rank(), machine.local_rank(), machine.world_size()) == (0, 0, 1)
    monkeypatch.setenv("WORLD_SIZE", "4")
    monkeypatch.setenv("RANK", "2")
    assert (machine.rank(), machine.world_size()) == (2, 4)
