"""Recipe files: a stage's settings as YAML, to hand to someone else and to rerun a job with.

    pipesql train --config recipes/qwen2.5-coder-7b-qlora.yaml

A recipe is a mapping of setting name to value for one stage (the field names of its Settings,
as in ``pipesql STAGE --help`` without the dashes), optionally with ``stage: NAME`` to say which
stage it is for. It is validated before use, as axolotl validates its YAML with pydantic: an
unknown key or a value of the wrong type stops the job with a message naming the key. It sits
below the command line and the environment and above the preset::

    flag > environment > .env > recipe > preset > default

Every job writes the recipe it resolved, all settings included, as ``recipe.yaml`` beside its
``manifest.json``; ``--config <run>/recipe.yaml`` resolves to the same settings.
"""

from __future__ import annotations

import dataclasses
import typing
import warnings
from pathlib import Path
from typing import Any, Literal

import pydantic
import yaml

RECIPE_NAME = "recipe.yaml"
STAGE_KEY = "stage"


def _field_type(tp: Any, choices: typing.Sequence[str] | None) -> Any:
    """The type a recipe value must have: the field's own, narrowed to its choices if it has any
    (argparse checks choices for flags; the recipe must check them itself)."""
    if not choices:
        return tp
    allowed = Literal[tuple(choices)]  # type: ignore[valid-type]
    return allowed | None if type(None) in typing.get_args(tp) else allowed


def recipe_model(settings_cls: type) -> type[pydantic.BaseModel]:
    """A pydantic model with one optional field per setting, refusing keys it does not know."""
    types = typing.get_type_hints(settings_cls)
    fields = {field.name: (_field_type(types[field.name], field.metadata.get("choices")), None)
              for field in dataclasses.fields(settings_cls)}
    with warnings.catch_warnings():
        # A setting may be called like a BaseModel method (decompile's `json`); only data is read.
        warnings.filterwarnings("ignore", message="Field name .* shadows an attribute", category=UserWarning)
        return pydantic.create_model(f"{settings_cls.stage}_recipe",
                                     __config__=pydantic.ConfigDict(extra="forbid"), **fields)


def _problem(error: dict, stage: str) -> str:
    key = ".".join(map(str, error["loc"])) or "(recipe)"
    if error["type"] == "extra_forbidden":
        return f"{key}: unknown setting of pipesql {stage} (see `pipesql {stage} --help`)"
    return f"{key}: {error['msg']} (got {error['input']!r})"


def parse_recipe(data: Any, settings_cls: type, source: str) -> dict[str, Any]:
    """The settings a recipe's data sets, converted to their fields' types. ``ValueError`` names
    ``source`` and every bad key."""
    stage = settings_cls.stage
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ValueError(f"{source}: a recipe is a mapping of setting: value, got {type(data).__name__}")
    data = dict(data)
    recipe_stage = data.pop(STAGE_KEY, stage)
    if recipe_stage != stage:
        raise ValueError(f"{source}: a recipe for pipesql {recipe_stage}, not pipesql {stage}")
    try:
        validated = recipe_model(settings_cls).model_validate(data)
    except pydantic.ValidationError as error:
        raise ValueError(f"{source}: " + "; ".join(_problem(e, stage) for e in error.errors())) from None
    return validated.model_dump(exclude_unset=True)


class _RecipeLoader(yaml.SafeLoader):
    """YAML without aliases: a recipe is a flat mapping that never needs them, and 350 bytes of
    nested aliases expand to gigabytes (an alias bomb took 45 s and 4 GB)."""

    def compose_node(self, parent: Any, index: Any) -> Any:
        if self.check_event(yaml.AliasEvent):
            raise yaml.composer.ComposerError(None, None, "aliases (*name) are not allowed in a recipe",
                                              self.peek_event().start_mark)
        return super().compose_node(parent, index)


def read_recipe(path: str | Path, settings_cls: type) -> dict[str, Any]:
    """The settings a recipe file sets (see :func:`parse_recipe`)."""
    path = Path(path)
    try:
        data = yaml.load(path.read_text(encoding="utf-8"), Loader=_RecipeLoader)  # noqa: S506 - a safe loader
    except FileNotFoundError:
        raise ValueError(f"{path}: no such recipe file") from None
    except yaml.YAMLError as error:
        raise ValueError(f"{path}: not valid YAML: {error}") from None
    return parse_recipe(data, settings_cls, str(path))


def _plain(value: Any) -> Any:
    if isinstance(value, Path):
        return str(value)
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    return value


def recipe_text(settings: Any) -> str:
    """A settings object as a recipe: every field, in declaration order, under a header that says
    how to rerun it."""
    stage = type(settings).stage
    values = {STAGE_KEY: stage}
    values.update({f.name: _plain(getattr(settings, f.name)) for f in dataclasses.fields(settings)})
    header = (f"# pipesql {stage}: every setting as this run resolved it.\n"
              f"# Rerun with the same settings: pipesql {stage} --config recipe.yaml\n")
    return header + yaml.safe_dump(values, sort_keys=False, allow_unicode=True)
