"""The agent data of the main job: the tool chats that `pipesql pipeline` generates are all within
its training limit, counted as train counts them, and the agents that run at inference (evaluate's,
serve's tools) read tool answers exactly as the chats show them."""

from __future__ import annotations

import importlib
import json
from pathlib import Path

import pytest

from pipesql.agent import prompts
from pipesql.agent.tools import ROW_CAP, TOOL_SPECS
from pipesql.cli import COMMANDS
from pipesql.pipeline.settings import Settings as PipelineSettings
from pipesql.pipeline.stages import Layout, _generate, _stage_settings, _validate

pytest.importorskip("transformers")


@pytest.fixture(scope="module")
def main_job(tmp_path_factory: pytest.TempPathFactory) -> tuple[PipelineSettings, Layout]:
    """The main job's validate and generate stages, with the settings it gives them."""
    layout = Layout(tmp_path_factory.mktemp("main-job"))
    settings = PipelineSettings(out=layout.root)
    for name, values_of in (("validate", _validate), ("generate", _generate)):
        module = importlib.import_module(COMMANDS[name][0])
        values = {**values_of(settings, layout), "progress": False}
        assert module.run(_stage_settings(module, values)) == 0
    return settings, layout


@pytest.fixture(scope="module")
def tokenizer(main_job):
    """The main job's model's tokenizer (SmolLM2's, which ``test_models.py`` builds too): the
    limit is in its tokens."""
    from pipesql.models.loading import load_tokenizer
    from pipesql.models.registry import resolve_model

    return load_tokenizer(resolve_model(main_job[0].model))


def rows_of(path: Path, kind: str) -> list[dict]:
    return [row for row in map(json.loads, path.read_text().splitlines()) if row["kind"] == kind]


def test_the_main_job_trains_on_every_tool_chat(main_job, tokenizer) -> None:
    from pipesql.train.data import load_tokenized, tokenize_conversation

    settings, layout = main_job
    chats = rows_of(layout.generate / "train.jsonl", "tools")
    assert len(chats) >= 25  # about 30% of the 110 demo pairs
    lengths = [len(tokenize_conversation(tokenizer, chat)["input_ids"]) for chat in chats]
    assert max(lengths) <= settings.max_seq_length, sorted(lengths)
    # and train, loading the file as the main job does, skips none
    _, stats = load_tokenized(tokenizer, layout.generate / "train.jsonl", max_seq_length=settings.max_seq_length,
                              end_sample_share=settings.end_sample_share)
    assert stats.too_long == 0 and not stats.bad and stats.kept_by_kind["tools"] == len(chats)


def test_generate_counts_tokens_as_train_does(main_job, tokenizer) -> None:
    # SmolLM2's own chat template renders no tools and no tool calls: counting with it would
    # show tool chats within the limit that train then skips.
    from pipesql.train.data import tokenize_conversation

    settings, layout = main_job
    chats = rows_of(layout.generate / "train.jsonl", "tools") + rows_of(layout.generate / "dev.jsonl", "tools")
    lengths = sorted(len(tokenize_conversation(tokenizer, chat)["input_ids"]) for chat in chats)
    by_kind = json.loads((layout.generate / "stats.json").read_text())["length_by_kind"]
    assert (by_kind["tools"]["count"], by_kind["tools"]["min"], by_kind["tools"]["max"]) == (
        len(chats), lengths[0], lengths[-1])
    assert by_kind["tools"]["over_cut_off"] == sum(n > settings.max_seq_length for n in lengths) == 0


def _executions(chat: dict) -> list[tuple[str, str]]:
    """``(sql, answer)`` of each ``execute_pipe_sql`` call in a tool chat."""
    calls = {call["id"]: call["function"] for message in chat["messages"] for call in message.get("tool_calls") or ()}
    return [(json.loads(calls[m["tool_call_id"]]["arguments"])["sql"], m["content"])
            for m in chat["messages"] if m["role"] == "tool" and calls[m["tool_call_id"]]["name"] == "execute_pipe_sql"]


def _cut_execution(main_job) -> tuple[dict, str, str]:
    """A tool chat and one of its executions whose answer the row cap cut: where the limits show."""
    for chat in rows_of(main_job[1].generate / "train.jsonl", "tools"):
        for sql, answer in _executions(chat):
            if answer.endswith(f"(first {ROW_CAP} rows shown; the result has more)"):
                return chat, sql, answer
    raise AssertionError("no execution in the tool chats was cut at the row cap")


def test_the_evaluate_agent_reads_tool_answers_as_the_chats_show_them(main_job) -> None:
    from pipesql.corpora.demo import ensure_corpus
    from pipesql.corpora.items import Item
    from pipesql.evaluate.predict import GenerationOptions, predict_agent
    from pipesql.models.backends import ScriptedBackend

    chat, sql, answer = _cut_execution(main_job)
    operators = sql.split(prompts.OPERATOR_SEPARATOR)
    database = ensure_corpus() / "database" / chat["db_id"] / f"{chat['db_id']}.sqlite"
    item = Item("q", chat["db_id"], "question", "SELECT 1", database)

    def next_operator(messages: list[dict]) -> str:
        so_far = messages[-1]["content"].split("Query so far:\n", 1)[1]
        done = 0 if so_far == "(empty)" else len(so_far.split(prompts.OPERATOR_SEPARATOR))
        return operators[done] if done < len(operators) else prompts.END_MARKER

    [prediction] = predict_agent([item], ["(schema)"], ScriptedBackend(next_operator), GenerationOptions())
    assert prediction.query == sql
    assert prediction.steps[len(operators) - 1]["tool"]["output"] == answer


def test_serve_s_tools_answer_and_describe_themselves_as_the_chats_show_them(main_job) -> None:
    from pipesql.corpora.demo import ensure_corpus
    from pipesql.serve import Settings as ServeSettings
    from pipesql.serve.tools import ToolService

    chat, sql, answer = _cut_execution(main_job)
    assert json.loads(chat["tools"]) == TOOL_SPECS  # what GET /tools returns
    service = ToolService([ensure_corpus() / "database"], row_cap=ServeSettings().tool_row_cap)
    assert service.call("execute_pipe_sql", chat["db_id"], {"sql": sql}) == answer
