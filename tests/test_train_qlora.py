"""QLoRA (4-bit NF4 base, LoRA adapter) on the CPU, through ``pipesql train --load-in-4bit``:
the same code path a 7B run takes on a GPU, with fp32 instead of bf16 compute. Training learns,
a killed run resumes to the same adapter, a NaN rolls back, and the adapter merged into the
full-precision base computes what the 4-bit base plus adapter computes, within the base's own
quantization error."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("trl")
pytest.importorskip("bitsandbytes")

from train_fixture import adapter_tensors, as_flags, tiny_run_values, write_fixture  # noqa: E402

from pipesql.cli import main  # noqa: E402
from pipesql.train.checkpoints import complete_checkpoints  # noqa: E402
from pipesql.train.stability import read_events  # noqa: E402
from pipesql.train.trainer import SimulatedKill  # noqa: E402

# How far the merged model's logits may be from the 4-bit base + adapter's, relative to the
# logits' own norm. The merged model uses the unquantized base weights, so the gap is NF4's
# rounding of the base; on the tiny model (64-wide layers, one NF4 block per row) it measures
# about 0.09, and on real models it is smaller.
MERGE_TOLERANCE = 0.15


pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    root = tmp_path_factory.mktemp("qlora-data")
    return write_fixture(root / "train.jsonl", 48, seed=0), write_fixture(root / "dev.jsonl", 6, seed=1)


@pytest.fixture(scope="module")
def clean_env():
    """No stray train/merge settings; and every 4-bit layer built as on a CPU with AVX512-BF16,
    where bitsandbytes repacks a layer into its inference-only layout on its first forward in eval
    mode without gradients (the eval on start), so the training runs meet that repack whatever
    CPU runs them."""
    import bitsandbytes.nn.modules

    with pytest.MonkeyPatch.context() as patch:
        for name in [n for n in os.environ if n.startswith(("PIPESQL_TRAIN_", "PIPESQL_MERGE_"))]:
            patch.delenv(name)
        patch.setattr(bitsandbytes.nn.modules, "has_avx512bf16", lambda: True)
        yield


def train(data, out: Path, **overrides) -> int:
    return main(["train", *as_flags(tiny_run_values(*data, out, load_in_4bit=True, **overrides))])


@pytest.fixture(scope="module")
def qlora_run(data, tmp_path_factory, clean_env):
    out = tmp_path_factory.mktemp("qlora") / "run"
    assert train(data, out) == 0
    return out


def test_qlora_trains_on_cpu_through_the_cli(qlora_run):
    summary = json.loads((qlora_run / "summary.json").read_text())
    assert summary["global_step"] == 18 and summary["rollbacks"] == 0
    assert summary["final_train_loss"] < summary["first_train_loss"] - 0.3
    assert summary["final_eval_loss"] < summary["first_eval_loss"]
    assert summary["runtime"]["device"] == "cpu" and summary["runtime"]["precision"] == "fp32"
    run_config = json.loads((qlora_run / "pipesql_run.json").read_text())
    assert run_config["load_in_4bit"] is True
    assert all(torch.isfinite(t).all() for t in adapter_tensors(qlora_run).values())


def test_qlora_base_really_is_4bit():
    import bitsandbytes as bnb

    from pipesql.models.loading import load_model_and_tokenizer

    model, _ = load_model_and_tokenizer("tiny", dtype="float32", device="cpu", load_in_4bit=True)
    linear = model.model.layers[0].mlp.down_proj
    assert isinstance(linear, bnb.nn.Linear4bit)
    assert linear.weight.quant_state.quant_type == "nf4"


def test_qlora_training_runs_through_a_repacked_layer():
    """A layer already in bitsandbytes' CPU inference layout (packed here by calling the repack
    itself, which runs on any CPU) is restored: same weights, same outputs, and gradients flow."""
    import bitsandbytes as bnb
    from bitsandbytes.functional import _convert_weight_packed_for_cpu

    from pipesql.models.loading import keep_4bit_layout_trainable, load_model_and_tokenizer

    model, _ = load_model_and_tokenizer("tiny", dtype="float32", device="cpu", load_in_4bit=True)
    layers = [m for m in model.modules() if isinstance(m, bnb.nn.Linear4bit)]
    input_ids = torch.randint(3, model.config.vocab_size, (2, 16), generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        before = model.eval()(input_ids=input_ids).logits
    assert not any(getattr(m.weight.quant_state, "packing_format_for_cpu", False) for m in layers)
    # Compared as bytes: the 4-bit codes sit in float32 storage, where some read as NaN.
    weights = [m.weight.data.view(torch.uint8).clone() for m in layers]
    for layer in layers:
        layer.weight.data, _ = _convert_weight_packed_for_cpu(layer.weight.data, layer.weight.quant_state)

    assert keep_4bit_layout_trainable(model) == len(layers)
    assert all(torch.equal(m.weight.data.view(torch.uint8), w) for m, w in zip(layers, weights))
    with torch.no_grad():
        after = model(input_ids=input_ids).logits
    # The inverse re-quantizes the double-quantized block scales, so outputs move by that rounding.
    assert relative_gap(after, before) < 0.02
    model.train()
    model(input_ids=input_ids, labels=input_ids).loss.backward()
    gradient = model.get_input_embeddings().weight.grad
    assert gradient is not None and torch.isfinite(gradient).all() and gradient.abs().sum() > 0


def test_killed_qlora_run_resumes_to_the_same_adapter(data, tmp_path, qlora_run, clean_env):
    out = tmp_path / "run"
    with pytest.raises(SimulatedKill):
        train(data, out, inject_kill_step=6)
    assert [p.name for p in complete_checkpoints(out)] == ["checkpoint-6"]
    assert train(data, out) == 0
    assert json.loads((out / "summary.json").read_text())["resumed_from"] == "checkpoint-6"
    resumed, uninterrupted = adapter_tensors(out), adapter_tensors(qlora_run)
    assert resumed.keys() == uninterrupted.keys()
    for name in resumed:
        assert torch.equal(resumed[name], uninterrupted[name]), name


def test_qlora_nan_rolls_back_and_recovers(data, tmp_path, clean_env):
    out = tmp_path / "run"
    assert train(data, out, max_steps=10, save_steps=4, eval_steps=0, inject_nan_step=6) == 0
    [event] = read_events(out)
    assert (event["action"], event["step"], event["to_checkpoint"]) == ("rollback", 6, "checkpoint-4")
    summary = json.loads((out / "summary.json").read_text())
    assert summary["rollbacks"] == 1 and summary["global_step"] == 10
    assert all(torch.isfinite(t).all() for t in adapter_tensors(out).values())


def relative_gap(logits, reference) -> float:
    return float((logits - reference).norm() / reference.norm())


def test_qlora_adapter_merges_into_the_full_precision_base(qlora_run, clean_env):
    from peft import PeftModel
    from transformers import AutoModelForCausalLM

    from pipesql.models.loading import load_model_and_tokenizer

    assert main(["merge", "--output-dir", str(qlora_run), "--device", "cpu"]) == 0
    merged = AutoModelForCausalLM.from_pretrained(qlora_run / "merged")
    assert not getattr(merged, "is_loaded_in_4bit", False)
    assert merged.model.layers[0].mlp.down_proj.weight.dtype == torch.float32  # a plain, dense model
    record = json.loads((qlora_run / "merged" / "pipesql_merge.json").read_text())
    assert record["trained_on_4bit_base"] is True and record["merged_into"] == "full-precision base (float32)"

    def adapted(load_in_4bit: bool):
        base, _ = load_model_and_tokenizer("tiny", dtype="float32", device="cpu", load_in_4bit=load_in_4bit)
        return PeftModel.from_pretrained(base, str(qlora_run / "final")).eval()

    def base(load_in_4bit: bool):
        return load_model_and_tokenizer("tiny", dtype="float32", device="cpu", load_in_4bit=load_in_4bit)[0].eval()

    input_ids = torch.randint(3, merged.config.vocab_size, (2, 48), generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        merged_logits = merged(input_ids=input_ids).logits
        qlora_logits = adapted(True)(input_ids=input_ids).logits
        full_adapted_logits = adapted(False)(input_ids=input_ids).logits
        quantization_gap = relative_gap(base(True)(input_ids=input_ids).logits, base(False)(input_ids=input_ids).logits)
    # The merge itself is exact: full-precision base + adapter, folded.
    torch.testing.assert_close(merged_logits, full_adapted_logits, rtol=1e-4, atol=1e-4)
    # Against what was trained (4-bit base + adapter) the gap is the base's NF4 rounding, no more.
    gap = relative_gap(merged_logits, qlora_logits)
    assert gap < MERGE_TOLERANCE
    assert gap < 1.5 * quantization_gap + 1e-3
    assert (merged_logits.argmax(-1) == qlora_logits.argmax(-1)).float().mean() > 0.8
