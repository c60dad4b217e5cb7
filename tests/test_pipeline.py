"""pipesql pipeline: the main job, end to end on the demo corpus with the tiny model, run the way
the compose `smoke` service runs it (jobs/smoke.sh)."""

import json
import os
import subprocess
import sys
import types
from dataclasses import dataclass
from pathlib import Path
from typing import ClassVar

import pytest

from pipesql import pipeline
from pipesql.pipeline import cpu, report as pipeline_report, stages as pipeline_stages
from pipesql.storage.manifest import verify_manifest, write_manifest
from pipesql.config.settings import option

REPO = Path(__file__).resolve().parents[1]


def test_whole_pipeline_through_the_smoke_entrypoint(tmp_path):
    """validate -> generate -> train -> merge -> evaluate, offline, through jobs/smoke.sh."""
    env = {**os.environ, "OUTPUT_ROOT": str(tmp_path), "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}"}
    log = tmp_path / "stderr.log"  # the way a job's log is kept: stderr redirected to a file
    with log.open("w") as stderr:
        result = subprocess.run(
            ["sh", str(REPO / "jobs" / "smoke.sh"), "--model", "tiny", "--max-steps", "2", "--limit", "12",
             "--eval-limit", "3", "--device", "cpu", "--max-seq-length", "2048"],  # tiny's tokens are short
            env=env, stdout=subprocess.PIPE, stderr=stderr, text=True, timeout=600, cwd=tmp_path,
        )
    errors = log.read_text()
    assert result.returncode == 0, result.stdout + errors[-4000:]
    out = tmp_path / "smoke"
    summary = json.loads((out / pipeline_report.SUMMARY_NAME).read_text())
    stages = {stage["name"]: stage for stage in summary["stages"]}
    assert list(stages) == ["validate", "generate", "train", "merge", "evaluate"]
    assert all(stage["status"] == "ok" for stage in stages.values()), stages
    assert summary["ok"] is True

    # What each stage measured is taken from its own outputs.
    assert stages["validate"]["metrics"]["items"] == 12
    assert stages["validate"]["metrics"]["golden_pairs"] == stages["validate"]["metrics"]["classes"]["MATCH"]
    assert stages["generate"]["metrics"]["samples"] > 12  # several operator steps per pair
    assert stages["train"]["metrics"]["global_step"] == 2
    assert stages["train"]["metrics"]["first_train_loss"] > 0
    # Learning a person can see: dev loss and token accuracy before the first step and after the last.
    train = stages["train"]["metrics"]
    assert train["first_eval_loss"] > 0 and train["final_eval_loss"] > 0
    assert train["first_eval_token_accuracy"] is not None and train["final_eval_token_accuracy"] is not None
    assert stages["evaluate"]["metrics"]["questions"] == 3
    assert 0 <= stages["evaluate"]["metrics"]["execution_accuracy"] <= 1
    assert 0 <= stages["evaluate"]["metrics"]["answers_parse"] <= 1
    next_operator = stages["evaluate"]["metrics"]["next_operator"]
    assert next_operator["samples"] > 0 and 0 <= next_operator["exact"] <= next_operator["kind"] <= 1

    # Every artifact is where the report says, each stage with its manifest, the whole run verifiable.
    assert (out / "train" / "merged" / "config.json").is_file()
    assert (out / pipeline_report.PLOT_NAME).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    for stage in stages.values():
        assert (Path(stage["out"]) / "manifest.json").is_file(), stage["name"]
        assert stage["seconds"] > 0
    check = verify_manifest(out)
    assert check.ok and check.checked_files > 10
    report = result.stdout
    for name in stages:
        assert f"\n{name} " in report
    assert "execution accuracy" in report and str(out / pipeline_report.SUMMARY_NAME) in report
    # Every plot and the per-question results are named in the report, and exist.
    plots = sorted(out.rglob("*.png"))
    assert len(plots) == 5 and all(str(plot) in report for plot in plots)
    assert str(out / "evaluate" / "eval_results.jsonl") in report
    # The train curve has an eval curve beside it, and the figure quoted says what it is.
    assert stages["train"]["metrics"]["final_eval_loss"] is not None
    assert "eval loss (dev set)" in report
    # Nothing left over, nothing private, a model card that names the base model.
    assert not (out / "train" / ".staging").exists()
    private = [p for p in out.rglob("*") if p.is_file() and not p.stat().st_mode & 0o044]
    assert private == []
    card = (out / "train" / "README.md").read_text()
    assert "base_model: tiny" in card and "None" not in card
    assert "FutureWarning" not in errors
    # Progress in the log is plain lines: no bar redrawn with carriage returns or cursor moves.
    assert "\r" not in errors + report and "\x1b[" not in errors + report
    assert "validate: 12/12 item (100%)" in errors
    assert "gemm_4bit_forward" not in errors  # bitsandbytes' notice of a kernel pipesql never runs
    assert "next operator" in report and "0% execution accuracy at this size is expected" in report


# --- orchestration, with stand-in stages (fast): skipping, failure, what depends on what


def stand_in(name: str, calls: list, fail: bool = False) -> types.ModuleType:
    @dataclass
    class Settings:
        stage: ClassVar[str] = name
        out: Path = option(Path("x"), "")

    def run(settings):
        calls.append(name)
        write_manifest(settings.out, name, None, metrics={"samples": 3})
        return 1 if fail else 0

    return types.SimpleNamespace(Settings=Settings, run=run)


@pytest.fixture
def stand_ins(monkeypatch, tmp_path):
    """Every stage replaced; its values are reduced to its output folder."""
    calls, modules = [], {}
    stages = [(name, needs, lambda s, layout, out_of=out_of: {"out": out_of(layout)}, out_of)
              for name, needs, _, out_of in pipeline_stages.STAGES]
    monkeypatch.setattr(pipeline_stages, "STAGES", stages)
    monkeypatch.setattr(pipeline_stages, "_load_stage", lambda name: modules.get(name))
    for name, *_ in stages:
        modules[name] = stand_in(name, calls)
    return calls, modules


def test_absent_stage_is_skipped_with_a_note_and_so_is_what_needs_it(stand_ins, tmp_path, capsys):
    calls, modules = stand_ins
    del modules["merge"]
    assert pipeline.run(pipeline.Settings(out=tmp_path)) == 0
    assert calls == ["validate", "generate", "train"]
    summary = json.loads((tmp_path / pipeline_report.SUMMARY_NAME).read_text())
    notes = {s["name"]: (s["status"], s["note"]) for s in summary["stages"]}
    assert notes["merge"] == ("skipped", "module pipesql.merge is not installed")
    assert notes["evaluate"] == ("skipped", "needs merge")
    assert "module pipesql.merge is not installed" in capsys.readouterr().out


def test_a_failing_stage_stops_the_pipeline_and_fails_it(stand_ins, tmp_path):
    calls, modules = stand_ins
    modules["generate"] = stand_in("generate", calls, fail=True)
    assert pipeline.run(pipeline.Settings(out=tmp_path)) == 1
    assert calls == ["validate", "generate"]
    summary = json.loads((tmp_path / pipeline_report.SUMMARY_NAME).read_text())
    assert summary["ok"] is False
    assert [s["status"] for s in summary["stages"]] == ["ok", "failed", "skipped", "skipped", "skipped"]


def test_skip_train_evaluates_the_base_model(stand_ins, tmp_path):
    calls, _ = stand_ins
    assert pipeline.run(pipeline.Settings(out=tmp_path, skip_train=True)) == 0
    assert calls == ["validate", "generate", "evaluate"]
    assert pipeline_stages._evaluate(pipeline.Settings(model="tiny", skip_train=True), pipeline_stages.Layout(tmp_path))["model"] == "tiny"


def test_stage_settings_wire_each_output_to_the_next_input(tmp_path):
    """The real stages' Settings accept what the pipeline gives them, and paths chain."""
    settings = pipeline.Settings(out=tmp_path, model="tiny", max_steps=7)
    layout = pipeline_stages.Layout(tmp_path)
    built = {name: pipeline_stages._stage_settings(pipeline_stages._load_stage(name), make(settings, layout))
             for name, _, make, _ in pipeline_stages.STAGES}
    assert built["validate"].split == "train" and built["evaluate"].split == "dev"  # no dev question in training
    assert built["generate"].golden_pairs == built["validate"].out / "golden_pairs.jsonl"
    assert built["train"].train_data == built["generate"].output_dir / "train.jsonl"
    assert (built["train"].model_name, built["train"].max_steps) == ("tiny", 7)
    assert (built["train"].batching, built["train"].limit) == ("padding-free", None)  # from its recipe
    assert built["merge"].output_dir == built["train"].output_dir
    assert Path(built["evaluate"].model) == built["merge"].merged_dir
    assert built["evaluate"].mode == "agent"  # the step-by-step format generate trains


def test_a_rerun_replaces_its_own_stage_folders_but_not_foreign_ones(stand_ins, tmp_path, capsys):
    calls, _ = stand_ins
    run_root = tmp_path / "run"
    assert pipeline.run(pipeline.Settings(out=run_root)) == 0
    (run_root / "train" / "checkpoint-30").mkdir()  # what would make train resume instead of training
    assert pipeline.run(pipeline.Settings(out=run_root)) == 0
    assert calls[:10] == ["validate", "generate", "train", "merge", "evaluate"] * 2
    assert not (run_root / "train" / "checkpoint-30").exists()
    (run_root / pipeline_stages.MARKER_NAME).unlink()  # a finished run's manifest says whose it is too
    assert pipeline.run(pipeline.Settings(out=run_root)) == 0

    foreign = tmp_path / "mine"
    (foreign / "validate").mkdir(parents=True)
    (foreign / "validate" / "notes.txt").write_text("keep")
    assert pipeline.run(pipeline.Settings(out=foreign)) == 2
    assert "not written by pipesql pipeline" in capsys.readouterr().err
    assert (foreign / "validate" / "notes.txt").read_text() == "keep"


@pytest.mark.parametrize("idle, threads", [(1.0, 2), (0.8, 2), (0.6, 1), (0.3, 1), (0.0, 1)])
def test_torch_gets_the_idle_cores_at_least_one(monkeypatch, idle, threads):
    # A thread per core on a busy machine makes every operation wait for a descheduled thread.
    samples = iter([(0, 0), (int(200 * idle), 200)])  # (idle, total) jiffies of 2 cores over 1 s
    monkeypatch.setattr(os, "sched_getaffinity", lambda _: {0, 1}, raising=False)
    monkeypatch.setattr(cpu, "_cpu_times", lambda: next(samples))
    assert cpu.idle_cores(sample_s=0) == threads


@pytest.mark.parametrize("load, threads", [(0.0, 2), (0.6, 1), (5.0, 1)])
def test_without_proc_stat_the_load_average_decides(monkeypatch, load, threads):
    monkeypatch.setattr(os, "sched_getaffinity", lambda _: {0, 1}, raising=False)
    monkeypatch.setattr(cpu, "_cpu_times", lambda: None)
    monkeypatch.setattr(os, "getloadavg", lambda: (load, load, load))
    assert cpu.idle_cores() == threads
