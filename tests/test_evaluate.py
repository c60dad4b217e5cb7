"""``pipesql evaluate`` on the embedded demo corpus: both modes end to end with the tiny model, and
every status produced and counted, with scripted predictions for what a random model can't reach."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from pipesql.agent import prompts
from pipesql.corpora.items import Item, load_items
from pipesql.decompile import decompile
from pipesql.evaluate import RESULTS_NAME, SUMMARY_NAME, CHART_NAME, Settings, run
from pipesql.evaluate.scoring import (EXEC_ERROR, GOLD_ERROR, MATCH, MISMATCH, NO_PREDICTION, STATUSES,
                                      TRANSPILE_ERROR, Limits, score)
from pipesql.models.backends import ScriptedBackend
from pipesql.sql.schema import read_sqlite_schema

LIMIT = 10


@pytest.fixture(scope="module")
def items(demo_corpus) -> list[Item]:
    loaded = load_items("demo", demo_corpus, "dev", LIMIT)
    assert len(loaded) == LIMIT
    return loaded


def _pipe_operators(item: Item) -> list[str]:
    result = decompile(item.gold_sql, read_sqlite_schema(item.db_path).sqlglot_mapping())
    assert result.ok, f"{item.question_id}: {result.reason}"
    return list(result.operators)


def _first_table(item: Item) -> str:
    return read_sqlite_schema(item.db_path).tables[0].name


def _question(messages: list[dict]) -> str:
    return re.match(r"Question: (.*)", messages[-1]["content"]).group(1)


# What each scripted question answers, by position; every status appears.
PLAN = [MATCH, MISMATCH, EXEC_ERROR, TRANSPILE_ERROR, NO_PREDICTION, MATCH, MISMATCH, MATCH, EXEC_ERROR, NO_PREDICTION]


def _scripted_queries(items: list[Item]) -> dict[str, list[str]]:
    """Question -> the operators the scripted model answers with."""
    queries = {}
    for item, status in zip(items, PLAN):
        table = _first_table(item)
        queries[item.question] = {
            MATCH: _pipe_operators(item),
            MISMATCH: [f"FROM {table}", "|> AGGREGATE COUNT(*) - 987654321 AS wrong"],
            EXEC_ERROR: ["FROM no_such_table_anywhere"],
            TRANSPILE_ERROR: ["FROM ((( |> |> SELECT"],
            NO_PREDICTION: [],
        }[status]
    return queries


def _settings(tmp_path: Path, demo_corpus: Path, mode: str, **extra) -> Settings:
    return Settings(**{"model": "scripted", "benchmark": "demo", "data_dir": demo_corpus, "split": "dev", "mode": mode,
                       "limit": LIMIT, "out": tmp_path / mode, **extra})


def _read_outputs(out: Path) -> tuple[list[dict], dict]:
    records = [json.loads(line) for line in (out / RESULTS_NAME).read_text().splitlines()]
    return records, json.loads((out / SUMMARY_NAME).read_text())


def _check_counts(records: list[dict], summary: dict) -> None:
    assert summary["questions"] == len(records)
    assert sum(summary["status_counts"].values()) == len(records)
    for status in STATUSES:
        assert summary["status_counts"][status] == sum(r["status"] == status for r in records)
    assert summary["matches"] == summary["status_counts"][MATCH]
    assert summary["execution_accuracy"] == pytest.approx(summary["matches"] / len(records))
    assert sum(g["questions"] for g in summary["by_difficulty"].values()) == len(records)
    for label, group in summary["by_difficulty"].items():
        mine = [r for r in records if (r["difficulty"] or "unknown") == label]
        assert group["questions"] == len(mine)
        assert group["matches"] == sum(r["status"] == MATCH for r in mine)


def test_oneshot_statuses_are_produced_and_counted(tmp_path, demo_corpus, items):
    queries = _scripted_queries(items)
    # A one-shot model answers with the whole query; wrap some in a fence as base models do.
    backend = ScriptedBackend(lambda messages: (
        "```sql\n" + "\n".join(queries[_question(messages)]) + ";\n```" if len(queries[_question(messages)]) > 1
        else "\n".join(queries[_question(messages)])))
    settings = _settings(tmp_path, demo_corpus, "oneshot")
    assert run(settings, backend=backend) == 0

    records, summary = _read_outputs(settings.out)
    assert [r["question_id"] for r in records] == [i.question_id for i in items]
    assert [r["status"] for r in records] == PLAN
    _check_counts(records, summary)
    assert summary["status_counts"] == {MATCH: 3, MISMATCH: 2, EXEC_ERROR: 2, TRANSPILE_ERROR: 1,
                                        NO_PREDICTION: 2, GOLD_ERROR: 0}
    assert summary["mode"] == "oneshot" and summary["model"] == "scripted"
    for record, item in zip(records, items):
        assert record["gold_sql"] == item.gold_sql and record["db_id"] == item.db_id
        assert set(record["timings"]) >= {"generate_s"}
    assert "no_such_table_anywhere" in records[2]["detail"]
    assert records[1]["detail"], "a mismatch says how the results differ"
    # One batch per batch_size questions, each prompt the training data's one-shot format.
    chat = backend.calls[0][0]
    assert chat.messages[0] == {"role": "system", "content": prompts.ONESHOT_SYSTEM_PROMPT}
    assert "CREATE TABLE" in chat.messages[1]["content"]
    assert (settings.out / CHART_NAME).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    manifest = json.loads((settings.out / "manifest.json").read_text())
    assert manifest["stage"] == "evaluate" and manifest["metrics"]["questions"] == LIMIT


def _step_answer(queries: dict[str, list[str]], rejected_first: set[str]):
    """A step-protocol model: the next operator of its query given the query so far, then the
    end marker. For questions in ``rejected_first`` its greedy answer is broken and only a
    sampled retry gives the right operator."""

    def answer(messages: list[dict], temperature: float) -> str:
        question = _question(messages)
        so_far = messages[-1]["content"].split("Query so far:\n", 1)[1]
        done = [] if so_far == "(empty)" else so_far.split("\n")
        operators = queries[question]
        assert done == operators[:len(done)], "the agent must show exactly the operators it accepted"
        if len(done) == len(operators):
            return prompts.END_MARKER
        if question in rejected_first and temperature == 0:
            return "|> WHERE no_such_column = 1" if done else "FROM no_such_table_either"
        return operators[len(done)]

    return answer


def test_agent_statuses_retries_and_trajectories(tmp_path, demo_corpus, items):
    queries = _scripted_queries(items)
    rejected_first = {items[0].question}  # a match reached only through retries
    script = _step_answer(queries, rejected_first)
    calls: list[float] = []

    class Backend(ScriptedBackend):
        def complete(self, chats, params, on_finished=None):
            calls.extend(params.temperature for _ in chats)
            self.answer = lambda messages: script(messages, params.temperature)
            return super().complete(chats, params, on_finished)

    settings = _settings(tmp_path, demo_corpus, "agent", max_retries=2, max_steps=12)
    assert run(settings, backend=Backend(lambda m: "")) == 0
    records, summary = _read_outputs(settings.out)
    assert [r["status"] for r in records] == PLAN
    _check_counts(records, summary)

    first = records[0]
    operators = queries[items[0].question]
    assert first["prediction"] == "\n".join(operators)
    assert first["finish"] == "end_marker"
    # Every greedy answer of this question is broken: each step is rejected once, then a sampled
    # retry is accepted; the end marker needs no tool.
    for number in range(1, len(operators) + 1):
        attempts = [s for s in first["steps"] if s["step"] == number]
        assert [s["accepted"] for s in attempts] == [False, True], f"step {number} is retried once, by sampling"
        assert [s["attempt"] for s in attempts] == [0, 1]
        assert attempts[0]["tool"]["name"] == "execute_pipe_sql" and not attempts[0]["tool"]["ok"]
        assert attempts[1]["tool"]["ok"] and attempts[1]["operator"] == operators[number - 1]
    assert first["tool_calls"] == 2 * len(operators)
    assert first["steps"][-1] == {**first["steps"][-1], "operator": None, "finished": True}

    exec_failure = records[2]
    assert exec_failure["finish"] == "retries_exhausted"
    assert len(exec_failure["steps"]) == 1 + settings.max_retries, "retries are bounded"
    assert exec_failure["prediction"] == "FROM no_such_table_anywhere"

    # Ending before the first operator is rejected and retried like a failing step.
    no_query = records[4]
    assert no_query["finish"] == "retries_exhausted" and no_query["prediction"] == ""
    assert [s["accepted"] for s in no_query["steps"]] == [False] * (1 + settings.max_retries)
    assert all(s["rejected"] == "end marker before any operator" for s in no_query["steps"])
    assert 0.0 in calls and settings.retry_temperature in calls
    assert summary["agent"]["finish_counts"]["end_marker"] >= 5


def test_agent_step_limit(tmp_path, demo_corpus, items):
    backend = ScriptedBackend(lambda messages: "|> WHERE TRUE" if "Query so far:\n(empty)" not in messages[-1]["content"]
                              else f"FROM {_first_table(items[0])}")
    settings = _settings(tmp_path, demo_corpus, "agent", max_steps=3, limit=2)
    assert run(settings, backend=backend) == 0
    records, _ = _read_outputs(settings.out)
    for record in records:
        assert record["finish"] == "step_limit"
        assert record["prediction"].count("\n") == 2
        assert len(record["steps"]) == 3


def test_agent_step_ends_at_a_blank_line(tmp_path, demo_corpus, items):
    # A barely trained model answers its step, then goes on to invent the next prompt.
    table = _first_table(items[0])
    backend = ScriptedBackend(lambda messages: f"FROM {table}\n\nQuestion: how many rows?\n\nSchema: ...")
    settings = _settings(tmp_path, demo_corpus, "agent", max_steps=1, limit=1)
    assert run(settings, backend=backend) == 0
    records, _ = _read_outputs(settings.out)
    assert records[0]["steps"][0]["answer"] == f"FROM {table}"
    assert records[0]["prediction"] == f"FROM {table}"


@pytest.mark.parametrize("mode", ["oneshot", "agent"])
def test_tiny_model_end_to_end_through_the_cli(tmp_path, demo_corpus, mode):
    from pipesql.cli import main

    out = tmp_path / f"tiny-{mode}"
    code = main(["evaluate", "--model", "tiny", "--benchmark", "demo", "--data-dir", str(demo_corpus), "--split", "dev",
                 "--mode", mode, "--limit", "3", "--out", str(out), "--backend", "transformers", "--device", "cpu",
                 "--max-new-tokens", "24", "--step-max-new-tokens", "12", "--max-steps", "2", "--max-retries", "1"])
    assert code == 0
    records, summary = _read_outputs(out)
    assert len(records) == 3 and all(r["status"] in STATUSES for r in records)
    _check_counts(records, summary)
    assert summary["model"] == "tiny" and summary["backend"] == "TransformersBackend"
    assert summary["questions_per_s"] > 0
    if mode == "agent":
        assert all(1 <= len(r["steps"]) <= 2 * 2 for r in records)
    assert (out / CHART_NAME).is_file() and (out / "manifest.json").is_file()


def test_scoring_failures_are_statuses_not_crashes(items, tmp_path):
    item = items[0]
    operators = _pipe_operators(item)
    assert score(item, "\n".join(operators)).status == MATCH
    broken_gold = Item("x-1", item.db_id, "q", "SELECT nothing FROM nowhere", item.db_path)
    assert score(broken_gold, "\n".join(operators)).status == GOLD_ERROR
    missing_db = Item("x-2", "ghost", "q", "SELECT 1", tmp_path / "ghost.sqlite")
    result = score(missing_db, "FROM t")
    assert result.status == GOLD_ERROR and "ghost" in result.detail
    slow = ("FROM (WITH RECURSIVE r(n) AS (SELECT 1 UNION ALL SELECT n + 1 FROM r) SELECT n FROM r) "
            "|> AGGREGATE COUNT(*)")
    result = score(item, slow, limits=Limits(timeout_s=0.2))
    assert result.status == EXEC_ERROR and "timeout" in result.detail


def test_ordered_gold_needs_ordered_rows(tmp_path):
    import sqlite3

    db = tmp_path / "t.sqlite"
    conn = sqlite3.connect(db)
    conn.executescript("CREATE TABLE t (a INT, b TEXT); INSERT INTO t VALUES (1, 'x'), (2, 'y'), (3, 'z');")
    conn.commit()
    conn.close()
    ordered = Item("o-1", "t", "q", "SELECT a FROM t ORDER BY a DESC", db)
    assert score(ordered, "FROM t |> ORDER BY a DESC |> SELECT a").status == MATCH
    reversed_rows = score(ordered, "FROM t |> ORDER BY a |> SELECT a")
    assert reversed_rows.status == MISMATCH and "REORDER" in reversed_rows.detail
    unordered = Item("o-2", "t", "q", "SELECT a FROM t", db)
    assert score(unordered, "FROM t |> ORDER BY a DESC |> SELECT a").status == MATCH
    # Ties at a LIMIT cut: any of the tied rows is right.
    tied = Item("o-3", "t", "q", "SELECT b FROM t ORDER BY a > 1 DESC LIMIT 1", db)
    assert score(tied, "FROM t |> WHERE a = 2 |> SELECT b").status == MATCH
    assert score(tied, "FROM t |> WHERE a = 3 |> SELECT b").status == MATCH
    assert score(tied, "FROM t |> WHERE a = 1 |> SELECT b").status == MISMATCH


def test_a_malformed_entry_is_a_named_gold_error(demo_corpus, items):
    """An entry with no SQL counts in the denominator as a gold error naming it; the rest score."""
    from pipesql.evaluate import evaluate_items

    bad = Item("dev-99999", "", None, "", demo_corpus / "database" / "_" / "_.sqlite", problem="dev-99999: entry has no 'query'")
    good = items[0]
    backend = ScriptedBackend(lambda messages: "```sql\n" + "\n".join(_pipe_operators(good)) + "\n```")
    records, _ = evaluate_items([good, bad], backend, Settings(model="scripted", benchmark="demo", mode="oneshot"))
    assert [r["status"] for r in records] == [MATCH, GOLD_ERROR]
    assert records[1]["detail"] == "dev-99999: entry has no 'query'"
