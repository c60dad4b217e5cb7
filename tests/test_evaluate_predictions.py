"""``pipesql evaluate --predictions FILE``: predictions made elsewhere, scored by execution
accuracy and test-suite accuracy (the match must hold on the database variants too)."""

from __future__ import annotations

import json
import logging
import sqlite3
from contextlib import closing
from pathlib import Path

import pytest

from pipesql.cli import main
from pipesql.evaluate.predictions import read_predictions
from pipesql.evaluate.scoring import is_pipe_sql


@pytest.fixture()
def spider_dir(tmp_path) -> Path:
    """A Spider-layout folder with one database and three questions."""
    folder = tmp_path / "bench"
    (folder / "database" / "zoo").mkdir(parents=True)
    with closing(sqlite3.connect(folder / "database" / "zoo" / "zoo.sqlite")) as conn:
        conn.executescript("""
            CREATE TABLE animals (id INTEGER PRIMARY KEY, name TEXT, legs INTEGER);
            INSERT INTO animals VALUES (1, 'ant', 6), (2, 'bird', 2), (3, 'cat', 4), (4, 'dog', 4);
        """)
        conn.commit()
    questions = [("How many animals have fewer than 5 legs?", "SELECT count(*) FROM animals WHERE legs < 5"),
                 ("Names of animals with fewer than 3 legs?", "SELECT name FROM animals WHERE legs < 3"),
                 ("All names?", "SELECT name FROM animals")]
    (folder / "dev.json").write_text(json.dumps([{"db_id": "zoo", "question": q, "query": sql} for q, sql in questions]))
    (folder / "tables.json").write_text("[]")
    (folder / "train_spider.json").write_text("[]")
    return folder


def _evaluate(spider_dir: Path, lines: list[str], out: Path, *extra: str) -> tuple[list[dict], dict]:
    predictions = out.parent / "predictions.jsonl"
    predictions.write_text("\n".join(lines) + "\n")
    assert main(["evaluate", "--predictions", str(predictions), "--benchmark", "spider", "--data-dir",
                 str(spider_dir), "--out", str(out), *extra]) == 0
    records = [json.loads(line) for line in (out / "eval_results.jsonl").read_text().splitlines()]
    return records, json.loads((out / "eval_summary.json").read_text())


def test_predictions_are_scored_by_execution_and_test_suite_accuracy(spider_dir, tmp_path, caplog):
    lines = [
        # pipe SQL, right
        json.dumps({"question_id": "dev-00000", "sql": "FROM animals |> WHERE legs < 5 |> AGGREGATE COUNT(*)"}),
        # standard SQL, right on the database only: no animal has 3 legs there, a variant has one
        json.dumps({"question_id": "dev-00001", "sql": "SELECT name FROM animals WHERE legs <= 3"}),
        "not json at all",
        json.dumps({"sql": "SELECT 1"}),
        json.dumps({"question_id": "dev-00099", "sql": "SELECT 1"}),
        json.dumps({"question_id": "dev-00000", "sql": "SELECT 2"}),
        json.dumps({"question_id": "dev-00002"}),
    ]
    with caplog.at_level(logging.ERROR):
        records, summary = _evaluate(spider_dir, lines, tmp_path / "out")
    by_id = {r["question_id"]: r for r in records}
    assert by_id["dev-00000"]["status"] == "match" and by_id["dev-00000"]["test_suite"] is True
    assert by_id["dev-00001"]["status"] == "match" and by_id["dev-00001"]["test_suite"] is False
    assert by_id["dev-00001"]["test_suite_detail"].startswith("variant ")
    assert by_id["dev-00002"]["status"] == "no_prediction"  # its only line was bad
    assert summary["execution_accuracy"] == pytest.approx(2 / 3)
    assert summary["test_suite_accuracy"] == pytest.approx(1 / 3)
    assert summary["variants"] == 8
    logged = caplog.text
    for number in (3, 4, 5, 6, 7):
        assert f"predictions.jsonl:{number}:" in logged
    assert "dev-00099" in logged and "given again (first on line 1)" in logged


def test_variants_zero_turns_test_suite_accuracy_off(spider_dir, tmp_path):
    lines = [json.dumps({"question_id": "dev-00001", "sql": "SELECT name FROM animals WHERE legs <= 3"})]
    records, summary = _evaluate(spider_dir, lines, tmp_path / "out", "--variants", "0")
    assert records[1]["status"] == "match" and records[1]["test_suite"] is None
    assert summary["test_suite_accuracy"] is None and summary["execution_accuracy"] == pytest.approx(1 / 3)


def test_reading_predictions_names_each_bad_line(tmp_path):
    path = tmp_path / "p.jsonl"
    path.write_text('{"question_id": "a", "pipe_sql": "FROM t"}\n[1]\n{"question_id": true, "sql": "x"}\n')
    read = read_predictions(path, {"a"})
    assert read.queries == {"a": "FROM t"}
    assert [bad.line for bad in read.problems] == [2, 3]


@pytest.mark.parametrize(("query", "pipe"), [
    ("FROM t |> SELECT a", True), ("from t", True), ("SELECT a FROM t", False),
    ("WITH x AS (SELECT 1) SELECT * FROM x", False), ("SELECT a FROM t |> WHERE a > 1", True),
])
def test_pipe_sql_is_told_from_standard_sql(query, pipe):
    assert is_pipe_sql(query) is pipe


def test_a_model_run_reports_test_suite_accuracy_beside_execution_accuracy(spider_dir, tmp_path):
    from pipesql.evaluate import Settings, run
    from pipesql.models.backends import ScriptedBackend

    answers = {"How many animals have fewer than 5 legs?": "FROM animals |> WHERE legs < 5 |> AGGREGATE COUNT(*)",
               "Names of animals with fewer than 3 legs?": "FROM animals |> WHERE legs <= 3 |> SELECT name",
               "All names?": "FROM animals |> SELECT name"}
    backend = ScriptedBackend(lambda messages: next(q for question, q in answers.items()
                                                    if question in messages[-1]["content"]))
    settings = Settings(benchmark="spider", data_dir=spider_dir, split="dev", mode="oneshot", out=tmp_path / "out")
    assert run(settings, backend=backend) == 0
    records = [json.loads(line) for line in (settings.out / "eval_results.jsonl").read_text().splitlines()]
    summary = json.loads((settings.out / "eval_summary.json").read_text())
    assert [r["test_suite"] for r in records] == [True, False, True]
    assert (summary["execution_accuracy"], summary["test_suite_accuracy"]) == (pytest.approx(1.0), pytest.approx(2 / 3))
