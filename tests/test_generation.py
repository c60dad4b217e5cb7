"""Generation backends: batching must not change answers, stop strings and lengths are honoured,
chats are rendered with the model's own template."""

from __future__ import annotations

import json

import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("transformers")

from pipesql.models.backends import (  # noqa: E402
    Chat,
    SamplingParams,
    ScriptedBackend,
    TransformersBackend,
    load_backend,
    render_prompt,
    template_messages,
    truncate_at_stop,
)


@pytest.fixture(scope="module")
def backend() -> TransformersBackend:
    # Batched (no prefix cache, which would send prompts one at a time): padding is under test.
    loaded = load_backend("tiny", "transformers", device="cpu", batch_size=3, prefix_cache=0)
    # The registry's tiny model is initialised so small that greedy decoding emits one token
    # forever; larger random weights make answers differ from prompt to prompt, so a padding
    # bug would show.
    generator = torch.Generator().manual_seed(1)
    with torch.no_grad():
        for parameter in loaded.model.parameters():
            parameter.copy_(torch.randn(parameter.shape, generator=generator) * 0.3)
    return loaded


def _chats(count: int) -> list[Chat]:
    return [Chat.of([{"role": "system", "content": "You write SQL."},
                     {"role": "user", "content": "Question: how many singers " + "are there " * i}])
            for i in range(count)]


def test_batched_greedy_answers_equal_one_at_a_time(backend):
    params = SamplingParams(max_new_tokens=16)
    chats = _chats(7)  # 3 batches of different prompt lengths: left padding in every one
    batched = backend.complete(chats, params)
    alone = [backend.complete([chat], params)[0] for chat in chats]
    assert [c.text for c in batched] == [c.text for c in alone]
    assert len({c.text for c in batched}) > 1, "answers should differ, or the test proves nothing"
    assert [c.prompt_tokens for c in batched] == [c.prompt_tokens for c in alone]
    assert all(a.prompt_tokens < b.prompt_tokens for a, b in zip(batched, batched[1:]))


def test_prefix_cache_reuses_shared_prompts_without_changing_answers(backend):
    cached = load_backend("tiny", "transformers", device="cpu", prefix_cache=4)
    cached.model.load_state_dict(backend.model.state_dict())
    schema = "Schema:\n" + "CREATE TABLE singer (singer_id INTEGER, name TEXT, age INTEGER);\n" * 4
    # An agent's steps: the same question and schema, a longer query so far each time.
    chats = [Chat.of([{"role": "system", "content": "You write SQL."},
                      {"role": "user", "content": f"Question: {question}\n\n{schema}\nSo far:\n" + "|> WHERE x\n" * step}])
             for question in ("how many singers", "oldest singer") for step in range(3)]
    params = SamplingParams(max_new_tokens=8)
    expected = backend.complete(chats, params)
    answers = cached.complete(chats, params)
    assert [c.text for c in answers] == [c.text for c in expected]
    assert [c.prompt_tokens for c in answers] == [c.prompt_tokens for c in expected]
    prefix = cached.prefix_cache
    assert prefix.reused_tokens > prefix.computed_tokens, "later steps should reuse the first step's prompt"
    assert len(prefix) == 4  # the oldest caches were dropped


def test_length_and_stop_strings(backend):
    chat = _chats(1)
    full = backend.complete(chat, SamplingParams(max_new_tokens=12))[0]
    assert full.finish_reason == "length" and full.completion_tokens == 12
    stop = full.text.strip()[2:5]
    assert stop and stop in full.text
    stopped = backend.complete(chat, SamplingParams(max_new_tokens=12, stop=(stop,)))[0]
    assert stopped.finish_reason == "stop"
    assert stop not in stopped.text
    assert full.text.startswith(stopped.text)


def test_sampling_is_seeded(backend):
    chats = _chats(2)
    first = backend.complete(chats, SamplingParams(max_new_tokens=10, temperature=1.0, seed=7))
    again = backend.complete(chats, SamplingParams(max_new_tokens=10, temperature=1.0, seed=7))
    assert [c.text for c in first] == [c.text for c in again]


def test_tools_and_tool_calls_are_rendered_with_the_model_template(backend):
    tools = [{"type": "function", "function": {"name": "list_tables", "description": "List the tables.",
                                               "parameters": {"type": "object", "properties": {}}}}]
    chat = Chat.of([
        {"role": "system", "content": "sys"},
        {"role": "user", "content": "hi"},
        {"role": "assistant", "content": None, "tool_calls": [
            {"id": "call_1", "type": "function", "function": {"name": "describe_table", "arguments": '{"table": "singer"}'}}]},
        {"role": "tool", "tool_call_id": "call_1", "content": "CREATE TABLE singer (id INT);"},
    ], tools)
    prompt = render_prompt(backend.tokenizer, chat)
    assert '"name": "list_tables"' in prompt
    # The JSON-string arguments an OpenAI client sends appear once-encoded, as in training data.
    assert '<tool_call>\n{"name": "describe_table", "arguments": {"table": "singer"}}\n</tool_call>' in prompt
    assert prompt.endswith("<|im_start|>assistant\n")


def test_template_messages_leaves_undecodable_arguments_alone():
    messages = [{"role": "assistant", "content": None,
                 "tool_calls": [{"function": {"name": "f", "arguments": "not json"}}]}]
    prepared = template_messages(messages)
    assert prepared[0]["content"] == ""
    assert prepared[0]["tool_calls"][0]["function"]["arguments"] == "not json"
    assert messages[0]["content"] is None, "the caller's messages must not be modified"


def test_truncate_at_stop_takes_the_earliest():
    assert truncate_at_stop("a;b|c", [";", "|"]) == ("a", True)
    assert truncate_at_stop("abc", ["x", ""]) == ("abc", False)


def test_scripted_backend_records_chats_and_honours_stop():
    backend = ScriptedBackend(lambda messages: json.dumps(len(messages)) + " END tail")
    out = backend.complete(_chats(2), SamplingParams(stop=(" END",)))
    assert [c.text for c in out] == ["2", "2"]
    assert len(backend.calls) == 2 and backend.calls[0][0].messages[1]["role"] == "user"


def test_sampling_params_reject_nonsense():
    with pytest.raises(ValueError):
        SamplingParams(max_new_tokens=0)
    with pytest.raises(ValueError):
        SamplingParams(temperature=-1)
    with pytest.raises(ValueError):
        SamplingParams(top_p=0)


def test_load_backend_rejects_unknown_backend():
    with pytest.raises(ValueError, match="unknown backend"):
        load_backend("tiny", "onnx")


def test_vllm_backend_says_what_is_missing():
    import importlib.util

    if importlib.util.find_spec("vllm") is not None:
        pytest.skip("vLLM is installed here")
    with pytest.raises(RuntimeError, match="--backend transformers"):
        load_backend("tiny", "vllm")


def test_answers_are_reported_as_they_finish_not_per_batch():
    from pipesql.models.backends import finished_rows_watcher

    reports: list[int] = []
    watcher = finished_rows_watcher({7, 0}, 3, reports.append)
    keep_going = watcher(torch.tensor([[5, 7], [5, 6], [5, 6]]), None)
    assert reports == [1] and not keep_going.any()  # row 0 ended; generation goes on for the rest
    watcher(torch.tensor([[5, 7, 0], [5, 6, 7], [5, 6, 6]]), None)  # row 0 now pads: not counted again
    assert reports == [1, 1]
    watcher.report_rest()  # row 2 ran out of tokens
    assert reports == [1, 1, 1]
    assert finished_rows_watcher({7}, 3, None) is None


def test_every_chat_is_reported_finished_once(backend):
    reports: list[int] = []
    completions = backend.complete(_chats(7), SamplingParams(max_new_tokens=8), on_finished=reports.append)
    assert sum(reports) == len(completions) == 7 and len(reports) >= 3  # at least once per batch of 3
