"""Stage settings: one dataclass per job, from which CLI flags, environment variables and
defaults all derive.

A stage declares its settings as a dataclass whose fields are made with :func:`option`::

    @dataclass
    class Settings:
        stage: ClassVar[str] = "train"
        learning_rate: float = option(2e-4, "Peak learning rate.")

which gives the flag ``--learning-rate``, the environment variable ``PIPESQL_TRAIN_LEARNING_RATE``
(also read from a ``.env`` file in the working directory, with Compose's rules), the recipe key
``learning_rate`` (:mod:`pipesql.config.recipes`) and the default ``2e-4``.

Precedence, highest first: CLI flag > environment > ``.env`` > recipe (``--config FILE`` or
``PIPESQL_<STAGE>_CONFIG``) > preset > default. A stage that has presets gives its dataclass a
``PRESETS: ClassVar[dict[str, dict]]`` and a ``preset`` field.
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import re
import typing
from pathlib import Path
from typing import Any, ClassVar, Mapping

from dotenv import parser as dotenv_parser
from dotenv import variables as dotenv_variables

from pipesql.config.recipes import read_recipe

ENV_PREFIX = "PIPESQL"
# The flag (--config) and variable suffix (PIPESQL_<STAGE>_CONFIG) that name a recipe file.
CONFIG_OPTION = "config"


def option(
    default: Any = dataclasses.MISSING,
    help: str = "",
    *,
    choices: typing.Sequence[str] | None = None,
    positional: bool = False,
    flag: str | None = None,
    aliases: typing.Sequence[str] = (),
) -> Any:
    """A settings field. Mutable defaults (lists) are copied per instance. ``aliases`` are extra
    flags; for a boolean, an alias starting with ``--no-`` sets it false, any other sets it true.
    A boolean's aliases are accepted but not listed in ``--help``."""
    metadata = {"help": help, "choices": choices, "positional": positional, "flag": flag,
                "aliases": tuple(aliases)}
    if isinstance(default, list):
        return dataclasses.field(default_factory=lambda: list(default), metadata=metadata)
    return dataclasses.field(default=default, metadata=metadata)


def restate(base: type, name: str, default: Any, help: str | None = None) -> Any:
    """A subclass's own default for a field that ``base`` declares: the flag, choices and aliases
    stay the base's, and so does the help unless ``help`` is given (TRL's ``SFTConfig`` restates
    ``learning_rate`` of ``TrainingArguments`` the same way)::

        learning_rate: float = restate(TrainingRun, "learning_rate", 5e-6)
    """
    metadata = dict(base.__dataclass_fields__[name].metadata)
    if help is not None:
        metadata["help"] = help
    return option(default, **metadata)


def flag_name(field: dataclasses.Field) -> str:
    return field.metadata.get("flag") or "--" + field.name.replace("_", "-")


def env_name(settings_cls: type, field: dataclasses.Field) -> str:
    return f"{ENV_PREFIX}_{settings_cls.stage.upper()}_{field.name.upper()}".replace("-", "_")


def _field_types(settings_cls: type) -> dict[str, Any]:
    return typing.get_type_hints(settings_cls)


def _unwrap_optional(tp: Any) -> Any:
    args = [a for a in typing.get_args(tp) if a is not type(None)]
    if typing.get_origin(tp) in (typing.Union, getattr(__import__("types"), "UnionType", None)) and len(args) == 1:
        return args[0]
    return tp


def _is_list(tp: Any) -> bool:
    return typing.get_origin(_unwrap_optional(tp)) in (list, tuple)


def _scalar_type(tp: Any) -> Any:
    tp = _unwrap_optional(tp)
    if _is_list(tp):
        tp = typing.get_args(tp)[0]
    return tp


def parse_value(text: str, tp: Any) -> Any:
    """Parse a string (from the environment or a ``.env`` file) into a field's type."""
    if _is_list(tp):
        return [parse_value(part.strip(), _scalar_type(tp)) for part in text.split(",") if part.strip()]
    if text == "" and _unwrap_optional(tp) is not tp:
        return None
    base = _scalar_type(tp)
    if base is bool:
        lowered = text.strip().lower()
        if lowered in ("1", "true", "yes", "on"):
            return True
        if lowered in ("0", "false", "no", "off"):
            return False
        raise ValueError(f"not a boolean: {text!r}")
    if base in (int, float, str, Path):
        return base(text)
    return text


# What pipesql expands in a `.env` value: ${VAR} and ${VAR:-default}, the forms python-dotenv and
# Compose read alike. Compose also knows $VAR, ${VAR-default}, ${VAR:?error} and ${VAR:+other};
# python-dotenv would leave those as text, so they are refused rather than read differently.
_SHARED_EXPANSION = re.compile(r"\$\{\w+(?::-[^}]*)?\}")
# Compose (like a shell) takes a single-quoted value literally: no expansion.
_SINGLE_QUOTED = re.compile(r"^\s*(?:export\s+)?[^=\s]+\s*=\s*'")


def read_dotenv(path: str | os.PathLike = ".env", environ: Mapping[str, str] | None = None) -> dict[str, str]:
    """The variables of a ``.env`` file, read as Docker Compose reads it: parsed by python-dotenv
    (comments, ``export``, quotes, an inline `` # comment`` after an unquoted value), then
    ``${VAR}`` / ``${VAR:-default}`` expanded from the environment first and the file's earlier
    lines second, single-quoted values left as they are. A missing file is empty; a line that is
    not ``KEY=VALUE`` is an error naming the line."""
    path = Path(path)
    if not path.is_file():
        return {}
    environ = os.environ if environ is None else environ
    values: dict[str, str] = {}
    with path.open(encoding="utf-8") as stream:
        for binding in dotenv_parser.parse_stream(stream):
            line = binding.original.line + len(binding.original.string) - len(binding.original.string.lstrip("\n"))
            if binding.error:
                raise ValueError(f"{path}:{line}: expected KEY=VALUE, got {binding.original.string.strip()!r}")
            if binding.key is None or binding.value is None:
                continue  # a comment, a blank line, or a bare KEY (Compose: take it from the environment)
            value = binding.value
            if not _SINGLE_QUOTED.match(binding.original.string):
                if "$" in _SHARED_EXPANSION.sub("", value):
                    raise ValueError(f"{path}:{line}: {binding.key}: only ${{VAR}} and ${{VAR:-default}} are "
                                     f"expanded the same by pipesql and Compose; got {value!r}")
                # Compose's ${VAR:-default} also replaces an empty value; python-dotenv's only an unset one.
                lookup = {k: v for k, v in {**values, **environ}.items() if v != ""}
                value = "".join(atom.resolve(lookup) for atom in dotenv_variables.parse_variables(value))
            values[binding.key] = value
    return values


def shown_default(default: Any) -> str:
    """A default as a user would type it: paths and strings bare, lists comma-separated (the
    environment-variable form), None as "none"."""
    if default is None:
        return "none"
    if isinstance(default, (list, tuple)):
        return ",".join(shown_default(item) for item in default) or "empty"
    return str(default) if default != "" else '""'


def add_arguments(parser: argparse.ArgumentParser, settings_cls: type) -> None:
    """Add one flag per field. Defaults are suppressed so that resolution can tell which flags
    the user actually gave."""
    parser.add_argument(f"--{CONFIG_OPTION}", type=Path, default=argparse.SUPPRESS, metavar="RECIPE.yaml",
                        help=f"Recipe file: settings as YAML, below flags and environment, above the preset "
                             f"[env {config_env_name(settings_cls)}]")
    types = _field_types(settings_cls)
    for field in dataclasses.fields(settings_cls):
        tp = types[field.name]
        help_text = field.metadata.get("help", "")
        default = None if field.default is dataclasses.MISSING else field.default
        if field.default_factory is not dataclasses.MISSING:  # type: ignore[misc]
            default = field.default_factory()  # type: ignore[misc]
        help_text = f"{help_text} [env {env_name(settings_cls, field)}; default {shown_default(default)}]"
        kwargs: dict[str, Any] = {"help": help_text, "default": argparse.SUPPRESS}
        if field.metadata.get("choices"):
            kwargs["choices"] = list(field.metadata["choices"])
        if field.metadata.get("positional"):
            kwargs["nargs"] = "*" if _is_list(tp) else "?"
            kwargs["type"] = _scalar_type(tp)
            parser.add_argument(field.name, **kwargs)
            continue
        aliases = field.metadata.get("aliases", ())
        if _scalar_type(tp) is bool:
            kwargs["action"] = argparse.BooleanOptionalAction
            for alias in aliases:
                negative = alias.startswith("--no-")
                # Accepted for the replaced system's scripts, but not listed: --help shows one
                # flag per setting.
                parser.add_argument(alias, dest=field.name, default=argparse.SUPPRESS,
                                    action="store_false" if negative else "store_true", help=argparse.SUPPRESS)
            aliases = ()
        elif _is_list(tp):
            kwargs["action"] = "append"
            kwargs["type"] = _scalar_type(tp)
        else:
            kwargs["type"] = _scalar_type(tp)
        parser.add_argument(flag_name(field), *aliases, dest=field.name, **kwargs)


def config_env_name(settings_cls: type) -> str:
    """``PIPESQL_<STAGE>_CONFIG``: the recipe file of a stage, when ``--config`` is not given."""
    return f"{ENV_PREFIX}_{settings_cls.stage.upper()}_{CONFIG_OPTION.upper()}".replace("-", "_")


def resolve(
    settings_cls: type,
    cli_values: Mapping[str, Any] | None = None,
    environ: Mapping[str, str] | None = None,
    dotenv: Mapping[str, str] | None = None,
) -> Any:
    """Build the settings: CLI flag > environment > ``.env`` > recipe > preset > default.

    The recipe is the YAML file named by ``cli_values["config"]`` (the ``--config`` flag) or by
    ``PIPESQL_<STAGE>_CONFIG`` in the environment or ``.env``."""
    cli_values = dict(cli_values or {})
    environ = os.environ if environ is None else environ
    if dotenv is None:
        try:
            dotenv = read_dotenv(environ=environ)
        except ValueError as error:
            raise SystemExit(str(error)) from None
    types = _field_types(settings_cls)

    def from_env(name: str, tp: Any) -> tuple[bool, Any]:
        for source in (environ, dotenv):
            if name in source:
                try:
                    return True, parse_value(source[name], tp)
                except ValueError as error:
                    raise SystemExit(f"{name}: {error}") from None
        return False, None

    recipe_path = cli_values.pop(CONFIG_OPTION, None) or from_env(config_env_name(settings_cls), Path)[1]
    try:
        recipe = read_recipe(recipe_path, settings_cls) if recipe_path else {}
    except ValueError as error:
        raise SystemExit(str(error)) from None

    values: dict[str, Any] = {}
    fields = {f.name: f for f in dataclasses.fields(settings_cls)}
    for name, field in fields.items():
        if name in cli_values:
            values[name] = cli_values[name]
            continue
        found, value = from_env(env_name(settings_cls, field), types[name])
        if found:
            values[name] = value
        elif name in recipe:
            values[name] = recipe[name]

    presets: Mapping[str, Mapping[str, Any]] = getattr(settings_cls, "PRESETS", {})
    preset_name = values.get("preset", getattr(settings_cls, "preset", None)) if "preset" in fields else None
    if preset_name:
        if preset_name not in presets:
            raise SystemExit(f"unknown preset {preset_name!r}; choose from {sorted(presets)}")
        for name, value in presets[preset_name].items():
            values.setdefault(name, value)
    return settings_cls(**values)


def as_dict(settings: Any) -> dict[str, Any]:
    """JSON-friendly view of a settings object (for manifests and logs)."""
    out = {}
    for field in dataclasses.fields(settings):
        value = getattr(settings, field.name)
        if isinstance(value, (list, tuple)):
            value = [str(v) if isinstance(v, Path) else v for v in value]
        out[field.name] = str(value) if isinstance(value, Path) else value
    return out


Stage = ClassVar  # re-exported for readability in stage modules: ``stage: Stage[str] = "train"``
