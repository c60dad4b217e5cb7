import argparse
from dataclasses import dataclass
from pathlib import Path
from typing import ClassVar

import pytest

from pipesql import cli
from pipesql.config.settings import add_arguments, env_name, option, read_dotenv, resolve


@dataclass
class Settings:
    stage: ClassVar[str] = "demo"
    PRESETS: ClassVar[dict] = {"big": {"learning_rate": 5e-5, "load_in_4bit": True}}
    target: str | None = option(None, "what to fetch", positional=True)
    preset: str | None = option(None, "preset", choices=["big"])
    learning_rate: float = option(2e-4, "peak learning rate")
    load_in_4bit: bool = option(False, "quantize")
    db_dir: list[Path] = option([], "database folders")
    limit: int | None = option(None, "items")


def build(argv, environ=None, dotenv=None):
    parser = argparse.ArgumentParser()
    add_arguments(parser, Settings)
    return resolve(Settings, vars(parser.parse_args(argv)), environ=environ or {}, dotenv=dotenv or {})


def test_defaults():
    assert build([]) == Settings()


def test_precedence_cli_over_env_over_dotenv_over_preset_over_default():
    env_key = env_name(Settings, next(f for f in Settings.__dataclass_fields__.values() if f.name == "learning_rate"))
    assert env_key == "PIPESQL_DEMO_LEARNING_RATE"
    assert build(["--preset", "big"]).learning_rate == 5e-5
    assert build(["--preset", "big"], dotenv={env_key: "4e-5"}).learning_rate == 4e-5
    assert build(["--preset", "big"], environ={env_key: "3e-5"}, dotenv={env_key: "4e-5"}).learning_rate == 3e-5
    assert build(["--preset", "big", "--learning-rate", "1e-3"], environ={env_key: "3e-5"}).learning_rate == 1e-3


def test_types_from_flags_and_env():
    settings = build(["spider", "--db-dir", "a", "--db-dir", "b", "--no-load-in-4bit"], environ={"PIPESQL_DEMO_LIMIT": "5"})
    assert settings.target == "spider"
    assert settings.db_dir == [Path("a"), Path("b")]
    assert settings.load_in_4bit is False and settings.limit == 5
    assert build([], environ={"PIPESQL_DEMO_DB_DIR": "x, y", "PIPESQL_DEMO_LOAD_IN_4BIT": "true"}).db_dir == [Path("x"), Path("y")]


def test_bad_env_value_names_the_variable():
    with pytest.raises(SystemExit, match="PIPESQL_DEMO_LIMIT"):
        build([], environ={"PIPESQL_DEMO_LIMIT": "many"})


def test_unknown_preset_is_refused():
    with pytest.raises(SystemExit, match="unknown preset"):
        build([], environ={"PIPESQL_DEMO_PRESET": "huge"})


def test_dotenv_parsing(tmp_path):
    path = tmp_path / ".env"
    path.write_text("# comment\n\nexport A=1\nB='two words'\nC=\"x\"\n")
    assert read_dotenv(path) == {"A": "1", "B": "two words", "C": "x"}
    path.write_text("NOT A PAIR\n")
    with pytest.raises(ValueError, match=":1:"):
        read_dotenv(path)


def test_every_command_module_exposes_settings_and_run():
    for name in cli.COMMANDS:
        module = cli.load_command(name)
        assert hasattr(module, "Settings") and callable(module.run), name
        assert module.Settings.stage, name
        cli.command_parser(name, module.Settings)  # flags derive without clashes


def test_top_level_help_lists_one_command_per_line(capsys):
    with pytest.raises(SystemExit):
        cli.main(["--help"])
    lines = capsys.readouterr().out.splitlines()
    for name, (_, description) in cli.COMMANDS.items():
        assert any(line.split()[:1] == [name] and line.rstrip().endswith(description) for line in lines), name
    assert not any(".;" in line for line in lines)


def test_help_shows_defaults_as_typed_and_one_flag_per_boolean(capsys):
    @dataclass
    class Shown:
        stage: ClassVar[str] = "demo"
        out: Path = option(Path("runs/x"), "where")
        quantize: bool = option(False, "quantize", aliases=["--no-quant"])
        names: list[str] = option(["a", "b"], "names")

    parser = argparse.ArgumentParser()
    add_arguments(parser, Shown)
    text = " ".join(parser.format_help().split())
    assert "default runs/x]" in text and "PosixPath" not in text
    assert "default a,b]" in text
    assert "--no-quant " not in text and "--no-quant]" not in text and "--quantize | --no-quantize" in text
    assert parser.parse_args(["--no-quant"]).quantize is False  # still accepted
