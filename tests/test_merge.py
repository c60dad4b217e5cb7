"""pipesql merge: the merged model computes what base + adapter computes, and is found from the
run alone."""

from __future__ import annotations

import json

import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("peft")

from train_fixture import write_fixture  # noqa: E402

from pipesql import merge  # noqa: E402
from pipesql.models.loading import load_model_and_tokenizer  # noqa: E402
from pipesql.config.settings import resolve  # noqa: E402
from pipesql.train import Settings as TrainSettings  # noqa: E402
from pipesql.models.chat_template import CHAT_TEMPLATE  # noqa: E402
from pipesql.train.runner import run_training  # noqa: E402


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory):
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # two shared cores: one thread is faster than two fighting
    root = tmp_path_factory.mktemp("merge")
    train = write_fixture(root / "train.jsonl", 16, seed=3)
    settings = resolve(TrainSettings, dict(
        preset="smoke", model_name="tiny", train_data=train, dev_data=None, output_dir=root / "run", max_steps=4,
        per_device_train_batch_size=4, gradient_accumulation_steps=1, learning_rate=2e-2, save_steps=2,
        logging_steps=1, gradient_checkpointing=False, report_to="none"), environ={}, dotenv={})
    assert run_training(settings) == 0
    yield root / "run"
    torch.set_num_threads(threads)


def logits(model, input_ids):
    with torch.no_grad():
        return model(input_ids=input_ids).logits


def test_merged_and_unmerged_models_give_the_same_logits(run_dir):
    from peft import PeftModel
    from transformers import AutoModelForCausalLM, AutoTokenizer

    settings = resolve(merge.Settings, {"output_dir": run_dir, "device": "cpu"}, environ={}, dotenv={})
    assert merge.run(settings) == 0
    merged_dir = run_dir / "merged"
    merged = AutoModelForCausalLM.from_pretrained(merged_dir)  # a plain model: no PEFT needed
    tokenizer = AutoTokenizer.from_pretrained(merged_dir)
    assert tokenizer.chat_template == CHAT_TEMPLATE
    ids = tokenizer.apply_chat_template([{"role": "user", "content": "How many singers?"}],
                                        add_generation_prompt=True, return_tensors="pt", return_dict=True)["input_ids"]
    base, _ = load_model_and_tokenizer("tiny", device="cpu")
    base_logits = logits(base, ids)
    adapted = PeftModel.from_pretrained(base, str(run_dir / "final"))
    expected = logits(adapted, ids)
    assert not torch.allclose(expected, base_logits, atol=1e-4)  # the adapter does change the model
    assert torch.allclose(logits(merged, ids), expected, atol=1e-5, rtol=1e-4)
    assert json.loads((merged_dir / "pipesql_merge.json").read_text())["base_model"] == "tiny"
    assert json.loads((merged_dir / "manifest.json").read_text())["stage"] == "merge"


def test_checkpoint_flag_picks_that_adapter(run_dir, tmp_path):
    assert merge.find_adapter(run_dir, None) == run_dir / "final"
    assert merge.find_adapter(run_dir, "checkpoint-2") == run_dir / "checkpoint-2"
    assert merge.find_adapter(run_dir, "latest") == run_dir / "checkpoint-4"
    settings = resolve(merge.Settings, {"output_dir": run_dir, "checkpoint": "checkpoint-2", "device": "cpu",
                                        "merged_dir": tmp_path / "m2"}, environ={}, dotenv={})
    assert merge.run(settings) == 0
    assert (tmp_path / "m2" / "model.safetensors").is_file()
    with pytest.raises(SystemExit, match="checkpoint-99 holds no adapter; available: final, checkpoint-2"):
        merge.find_adapter(run_dir, "checkpoint-99")


def test_merge_replaces_only_a_folder_merge_made(run_dir, tmp_path):
    """Issue #21, class 5: --merged-dir naming a folder merge did not make (a home directory, a
    dataset) is refused before anything loads, and nothing in it is deleted; a folder merge
    made is replaced on the next run."""
    precious = tmp_path / "precious"
    precious.mkdir()
    (precious / "notes.txt").write_text("keep me")
    settings = resolve(merge.Settings, {"output_dir": run_dir, "device": "cpu", "merged_dir": precious},
                       environ={}, dotenv={})
    with pytest.raises(FileExistsError, match="precious exists and was not made by pipesql merge"):
        merge.run(settings)
    assert (precious / "notes.txt").read_text() == "keep me" and len(list(precious.iterdir())) == 1
    again = resolve(merge.Settings, {"output_dir": run_dir, "device": "cpu", "merged_dir": tmp_path / "m3"},
                    environ={}, dotenv={})
    assert merge.run(again) == 0 and merge.run(again) == 0
    assert (tmp_path / "m3" / "model.safetensors").is_file()


def test_base_model_comes_from_the_run(run_dir):
    assert merge.base_model_of(run_dir / "checkpoint-2", run_dir) == "tiny"
