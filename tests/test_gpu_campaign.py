"""benchmarks/gpu_campaign.py --dry-run-cpu: every phase of the GPU campaign runs, at toy size,
and leaves its JSON and PNG (the figures themselves mean nothing on a CPU)."""

from __future__ import annotations

import importlib.util
import json
import os
from pathlib import Path

import pytest

pytest.importorskip("torch")
pytest.importorskip("trl")
pytest.importorskip("bitsandbytes")

CAMPAIGN = Path(__file__).resolve().parents[1] / "benchmarks" / "gpu_campaign.py"


def load_campaign():
    spec = importlib.util.spec_from_file_location("gpu_campaign", CAMPAIGN)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_campaign_dry_run_covers_every_phase(tmp_path, monkeypatch):
    for name in [n for n in os.environ if n.startswith("PIPESQL_")]:
        monkeypatch.delenv(name)
    monkeypatch.chdir(tmp_path)
    out = tmp_path / "campaign"
    assert load_campaign().main(["--dry-run-cpu", "--out", str(out)]) == 0
    report = json.loads((out / "campaign.json").read_text())
    assert report["dry_run_cpu"] and report["errors"] == {}
    assert (out / "campaign.png").read_bytes()[:4] == b"\x89PNG"
    # Throughput: both recipes of both model kinds (LoRA, QLoRA), ratios from the same run.
    rows = {(r["model"], r["variant"]): r for r in report["throughput"]}
    assert {("tiny", "replaced"), ("tiny", "ours"), ("tiny", "ours-packed"), ("tiny-4bit", "replaced"),
            ("tiny-4bit", "ours")} <= rows.keys()
    assert all(r["tokens_per_second"] > 0 for r in rows.values())
    assert rows[("tiny", "replaced")]["speedup"] == 1.0
    assert rows[("tiny", "ours")]["speedup"] == pytest.approx(
        rows[("tiny", "ours")]["tokens_per_second"] / rows[("tiny", "replaced")]["tokens_per_second"])
    assert rows[("tiny", "replaced")]["batching"] == "padded" and rows[("tiny", "ours")]["batching"] == "padding-free"
    assert rows[("tiny-4bit", "ours")]["qlora"] and not rows[("tiny", "ours")]["qlora"]
    # Memory: the QLoRA model at the longest sequence (no GPU, so no peak figure).
    assert report["memory"]["model"] == "tiny-4bit" and report["memory"]["measure"]["steps_timed"] == 1
    # Accuracy: one-shot and agent, before and after a fine-tune that really ran.
    accuracy = report["accuracy"]
    assert [e["mode"] for e in accuracy["before"]] == [e["mode"] for e in accuracy["after"]] == ["oneshot", "agent"]
    assert all(e["questions"] == 2 for e in accuracy["before"] + accuracy["after"])
    assert accuracy["fine_tune"]["global_step"] == 3
    assert (out / "accuracy" / "train" / "merged" / "config.json").is_file()
    # GRPO: from that SFT adapter, steps that really ran, merged and evaluated one-shot.
    grpo = report["grpo"]
    assert grpo["steps"] == 2 and grpo["after"]["mode"] == "oneshot" and grpo["after"]["questions"] == 2
    assert (out / "grpo" / "grpo" / "merged" / "config.json").is_file()
