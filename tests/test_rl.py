"""pipesql rl end to end on the demo corpus with the tiny model, through the command line: from a
merged SFT model and from an SFT adapter, kill and resume, and the run directory merge reads.

A random tiny model never writes a matching query, so every reward would be 0 and GRPO would
have nothing to learn from. The fixture therefore makes a real (if small) SFT model first: the
tiny model fully fine-tuned until it answers three demo questions with their gold pipe query.
Sampled at temperature 1 it still gets some completions wrong, so the groups' rewards differ
and the GRPO steps move the weights."""

from __future__ import annotations

import dataclasses
import json
import os
from pathlib import Path

import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("trl")

from pipesql.cli import main  # noqa: E402
from pipesql.config.settings import resolve  # noqa: E402
from pipesql.rl import Settings  # noqa: E402
from pipesql.rl.runner import run_grpo  # noqa: E402
from pipesql.train.checkpoints import complete_checkpoints  # noqa: E402
from pipesql.train.settings import TrainingRun  # noqa: E402
from pipesql.train.trainer import SimulatedKill  # noqa: E402

PAIRS = 3


pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def golden_pairs(tmp_path_factory) -> Path:
    from pipesql import validate

    out = tmp_path_factory.mktemp("golden")
    settings = resolve(validate.Settings, dict(benchmark="demo", split="train", limit=PAIRS, out=out, workers=1,
                                               googlesql=False, progress=False), environ={}, dotenv={})
    assert validate.run(settings) == 0
    return out / "golden_pairs.jsonl"


def sft_model(golden_pairs: Path, target: Path) -> Path:
    """The tiny model, fully fine-tuned on the one-shot prompts of the pairs until it answers
    them (assistant tokens only; seconds)."""
    from pipesql.corpora.items import database_dirs
    from pipesql.models.loading import load_model_and_tokenizer
    from pipesql.rl.data import build_rows

    torch.manual_seed(0)
    model, tokenizer = load_model_and_tokenizer("tiny", dtype="float32", device="cpu")
    rows, _ = build_rows(golden_pairs, database_dirs("demo", None), "oneshot")
    answers = {json.loads(line)["question_id"]: json.loads(line)["pipe_sql"]
               for line in golden_pairs.read_text().splitlines()}
    examples = []
    for row in rows:
        prompt = tokenizer.apply_chat_template(row["prompt"], add_generation_prompt=True, tokenize=True,
                                               return_dict=True)["input_ids"]
        answer = tokenizer(answers[row["question_id"]] + "<|im_end|>", add_special_tokens=False)["input_ids"]
        ids = torch.tensor([list(prompt) + answer])
        labels = ids.clone()
        labels[0, :len(prompt)] = -100
        examples.append((ids, labels))
    optimizer = torch.optim.AdamW(model.parameters(), lr=3e-3)
    model.train()
    for _ in range(60):
        losses = []
        for ids, labels in examples:
            loss = model(input_ids=ids, labels=labels).loss
            loss.backward()
            optimizer.step()
            optimizer.zero_grad()
            losses.append(loss.item())
        if max(losses) < 0.3:  # it knows every answer; sampling at temperature 1 still varies them
            break
    assert max(losses) < 0.3, f"the fixture model did not learn its answers (losses {losses})"
    model.save_pretrained(target)
    tokenizer.save_pretrained(target)
    return target


@pytest.fixture(scope="module")
def merged(golden_pairs, tmp_path_factory) -> Path:
    return sft_model(golden_pairs, tmp_path_factory.mktemp("sft") / "merged")


@pytest.fixture(scope="module")
def adapter(merged, tmp_path_factory) -> Path:
    """An SFT LoRA adapter, as ``pipesql train`` leaves it, on the fine-tuned model."""
    from train_fixture import write_fixture

    from pipesql.train import Settings as TrainSettings
    from pipesql.train.runner import run_training

    root = tmp_path_factory.mktemp("adapter")
    settings = resolve(TrainSettings, dict(
        preset="smoke", model_name=str(merged), train_data=write_fixture(root / "train.jsonl", 8), dev_data=None,
        output_dir=root / "run", max_steps=2, per_device_train_batch_size=4, gradient_accumulation_steps=1,
        learning_rate=1e-4, save_steps=2, logging_steps=1, gradient_checkpointing=False, report_to="none"),
        environ={}, dotenv={})
    assert run_training(settings) == 0
    return root / "run" / "final"


SMALL = ["--preset", "smoke", "--max-steps", "4", "--save-steps", "2", "--num-generations", "4",
         "--per-device-train-batch-size", "4", "--max-completion-length", "40", "--temperature", "1.0",
         "--learning-rate", "1e-3", "--reward-workers", "2", "--report-to", "none", "--no-gradient-checkpointing"]


@pytest.fixture
def clean_environment(monkeypatch, tmp_path):
    for name in [n for n in os.environ if n.startswith("PIPESQL_RL_")]:
        monkeypatch.delenv(name)
    monkeypatch.chdir(tmp_path)  # no stray .env


def settings_for(golden_pairs: Path, out: Path, **values) -> Settings:
    base = dict(preset="smoke", golden_pairs=golden_pairs, output_dir=out, max_steps=4, save_steps=2,
                num_generations=4, per_device_train_batch_size=4, max_completion_length=40, temperature=1.0,
                learning_rate=1e-3, reward_workers=2, report_to="none", gradient_checkpointing=False)
    return resolve(Settings, {**base, **values}, environ={}, dotenv={})


def adapter_tensors(folder: Path) -> dict:
    from safetensors.torch import load_file

    return load_file(str(folder / "adapter_model.safetensors"))


def check_run(out: Path, base_model: str) -> dict:
    summary = json.loads((out / "summary.json").read_text())
    assert summary["global_step"] == 4 and summary["rollbacks"] == 0
    # Every completion was scored: 4 steps x 4 completions, one status each.
    assert sum(summary["reward_status_counts"].values()) == 16
    assert summary["first_reward"] is not None and summary["final_execution_match"] is not None
    assert [p.name for p in complete_checkpoints(out)] == ["checkpoint-2", "checkpoint-4"]
    assert (out / "final" / "adapter_model.safetensors").is_file()
    run_config = json.loads((out / "final" / "pipesql_run.json").read_text())
    assert run_config["model_name"] == base_model  # what pipesql merge folds the adapter into
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["stage"] == "rl" and manifest["settings"]["prompt_format"] == summary["prompt_format"]
    return summary


@pytest.fixture(scope="module")
def from_merged(golden_pairs, merged, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("grpo") / "from-merged"
    assert main(["rl", *SMALL, "--model-name", str(merged), "--golden-pairs", str(golden_pairs),
                 "--output-dir", str(out)]) == 0
    return out


def test_grpo_from_a_merged_sft_model_through_the_cli(from_merged, merged, clean_environment):
    summary = check_run(from_merged, str(merged))
    assert summary["reward_status_counts"].get("match", 0) > 0  # the SFT model answers some
    # A new LoRA adapter starts as a no-op (B = 0); rewards that differ within a group move it.
    tensors = adapter_tensors(from_merged / "final")
    assert any(name.endswith("lora_B.weight") and tensor.abs().sum() > 0 for name, tensor in tensors.items())


def test_grpo_from_an_sft_adapter_through_the_cli(golden_pairs, adapter, merged, tmp_path, clean_environment):
    out = tmp_path / "from-adapter"
    assert main(["rl", *SMALL, "--adapter", str(adapter), "--golden-pairs", str(golden_pairs),
                 "--output-dir", str(out), "--prompt-format", "step", "--beta", "0.01"]) == 0
    summary = check_run(out, str(merged))
    assert summary["started_from"] == str(adapter) and summary["prompt_format"] == "step"
    before, after = adapter_tensors(adapter), adapter_tensors(out / "final")
    assert before.keys() == after.keys()  # the SFT adapter itself kept training
    assert any(not torch.equal(before[name], after[name]) for name in before)
    # The GRPO run directory is one that merge folds, onto the adapter's own base model.
    assert main(["merge", "--output-dir", str(out), "--device", "cpu"]) == 0
    assert (out / "merged" / "config.json").is_file()


def test_grpo_qlora_on_a_4bit_base_through_the_cli(golden_pairs, merged, tmp_path, clean_environment):
    """QLoRA: the merged SFT model loaded in 4-bit NF4 (bitsandbytes runs it on the CPU), a
    LoRA adapter trained on top, as `train-grpo` does with the 7b preset."""
    pytest.importorskip("bitsandbytes")
    out = tmp_path / "qlora"
    assert main(["rl", *SMALL, "--model-name", str(merged), "--golden-pairs", str(golden_pairs),
                 "--output-dir", str(out), "--load-in-4bit"]) == 0
    check_run(out, str(merged))
    run_config = json.loads((out / "final" / "pipesql_run.json").read_text())
    assert run_config["load_in_4bit"] is True
    tensors = adapter_tensors(out / "final")
    assert any(name.endswith("lora_B.weight") and tensor.abs().sum() > 0 for name, tensor in tensors.items())


def test_a_killed_grpo_run_resumes_to_the_same_weights(golden_pairs, merged, from_merged, tmp_path,
                                                        clean_environment):
    out = tmp_path / "killed"
    with pytest.raises(SimulatedKill):
        run_grpo(settings_for(golden_pairs, out, model_name=str(merged), inject_kill_step=2))
    assert [p.name for p in complete_checkpoints(out)] == ["checkpoint-2"] and not (out / "final").exists()
    assert run_grpo(settings_for(golden_pairs, out, model_name=str(merged))) == 0
    summary = json.loads((out / "summary.json").read_text())
    assert summary["resumed_from"] == "checkpoint-2" and summary["global_step"] == 4
    resumed, uninterrupted = adapter_tensors(out / "final"), adapter_tensors(from_merged / "final")
    assert resumed.keys() == uninterrupted.keys()
    for name in resumed:
        assert torch.equal(resumed[name], uninterrupted[name]), name


def test_an_injected_nan_rolls_the_grpo_run_back_and_it_recovers(golden_pairs, merged, tmp_path):
    from pipesql.train.stability import read_events

    out = tmp_path / "nan"
    settings = settings_for(golden_pairs, out, model_name=str(merged), inject_nan_step=3)
    assert run_grpo(settings) == 0
    (event,) = read_events(out)
    assert (event["action"], event["step"], event["to_checkpoint"]) == ("rollback", 3, "checkpoint-2")
    assert event["reason"] == "non-finite loss" and event["injected"]
    summary = json.loads((out / "summary.json").read_text())
    assert summary["rollbacks"] == 1 and summary["global_step"] == 4
    assert summary["learning_rate_final"] == pytest.approx(settings.learning_rate * settings.lr_backoff)
    assert all(torch.isfinite(t).all() for t in adapter_tensors(out / "final").values())


def test_presets_and_flags_resolve_like_the_train_stage():
    from pipesql.cli import command_parser

    def parse(*argv: str, environ=None) -> Settings:
        return resolve(Settings, vars(command_parser("rl", Settings).parse_args(list(argv))),
                       environ=environ or {}, dotenv={})

    default, large = parse(), parse("--preset", "7b")
    assert default == dataclasses.replace(Settings(), **Settings.PRESETS["1.5b"])
    # GRPO's own learning rate, not the SFT default it restates
    assert default.learning_rate != TrainingRun().learning_rate
    assert large.load_in_4bit is True and parse("--preset", "7b", "--no-4bit").load_in_4bit is False
    assert parse(environ={"PIPESQL_RL_BETA": "0.04"}).beta == 0.04
    assert parse("--beta", "0", environ={"PIPESQL_RL_BETA": "0.04"}).beta == 0.0


def test_a_run_without_a_starting_model_is_refused(golden_pairs, tmp_path):
    with pytest.raises(SystemExit, match="--model-name .* or --adapter"):
        run_grpo(settings_for(golden_pairs, tmp_path / "run"))
