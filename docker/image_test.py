"""`make image-test`: build the image and run every compose job as a container, as a user would.

    python docker/image_test.py [--engine podman|docker] [--base debian|cuda] [--gpus]

1. Tools (podman engine): installs what is missing, podman, buildah, runc, uidmap, mmdebstrap and
   containernetworking-plugins from the machine's apt, podman-compose from PyPI into a tool
   environment; podman is configured for this kind of machine (docs/containers.md, "CI").
2. Base: `--base debian` makes a Debian bookworm base with mmdebstrap from the machine's own apt
   sources, once per machine (the image tag is a hash of what it is made from); `--base cuda`
   builds on docker/Dockerfile's CUDA 12.6 default.
3. Build: `compose build`, as a user types it (compose.yaml, plus compose.cpu.yaml without
   --gpus), timed; then a copy of the tree with one .py file changed is built, timed, and must
   reuse every layer before the code.
4. The chain: fetch (Spider from a read-only bind mount), validate, generate, train-1.5b, merge,
   evaluate, smoke; each a `compose run --rm -T` container of its own reading what the one
   before wrote in the named volumes, with the small settings in `.env`. After each job: its exit
   code, the files it wrote, that the `.env` settings are the ones it resolved inside the
   container (its recipe.yaml), and that the image's non-root user owns every file it wrote.
5. A job that fails stops the chain with that job's own message (a recipe with a misspelt key).
6. Resume: a second train-1.5b container is killed (`kill`) once it has saved a checkpoint; the
   next `compose run --rm train-1.5b` resumes from it and ends with the same adapter, tensor for
   tensor, as the uninterrupted run.
7. `--cluster` (not in CI's run): the compose `cluster` profile, ray-head and one ray-worker, is
   brought up; validate runs again with `--engine ray` through RAY_ADDRESS, and its sorted
   golden_pairs.jsonl must equal the chain's (local engine); the cluster is taken down.

compose.yaml and compose.cpu.yaml are used as they are: copied, byte for byte, beside the run's
`.env` into a folder outside the repository, so a `.env` of the checkout is neither read nor
overwritten. Everything the jobs write is in the run's named volumes, removed at the end (--keep
keeps them); the working tree is left as it was found, which is checked.
"""

from __future__ import annotations

import argparse
import dataclasses
import fcntl
import hashlib
import json
import os
import re
import shlex
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parents[1]
COMPOSE_FILES = ("compose.yaml", "compose.cpu.yaml")
APT_PACKAGES = ("podman", "buildah", "runc", "uidmap", "mmdebstrap", "containernetworking-plugins")
PODMAN_COMPOSE = "podman-compose==1.6.0"
# The Debian base: what mmdebstrap is given. Its tag is a hash of this and of the apt sources.
BASE_SUITE, BASE_VARIANT, BASE_INCLUDE = "bookworm", "minbase", ()
IMAGE_USER = (1000, 1000)  # docker/Dockerfile's USER_UID / USER_GID defaults
# Held while building: a build that installs torch and the lock takes several GB (shared machine).
HEAVY_LOCK = Path(os.environ.get("PIPESQL_HEAVY_LOCK", "/tmp/pipesql-heavy.lock"))
# Lines of the engine, not of the job: left out of a failed job's message.
ENGINE_NOISE = re.compile(r"failed to connect to syslog|^\s*$|^(podman|docker) |^exit code: ")

# The small run, as a user puts it in .env: every job stays small and quick on 2 CPU cores.
# OMP_NUM_THREADS=1: one thread per job, so that a resumed run adds its numbers in the same order
# as the uninterrupted one (and two threads fighting over two busy cores are no faster).
DOTENV = {
    "OMP_NUM_THREADS": "1",
    "PIPESQL_VALIDATE_LIMIT": "48",
    "PIPESQL_VALIDATE_WORKERS": "1",
    "PIPESQL_VALIDATE_PROGRESS": "false",
    "PIPESQL_GENERATE_DEV_FRACTION": "0.2",
    "PIPESQL_GENERATE_WORKERS": "1",
    "PIPESQL_GENERATE_PROGRESS": "false",
    "PIPESQL_TRAIN_MODEL_NAME": "tiny",
    "PIPESQL_TRAIN_MAX_STEPS": "40",
    "PIPESQL_TRAIN_PER_DEVICE_TRAIN_BATCH_SIZE": "4",
    "PIPESQL_TRAIN_GRADIENT_ACCUMULATION_STEPS": "1",
    "PIPESQL_TRAIN_LEARNING_RATE": "0.01",
    "PIPESQL_TRAIN_SAVE_STEPS": "5",
    "PIPESQL_TRAIN_EVAL_STEPS": "20",
    "PIPESQL_TRAIN_MAX_SEQ_LENGTH": "1024",
    "PIPESQL_TRAIN_GRADIENT_CHECKPOINTING": "false",
    "PIPESQL_TRAIN_REPORT_TO": "none",
    "PIPESQL_MERGE_DTYPE": "float32",
    "PIPESQL_EVALUATE_LIMIT": "4",
    "PIPESQL_EVALUATE_MAX_NEW_TOKENS": "24",
    "PIPESQL_PIPELINE_MODEL": "tiny",
    "PIPESQL_PIPELINE_MAX_STEPS": "2",
    "PIPESQL_PIPELINE_LIMIT": "20",
    "PIPESQL_PIPELINE_EVAL_LIMIT": "2",
    "PIPESQL_PIPELINE_DEV_STEPS": "2",
    "PIPESQL_PIPELINE_MAX_SEQ_LENGTH": "4096",  # the tiny model's context; its tokenizer spends more tokens
    "PIPESQL_PIPELINE_THREADS": "1",
}


@dataclasses.dataclass(frozen=True)
class Job:
    """One `compose run --rm -T SERVICE ARGS` of the chain and what it must leave behind."""

    service: str
    stage: str  # the PIPESQL_<STAGE>_ prefix of its settings in .env
    writes: str  # the folder it writes, in the container
    files: tuple[str, ...]  # that must be there afterwards, relative to `writes`
    recipe: str | None = "recipe.yaml"  # the settings it resolved, relative to `writes`
    args: tuple[str, ...] = ()
    run_options: tuple[str, ...] = ()


def chain(spider: Path) -> list[Job]:
    return [
        Job("fetch", "FETCH", "/data/spider", ("manifest.json", "tables.json", "train_spider.json", "dev.json",
                                               "database/concert_singer/concert_singer.sqlite"),
            recipe=None, args=("spider", "--from", "/import/spider"),
            run_options=("-v", f"{spider}:/import/spider:ro")),
        Job("validate", "VALIDATE", "/workspace/validate", ("golden_pairs.jsonl", "manifest.json")),
        Job("generate", "GENERATE", "/workspace/generate", ("train.jsonl", "dev.jsonl", "manifest.json")),
        Job("train-1.5b", "TRAIN", "/workspace/train-1.5b",
            ("final/adapter_model.safetensors", "summary.json", "manifest.json")),
        Job("merge", "MERGE", "/workspace/train-1.5b/merged", ("config.json", "model.safetensors")),
        Job("evaluate", "EVALUATE", "/workspace/evaluate-1.5b-oneshot", ("manifest.json",)),
        Job("smoke", "PIPELINE", "/workspace/smoke", ("pipeline_summary.json", "manifest.json")),
    ]


class JobFailed(Exception):
    def __init__(self, service: str, returncode: int, message: str):
        super().__init__(f"{service} failed (exit {returncode}): {message}")
        self.service, self.returncode, self.message = service, returncode, message


class CheckFailed(AssertionError):
    pass


def check(condition: bool, message: str) -> None:
    if not condition:
        raise CheckFailed(message)


# ---------------------------------------------------------------------------------------------
# Engine: tools, configuration, compose command


@dataclasses.dataclass(frozen=True)
class Engine:
    name: str  # podman or docker
    compose: tuple[str, ...]  # the compose command, before its arguments
    env: dict[str, str]  # environment of every engine and compose command

    def run(self, *args: str, check_rc: bool = True, capture: bool = True) -> subprocess.CompletedProcess:
        return subprocess.run([self.name, *args], env=self.env, check=check_rc, text=True, stdin=subprocess.DEVNULL,
                              capture_output=capture)


def apt_install_missing() -> None:
    missing = [p for p in APT_PACKAGES if subprocess.run(["dpkg", "-s", p], capture_output=True).returncode != 0]
    if not missing:
        return
    install = ["apt-get", "install", "-y", "--no-install-recommends", "-o", "DPkg::Lock::Timeout=600", *missing]
    print(f"+ {' '.join(install)}", flush=True)
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    if subprocess.run(install, env=env, stdin=subprocess.DEVNULL).returncode != 0:
        subprocess.run(["apt-get", "update", "-o", "DPkg::Lock::Timeout=600"], env=env, check=True, stdin=subprocess.DEVNULL)
        subprocess.run(install, env=env, check=True, stdin=subprocess.DEVNULL)


def podman_compose(state: Path) -> Path:
    """podman-compose in a tool environment of its own (not the project's: it is not a dependency
    of pipesql), made once per version."""
    venv = state / f"tools-{PODMAN_COMPOSE.replace('==', '-')}"
    program = venv / "bin" / "podman-compose"
    if not program.is_file():
        subprocess.run([sys.executable, "-m", "venv", "--clear", str(venv)], check=True)
        subprocess.run([str(venv / "bin" / "pip"), "install", "-q", PODMAN_COMPOSE], check=True, stdin=subprocess.DEVNULL)
    return program


def podman_config(state: Path) -> dict[str, str]:
    """containers.conf and storage.conf for this kind of machine: runc and cgroupfs (crun refuses
    hybrid cgroups), the open-files limit the machine allows, file events; storage in `state`."""
    hard_nofile = subprocess.run(["sh", "-c", "ulimit -Hn"], capture_output=True, text=True, check=True).stdout.strip()
    containers_conf = state / "containers.conf"
    containers_conf.write_text(
        "[containers]\n"
        'log_driver = "k8s-file"\n'
        f'default_ulimits = ["nofile={hard_nofile}:{hard_nofile}", "nproc=32768:32768"]\n'
        "[engine]\n"
        'runtime = "runc"\n'
        'cgroup_manager = "cgroupfs"\n'
        'events_logger = "file"\n')
    # runroot: on tmpfs (gone at each boot, as podman expects), one per state folder.
    runroot = Path("/run/pipesql-image-test") / hashlib.sha256(str(state.resolve()).encode()).hexdigest()[:12]
    runroot.mkdir(parents=True, exist_ok=True)
    storage_conf = state / "storage.conf"
    storage_conf.write_text(
        "[storage]\n"
        'driver = "overlay"\n'
        f'graphroot = "{state / "storage"}"\n'
        f'runroot = "{runroot}"\n')
    # BUILDAH_FORMAT=docker: the OCI format has no SHELL, and the Dockerfile's `pipefail` is in it.
    return {"CONTAINERS_CONF": str(containers_conf), "CONTAINERS_STORAGE_CONF": str(storage_conf),
            "BUILDAH_FORMAT": "docker"}


def make_engine(name: str, state: Path) -> Engine:
    if name == "docker":
        return Engine("docker", ("docker", "compose"), dict(os.environ))
    apt_install_missing()
    tools = podman_compose(state).parent
    path = f"{tools}{os.pathsep}{os.environ.get('PATH', '')}"
    return Engine("podman", ("podman-compose",), {**os.environ, **podman_config(state), "PATH": path})


# ---------------------------------------------------------------------------------------------
# The Debian base (no registry needed)


def apt_sources() -> Path:
    """The Debian sources the machine's apt already uses."""
    for candidate in (Path("/etc/apt/sources.list.d/debian.sources"), Path("/etc/apt/sources.list")):
        if candidate.is_file() and candidate.read_text().strip():
            return candidate
    raise SystemExit("no Debian apt sources on this machine (/etc/apt/sources.list.d/debian.sources or /etc/apt/sources.list)")


def debian_base(engine: Engine, state: Path) -> str:
    """localhost/pipesql-base:bookworm-<hash of suite, variant, packages and sources>, made once."""
    sources = apt_sources()
    recipe = json.dumps([BASE_SUITE, BASE_VARIANT, sorted(BASE_INCLUDE), sources.read_text()])
    tag = f"localhost/pipesql-base:{BASE_SUITE}-{hashlib.sha256(recipe.encode()).hexdigest()[:12]}"
    if engine.run("image", "inspect", tag, check_rc=False).returncode == 0:
        print(f"base {tag}: made before", flush=True)
        return tag
    started = time.monotonic()
    with tempfile.TemporaryDirectory(dir=state) as scratch:
        rootfs = Path(scratch) / "rootfs.tar"
        command = ["mmdebstrap", f"--variant={BASE_VARIANT}", "--quiet",
                   *([f"--include={','.join(BASE_INCLUDE)}"] if BASE_INCLUDE else []),
                   BASE_SUITE, str(rootfs), str(sources)]
        print(f"+ {' '.join(command)}", flush=True)
        subprocess.run(command, check=True, stdin=subprocess.DEVNULL)
        engine.run("import", str(rootfs), tag)
    print(f"base {tag}: made in {time.monotonic() - started:.0f} s", flush=True)
    return tag


# ---------------------------------------------------------------------------------------------
# Build


def stage_wheels(root: Path) -> list[Path]:
    """The torch wheels of pip's find-links folder (PIP_FIND_LINKS) into docker/wheels/, which the
    build mounts at /wheels (ignored by git; hard links where the file system allows)."""
    folder = os.environ.get("PIP_FIND_LINKS", "")
    staged = []
    for wheel in sorted(Path(folder).glob("torch-*.whl")) if folder and Path(folder).is_dir() else []:
        target = root / "docker" / "wheels" / wheel.name
        if not target.exists():
            try:
                os.link(wheel, target)
            except OSError:
                shutil.copyfile(wheel, target)
        staged.append(target)
    return staged


def compose_command(engine: Engine, files: tuple[str, ...], project: str, *args: str) -> list[str]:
    """The compose command as a user types it in the folder of its files."""
    command = [*engine.compose, "-p", project]
    for name in files:
        command += ["-f", name]
    return command + list(args)


def build(engine: Engine, root: Path, compose_files: tuple[str, ...], env: dict[str, str]) -> tuple[float, str]:
    """`compose build` in `root` (the build context); its seconds and its output."""
    command = compose_command(engine, compose_files, "pipesql-image-test", "build", "smoke")
    print(f"+ (in {root}) {shlex.join(command)}", flush=True)
    started = time.monotonic()
    with HEAVY_LOCK.open("a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        process = subprocess.Popen(command, cwd=root, env=env, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                                   stderr=subprocess.STDOUT, text=True)
        output = []
        for line in process.stdout:
            sys.stdout.write(line)
            output.append(line)
        returncode = process.wait()
    seconds = time.monotonic() - started
    print(f"compose build: exit {returncode} in {seconds:.0f} s", flush=True)
    check(returncode == 0, f"compose build failed (exit {returncode})")
    return seconds, "".join(output)


def build_steps(output: str) -> list[tuple[str, bool]]:
    """(instruction, reused from the cache) for each step of a buildah build log."""
    steps: list[tuple[str, bool]] = []
    for line in output.splitlines():
        match = re.match(r"STEP \d+/\d+: (.*)", line)
        if match:
            steps.append((match.group(1), False))
        elif line.startswith("--> Using cache") and steps:
            steps[-1] = (steps[-1][0], True)
    return steps


def rebuild_after_code_change(engine: Engine, compose_files: tuple[str, ...], env: dict[str, str]) -> float:
    """Build a copy of the tree with one .py file changed; every step before the code must come
    from the cache, and the build is timed."""
    tracked = subprocess.run(["git", "ls-files", "-z"], cwd=REPO, capture_output=True, check=True).stdout.split(b"\0")
    with tempfile.TemporaryDirectory(prefix="pipesql-rebuild-") as scratch:
        copy = Path(scratch)
        for name in filter(None, (t.decode() for t in tracked)):
            if (REPO / name).is_file():
                (copy / name).parent.mkdir(parents=True, exist_ok=True)
                shutil.copy2(REPO / name, copy / name)
        stage_wheels(copy)
        changed = copy / "pipesql" / "cli.py"
        changed.write_text(changed.read_text() + "\n# changed by docker/image_test.py: the code-change rebuild\n")
        image = env["IMAGE"] + "-rebuild"
        seconds, output = build(engine, copy, compose_files, {**env, "IMAGE": image})
    engine.run("rmi", image, check_rc=False)
    if engine.name == "podman":
        steps = build_steps(output)
        code = next(i for i, (instruction, _) in enumerate(steps) if instruction.startswith("COPY pipesql"))
        rebuilt = [instruction for instruction, cached in steps[:code] if not cached and not instruction.startswith("FROM ")]
        check(not rebuilt, f"a change to pipesql/ rebuilt steps before the code: {rebuilt}")
        check(not steps[code][1], "the changed code was taken from the cache")
    print(f"rebuild after changing pipesql/cli.py: {seconds:.0f} s", flush=True)
    return seconds


# ---------------------------------------------------------------------------------------------
# Jobs


@dataclasses.dataclass
class Project:
    """A compose project: the compose files (copied beside its .env), its name, and its engine."""

    engine: Engine
    folder: Path
    name: str
    compose_files: tuple[str, ...]
    env: dict[str, str]
    ran: list[str] = dataclasses.field(default_factory=list)  # services started, in order

    def command(self, *args: str) -> list[str]:
        return compose_command(self.engine, self.compose_files, self.name, *args)

    def run(self, service: str, *args: str, options: tuple[str, ...] = ()) -> list[str]:
        return self.command("run", "--rm", "-T", *options, service, *args)


def write_project(folder: Path, compose_files: tuple[str, ...], dotenv: dict[str, str]) -> None:
    for name in compose_files:
        shutil.copyfile(REPO / name, folder / name)
        check((folder / name).read_bytes() == (REPO / name).read_bytes(), f"{name} copied unchanged")
    (folder / ".env").write_text("".join(f"{key}={value}\n" for key, value in dotenv.items()))


def stream(pipe, into: list[str], echo) -> None:
    for line in pipe:
        echo.write(line)
        into.append(line.rstrip().rsplit("\r", 1)[-1])  # a progress bar's last state
    echo.flush()


def run_job(project: Project, command: list[str], service: str) -> None:
    """Run one job, its output streamed. If it fails: JobFailed with the job's own last words,
    the last line of its stderr (where pipesql writes why it stopped) that the engine did not add."""
    print(f"+ {shlex.join(command)}", flush=True)
    project.ran.append(service)
    process = subprocess.Popen(command, cwd=project.folder, env=project.env, stdin=subprocess.DEVNULL,
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    out: list[str] = []
    err: list[str] = []
    reader = threading.Thread(target=stream, args=(process.stdout, out, sys.stdout))
    reader.start()
    stream(process.stderr, err, sys.stderr)
    reader.join()
    returncode = process.wait()
    if returncode != 0:
        said = [line for line in err if not ENGINE_NOISE.search(line)] or [line for line in out if not ENGINE_NOISE.search(line)]
        raise JobFailed(service, returncode, said[-1] if said else "(no output)")


def run_chain(project: Project, jobs: list[Job], after_each=None) -> None:
    """Each job in its own container, in order; the first failure stops the chain."""
    for job in jobs:
        started = time.monotonic()
        run_job(project, project.run(job.service, *job.args, options=job.run_options), job.service)
        print(f"{job.service}: exit 0 in {time.monotonic() - started:.0f} s", flush=True)
        if after_each is not None:
            after_each(job)


# What a job left: run in the image itself (it has Python and PyYAML), so the check sees what the
# next container sees, with the owner of every file.
PROBE = r"""
import json, os, sys, yaml
root, recipe = sys.argv[1], sys.argv[2]
files = {}
for folder, dirs, names in os.walk(root):
    for name in dirs + names:
        path = os.path.join(folder, name)
        status = os.lstat(path)
        files[os.path.relpath(path, root)] = [status.st_uid, status.st_gid]
settings = None
if recipe and os.path.isfile(os.path.join(root, recipe)):
    with open(os.path.join(root, recipe)) as handle:
        settings = yaml.safe_load(handle)
print("PROBE " + json.dumps({"files": files, "settings": settings, "uid": os.getuid()}))
"""


def probe_script(project: Project, service: str, script: str, *args: str) -> dict:
    """Run `script` with the image's Python in a container of `service`; the dict it printed."""
    command = project.command("run", "--rm", "-T", "--entrypoint", "python", service, "-c", script, *args)
    result = subprocess.run(command, cwd=project.folder, env=project.env, stdin=subprocess.DEVNULL,
                            capture_output=True, text=True)
    line = next((line for line in result.stdout.splitlines() if line.startswith("PROBE ")), None)
    check(result.returncode == 0 and line is not None, f"probe {args} failed: {result.stdout[-800:]}{result.stderr[-800:]}")
    return json.loads(line[len("PROBE "):])


def probe(project: Project, service: str, folder: str, recipe: str | None = None) -> dict:
    return probe_script(project, service, PROBE, folder, recipe or "")


def dotenv_settings(stage: str, dotenv: dict[str, str]) -> dict[str, object]:
    """The settings fields that .env sets for a stage, with their values as YAML reads them."""
    prefix = f"PIPESQL_{stage}_"
    return {name[len(prefix):].lower(): yaml.safe_load(value) for name, value in dotenv.items() if name.startswith(prefix)}


def check_job(project: Project, job: Job, dotenv: dict[str, str]) -> None:
    """Files written, .env settings in effect inside the container, the non-root user owns them."""
    found = probe(project, job.service, job.writes, job.recipe)
    files = found["files"]
    check(found["uid"] == IMAGE_USER[0], f"{job.service} runs as uid {found['uid']}, not the image user {IMAGE_USER[0]}")
    missing = [name for name in job.files if name not in files]
    check(not missing, f"{job.service} did not write {missing} in {job.writes} (it wrote {sorted(files)[:20]})")
    foreign = {name: owner for name, owner in files.items() if tuple(owner) != IMAGE_USER}
    check(not foreign, f"{job.service}: files in {job.writes} not owned by {IMAGE_USER}: {dict(list(foreign.items())[:10])}")
    wanted = dotenv_settings(job.stage, dotenv)
    if job.recipe is not None:
        settings = found["settings"]
        check(settings is not None, f"{job.service} wrote no {job.recipe} in {job.writes}")
        differ = {name: (value, settings.get(name, "(absent)")) for name, value in wanted.items() if settings.get(name) != value}
        check(not differ, f"{job.service}: .env settings not in effect in the container (wanted, resolved): {differ}")
    print(f"{job.service}: wrote {len(files)} files in {job.writes}, all owned by uid {IMAGE_USER[0]}"
          + (f"; .env in effect: {wanted}" if wanted and job.recipe else ""), flush=True)


# ---------------------------------------------------------------------------------------------
# A failing job, and resume after a kill


BAD_RECIPE = "stage: generate\ntool_ration: 0.5\n"  # tool_ratio, misspelt


def check_failing_job_stops_the_chain(project: Project, jobs: list[Job]) -> None:
    """generate with a recipe that names no setting: the chain stops there, with generate's message."""
    recipe = project.folder / "bad-recipe.yaml"
    recipe.write_text(BAD_RECIPE)
    generate = next(job for job in jobs if job.service == "generate")
    bad = dataclasses.replace(generate, run_options=("-v", f"{recipe}:/recipes/bad.yaml:ro",
                                                     "-e", "PIPESQL_GENERATE_CONFIG=/recipes/bad.yaml"))
    after = next(job for job in jobs if job.service == "train-1.5b")
    project.ran.clear()
    try:
        run_chain(project, [bad, after])
    except JobFailed as failure:
        print(f"chain stopped: {failure}", flush=True)
        check(failure.service == "generate" and failure.returncode != 0, f"the wrong job failed: {failure}")
        check("/recipes/bad.yaml: tool_ration: unknown setting of pipesql generate" in failure.message,
              f"generate's own message is not the chain's: {failure.message!r}")
        check(project.ran == ["generate"], f"the chain went on after the failure: {project.ran}")
        return
    raise CheckFailed("generate with a misspelt recipe key succeeded")


def check_resume_after_kill(project: Project, reference: str) -> None:
    """A second train-1.5b, killed once it has a checkpoint, resumes to the reference's adapter."""
    output_dir = "/workspace/train-1.5b-resume"
    name = f"{project.name}-train-1.5b-kill"
    command = project.run("train-1.5b", "--output-dir", output_dir, options=("--name", name))
    print(f"+ {shlex.join(command)}", flush=True)
    process = subprocess.Popen(command, cwd=project.folder, env=project.env, stdin=subprocess.DEVNULL,
                               stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    killed_at = None
    deadline = time.monotonic() + 1800
    while process.poll() is None and time.monotonic() < deadline:
        listing = project.engine.run("exec", name, "ls", output_dir, check_rc=False)
        checkpoints = [n for n in listing.stdout.split() if re.fullmatch(r"checkpoint-\d+", n)]
        if checkpoints:
            check("final" not in listing.stdout.split(), "the run ended before it could be killed")
            project.engine.run("kill", name)
            killed_at = checkpoints
            break
        time.sleep(0.5)
    output = process.communicate()[0]
    print(output[-3000:], flush=True)
    check(killed_at is not None, f"train-1.5b ended (exit {process.returncode}) before a checkpoint was seen")
    check(process.returncode != 0, f"the killed train-1.5b exited {process.returncode}")
    print(f"killed train-1.5b with {killed_at} saved (exit {process.returncode})", flush=True)
    run_job(project, project.run("train-1.5b", "--output-dir", output_dir), "train-1.5b")
    compare = (
        "import json, sys, torch; from safetensors.torch import load_file\n"
        "a, b = (load_file(p + '/final/adapter_model.safetensors') for p in sys.argv[1:3])\n"
        "summary = json.load(open(sys.argv[2] + '/summary.json'))\n"
        "print('PROBE ' + json.dumps({'same_keys': a.keys() == b.keys(), 'different': [k for k in a if k in b and not torch.equal(a[k], b[k])],"
        " 'resumed_from': summary.get('resumed_from'), 'global_step': summary.get('global_step')}))\n")
    found = probe_script(project, "train-1.5b", compare, reference, output_dir)
    print(f"resumed run: {found}", flush=True)
    # The kill lands a moment after the listing: a checkpoint saved in between is as good.
    resumed = re.fullmatch(r"checkpoint-(\d+)", found["resumed_from"] or "")
    check(resumed is not None and int(resumed.group(1)) >= min(int(name.rsplit("-", 1)[1]) for name in killed_at),
          f"resumed from {found['resumed_from']}, not from the killed run's checkpoints {killed_at}")
    check(found["same_keys"] and not found["different"], f"the resumed adapter differs from the uninterrupted one: {found}")


# ---------------------------------------------------------------------------------------------
# Validate on a Ray cluster of the compose `cluster` profile (--cluster)


RAY_ADDRESS = "ray-head:6379"  # the head's GCS: the job's container joins as a node (jobs/lib/ray.sh)
RAY_CLIENT = "ray://ray-head:10001"  # Ray Client on the head: enough to count its nodes, not for Ray Data
CLUSTER_SERVICES = ("ray-head", "ray-worker")
RAY_VALIDATE = {"PIPESQL_VALIDATE_ENGINE": "ray", "PIPESQL_VALIDATE_OUT": "/workspace/validate-ray",
                "RAY_ADDRESS": RAY_ADDRESS}

# Run in a job's container on the project's network: waits until the head sees `nodes` live nodes.
CLUSTER_NODES = r"""
import json, sys, time, ray
wanted, deadline, error = int(sys.argv[2]), time.monotonic() + float(sys.argv[3]), None
while time.monotonic() < deadline:
    try:
        ray.init(sys.argv[1], logging_level="ERROR")
        nodes = [n for n in ray.nodes() if n["Alive"]]
        if len(nodes) >= wanted:
            print("PROBE " + json.dumps({"nodes": len(nodes), "cpus": ray.cluster_resources().get("CPU")}))
            sys.exit(0)
    except Exception as failure:  # the head is not up yet
        error = repr(failure)
    ray.shutdown()
    time.sleep(2)
print("PROBE " + json.dumps({"nodes": 0, "error": error}))
"""

# Sorted golden pairs of two validate outputs, compared in a job's container.
SAME_PAIRS = r"""
import hashlib, json, sys
pairs = [sorted(open(folder + "/golden_pairs.jsonl").read().splitlines()) for folder in sys.argv[1:3]]
print("PROBE " + json.dumps({"same": pairs[0] == pairs[1], "pairs": [len(p) for p in pairs],
                             "sha256": hashlib.sha256("\n".join(pairs[1]).encode()).hexdigest()[:12]}))
"""


def cluster_commands(project: Project) -> dict[str, list[str]]:
    """The compose command lines of the cluster step, as a user types them (docs/scale.md)."""
    options = tuple(item for name, value in RAY_VALIDATE.items() for item in ("-e", f"{name}={value}"))
    return {"up": project.command("--profile", "cluster", "up", "-d", *CLUSTER_SERVICES),
            "validate": project.run("validate", options=options),
            "down": project.command("--profile", "cluster", "down")}


def project_leftovers(project: Project, kind: str = "container") -> list[str]:
    """Containers (or volumes) of the project still there, running or not."""
    listing = {"container": ("ps", "-a"), "volume": ("volume", "ls")}[kind]
    found = project.engine.run(*listing, "--format", "{{.Name}}" if kind == "volume" else "{{.Names}}",
                               "--filter", f"name={project.name}_", check_rc=False)
    return found.stdout.split()


def check_validate_on_cluster(project: Project, reference: Job) -> None:
    """ray-head and one ray-worker up; validate --engine ray through RAY_ADDRESS writes the same
    sorted golden pairs as the chain's validate (local engine); the cluster is taken down."""
    commands = cluster_commands(project)
    ray_validate = dataclasses.replace(reference, writes=RAY_VALIDATE["PIPESQL_VALIDATE_OUT"])
    # Two Ray nodes and a driver take a few GB: held like a build, on this shared machine.
    with HEAVY_LOCK.open("a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            print(f"+ {shlex.join(commands['up'])}", flush=True)
            subprocess.run(commands["up"], cwd=project.folder, env=project.env, stdin=subprocess.DEVNULL, check=True)
            started = time.monotonic()
            found = probe_script(project, "validate", CLUSTER_NODES, RAY_CLIENT, "2", "300")
            check(found["nodes"] >= 2, f"the Ray cluster did not come up with its worker: {found}")
            print(f"cluster: {found['nodes']} nodes, {found['cpus']} CPUs, up in {time.monotonic() - started:.0f} s", flush=True)
            started = time.monotonic()
            run_job(project, commands["validate"], "validate")
            print(f"validate --engine ray on the cluster: exit 0 in {time.monotonic() - started:.0f} s", flush=True)
            check_job(project, ray_validate, {**DOTENV, **RAY_VALIDATE})
            same = probe_script(project, "validate", SAME_PAIRS, reference.writes, ray_validate.writes)
            check(same["same"] and same["pairs"][0] > 0, f"the cluster's golden pairs differ from the local engine's: {same}")
            print(f"golden_pairs.jsonl, sorted: the same from both engines ({same['pairs'][1]} pairs, sha256 {same['sha256']})",
                  flush=True)
        finally:
            print(f"+ {shlex.join(commands['down'])}", flush=True)
            subprocess.run(commands["down"], cwd=project.folder, env=project.env, stdin=subprocess.DEVNULL)
    left = project_leftovers(project)
    check(not left, f"containers left after the cluster went down: {left}")


# ---------------------------------------------------------------------------------------------
# Main


@dataclasses.dataclass(frozen=True)
class Options:
    engine: str = "podman"
    base: str = "debian"  # debian (CI: a local Debian bookworm base, FLAVOR=cpu) or cuda (the default base)
    gpus: bool = False  # the GPU reservations of compose.yaml stay (no compose.cpu.yaml)
    spider: Path = REPO.parent / "shared" / "data" / "spider"
    state: Path = Path(os.environ.get("PIPESQL_IMAGE_TEST_HOME", "/var/tmp/pipesql-image-test"))
    image: str = "pipesql:image-test"
    project: str = f"pipesql-image-test-{os.getpid()}"  # compose project: its volumes are <project>_<volume>
    keep: bool = False  # keep the run's volumes (and project folder) for later steps
    cluster: bool = False  # also validate on the compose Ray cluster (not in CI's run)


def parse_options(argv: list[str] | None) -> Options:
    defaults = Options()
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--engine", choices=["podman", "docker"], default=defaults.engine)
    parser.add_argument("--base", choices=["debian", "cuda"], default=defaults.base,
                        help="debian: a Debian bookworm base made here, CPU torch (CI); cuda: the Dockerfile's CUDA 12.6 base")
    parser.add_argument("--gpus", action="store_true", help="keep compose.yaml's GPU reservations (a GPU host)")
    parser.add_argument("--spider", type=Path, default=defaults.spider, help="Spider folder, bind-mounted read-only into fetch")
    parser.add_argument("--state", type=Path, default=defaults.state,
                        help="per-machine folder: container storage, the base, tools (PIPESQL_IMAGE_TEST_HOME)")
    parser.add_argument("--image", default=defaults.image)
    parser.add_argument("--project", default=defaults.project, help="compose project name (its volumes: PROJECT_data, ...)")
    parser.add_argument("--keep", action="store_true", help="keep the run's volumes and project folder")
    parser.add_argument("--cluster", action="store_true",
                        help="after the chain, validate again with --engine ray on the compose cluster (ray-head, one ray-worker)")
    return Options(**vars(parser.parse_args(argv)))


def tree_state() -> set[str]:
    """`git status` of the checkout, ignored paths included (a folder as one entry), less Python's
    bytecode caches (running this script may write one)."""
    status = subprocess.run(["git", "status", "--porcelain", "--ignored", "--untracked-files=normal"], cwd=REPO,
                            capture_output=True, text=True, check=True).stdout
    return {line for line in status.splitlines() if not line.rstrip("/").endswith(("__pycache__", ".pyc"))}


def remove_project(project: Project) -> None:
    subprocess.run(project.command("down", "--volumes"), cwd=project.folder, env=project.env, stdin=subprocess.DEVNULL,
                   capture_output=True)
    for volume in ("data", "outputs", "hf-cache", "pipesql-cache"):
        project.engine.run("volume", "rm", "-f", f"{project.name}_{volume}", check_rc=False)


def main(argv: list[str] | None = None) -> int:
    options = parse_options(argv)
    # A stopped CI run still removes its volumes and staged wheels (the finally blocks below).
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    spider = options.spider.resolve()
    if not (spider / "tables.json").is_file():
        raise SystemExit(f"{spider}: no Spider copy (tables.json) to fetch from; give --spider")
    tree_before = tree_state()
    options.state.mkdir(parents=True, exist_ok=True)
    engine = make_engine(options.engine, options.state)
    compose_files = COMPOSE_FILES[:1] if options.gpus else COMPOSE_FILES
    env = {**engine.env, "IMAGE": options.image}
    for name in ("TORCH_LINKS", "CPU_TORCH_LINKS", "CPU_BASE_IMAGE", "COMPOSE_PROFILES", "GPU_COUNT"):
        env.pop(name, None)  # the host's own (e.g. .ci/run's TORCH_LINKS, a folder of this machine)
    staged = []
    # Two builds: the CPU one (Debian base, compose.cpu.yaml) and the user's (CUDA base, GPUs).
    check(options.gpus == (options.base == "cuda"), "--base debian goes without --gpus (compose.cpu.yaml), --base cuda with it")
    if options.base == "debian":
        env["CPU_BASE_IMAGE"] = debian_base(engine, options.state)
        staged = stage_wheels(REPO)
        if staged:
            env["CPU_TORCH_LINKS"] = "/wheels"
    # podman-compose runs a service only when its profile is on (Docker Compose needs none for run).
    profiles = {p for s in yaml.safe_load((REPO / "compose.yaml").read_text())["services"].values() for p in s.get("profiles", [])}
    env["COMPOSE_PROFILES"] = ",".join(sorted(profiles - {"cluster"}))
    timings = {}
    try:
        timings["build"], _ = build(engine, REPO, compose_files, env)
        timings["rebuild, nothing changed"], _ = build(engine, REPO, compose_files, env)
        timings["rebuild, one .py changed"] = rebuild_after_code_change(engine, compose_files, env)
        size = engine.run("image", "inspect", "--format", "{{.Size}}", options.image).stdout.strip()
        print(f"image {options.image}: {int(size) / 1e9:.2f} GB", flush=True)
        # The chain runs a tag of its own: a build of another run on this machine may move IMAGE.
        run_image = options.image if options.keep else f"{options.image}-{options.project}"
        engine.run("tag", options.image, run_image)
        with tempfile.TemporaryDirectory(prefix="pipesql-image-test-", dir=options.state) as scratch:
            project = Project(engine, Path(scratch), options.project, compose_files, {**env, "IMAGE": run_image})
            write_project(project.folder, compose_files, DOTENV)
            started = time.monotonic()
            try:
                jobs = chain(spider)
                run_chain(project, jobs, after_each=lambda job: check_job(project, job, DOTENV))
                timings["chain"] = time.monotonic() - started
                if options.cluster:
                    cluster_started = time.monotonic()
                    check_validate_on_cluster(project, next(job for job in jobs if job.service == "validate"))
                    timings["validate on the cluster"] = time.monotonic() - cluster_started
                check_failing_job_stops_the_chain(project, jobs)
                resume_started = time.monotonic()
                check_resume_after_kill(project, "/workspace/train-1.5b")
                timings["kill and resume"] = time.monotonic() - resume_started
            finally:
                if options.keep:
                    keep = options.state / project.name
                    shutil.copytree(project.folder, keep)
                    print(f"kept: volumes {project.name}_*, project folder {keep}", flush=True)
                else:
                    remove_project(project)
                    engine.run("rmi", run_image, check_rc=False)  # the tag; IMAGE keeps the layers
                    if engine.name == "podman":
                        engine.run("image", "prune", "--force", check_rc=False)  # earlier runs' untagged builds
        if options.cluster and not options.keep:
            left = project_leftovers(project) + project_leftovers(project, "volume")
            check(not left, f"left after the run: {left}")
    except (JobFailed, CheckFailed, subprocess.CalledProcessError) as error:
        print(f"image test FAILED: {error}", file=sys.stderr, flush=True)
        return 1
    finally:
        for wheel in staged:
            wheel.unlink(missing_ok=True)
    tree_after = tree_state()
    if tree_after != tree_before:
        changes = [f"now {line}" for line in sorted(tree_after - tree_before)] + [f"gone {line}" for line in sorted(tree_before - tree_after)]
        print("image test FAILED: the working tree changed:\n" + "\n".join(changes), file=sys.stderr)
        return 1
    print("image test passed: " + ", ".join(f"{name} {seconds:.0f} s" for name, seconds in timings.items()), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
