"""The generated files load with `datasets.load_dataset("json")` and train with TRL's SFTTrainer as
they are: no conversion step between `pipesql generate` and training."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from pipesql.generate import Settings, run

datasets = pytest.importorskip("datasets")
trl = pytest.importorskip("trl")

from test_generate import build_school, school_pair  # noqa: E402  (same folder; pytest puts it on sys.path)


@pytest.fixture(scope="module")
def generated(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("gen")
    (root / "database" / "school").mkdir(parents=True)
    build_school(root / "database" / "school" / "school.sqlite")
    golden = root / "golden.jsonl"
    golden.write_text("".join(json.dumps(school_pair(k)) + "\n" for k in range(40)))
    out = root / "out"
    assert run(Settings(golden_pairs=golden, db_dir=[root / "database"], output_dir=out, tool_calling=True,
                        tool_ratio=0.5, workers=1, dev_fraction=0.1)) == 0
    return out


def test_files_load_with_mixed_tool_and_plain_rows(generated: Path) -> None:
    loaded = datasets.load_dataset("json", data_files={"train": str(generated / "train.jsonl"),
                                                       "dev": str(generated / "dev.jsonl")})
    train = loaded["train"]
    kinds = set(train["kind"])
    assert {"step", "end", "tools"} <= kinds and len(loaded["dev"]) > 0
    chat = next(row for row in train if row["kind"] == "tools")
    plain = next(row for row in train if row["kind"] == "step")
    assert plain["tools"] is None and isinstance(chat["tools"], str)
    # no merged keys: a tool call keeps exactly its own arguments, as a JSON string
    call = next(m for m in chat["messages"] if m.get("tool_calls"))["tool_calls"][0]
    assert set(call) == {"id", "type", "function"} and isinstance(call["function"]["arguments"], str)
    assert set(plain["messages"][0]) == {"role", "content"}


def test_sft_trainer_runs_on_the_files(generated: Path, tmp_path: Path) -> None:
    from transformers import AutoModelForCausalLM, AutoTokenizer
    from trl import SFTConfig, SFTTrainer

    from pipesql.models.registry import tiny_model_dir
    from pipesql.models.chat_template import TRAINING_CHAT_TEMPLATE

    loaded = datasets.load_dataset("json", data_files={"train": str(generated / "train.jsonl"),
                                                       "dev": str(generated / "dev.jsonl")})
    # a few rows of each kind keep the test fast
    train = loaded["train"]
    picks = [i for kind in ("step", "end", "tools") for i in [j for j, k in enumerate(train["kind"]) if k == kind][:3]]
    train = train.select(picks)
    model_dir = tiny_model_dir()
    tokenizer = AutoTokenizer.from_pretrained(model_dir)
    tokenizer.chat_template = TRAINING_CHAT_TEMPLATE
    model = AutoModelForCausalLM.from_pretrained(model_dir)
    config = SFTConfig(output_dir=str(tmp_path / "sft"), max_steps=2, per_device_train_batch_size=2, max_length=2048,
                       assistant_only_loss=True, report_to=[], logging_steps=1, use_cpu=True, save_strategy="no",
                       eval_strategy="no", activation_checkpointing=False)  # the new name: no FutureWarning
    trainer = SFTTrainer(model=model, args=config, train_dataset=train, processing_class=tokenizer)
    result = trainer.train()
    assert result.global_step == 2 and result.training_loss > 0
    # the tool specs and the tool calls reached the rendered text, and only assistant turns are trained
    row = next(r for r, kind in zip(trainer.train_dataset, train["kind"]) if kind == "tools")
    text = tokenizer.decode(row["input_ids"])
    assert "<tools>" in text and '"name": "execute_pipe_sql"' in text and "<tool_response>" in text
    trained = tokenizer.decode([t for t, label in zip(row["input_ids"], row["labels"]) if label != -100])
    assert "<tool_call>" in trained and "<tool_response>" not in trained


def test_token_lengths_with_a_local_tokenizer(generated: Path, tmp_path: Path) -> None:
    from pipesql.models.registry import tiny_model_dir

    golden = generated.parent / "golden.jsonl"
    out = tmp_path / "tok"
    assert run(Settings(golden_pairs=golden, db_dir=[generated.parent / "database"], output_dir=out, workers=1,
                        tokenizer=str(tiny_model_dir()))) == 0
    stats = json.loads((out / "stats.json").read_text())
    chars = json.loads((generated / "stats.json").read_text())
    assert stats["length_unit"] == "tokens" and chars["length_unit"] == "characters"
    assert 0 < stats["samples"]["length"]["p50"] < chars["samples"]["length"]["p50"]
    with pytest.raises(SystemExit, match="cannot load it offline"):
        run(Settings(golden_pairs=golden, db_dir=[generated.parent / "database"], output_dir=out,
                     tokenizer=str(tmp_path / "no-such-tokenizer")))
