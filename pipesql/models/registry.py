"""The model registry: a model name as a local directory. ``tiny`` and ``smollm2-135m`` are
built once into the cache (:func:`pipesql.storage.cache.cache_root`: ``$PIPESQL_CACHE``, else
``~/.cache/pipesql``); anything else (a hub id, a directory) is passed to ``from_pretrained``
as it is."""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path

from pipesql.models.smollm2 import SMOLLM2, convert_smollm2_in_child
from pipesql.models.tiny import TINY, TINY_VERSION, build_tiny_model
from pipesql.storage.cache import cache_root
from pipesql.storage.files import share_file_modes


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
    return _build_once(cache_root() / "models" / f"tiny-v{TINY_VERSION}", build_tiny_model)


def smollm2_dir() -> Path:
    return _build_once(cache_root() / "models" / "smollm2-135m-instruct", convert_smollm2_in_child)


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
