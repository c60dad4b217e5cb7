"""pipesql train on the tiny model: assistant-only loss, falling loss, exact resume after a
kill, NaN rollback, and the run directory's outputs."""

from __future__ import annotations

import dataclasses
import json
import os
from pathlib import Path

import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("trl")

from train_fixture import adapter_tensors, as_flags, tiny_run_values, write_fixture  # noqa: E402

from pipesql.models import loading as models  # noqa: E402
from pipesql.models.tiny import IM_END  # noqa: E402
from pipesql.cli import command_parser  # noqa: E402
from pipesql.config.settings import as_dict, resolve  # noqa: E402
from pipesql.train import Settings  # noqa: E402
from pipesql.train.settings import QWEN_7B  # noqa: E402
from pipesql.models.chat_template import CHAT_TEMPLATE  # noqa: E402
from pipesql.train.checkpoints import STAGING, complete_checkpoints  # noqa: E402
from pipesql.train.data import load_tokenized, normalize_conversation, tokenize_conversation  # noqa: E402
from pipesql.train.runner import TrainingDiverged, run_training  # noqa: E402
from pipesql.train.stability import read_events  # noqa: E402
from pipesql.train.trainer import SimulatedKill  # noqa: E402


pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    root = tmp_path_factory.mktemp("data")
    return write_fixture(root / "train.jsonl", 48, seed=0), write_fixture(root / "dev.jsonl", 6, seed=1)


def tiny_settings(data, output_dir: Path, **overrides) -> Settings:
    return resolve(Settings, tiny_run_values(*data, output_dir, **overrides), environ={}, dotenv={})


@pytest.fixture(scope="module")
def reference_run(data, tmp_path_factory, monkeypatch_module):
    """The uninterrupted run, through the command line as a user types it."""
    from pipesql.cli import main

    out = tmp_path_factory.mktemp("reference") / "run"
    for name in [n for n in os.environ if n.startswith("PIPESQL_TRAIN_")]:
        monkeypatch_module.delenv(name)
    monkeypatch_module.chdir(out.parent)  # no stray .env
    values = tiny_run_values(*data, out, report_to="tensorboard")
    settings = resolve(Settings, values, environ={}, dotenv={})
    assert main(["train", *as_flags(values)]) == 0
    assert json.loads((out / "manifest.json").read_text())["settings"] == json.loads(json.dumps(as_dict(settings)))
    return out


@pytest.fixture(scope="module")
def monkeypatch_module():
    with pytest.MonkeyPatch.context() as patch:
        yield patch


# -- the assistant mask ---------------------------------------------------------------------


def expected_assistant_spans(row: dict) -> list[str]:
    """The text the model must learn for each assistant turn, written out independently of the
    template: its content, its tool calls, and the end-of-turn token."""
    messages, _ = normalize_conversation(row)
    spans = []
    for message in messages:
        if message["role"] != "assistant":
            continue
        parts = [message["content"]] if message["content"] else []
        for call in message.get("tool_calls", []):
            function = call["function"]
            parts.append('<tool_call>\n{"name": "%s", "arguments": %s}\n</tool_call>'
                         % (function["name"], json.dumps(function["arguments"])))
        spans.append("\n".join(parts) + IM_END)
    return spans


def masked_spans(tokenizer, input_ids, keep) -> list[str]:
    spans, current = [], []
    for token, flag in zip(list(input_ids), list(keep)):
        if flag:
            current.append(int(token))
        elif current:
            spans.append(tokenizer.decode(current))
            current = []
    if current:
        spans.append(tokenizer.decode(current))
    return spans


def test_assistant_mask_covers_exactly_the_assistant_turns(data):
    tokenizer = models.load_tokenizer("tiny")
    rows = [json.loads(line) for line in Path(data[0]).read_text().splitlines()]
    tool_rows = [r for r in rows if r.get("tools")]
    assert tool_rows and len(tool_rows) < len(rows)  # both kinds are covered
    for row in rows:
        example = tokenize_conversation(tokenizer, row)
        assert masked_spans(tokenizer, example["input_ids"], example["assistant_masks"]) == expected_assistant_spans(row)


@pytest.mark.parametrize("batching", ["padded", "padding-free", "packed"])
def test_collated_batch_labels_only_assistant_tokens(data, tmp_path, batching):
    from pipesql.train.runner import lora_config, resolve_runtime, sft_config
    from pipesql.train.stability import StabilityGuard
    from pipesql.train.trainer import GuardedSFTTrainer

    settings = tiny_settings(data, tmp_path / "run", batching=batching)
    runtime = resolve_runtime(settings)
    model, tokenizer = models.load_model_and_tokenizer("tiny", device="cpu")
    dataset, _ = load_tokenized(tokenizer, settings.train_data, max_seq_length=1024)
    trainer = GuardedSFTTrainer(model=model, args=sft_config(settings, runtime, 1e-3, has_dev=False),
                                train_dataset=dataset, processing_class=tokenizer, peft_config=lora_config(settings),
                                guard=StabilityGuard(), learning_rate_target=1e-3)
    batch = next(iter(trainer.get_train_dataloader()))
    by_ids = {tuple(ids): mask for ids, mask in zip(dataset["input_ids"], dataset["assistant_masks"])}
    if batching == "packed":  # rows of up to max_seq_length tokens, several conversations each
        assert batch["input_ids"].shape[0] == 1 and "attention_mask" not in batch
        starts = (batch["position_ids"][0] == 0).nonzero().flatten().tolist() + [batch["input_ids"].shape[1]]
        rows = [(batch["input_ids"][0, a:b], batch["labels"][0, a:b]) for a, b in zip(starts, starts[1:])]
        assert len(rows) > settings.per_device_train_batch_size
    elif batching == "padding-free":
        assert batch["input_ids"].shape[0] == 1 and "attention_mask" not in batch
        starts = (batch["position_ids"][0] == 0).nonzero().flatten().tolist() + [batch["input_ids"].shape[1]]
        rows = [(batch["input_ids"][0, a:b], batch["labels"][0, a:b]) for a, b in zip(starts, starts[1:])]
    else:
        rows = [(ids[mask.bool()], labels[mask.bool()])
                for ids, labels, mask in zip(batch["input_ids"], batch["labels"], batch["attention_mask"])]
    if batching != "packed":
        assert len(rows) == settings.per_device_train_batch_size
    for ids, labels in rows:
        mask = by_ids[tuple(ids.tolist())]
        expected = torch.where(torch.tensor(mask).bool(), ids, torch.full_like(ids, -100))
        assert torch.equal(labels, expected)
        assert (labels != -100).sum() > 0


def test_end_samples_are_thinned_to_their_share_and_nothing_else_is_dropped():
    from pipesql.train.data import thin_end_samples

    rows = [(line, {"kind": "end" if line % 4 == 0 else "step"}) for line in range(1, 101)]
    kept = thin_end_samples(rows, 0.1, seed=0)
    ends = [line for line, row in kept if row["kind"] == "end"]
    assert len(kept) - len(ends) == 75  # every step sample stays
    assert len(ends) == 8 and len(ends) / len(kept) <= 0.1
    assert kept == sorted(kept)  # in file order
    assert thin_end_samples(rows, 0.1, seed=0) == kept and thin_end_samples(rows, 0.1, seed=1) != kept
    assert thin_end_samples(rows, 1.0, seed=0) == rows


def test_bad_rows_are_reported_with_file_and_line(tmp_path):
    path = tmp_path / "train.jsonl"
    good = {"messages": [{"role": "user", "content": "q"}, {"role": "assistant", "content": "FROM t"}]}
    lines = [json.dumps(good), "{not json", json.dumps({"messages": [{"role": "user", "content": "only a question"}]}),
             json.dumps({"messages": [{"role": "assistant", "content": "", "tool_calls": [
                 {"type": "function", "function": {"name": "f", "arguments": "{broken"}}]}]})]
    path.write_text("\n".join(lines) + "\n")
    dataset, stats = load_tokenized(models.load_tokenizer("tiny"), path, max_seq_length=1024)
    assert len(dataset) == 1 and stats.rows == 4 and stats.kept == 1
    assert [b.split(": ")[0] for b in stats.bad] == [f"{path}:2", f"{path}:3", f"{path}:4"]
    assert "no assistant message" in stats.bad[1] and "arguments are not JSON" in stats.bad[2]


# -- training -------------------------------------------------------------------------------


def test_loss_falls_and_the_run_directory_is_complete(reference_run):
    summary = json.loads((reference_run / "summary.json").read_text())
    assert summary["global_step"] == 18 and summary["rollbacks"] == 0
    assert summary["final_train_loss"] < summary["first_train_loss"] - 0.3
    assert summary["final_eval_loss"] < summary["first_eval_loss"]  # the first eval is before step 1
    assert summary["tokens_per_second"] > 0
    for name in ("training_curves.png", "manifest.json", "pipesql_run.json", "final/adapter_model.safetensors",
                 "final/pipesql_run.json"):
        assert (reference_run / name).is_file(), name
    assert (reference_run / "training_curves.png").read_bytes()[:4] == b"\x89PNG"
    assert list((reference_run / "runs").rglob("events.out.tfevents.*"))  # TensorBoard logs
    # Checkpoints: the newest save_total_limit, plus the best by eval loss.
    assert [p.name for p in complete_checkpoints(reference_run)] == ["checkpoint-6", "checkpoint-12", "checkpoint-18"]
    assert summary["checkpoints"] == ["checkpoint-6", "checkpoint-12", "checkpoint-18"]
    assert summary["best_checkpoint"] in summary["checkpoints"]  # tracked by eval loss
    assert not (reference_run / STAGING).exists() or not any((reference_run / STAGING).iterdir())
    # What ships carries the inference template (tool support, no generation markers).
    saved = json.loads((reference_run / "final" / "tokenizer_config.json").read_text())
    template = saved.get("chat_template") or (reference_run / "final" / "chat_template.jinja").read_text()
    assert template == CHAT_TEMPLATE
    adapter = json.loads((reference_run / "final" / "adapter_config.json").read_text())
    assert adapter["r"] == 16 and adapter["lora_alpha"] == 32
    assert set(adapter["target_modules"]) == {"q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"}


def test_killed_run_resumes_to_the_same_weights(data, tmp_path, reference_run):
    out = tmp_path / "run"
    with pytest.raises(SimulatedKill):
        run_training(tiny_settings(data, out, inject_kill_step=6))
    assert [p.name for p in complete_checkpoints(out)] == ["checkpoint-6"] and not (out / "final").exists()
    # Leftovers of a kill in the middle of the next save must be ignored and cleaned.
    (out / STAGING / "checkpoint-12").mkdir(parents=True)
    (out / "checkpoint-9").mkdir()
    (out / "checkpoint-9" / "trainer_state.json").write_text("{}")
    assert run_training(tiny_settings(data, out)) == 0
    assert not (out / "checkpoint-9").exists() and not (out / STAGING / "checkpoint-12").exists()
    summary = json.loads((out / "summary.json").read_text())
    assert summary["resumed_from"] == "checkpoint-6" and summary["global_step"] == 18
    resumed, uninterrupted = adapter_tensors(out), adapter_tensors(reference_run)
    assert resumed.keys() == uninterrupted.keys()
    for name in resumed:
        assert torch.equal(resumed[name], uninterrupted[name]), name


def test_injected_nan_rolls_back_and_recovers(data, tmp_path):
    out = tmp_path / "run"
    settings = tiny_settings(data, out, max_steps=10, save_steps=4, eval_steps=0, inject_nan_step=6)
    assert run_training(settings) == 0
    events = read_events(out)
    assert len(events) == 1
    event = events[0]
    assert event["action"] == "rollback" and event["step"] == 6 and event["injected"]
    assert event["reason"] == "non-finite loss" and event["to_checkpoint"] == "checkpoint-4"
    assert event["new_learning_rate"] == pytest.approx(settings.learning_rate * 0.5)
    summary = json.loads((out / "summary.json").read_text())
    assert summary["rollbacks"] == 1 and summary["global_step"] == 10
    assert summary["learning_rate_final"] == pytest.approx(settings.learning_rate * 0.5)
    assert all(torch.isfinite(t).all() for t in adapter_tensors(out).values())


def test_time_box_stops_early_with_an_eval_and_the_final_adapter(data, tmp_path):
    out = tmp_path / "run"
    assert run_training(tiny_settings(data, out, max_minutes=1e-4, eval_on_start=False)) == 0
    summary = json.loads((out / "summary.json").read_text())
    assert summary["global_step"] == 1 < summary["max_steps"]
    assert summary["final_eval_loss"] is not None  # the "after" figure of a time-boxed run
    assert (out / "final" / "adapter_model.safetensors").is_file()


def test_divergence_beyond_the_rollback_limit_stops_with_a_clear_message(data, tmp_path):
    out = tmp_path / "run"
    settings = tiny_settings(data, out, max_steps=6, save_steps=2, eval_steps=0, inject_nan_step=3, max_rollbacks=0)
    with pytest.raises(TrainingDiverged, match=r"step 3 \(non-finite loss\).*checkpoint-2"):
        run_training(settings)
    assert [e["action"] for e in read_events(out)] == ["abort"]


# -- settings -------------------------------------------------------------------------------


def parse(*argv: str, environ=None) -> Settings:
    return resolve(Settings, vars(command_parser("train", Settings).parse_args(list(argv))),
                   environ=environ or {}, dotenv={})


def test_the_defaults_are_the_1_5b_recipe_and_7b_is_qlora_on_the_7b_model():
    assert parse() == Settings()
    large = parse("--preset", "7b")
    assert large == dataclasses.replace(Settings(), preset="7b", **Settings.PRESETS["7b"])
    assert (large.model_name, large.load_in_4bit) == (QWEN_7B, True)


def test_flag_beats_environment_beats_preset():
    assert parse("--preset", "7b", "--no-4bit").load_in_4bit is False
    assert parse("--preset", "7b", "--no-load-in-4bit").load_in_4bit is False
    assert parse("--load-in-4bit").load_in_4bit is True
    env = {"PIPESQL_TRAIN_LEARNING_RATE": "1e-5"}
    assert parse("--preset", "7b", environ=env).learning_rate == 1e-5
    assert parse("--preset", "7b", "--learning-rate", "3e-5", environ=env).learning_rate == 3e-5


def test_fp16_on_cpu_is_refused_with_a_clear_message(data, tmp_path):
    from pipesql.train.runner import resolve_runtime

    with pytest.raises(SystemExit, match="fp16 needs a CUDA GPU"):
        resolve_runtime(dataclasses.replace(tiny_settings(data, tmp_path), precision="fp16", device="cpu"))


def test_no_resume_refuses_to_overwrite_a_run(data, tmp_path):
    from pipesql.train.runner import _prepare_run_dir, resolve_runtime

    checkpoint = tmp_path / "run" / "checkpoint-4"
    checkpoint.mkdir(parents=True)
    for name in ("trainer_state.json", "optimizer.pt", "scheduler.pt", "adapter_model.safetensors"):
        (checkpoint / name).write_text("x")
    settings = tiny_settings(data, tmp_path / "run")
    assert _prepare_run_dir(settings, resolve_runtime(settings)) == checkpoint
    refused = dataclasses.replace(settings, resume=False)
    with pytest.raises(SystemExit, match="already holds checkpoint-4"):
        _prepare_run_dir(refused, resolve_runtime(refused))



def test_cpu_logprob_tiles_compute_what_trl_s_default_tiles_do(monkeypatch):
    """The small tiles a CPU trainer uses (a few MB instead of several GB of logits temporaries)
    give TRL's fused LM head the same log-probabilities, entropies, top-1 flags and gradients."""
    import torch
    import trl.kernels.chunked_logprob as kernel
    import trl.trainer.utils as trainer_utils

    from pipesql.train.trainer import CPU_LOGPROB_TILE, use_cpu_logprob_tiles

    generator = torch.Generator().manual_seed(0)
    tokens, width, vocab = 2500, 32, 20000  # more tokens and vocabulary entries than one small tile holds
    weight = torch.randn(vocab, width, generator=generator) / width ** 0.5
    targets = torch.randint(0, vocab, (tokens,), generator=generator)
    hidden_values = torch.randn(tokens, width, generator=generator)

    def fused_head(token_tile: int, vocab_tile: int):
        monkeypatch.setattr(kernel, "TOKEN_CHUNK_SIZE", token_tile)
        hidden = hidden_values.clone().requires_grad_(True)
        logprobs, entropy, _, _, is_top1 = kernel.ChunkedLogProbFunction.apply(
            hidden, weight, None, targets, 1.0, vocab_tile, None, 1.0, ("entropy", "is_top1"))
        (logprobs.sum() + entropy.sum()).backward()
        return logprobs.detach(), entropy.detach(), is_top1, hidden.grad

    default = fused_head(4096, 32768)
    monkeypatch.setattr(trainer_utils, "_CHUNKED_LOGPROB_CHUNK_SIZE", 32768)  # restored after the test
    use_cpu_logprob_tiles()
    assert (kernel.TOKEN_CHUNK_SIZE, trainer_utils._CHUNKED_LOGPROB_CHUNK_SIZE) == CPU_LOGPROB_TILE
    assert CPU_LOGPROB_TILE[0] < tokens and CPU_LOGPROB_TILE[1] < vocab
    small = fused_head(*CPU_LOGPROB_TILE)
    for expected, got in zip(default, small):
        torch.testing.assert_close(got, expected, rtol=1e-5, atol=1e-5)
