"""Stage settings: one dataclass per job, from which CLI flags, environment variables and
defaults all derive.

A stage declares its settings as a dataclass whose fields are made with :func:`option`::

    @dataclass
    class Settings:
        stage: ClassVar[str] = "train"
        learning_rate: float = option(2e-4, "Peak learning rate.")

which gives the flag ``--learning-rate``, the environment variable ``PIPESQL_TRAIN_LEARNING_RATE``
(also read from a ``.env`` file in the working directory) and the default ``2e-4``.

Precedence, highest first: CLI flag > environment / ``.env`` > preset > default. A stage that
has presets gives its dataclass a ``PRESETS: ClassVar[dict[str, dict]]`` and a ``preset`` field.
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import typing
from pathlib import Path
from typing import Any, ClassVar, Mapping

ENV_PREFIX = "PIPESQL"


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


def read_dotenv(path: str | os.PathLike = ".env") -> dict[str, str]:
    """KEY=VALUE lines; '#' comments, blank lines and optional quotes are allowed."""
    values: dict[str, str] = {}
    path = Path(path)
    if not path.is_file():
        return values
    for number, line in enumerate(path.read_text().splitlines(), 1):
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        if line.startswith("export "):
            line = line[len("export ") :]
        key, sep, value = line.partition("=")
        if not sep:
            raise ValueError(f"{path}:{number}: expected KEY=VALUE, got {line!r}")
        value = value.strip()
        if len(value) >= 2 and value[0] == value[-1] and value[0] in "'\"":
            value = value[1:-1]
        values[key.strip()] = value
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


def resolve(
    settings_cls: type,
    cli_values: Mapping[str, Any] | None = None,
    environ: Mapping[str, str] | None = None,
    dotenv: Mapping[str, str] | None = None,
) -> Any:
    """Build the settings: CLI flag > environment > ``.env`` > preset > default."""
    cli_values = dict(cli_values or {})
    environ = os.environ if environ is None else environ
    dotenv = read_dotenv() if dotenv is None else dotenv
    types = _field_types(settings_cls)

    def from_env(field: dataclasses.Field) -> tuple[bool, Any]:
        name = env_name(settings_cls, field)
        for source in (environ, dotenv):
            if name in source:
                try:
                    return True, parse_value(source[name], types[field.name])
                except ValueError as error:
                    raise SystemExit(f"{name}: {error}") from None
        return False, None

    values: dict[str, Any] = {}
    fields = {f.name: f for f in dataclasses.fields(settings_cls)}
    for name, field in fields.items():
        if name in cli_values:
            values[name] = cli_values[name]
            continue
        found, value = from_env(field)
        if found:
            values[name] = value

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
