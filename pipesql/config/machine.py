"""Facts about the machine a job runs on, each worked out in one place: the cores this process
may use, its place in a distributed launch, the device its tensors go to and their precision.

Every stage asks here (validate's and generate's worker counts, the pipeline's torch threads,
train's runtime, the model loaders), so "auto" means the same thing everywhere. torch is
imported only by the functions that need it: validate and generate run without it.
"""

from __future__ import annotations

import os
from typing import Any

PRECISIONS = ("auto", "bf16", "fp16", "fp32")
# The names a user may give a precision or dtype by, and the precision each means.
_PRECISION_NAMES = {"bf16": "bf16", "bfloat16": "bf16", "fp16": "fp16", "float16": "fp16",
                    "fp32": "fp32", "float32": "fp32"}


def usable_cores() -> int:
    """The cores this process may run on (its CPU affinity, which a container's ``--cpuset-cpus``
    narrows; ``os.cpu_count()`` counts the host's), at least one."""
    if hasattr(os, "sched_getaffinity"):
        return max(1, len(os.sched_getaffinity(0)))
    return os.cpu_count() or 1


def local_rank() -> int:
    """This process's index on its machine in a distributed launch (``accelerate`` / ``torchrun``
    set ``LOCAL_RANK``); 0 when launched alone."""
    return int(os.environ.get("LOCAL_RANK", 0))


def rank() -> int:
    """This process's index among all processes of the launch; 0 when launched alone."""
    return int(os.environ.get("RANK", 0))


def world_size() -> int:
    """How many processes the launch has; 1 when launched alone."""
    return int(os.environ.get("WORLD_SIZE", 1))


def cuda_available() -> bool:
    import torch

    return torch.cuda.is_available()


def pick_device(requested: str | None = "auto") -> str:
    """The device tensors go to: ``auto`` (or None) is this process's GPU (``cuda:<local rank>``)
    when one is visible, else ``cpu``; ``cuda`` is this process's GPU; anything else (``cpu``,
    ``cuda:N``) as given. Asking for CUDA without a GPU is an error that says so."""
    requested = requested or "auto"
    if requested == "auto":
        return f"cuda:{local_rank()}" if cuda_available() else "cpu"
    if requested.startswith("cuda") and not cuda_available():
        raise SystemExit(f"--device {requested} was asked for but no CUDA GPU is visible")
    return f"cuda:{local_rank()}" if requested == "cuda" else requested


def auto_precision(device: str) -> str:
    """bf16 on a GPU that has it, fp16 on an older GPU, fp32 on a CPU."""
    if not device.startswith("cuda"):
        return "fp32"
    import torch

    return "bf16" if torch.cuda.is_bf16_supported() else "fp16"


def precision_of(name: str | None, device: str) -> str:
    """``bf16`` | ``fp16`` | ``fp32`` for a precision or dtype name (``auto``/None:
    :func:`auto_precision` of ``device``)."""
    if name in (None, "auto"):
        return auto_precision(device)
    if str(name) not in _PRECISION_NAMES:
        raise ValueError(f"unknown dtype {name!r}; choose from {sorted(_PRECISION_NAMES)}")
    return _PRECISION_NAMES[str(name)]


def torch_dtype(name: Any, device: str) -> Any:
    """The ``torch.dtype`` for a precision or dtype name on ``device`` (a ``torch.dtype`` passes
    through)."""
    import torch

    if isinstance(name, torch.dtype):
        return name
    return {"bf16": torch.bfloat16, "fp16": torch.float16, "fp32": torch.float32}[precision_of(name, device)]
