"""`pipesql generate`: trajectories, tool chats, bad input, split rules, stats and reproducibility."""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path

import pytest

from pipesql.agent import prompts
from pipesql.cli import main as cli_main
from pipesql.decompile import split_operators
from pipesql.generate import Settings, run
from pipesql.generate.pairs import GoldenPair
from pipesql.generate.split import DEV, TRAIN, assign_splits, question_key
from pipesql.generate.stats import percentiles
from pipesql.generate.toolchat import DIRECT, EXPLORE, INCREMENTAL, pattern_for, tables_read
from pipesql.generate.trajectory import operator_kind, trajectory_samples
from pipesql.sql.execute import connect_readonly, execute
from pipesql.agent.tools import TOOL_SPECS, Toolbox
from pipesql.sql.transpile import pipe_to_sqlite


def build_school(path: Path) -> None:
    conn = sqlite3.connect(path)
    conn.executescript(
        """
        CREATE TABLE class (class_id INTEGER PRIMARY KEY, title TEXT);
        CREATE TABLE student (student_id INTEGER PRIMARY KEY, name TEXT, age INT,
                              class_id INTEGER REFERENCES class(class_id));
        """
    )
    conn.executemany("INSERT INTO class VALUES (?, ?)", [(1, "Math"), (2, "Art"), (3, "Music")])
    conn.executemany("INSERT INTO student VALUES (?, ?, ?, ?)",
                     [(i, f"student{i}", 10 + i % 12, 1 + i % 3) for i in range(1, 41)])
    conn.commit()
    conn.close()


def build_shop(path: Path) -> None:
    conn = sqlite3.connect(path)
    conn.executescript("CREATE TABLE product (product_id INTEGER PRIMARY KEY, name TEXT, price REAL, kind TEXT);")
    conn.executemany("INSERT INTO product VALUES (?, ?, ?, ?)",
                     [(i, f"item{i}", 1.5 * i, ("food", "tool", "toy")[i % 3]) for i in range(1, 31)])
    conn.commit()
    conn.close()


def school_pair(k: int) -> dict:
    difficulty = ("easy", "medium", "hard", "extra")[k % 4]
    if difficulty == "easy":
        pipe = f"FROM student\n|> WHERE age > {k % 12 + 10}\n|> SELECT name"
    elif difficulty == "medium":
        pipe = f"FROM student\n|> WHERE age > {k % 12 + 10}\n|> AGGREGATE COUNT(*) AS n GROUP BY class_id\n|> ORDER BY n DESC"
    else:
        pipe = (f"FROM student AS s\n|> JOIN class AS c ON s.class_id = c.class_id\n|> WHERE s.age > {k % 12 + 10}\n"
                f"|> AGGREGATE COUNT(*) AS n GROUP BY c.title\n|> ORDER BY n DESC\n|> LIMIT 2\n|> SELECT title")
    return {"question_id": f"school-{k:03d}", "db_id": "school", "difficulty": difficulty,
            "question": f"Question {k} about students older than {k % 12 + 10}?", "gold_sql": "SELECT 1", "pipe_sql": pipe}


def shop_pair(k: int) -> dict:
    return {"question_id": f"shop-{k:03d}", "db_id": "shop", "difficulty": "easy" if k % 2 else "hard",
            "question": f"Products number {k}?", "gold_sql": "SELECT name FROM product WHERE price > 3",
            "pipe_sql": f"FROM product\n|> WHERE price > {k}\n|> SELECT name, price\n|> ORDER BY price"}


GOOD_SCHOOL, GOOD_SHOP = 44, 20


@pytest.fixture()
def corpus(tmp_path: Path) -> dict:
    """Two databases and a golden-pairs file with good pairs and one of each kind of bad line."""
    db_dir = tmp_path / "database"
    for name, build in (("school", build_school), ("shop", build_shop)):
        (db_dir / name).mkdir(parents=True)
        build(db_dir / name / f"{name}.sqlite")
    lines = [json.dumps(school_pair(k)) for k in range(GOOD_SCHOOL)]
    lines += [json.dumps(shop_pair(k)) for k in range(GOOD_SHOP)]
    # the same question text twice (different case and spacing): one group, one side
    twin = shop_pair(100) | {"question_id": "shop-twin", "question": "  QUESTION 3 about students older than 13? "}
    lines.append(json.dumps(twin))
    bad = {
        "malformed": '{"question_id": "broken", "db_id": ',
        "no_question": json.dumps(school_pair(900) | {"question_id": "others-1", "question": None}),
        "missing_db": json.dumps(school_pair(901) | {"question_id": "lost-1", "db_id": "atlantis"}),
        "prefix_fails": json.dumps(school_pair(902) | {"question_id": "fails-1",
                                                       "pipe_sql": "FROM student\n|> WHERE nope > 1\n|> SELECT name"}),
    }
    numbered = {}
    for key, text in bad.items():
        lines.insert(10 + 7 * len(numbered), text)
    for number, text in enumerate(lines, 1):
        for key, bad_text in bad.items():
            if text == bad_text:
                numbered[key] = number
    golden = tmp_path / "golden.jsonl"
    golden.write_text("\n".join(lines) + "\n" + '{"question_id": "truncated", "db_id": "sch')  # cut last line
    numbered["truncated"] = len(lines) + 1
    return {"golden": golden, "db_dir": db_dir, "lines": numbered, "good": GOOD_SCHOOL + GOOD_SHOP + 1}


def settings_for(corpus: dict, out: Path, **overrides) -> Settings:
    values = dict(golden_pairs=corpus["golden"], db_dir=[corpus["db_dir"]], output_dir=out, tool_calling=True,
                  tool_ratio=0.3, workers=1, seed=7)
    values.update(overrides)
    return Settings(**values)


def read_rows(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines()]


# -- trajectories -------------------------------------------------------------------------------


def test_trajectory_is_one_sample_per_operator_plus_end() -> None:
    pair = GoldenPair(1, "q1", "school", "How many?", "SELECT 1", "", "easy")
    operators = ["FROM student", "|> WHERE age > 12", "|> AGGREGATE COUNT(*) AS n"]
    samples = trajectory_samples(pair, operators, "CREATE TABLE student (...);")
    assert [s["kind"] for s in samples] == ["step", "step", "step", "end"]
    assert [s["messages"][-1]["content"] for s in samples] == operators + [prompts.END_MARKER]
    assert [s["operator"] for s in samples] == ["FROM", "WHERE", "AGGREGATE", None]
    for k, sample in enumerate(samples):
        system, user, _ = sample["messages"]
        assert system == {"role": "system", "content": prompts.STEP_SYSTEM_PROMPT}
        assert user["content"] == prompts.step_user_message("How many?", "CREATE TABLE student (...);",
                                                            "\n".join(operators[:k]))
        assert sample["tools"] is None and sample["id"].startswith("q1:")
    assert "Query so far:\n(empty)" in samples[0]["messages"][1]["content"]
    assert samples[-1]["messages"][1]["content"].endswith("\n".join(operators))


@pytest.mark.parametrize("operator, kind", [
    ("FROM t", "FROM"), ("|> WHERE a > 1", "WHERE"), ("|> LEFT OUTER JOIN u ON t.a = u.a", "JOIN"),
    ("|> CROSS JOIN u", "JOIN"), ("|> ORDER BY a DESC", "ORDER BY"), ("|> AGGREGATE SUM(a) GROUP BY b", "AGGREGATE"),
    ("|> SELECT DISTINCT a", "SELECT"), ("|> AS t2", "AS"), ("|> EXCEPT DISTINCT (FROM u)", "EXCEPT"),
    ("WITH w AS (FROM t)\nFROM w", "WITH"), ("|> LIMIT 1", "LIMIT"), ("|> EXTEND a + 1 AS b", "EXTEND"),
    ("|> ASSERT a", "OTHER"),
])
def test_operator_kinds(operator: str, kind: str) -> None:
    assert operator_kind(operator) == kind


# -- the run ------------------------------------------------------------------------------------


def test_bad_lines_are_reported_with_line_numbers_and_the_run_completes(corpus: dict, tmp_path: Path, capsys) -> None:
    out = tmp_path / "out"
    assert run(settings_for(corpus, out)) == 0
    err = capsys.readouterr().err
    lines = corpus["lines"]
    golden = str(corpus["golden"])
    assert f"{golden}:{lines['malformed']}: skipped, malformed_line" in err
    assert f"{golden}:{lines['truncated']}: skipped, malformed_line" in err
    assert f"{golden}:{lines['missing_db']} (lost-1): skipped, missing_database" in err
    assert f"{golden}:{lines['no_question']} (others-1): skipped, no_question" in err
    assert f"{golden}:{lines['prefix_fails']} (fails-1): skipped, prefix_failed: prefix 2/3 (ends with WHERE)" in err

    skipped = sorted((row["line"], row["reason"], row["question_id"]) for row in read_rows(out / "skipped.jsonl"))
    assert skipped == sorted([
        (lines["malformed"], "malformed_line", None), (lines["truncated"], "malformed_line", None),
        (lines["no_question"], "no_question", "others-1"), (lines["missing_db"], "missing_database", "lost-1"),
        (lines["prefix_fails"], "prefix_failed", "fails-1"),
    ])

    stats = json.loads((out / "stats.json").read_text())
    assert stats["pairs"]["read"] == corpus["good"] + 5
    assert stats["pairs"]["used"] == corpus["good"]
    assert stats["pairs"]["dropped_prefix"] == 1
    assert stats["pairs"]["skipped"] == {"malformed_line": 2, "missing_database": 1, "no_question": 1, "prefix_failed": 1}
    written = read_rows(out / "train.jsonl") + read_rows(out / "dev.jsonl")
    assert not {"fails-1", "lost-1", "others-1"} & {s["question_id"] for s in written}
    assert (out / "manifest.json").is_file()


def test_a_lone_surrogate_or_a_path_as_db_id_costs_one_pair(corpus: dict, tmp_path: Path) -> None:
    """Issue #21, classes 4 and 7: a question holding a lone surrogate (no output file can hold
    it) and a db_id that is an absolute path to a database outside --db-dir are each a named
    problem; the batch is written without them (before: generate wrote nothing, and the path
    was opened)."""
    outside = tmp_path / "elsewhere" / "school"
    outside.mkdir(parents=True)
    build_school(outside / "school.sqlite")
    odd = [school_pair(903) | {"question_id": "surrogate-1", "question": "Who is \ud800 here?"},
           school_pair(904) | {"question_id": "escape-1", "db_id": str(tmp_path / "elsewhere" / "school")}]
    golden = tmp_path / "odd.jsonl"
    golden.write_text(corpus["golden"].read_text().rsplit("\n", 1)[0] + "\n"
                      + "".join(json.dumps(pair) + "\n" for pair in odd))
    out = tmp_path / "out"
    assert run(settings_for(corpus | {"golden": golden}, out)) == 0
    skipped = {row["question_id"]: row for row in read_rows(out / "skipped.jsonl")}
    assert skipped["surrogate-1"]["reason"] == "bad_text" and "question" in skipped["surrogate-1"]["detail"]
    assert skipped["escape-1"]["reason"] == "bad_db_id"
    written = {s["question_id"] for s in read_rows(out / "train.jsonl") + read_rows(out / "dev.jsonl")}
    assert len(written) == corpus["good"] and not {"surrogate-1", "escape-1"} & written


def test_every_written_prefix_executes_and_counts_match(corpus: dict, tmp_path: Path) -> None:
    out = tmp_path / "out"
    run(settings_for(corpus, out, tool_calling=False))
    samples = read_rows(out / "train.jsonl") + read_rows(out / "dev.jsonl")
    golden = {r["question_id"]: r for r in (json.loads(line) for line in corpus["golden"].read_text().splitlines()[:-1]
                                            if line.startswith("{") and line.endswith("}"))}
    used = {s["question_id"] for s in samples}
    expected_steps = sum(len(split_operators(golden[q]["pipe_sql"])) for q in used)
    stats = json.loads((out / "stats.json").read_text())
    assert stats["samples"]["by_kind"] == {"end": len(used), "step": expected_steps}
    assert stats["samples_per_pair"]["mean"] == round(len(samples) / len(used), 2)
    assert sum(stats["samples"]["by_database"].values()) == len(samples)
    assert stats["samples"]["by_operator"]["FROM"] == len(used)
    assert stats["length_unit"] == "characters"
    conns = {db: connect_readonly(corpus["db_dir"] / db / f"{db}.sqlite") for db in ("school", "shop")}
    for sample in samples:
        if sample["kind"] == "step":
            so_far = sample["messages"][1]["content"].split("Query so far:\n", 1)[1]
            query = prompts.join_operators(([] if so_far == "(empty)" else [so_far]) + [sample["messages"][2]["content"]])
            execute(conns[sample["db_id"]], pipe_to_sqlite(query), timeout_s=5, row_cap=10)


def test_same_seed_gives_identical_bytes_whatever_the_workers(corpus: dict, tmp_path: Path) -> None:
    names = ("train.jsonl", "dev.jsonl", "stats.json", "skipped.jsonl")
    run(settings_for(corpus, tmp_path / "a"))
    run(settings_for(corpus, tmp_path / "b", workers=2))
    for name in names:
        assert (tmp_path / "a" / name).read_bytes() == (tmp_path / "b" / name).read_bytes(), name
    run(settings_for(corpus, tmp_path / "c", seed=8))
    dev_a = {s["question_id"] for s in read_rows(tmp_path / "a" / "dev.jsonl")}
    dev_c = {s["question_id"] for s in read_rows(tmp_path / "c" / "dev.jsonl")}
    assert dev_a and dev_c and dev_a != dev_c


def test_split_by_question_and_database(corpus: dict, tmp_path: Path) -> None:
    out = tmp_path / "out"
    run(settings_for(corpus, out, dev_fraction=0.1))
    side_of: dict[str, set] = {}
    for side in ("train", "dev"):
        for sample in read_rows(out / f"{side}.jsonl"):
            side_of.setdefault(sample["question_id"], set()).add(side)
    assert all(len(sides) == 1 for sides in side_of.values())  # every sample of a question on one side
    assert side_of["shop-twin"] == side_of["school-003"]  # same text, same side
    dev_by_db = {}
    for sample in read_rows(out / "dev.jsonl"):
        dev_by_db.setdefault(sample["db_id"], set()).add(sample["question_id"])
    assert set(dev_by_db) == {"school", "shop"}  # each database gives some questions to dev


def _pair(qid: str, db: str, question: str) -> GoldenPair:
    return GoldenPair(0, qid, db, question, "", "FROM t")


def test_assign_splits_rules() -> None:
    pairs = [_pair(f"{db}-{k}", db, f"{db} question {k}") for db, n in (("a", 200), ("b", 100), ("c", 7)) for k in range(n)]
    pairs += [_pair("x-1", "c", "A question   asked twice"), _pair("x-2", "a", "a question asked TWICE")]
    split = assign_splits(pairs, 0.05, seed=1)
    assert split["x-1"] == split["x-2"]
    dev = [q for q, side in split.items() if side == DEV]
    assert abs(len(dev) - 0.05 * 308) <= 1  # 308 question groups
    for db, n in (("a", 200), ("b", 100)):
        share = sum(1 for q in dev if q.startswith(f"{db}-")) / n
        assert 0.03 <= share <= 0.07, (db, share)
    assert split == assign_splits(list(reversed(pairs)), 0.05, seed=1)  # input order does not matter
    assert split != assign_splits(pairs, 0.05, seed=2)
    assert question_key("  A  B ") == "a b"
    texts = {side: {question_key(p.question) for p in pairs if split[p.question_id] == side} for side in (TRAIN, DEV)}
    assert not texts[TRAIN] & texts[DEV]


# -- tool-calling chats -------------------------------------------------------------------------


def test_tool_chats_are_real_and_well_formed(corpus: dict, tmp_path: Path) -> None:
    out = tmp_path / "out"
    run(settings_for(corpus, out, tool_ratio=1.0))
    samples = read_rows(out / "train.jsonl") + read_rows(out / "dev.jsonl")
    chats = [s for s in samples if s["kind"] == "tools"]
    assert len(chats) == corpus["good"]
    assert {c["pattern"] for c in chats} == {DIRECT, EXPLORE, INCREMENTAL}
    golden = {json.loads(line)["question_id"]: json.loads(line) for line in corpus["golden"].read_text().splitlines()
              if line.startswith("{") and line.endswith("}")}
    boxes = {db: Toolbox(corpus["db_dir"] / db / f"{db}.sqlite") for db in ("school", "shop")}
    for chat in chats:
        assert json.loads(chat["tools"]) == TOOL_SPECS
        messages = chat["messages"]
        assert messages[0] == {"role": "system", "content": prompts.AGENT_SYSTEM_PROMPT}
        pair = golden[chat["question_id"]]
        assert messages[1]["content"] == prompts.agent_user_message(pair["question"].strip(), pair["db_id"])
        pending = {}
        calls = []
        for message in messages[2:-1]:
            if message["role"] == "assistant":
                assert not pending
                for call in message["tool_calls"]:
                    assert isinstance(call["function"]["arguments"], str) and call["type"] == "function"
                    pending[call["id"]] = call["function"]
            else:
                assert message["role"] == "tool"
                function = pending.pop(message["tool_call_id"])
                calls.append(function["name"])
                # the output is what the tool really returns
                assert message["content"] == boxes[chat["db_id"]].call(function["name"], function["arguments"])
                assert not message["content"].startswith("Error:")
        assert not pending
        final = messages[-1]
        assert final["role"] == "assistant" and "tool_calls" not in final
        assert final["content"] == pair["pipe_sql"]
        executed = [c for c in calls if c == "execute_pipe_sql"]
        assert executed, "the final query is checked by execution"
        if chat["pattern"] == INCREMENTAL:
            assert calls[0] == "list_tables" and "sample_data" in calls and calls[-1] == "validate_pipe_sql"
        if chat["pattern"] == DIRECT:
            assert calls[0] == "describe_table" and calls[-1] == "execute_pipe_sql"


def test_tool_ratio_is_a_seeded_share(corpus: dict, tmp_path: Path) -> None:
    run(settings_for(corpus, tmp_path / "out", tool_ratio=0.3))
    stats = json.loads((tmp_path / "out" / "stats.json").read_text())
    share = stats["samples"]["by_kind"]["tools"] / stats["pairs"]["used"]
    assert 0.12 <= share <= 0.5
    run(settings_for(corpus, tmp_path / "none", tool_calling=False))
    assert "tools" not in json.loads((tmp_path / "none" / "stats.json").read_text())["samples"]["by_kind"]


def test_patterns_and_tables_read() -> None:
    assert pattern_for("easy", 9) == DIRECT and pattern_for("moderate", 1) == EXPLORE
    assert pattern_for("extra", 1) == INCREMENTAL and pattern_for(None, 2) == DIRECT and pattern_for(None, 6) == INCREMENTAL
    from pipesql.sql.schema import Column, DatabaseSchema, Table

    schema = DatabaseSchema((Table("class", (Column("class_id", "INT"),)), Table("student", (Column("name", "TEXT"),)),
                             Table("stud", (Column("x", "INT"),))))
    assert tables_read("FROM student AS s\n|> JOIN class ON s.class_id = class.class_id", schema) == ["student", "class"]


# -- command line -------------------------------------------------------------------------------


def test_cli_flags(corpus: dict, tmp_path: Path) -> None:
    out = tmp_path / "cli"
    code = cli_main(["generate", "--golden-pairs", str(corpus["golden"]), "--db-dir", str(corpus["db_dir"]),
                     "--output-dir", str(out), "--tool-calling", "--tool-ratio", "0.5", "--limit", "10",
                     "--seed", "3", "--workers", "1"])
    assert code == 0
    stats = json.loads((out / "stats.json").read_text())
    assert stats["pairs"]["usable"] == 10 and stats["settings"]["seed"] == 3 and stats["settings"]["tool_ratio"] == 0.5
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["stage"] == "generate" and manifest["settings"]["db_dir"] == [str(corpus["db_dir"])]


def test_missing_golden_file_fails_cleanly(tmp_path: Path) -> None:
    assert run(Settings(golden_pairs=tmp_path / "none.jsonl", db_dir=[tmp_path], output_dir=tmp_path / "o")) == 1
    golden = tmp_path / "golden.jsonl"
    golden.write_text("")
    with pytest.raises(SystemExit, match="--db-dir"):
        run(Settings(golden_pairs=golden, output_dir=tmp_path / "o"))


def test_percentiles() -> None:
    assert percentiles([]) == {"p50": 0, "p90": 0, "p99": 0, "max": 0, "mean": 0}
    values = list(range(1, 101))
    assert percentiles(values) == {"p50": 50, "p90": 90, "p99": 99, "max": 100, "mean": 50.5}


# -- the embedded demo corpus -------------------------------------------------------------------


def test_benchmark_demo_in_place_of_db_dir(tmp_path: Path) -> None:
    from pipesql.corpora.items import load_items
    from pipesql.decompile import decompile
    from pipesql.sql.schema import read_sqlite_schema

    data_dir = tmp_path / "demo"
    items = load_items("demo", data_dir, "all")
    golden = tmp_path / "golden.jsonl"
    with golden.open("w") as handle:
        for item in items:
            result = decompile(item.gold_sql, read_sqlite_schema(item.db_path).sqlglot_mapping())
            if result.ok:
                handle.write(json.dumps({"question_id": item.question_id, "db_id": item.db_id, "difficulty": item.difficulty,
                                         "question": item.question, "gold_sql": item.gold_sql,
                                         "pipe_sql": result.pipe_sql}) + "\n")
    out = tmp_path / "out"
    assert run(Settings(golden_pairs=golden, benchmark="demo", data_dir=data_dir, output_dir=out, tool_calling=True,
                        workers=2)) == 0
    stats = json.loads((out / "stats.json").read_text())
    assert stats["pairs"]["used"] == stats["pairs"]["read"] > 100  # every demo pair's prefixes execute
    assert set(stats["samples"]["by_database"]) == {i.db_id for i in items}
    assert (out / "stats.png").stat().st_size > 0


def test_schema_trimming_is_opt_in(corpus: dict, tmp_path: Path) -> None:
    run(settings_for(corpus, tmp_path / "whole", tool_calling=False))
    run(settings_for(corpus, tmp_path / "trim", tool_calling=False, trim_schema_to_query=True))

    def schema_of(out: Path, qid: str) -> str:
        sample = next(s for s in read_rows(out / "train.jsonl") + read_rows(out / "dev.jsonl") if s["question_id"] == qid)
        return sample["messages"][1]["content"].split("Schema:\n", 1)[1].split("\n\nQuery so far:")[0]

    whole, trimmed = schema_of(tmp_path / "whole", "shop-001"), schema_of(tmp_path / "trim", "shop-001")
    assert "kind TEXT" in whole and "kind TEXT" not in trimmed  # gold SQL reads name and price only
    assert "price REAL" in trimmed and "product_id INTEGER PRIMARY KEY" in trimmed
