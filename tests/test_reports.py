"""What the plots and summaries tell a person: the loss figure quoted and why, the model's name,
every stage visible, files readable by everyone."""

from __future__ import annotations

import json
import os

from pipesql.pipeline import report
from pipesql.pipeline.stages import StageResult
from pipesql.models.registry import MERGE_RECORD_NAME, describe_model, model_id
from pipesql.storage.files import share_file_modes
from pipesql.train.report import model_card, reported_loss, summarize_history, trailing_mean

PNG = b"\x89PNG\r\n\x1a\n"


def test_trailing_mean_smooths_over_the_last_values():
    assert trailing_mean([4.0, 2.0, 6.0, 0.0], 2) == [4.0, 3.0, 4.0, 3.0]
    assert trailing_mean([1.0], 5) == [1.0]


def test_quoted_loss_is_the_eval_loss_or_a_smoothed_train_loss():
    # A noisy CPU run: the last logged train loss (2.28) is not where the model is (about 1.2).
    noisy = [6.5, 4.0, 2.5, 1.1, 1.3, 1.2, 1.0, 1.1, 1.2, 2.28]
    history = [{"step": i + 1, "loss": loss} for i, loss in enumerate(noisy)]
    summary = summarize_history(history)
    what, first, last = reported_loss(summary)
    assert what == "train loss (mean of the last 2 logged steps)"
    assert (first, summary["final_train_loss"], summary["min_train_loss"]) == (6.5, 2.28, 1.0)
    assert abs(last - (1.2 + 2.28) / 2) < 1e-9
    with_eval = summarize_history(history + [{"step": 0, "eval_loss": 5.8}, {"step": 10, "eval_loss": 2.3}])
    assert reported_loss(with_eval) == ("eval loss (dev set)", 5.8, 2.3)


def test_model_card_names_a_local_base_model(tmp_path):
    card = model_card({"global_step": 30, "first_eval_loss": 5.8, "final_eval_loss": 2.3}, base_model="smollm2-135m",
                      base_path=str(tmp_path), train_data="out/generate/train.jsonl", lora_r=16, lora_alpha=32,
                      learning_rate=2e-4)
    assert "base_model: smollm2-135m" in card and "`smollm2-135m`" in card and "None" not in card
    assert "eval loss (dev set): 5.8 → 2.3" in card
    hub = model_card({}, base_model="Qwen/Qwen2.5-Coder-1.5B-Instruct", base_path="Qwen/Qwen2.5-Coder-1.5B-Instruct",
                     train_data="t.jsonl", lora_r=16, lora_alpha=32, learning_rate=2e-4)
    assert "(https://huggingface.co/Qwen/Qwen2.5-Coder-1.5B-Instruct)" in hub


def test_a_merged_model_is_described_by_its_base_model(tmp_path):
    merged = tmp_path / "merged"
    merged.mkdir()
    assert describe_model(merged) == str(merged) and model_id(merged) == "merged"
    (merged / MERGE_RECORD_NAME).write_text(json.dumps({"base_model": "smollm2-135m", "adapter": "final"}))
    assert describe_model(merged) == "smollm2-135m fine-tuned (LoRA, merged)"
    assert describe_model("smollm2-135m") == "smollm2-135m"
    # The id it is served and scored under names it too, not its folder.
    assert model_id(merged) == "smollm2-135m-pipesql-lora" and model_id("smollm2-135m") == "smollm2-135m"
    (merged / MERGE_RECORD_NAME).write_text(json.dumps({"base_model": "Qwen/Qwen2.5-Coder-1.5B-Instruct"}))
    assert model_id(merged) == "Qwen2.5-Coder-1.5B-Instruct-pipesql-lora"


def test_saved_files_get_the_usual_mode(tmp_path):
    weights = tmp_path / "model" / "model.safetensors"
    weights.parent.mkdir()
    weights.write_bytes(b"x")
    weights.chmod(0o600)  # what safetensors 0.8 writes
    share_file_modes(tmp_path / "model")
    umask = os.umask(0)
    os.umask(umask)
    assert weights.stat().st_mode & 0o777 == 0o666 & ~umask


def test_stage_plot_shows_short_failed_and_skipped_stages(tmp_path):
    results = [StageResult("validate", "ok", 0.04, metrics={"match_rate": 1.0}),
               StageResult("train", "ok", 1500.0, metrics={"final_eval_loss": 2.3, "first_eval_loss": 5.8}),
               StageResult("merge", "failed", 3.0, note="ValueError: no adapter"),
               StageResult("evaluate", "skipped", note="needs merge")]
    path = report.plot_stages(results, tmp_path / "stages.png")
    assert path.read_bytes()[:8] == PNG
    assert report._seconds_label(0.04) == "0.04 s" and report._seconds_label(1500.0) == "25.0 min"
    assert "eval loss (dev set) 5.8 -> 2.3" in report.measured(results[1])
