"""The sandbox (pipesql.sql.execute) through every Python entry point that runs SQL someone else
wrote: the agent tools (generate and the evaluation agent), evaluate's scoring, and execute()
itself (validate's gold SQL). Each attack runs on a copy of a database in a tmp dir; the tests
check the database's hash, that no file appeared, that later answers are unchanged, and the
time and memory bounds. The same attacks over HTTP are in test_serve.py."""

from __future__ import annotations

import shutil
import sqlite3
import time
from contextlib import closing
from pathlib import Path

import pytest

from pipesql.agent.tools import ROW_CAP, Toolbox, format_result
from pipesql.corpora.items import Item
from pipesql.evaluate.scoring import EXEC_ERROR, MATCH, TRANSPILE_ERROR, VARIANTS_SLACK_S, Limits, score
from pipesql.sql.execute import (MAX_VALUE_BYTES, QueryError, QueryRefused, QueryTimeout, connect_readonly, execute,
                                 require_query)
from pipesql.sql.isolated import KILL_GRACE_S, call_isolated
from pipesql.sql.transpile import MAX_PIPE_OPERATORS, MAX_PIPE_SQL_CHARS, TranspileError, pipe_to_sqlite
from pipesql.validate.variants import variants_budget_s
from sandbox_attacks import (BACK_TO_BACK, INSTR, HUGE_VALUES, ONE_STEP_ESCAPES, PROBES, TEN_MILLION_ROWS, TEN_MILLION_ROWS_SORTED, WRITES, build_db,
                             file_hash, files_under, fill, reset_peak_rss, rss_mb)

TOOL_TIMEOUT_S = 2.0


@pytest.fixture()
def scene(tmp_path: Path):
    """A database and a second copy an attack would like to change. Whatever the test does,
    afterwards both files are byte for byte the same, no file appeared beside them, and a
    fresh toolbox gets the probes' first answers."""
    db = build_db(tmp_path / "music.sqlite")
    victim = tmp_path / "victim.sqlite"
    shutil.copy(db, victim)
    hashes, files, answers = (file_hash(db), file_hash(victim)), files_under(tmp_path), _fresh_answers(db)
    yield db, victim, tmp_path / "created.sqlite"
    assert (file_hash(db), file_hash(victim)) == hashes
    assert files_under(tmp_path) == files
    assert _fresh_answers(db) == answers


def _answers(box: Toolbox) -> list[str]:
    """The probes on the toolbox's own connection, past its answer cache."""
    return [format_result(box.execute(box.translate(probe))) for probe in PROBES]


def _fresh_answers(db: Path) -> list[str]:
    with Toolbox(db) as box:
        return _answers(box)


@pytest.mark.parametrize("tool", ["execute_pipe_sql", "validate_pipe_sql"])
def test_tools_cannot_write_open_files_or_change_later_answers(scene, tool):
    db, victim, new_file = scene
    folder, hashes = db.parent, (file_hash(db), file_hash(victim))
    files_before = files_under(folder)
    reset_peak_rss()
    rss_before = rss_mb("VmRSS")
    with Toolbox(db, timeout_s=TOOL_TIMEOUT_S) as box:
        before = _answers(box)
        for attack in WRITES:
            start = time.monotonic()
            out = box.call(tool, {"sql": fill(attack, victim, new_file)})
            assert out.startswith("Error:"), (attack, out)
            assert time.monotonic() - start < TOOL_TIMEOUT_S + 1
        assert _answers(box) == before  # same connection, same toolbox: nothing carried over
    assert rss_mb("VmHWM") - rss_before < 100
    assert (file_hash(db), file_hash(victim)) == hashes
    assert files_under(folder) == files_before and not new_file.exists()
    assert _fresh_answers(db) == before


def test_the_gate_names_what_it_refused(scene):
    db, victim, new_file = scene
    with Toolbox(db) as box:
        assert "only read-only queries may run, not DELETE" in box.call("execute_pipe_sql", {"sql": WRITES[1]})
        assert "not authorized" in box.call("execute_pipe_sql", {"sql": WRITES[-1].format(new_file=new_file)})
    for refused in ["PRAGMA case_sensitive_like = 1", "SELECT 1; SELECT 2", "ATTACH 'x.db' AS x", "VACUUM",
                    "WITH a AS (SELECT 1) DELETE FROM singer", "", "EXPLAIN DELETE FROM singer"]:
        with pytest.raises(QueryRefused):
            require_query(refused)
    for allowed in ["SELECT 1", "WITH a AS (SELECT 1) SELECT * FROM a", "SELECT 1 UNION SELECT 2",
                    "EXPLAIN SELECT * FROM singer", "VALUES (1)"]:
        require_query(allowed)


def test_raw_sql_writes_are_refused_by_the_authorizer_too(scene):
    """SQL that slips past the gate (sqlglot cannot parse it) still cannot write: the authorizer
    denies it while SQLite prepares it."""
    db, victim, new_file = scene
    conn = connect_readonly(db)
    for sql in [f"ATTACH DATABASE '{victim}' AS w", f"VACUUM INTO '{new_file}'", "PRAGMA case_sensitive_like = 1",
                "CREATE TEMP TABLE t AS SELECT 1", "BEGIN IMMEDIATE", "SAVEPOINT s"]:
        with pytest.raises(QueryError):
            execute(conn, sql)
        # the same statement straight through sqlite3, as trusted code would send it, is denied too
        with pytest.raises(sqlite3.DatabaseError):
            conn.execute(sql)
    assert execute(conn, "SELECT name FROM singer WHERE name LIKE 'a%' ORDER BY name").rows == (("ANNE",), ("Ada",), ("alan",))
    assert not new_file.exists()


def test_scoring_a_malicious_prediction_changes_nothing(scene):
    db, victim, new_file = scene
    hashes = (file_hash(db), file_hash(victim))
    item = Item("q-1", "music", "how many singers?", "SELECT count(*) FROM singer", db)
    for attack in WRITES:
        outcome = score(item, fill(attack, victim, new_file), limits=Limits(timeout_s=TOOL_TIMEOUT_S))
        assert outcome.status in (EXEC_ERROR, TRANSPILE_ERROR), (attack, outcome)
    assert score(item, "FROM singer |> AGGREGATE COUNT(*) AS n").status == MATCH
    assert (file_hash(db), file_hash(victim)) == hashes and not new_file.exists()


@pytest.mark.parametrize("attack", HUGE_VALUES)
def test_a_huge_value_fails_at_once_in_little_memory(scene, attack):
    db, _, _ = scene
    reset_peak_rss()
    rss_before = rss_mb("VmRSS")
    with Toolbox(db, timeout_s=TOOL_TIMEOUT_S) as box:
        start = time.monotonic()
        out = box.call("execute_pipe_sql", {"sql": attack})
        seconds = time.monotonic() - start
    assert out.startswith("Error:") and ("too big" in out or "exceeded" in out), out
    assert seconds < TOOL_TIMEOUT_S + 1
    assert rss_mb("VmHWM") - rss_before < 100


def test_ten_million_rows_stream_only_the_cap(scene):
    db, _, _ = scene
    reset_peak_rss()
    rss_before = rss_mb("VmRSS")
    with Toolbox(db, timeout_s=TOOL_TIMEOUT_S) as box:
        start = time.monotonic()
        first = box.call("execute_pipe_sql", {"sql": TEN_MILLION_ROWS})
        assert first.splitlines()[-1] == f"(first {ROW_CAP} rows shown; the result has more)"
        assert time.monotonic() - start < 1
        start = time.monotonic()
        sorted_ = box.call("execute_pipe_sql", {"sql": TEN_MILLION_ROWS_SORTED})  # must read all 10M to sort
        seconds = time.monotonic() - start
    assert sorted_.startswith("Error:") and f"exceeded {TOOL_TIMEOUT_S:g} s" in sorted_
    assert seconds < TOOL_TIMEOUT_S + 1
    assert rss_mb("VmHWM") - rss_before < 100


def test_result_bytes_are_bounded_while_streaming(scene):
    db, _, _ = scene
    conn = connect_readonly(db)
    wide = (f"WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < 10000000) "
            f"SELECT i, randomblob({MAX_VALUE_BYTES // 2}) FROM n")
    with pytest.raises(QueryError, match="result larger than 8388608 bytes"):
        execute(conn, wide, row_cap=1_000, max_bytes=8 << 20)


def test_timeout_holds_inside_a_single_statement(scene):
    db, _, _ = scene
    conn = connect_readonly(db)
    start = time.monotonic()
    with pytest.raises(QueryTimeout):
        execute(conn, TEN_MILLION_ROWS_SORTED.replace("FROM n |> ORDER BY i DESC", "SELECT max(i) FROM n"), timeout_s=0.3)
    assert time.monotonic() - start < 1.3
    # the connection is usable at once, and a late watchdog never interrupts the next query
    for _ in range(50):
        assert execute(conn, "SELECT count(*) FROM singer", timeout_s=0.01).rows == ((4,),)


def test_translation_is_bounded_in_size_and_time():
    with pytest.raises(TranspileError, match="longer than"):
        pipe_to_sqlite("FROM singer |> WHERE " + " OR ".join(["age = 1"] * 200_000))  # the 1.3 MB query
    with pytest.raises(TranspileError, match="pipe operators"):
        pipe_to_sqlite("FROM singer" + " |> SELECT name" * (MAX_PIPE_OPERATORS + 1))
    # the worst shapes found, at the bounds, still translate (or fail) in well under the tool limit
    worst = ["FROM singer" + " |> SELECT name" * MAX_PIPE_OPERATORS,
             ("FROM singer |> WHERE " + " OR ".join(f"age = {i}" for i in range(2000)))[:MAX_PIPE_SQL_CHARS],
             "FROM singer |> WHERE age IN " + "(FROM singer |> WHERE age IN " * 60 + "(1)" + ")" * 60]
    for query in worst:
        start = time.monotonic()
        try:
            pipe_to_sqlite(query)
        except TranspileError:
            pass
        assert time.monotonic() - start < 2.0


def test_schema_reading_still_works_on_a_sandboxed_connection(scene):
    from pipesql.sql.schema import schema_from_connection

    db, _, _ = scene
    schema = schema_from_connection(connect_readonly(db))
    assert [t.name for t in schema.tables] == ["singer", "concert"]
    assert schema.table("concert").foreign_keys[0].ref_table == "singer"


def test_the_slowest_single_step_functions_end_within_the_tool_limit(scene):
    """instr/replace take time in the product of two lengths inside one VM step, where neither
    the progress handler nor interrupt() reach; the value limit bounds them."""
    db, _, _ = scene
    half = MAX_VALUE_BYTES // 2 - 1  # hex() doubles it; the appended character makes MAX - 1
    worst = (f"FROM singer |> LIMIT 1 |> SELECT instr(hex(zeroblob({half})) || '1', "
             f"hex(zeroblob({half // 2})) || '1') AS i")
    with Toolbox(db) as box:  # the default tool limit, 10 s
        start = time.monotonic()
        out = box.call("execute_pipe_sql", {"sql": worst})
        assert time.monotonic() - start < box.timeout_s + 1, out
    assert out.splitlines()[:2] == ["i", str(2 * half - 2 * (half // 2) + 1)]  # found at the very end


@pytest.mark.parametrize("attack", [*ONE_STEP_ESCAPES, BACK_TO_BACK])
def test_work_inside_one_step_ends_within_the_tool_limit(scene, attack):
    """Issue #21, class 1: whatever the functions, a tool query ends with an error within its
    limit + 1 s (before: 8 s to minutes per call). The tools run queries in a child process
    killed at the deadline; the in-process sandbox bounds trim and printf itself."""
    db, _, _ = scene
    with Toolbox(db, timeout_s=TOOL_TIMEOUT_S) as box:
        assert box.call("execute_pipe_sql", {"sql": PROBES[0]}).startswith("n")  # the child is up
        start = time.monotonic()
        out = box.call("execute_pipe_sql", {"sql": attack})
        assert time.monotonic() - start < TOOL_TIMEOUT_S + 1, out
        assert out.startswith("Error:") or out.splitlines()[:2] == ["t", "0"], out  # refused, or trimmed fast
        assert box.call("execute_pipe_sql", {"sql": PROBES[1]}).splitlines()[0] == "name"  # a killed child is replaced


@pytest.mark.parametrize("attack", ONE_STEP_ESCAPES)
def test_trim_and_printf_are_bounded_in_process_too(scene, attack):
    """validate runs gold SQL in process: there trim and printf are bounded by the sandbox's own
    functions (at most 256 distinct trim characters; widths read as SQLite reads them)."""
    db, _, _ = scene
    conn = connect_readonly(db)
    start = time.monotonic()
    try:
        assert execute(conn, pipe_to_sqlite(attack), timeout_s=TOOL_TIMEOUT_S).rows[0] == (0,)  # the trim, done fast
    except QueryError as error:
        assert "printf width or precision" in str(error)
    assert time.monotonic() - start < TOOL_TIMEOUT_S + 1
    distinct_trim = "SELECT trim('xxabcxx', '" + "".join(chr(c) for c in range(300, 600)) + "')"
    with pytest.raises(QueryError, match="at most 256 distinct characters"):
        execute(conn, distinct_trim)
    assert execute(conn, "SELECT trim('xxabcxx', 'xxxx'), rtrim('ab  '), printf('%5.2f|%-3d|', 3.14159, 7)").rows == \
        (("abc", "ab", " 3.14|7  |"),)


def test_a_timeout_is_not_cached(scene):
    """Issue #21, class 2: a query that timed out once (another caller loaded the machine) runs
    again for the next caller instead of failing at once from the cache."""
    db, _, _ = scene
    query = TEN_MILLION_ROWS.replace("10000000", "2000000") + " |> AGGREGATE SUM(i) AS s"
    with Toolbox(db, timeout_s=0.02) as box:
        assert "exceeded" in box.call("execute_pipe_sql", {"sql": query})
        box.timeout_s = 120.0  # the machine is quiet again
        assert box.call("execute_pipe_sql", {"sql": query}).splitlines()[:2] == ["s", "2000001000000"]


def test_generate_drops_a_golden_pair_whose_pipe_sql_attacks(tmp_path):
    """A golden-pairs file edited so that a pair's pipe_sql writes or opens files: the pair is
    dropped (its first prefix fails in the sandbox), never written to train/dev, and nothing
    on disk changes."""
    import json

    from pipesql.generate import Settings, run

    (tmp_path / "database" / "music").mkdir(parents=True)
    db = build_db(tmp_path / "database" / "music" / "music.sqlite")
    victim, new_file = tmp_path / "victim.sqlite", tmp_path / "created.sqlite"
    shutil.copy(db, victim)
    hashes, files = (file_hash(db), file_hash(victim)), files_under(tmp_path)
    good = [{"question_id": f"good-{k}", "db_id": "music", "difficulty": "easy", "question": f"Singers older than {k}?",
             "gold_sql": f"SELECT name FROM singer WHERE age > {k}",
             "pipe_sql": f"FROM singer\n|> WHERE age > {k}\n|> SELECT name"} for k in range(6)]
    evil = [{"question_id": f"evil-{k}", "db_id": "music", "difficulty": "easy", "question": f"Evil {k}?",
             "gold_sql": "SELECT 1", "pipe_sql": fill(attack, victim, new_file)} for k, attack in enumerate(WRITES)]
    golden = tmp_path / "golden.jsonl"
    golden.write_text("".join(json.dumps(p) + "\n" for p in good + evil))
    files.add("golden.jsonl")
    out = tmp_path / "out"
    assert run(Settings(golden_pairs=golden, db_dir=[tmp_path / "database"], output_dir=out, tool_calling=True,
                        tool_ratio=1.0, workers=1)) == 0
    written = [json.loads(line) for name in ("train.jsonl", "dev.jsonl") for line in (out / name).read_text().splitlines()]
    assert {s["question_id"] for s in written} == {p["question_id"] for p in good}
    skipped = [json.loads(line) for line in (out / "skipped.jsonl").read_text().splitlines()]
    assert sorted(s["question_id"] for s in skipped) == sorted(p["question_id"] for p in evil)
    assert {s["reason"] for s in skipped} == {"prefix_failed"}
    assert (file_hash(db), file_hash(victim)) == hashes
    assert {f for f in files_under(tmp_path) if not f.startswith("out")} == files


def _score_in_worker(args):
    item, prediction = args
    outcome = score(item, prediction, limits=Limits(timeout_s=TOOL_TIMEOUT_S))
    return outcome.status, outcome.detail


def test_scoring_runs_sandboxed_in_worker_processes(scene):
    """evaluate's scoring (GRPO rewards use it too) from spawned workers: each process gets its
    own watchdog, and the sandbox holds there as in the parent."""
    import multiprocessing
    from concurrent.futures import ProcessPoolExecutor

    db, victim, new_file = scene
    item = Item("q-1", "music", "how many singers?", "SELECT count(*) FROM singer", db)
    jobs = [(item, "FROM singer |> AGGREGATE COUNT(*) AS n"), (item, fill(WRITES[0], victim, new_file)),
            (item, HUGE_VALUES[0]), (item, TEN_MILLION_ROWS_SORTED.replace("|> ORDER BY i DESC", "|> AGGREGATE SUM(i) AS s"))]
    with ProcessPoolExecutor(2, mp_context=multiprocessing.get_context("spawn")) as pool:
        outcomes = list(pool.map(_score_in_worker, jobs))
    assert outcomes[0] == (MATCH, "")
    assert outcomes[1][0] == EXEC_ERROR and "read-only" in outcomes[1][1]
    assert outcomes[2][0] == EXEC_ERROR and "too big" in outcomes[2][1]
    assert outcomes[3] == (EXEC_ERROR, f"timeout: query exceeded {TOOL_TIMEOUT_S:g} s")


def test_a_function_called_in_a_child_is_killed_past_its_limit():
    """``call_isolated``: a whole function in the killable child (evaluate's variant check) ends
    within its limit + the kill's grace, whatever it does; the pool replaces the child; its errors
    come back named."""
    start = time.monotonic()
    with pytest.raises(QueryTimeout):
        call_isolated(time.sleep, 60, timeout_s=0.5)
    assert time.monotonic() - start < 0.5 + KILL_GRACE_S + 1
    assert call_isolated(max, 3, 7, timeout_s=10) == 7
    with pytest.raises(QueryError, match="ZeroDivisionError"):
        call_isolated(divmod, 1, 0, timeout_s=10)


def test_test_suite_variants_of_a_prediction_end_within_their_budget(tmp_path):
    """Issue #21, left from its class 1: evaluate ran a matched prediction on the variants in
    process, where work inside one SQLite step is bounded by nothing. The table is empty in the
    database and has rows in every variant; on each row of its three-way self-join the prediction
    makes 64 ``instr`` calls of a tenth of a second or more each (at least 27 rows: minutes even on
    a CPU ten times ours): instant on the database, minutes on a variant (before). Now the check is
    killed at the variants' budget, and the prediction does not count."""
    db = tmp_path / "empty.sqlite"
    with closing(sqlite3.connect(db)) as conn:
        conn.execute("CREATE TABLE t (x INTEGER)")
    item = Item(question_id="q", db_id="empty", question="All x?", gold_sql="SELECT x FROM t", db_path=db)
    # a column in the argument, or SQLite computes the constant once before the scan
    escape = " + ".join([INSTR.replace("zeroblob(131071)", "zeroblob(131071 + ifnull(0 * a.x + 0 * b.x + 0 * c.x, 0))")] * 64)
    limits = Limits(timeout_s=TOOL_TIMEOUT_S, variants=1)
    start = time.monotonic()
    rows_cubed = "FROM t AS a |> CROSS JOIN t AS b |> CROSS JOIN t AS c"
    verdict = score(item, f"{rows_cubed} |> WHERE {escape} > 0 |> SELECT a.x", limits=limits)
    budget = variants_budget_s(1) + VARIANTS_SLACK_S + KILL_GRACE_S
    assert time.monotonic() - start < budget + 2 * TOOL_TIMEOUT_S  # + the gold and the prediction on the database
    assert verdict.status == MATCH and verdict.test_suite is False, verdict
    assert "exceeded" in verdict.test_suite_detail
    assert score(item, "FROM t |> SELECT x", limits=limits).test_suite is True  # a new child answers
