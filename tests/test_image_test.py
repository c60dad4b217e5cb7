"""docker/image_test.py without a container engine: the chain stops at the first failing job with
that job's own message, .env settings are matched against what a job resolved, the compose files
go to the run unchanged, and the build log tells which steps came from the cache."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
spec = importlib.util.spec_from_file_location("image_test", REPO / "docker" / "image_test.py")
image_test = importlib.util.module_from_spec(spec)
sys.modules["image_test"] = image_test
spec.loader.exec_module(image_test)

# A stand-in compose command: `... run --rm -T SERVICE ...` prints and exits as the service named
# in FAIL says, the way podman-compose passes a container's exit code through.
FAKE_COMPOSE = """#!/bin/sh
while [ "$1" != run ]; do shift; done
shift 3
while [ "${1#-}" != "$1" ]; do shift 2; done
echo "$1: starting"
if [ "$1" = "$FAIL" ]; then
    echo "/recipes/bad.yaml: tool_ration: unknown setting of pipesql generate (see \\`pipesql generate --help\\`)" >&2
    echo "time=x level=warning msg=\\"failed to connect to syslog\\"" >&2
    echo "a closing note on stdout, not the reason"
    exit 2
fi
"""


@pytest.fixture
def project(tmp_path, monkeypatch):
    program = tmp_path / "compose"
    program.write_text(FAKE_COMPOSE)
    program.chmod(0o755)
    engine = image_test.Engine("podman", (str(program),), {"PATH": "/usr/bin:/bin", "FAIL": "generate"})
    return image_test.Project(engine, tmp_path, "t", ("compose.yaml",), engine.env)


def test_a_failing_job_stops_the_chain_with_its_own_message(project, tmp_path):
    jobs = image_test.chain(tmp_path)
    with pytest.raises(image_test.JobFailed) as failure:
        image_test.run_chain(project, jobs)
    assert failure.value.service == "generate" and failure.value.returncode == 2
    assert failure.value.message.startswith("/recipes/bad.yaml: tool_ration: unknown setting of pipesql generate")
    assert str(failure.value).startswith("generate failed (exit 2): /recipes/bad.yaml: tool_ration")
    assert project.ran == ["fetch", "validate", "generate"]  # train-1.5b and the rest never started


def test_a_chain_of_good_jobs_runs_them_all_in_order(project, tmp_path):
    project.env["FAIL"] = "none"
    checked = []
    image_test.run_chain(project, image_test.chain(tmp_path), after_each=lambda job: checked.append(job.service))
    assert project.ran == checked == ["fetch", "validate", "generate", "train-1.5b", "merge", "evaluate", "smoke"]


def test_each_job_reads_the_spider_copy_read_only_and_writes_only_volumes(tmp_path):
    jobs = {job.service: job for job in image_test.chain(tmp_path)}
    assert jobs["fetch"].run_options == ("-v", f"{tmp_path}:/import/spider:ro")
    assert jobs["fetch"].args == ("spider", "--from", "/import/spider")
    assert all(job.writes.startswith(("/data/", "/workspace/")) for job in jobs.values())


def test_dotenv_settings_are_the_stage_fields_as_yaml_reads_them():
    dotenv = {"PIPESQL_TRAIN_MAX_STEPS": "40", "PIPESQL_TRAIN_LEARNING_RATE": "0.01",
              "PIPESQL_TRAIN_GRADIENT_CHECKPOINTING": "false", "PIPESQL_TRAIN_MODEL_NAME": "tiny",
              "PIPESQL_MERGE_DTYPE": "float32", "OMP_NUM_THREADS": "1"}
    assert image_test.dotenv_settings("TRAIN", dotenv) == {
        "max_steps": 40, "learning_rate": 0.01, "gradient_checkpointing": False, "model_name": "tiny"}
    assert image_test.dotenv_settings("MERGE", dotenv) == {"dtype": "float32"}


def test_every_dotenv_setting_names_a_field_of_its_stage():
    from pipesql.cli import load_command
    from pipesql.config.settings import env_name

    known = {env_name(load_command(c).Settings, f) for c in ("validate", "generate", "train", "merge", "evaluate", "pipeline")
             for f in __import__("dataclasses").fields(load_command(c).Settings)}
    assert {name for name in image_test.DOTENV if name.startswith("PIPESQL_")} <= known


def test_the_run_gets_the_compose_files_unchanged_and_the_dotenv(tmp_path):
    image_test.write_project(tmp_path, image_test.COMPOSE_FILES, {"A": "1", "B": "x y"})
    for name in image_test.COMPOSE_FILES:
        assert (tmp_path / name).read_bytes() == (REPO / name).read_bytes()
    assert (tmp_path / ".env").read_text() == "A=1\nB=x y\n"


BUILD_LOG = """\
STEP 9/27: COPY locks/torch-${FLAVOR}.in ./locks/
--> Using cache 6f70748171e
--> 6f70748171e
STEP 10/27: RUN pip install torch
--> Using cache 1a2b3c
STEP 17/27: COPY pipesql ./pipesql
--> 9d8e7f
STEP 18/27: RUN pip install --no-deps .
Successfully installed pipesql
--> 0a1b2c
"""


def test_build_steps_tell_which_came_from_the_cache():
    assert image_test.build_steps(BUILD_LOG) == [
        ("COPY locks/torch-${FLAVOR}.in ./locks/", True), ("RUN pip install torch", True),
        ("COPY pipesql ./pipesql", False), ("RUN pip install --no-deps .", False)]


def test_the_cluster_step_is_opt_in_and_types_what_docs_scale_shows(project):
    assert image_test.parse_options([]).cluster is False  # CI's run: no cluster
    assert image_test.parse_options(["--cluster"]).cluster is True
    commands = image_test.cluster_commands(project)
    compose = [*project.engine.compose, "-p", "t", "-f", "compose.yaml"]
    assert commands["up"] == [*compose, "--profile", "cluster", "up", "-d", "ray-head", "ray-worker"]
    assert commands["down"] == [*compose, "--profile", "cluster", "down"]
    assert commands["validate"] == [*compose, "run", "--rm", "-T", "-e", "PIPESQL_VALIDATE_ENGINE=ray",
                                    "-e", "PIPESQL_VALIDATE_OUT=/workspace/validate-ray",
                                    "-e", "RAY_ADDRESS=ray-head:6379", "validate"]
    # The ray run's own folder, next to the chain's validate, whose pairs it is compared with.
    assert image_test.RAY_VALIDATE["PIPESQL_VALIDATE_OUT"] != image_test.chain(Path("/s"))[1].writes


def test_every_ray_validate_setting_names_a_field_of_validate():
    from pipesql.cli import load_command
    from pipesql.config.settings import env_name

    fields = {env_name(load_command("validate").Settings, f) for f in __import__("dataclasses").fields(load_command("validate").Settings)}
    assert {name for name in image_test.RAY_VALIDATE if name.startswith("PIPESQL_")} <= fields
