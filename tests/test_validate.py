"""``pipesql validate``: the demo corpus validates completely; bad input gives classified records."""

from __future__ import annotations

import json
import os
import sqlite3
import time
from contextlib import closing
from dataclasses import replace
from pathlib import Path

import pytest

import pipesql.decompile
from pipesql.corpora.items import Item, load_items
from pipesql.decompile import DecompileResult
from pipesql.storage.files import read_jsonl
from pipesql.validate import CheckOptions, Settings, run, validate_items
from pipesql.validate.check import (DB_CORRUPT, DB_MISSING, DECOMPILE_FAIL, GOLD_ERROR, GOLD_UNDEFINED, MATCH, MISMATCH,
                                    NOT_A_QUERY, RT_ERROR, TIMEOUT, VARIANT_MISMATCH, CheckMemo, DatabaseCache,
                                    check_item, statement_kind)
from pipesql.validate.variants import build_variant, first_disagreement, query_hints, source_of, variant_seed
from pipesql.validate.report import golden_pair, render_report, summarize
from pipesql.validate.runner import chunks_by_database
from sandbox_attacks import one_step_gold

SPIDER_DIR = Path(os.environ.get("PIPESQL_SPIDER_DIR") or Path(__file__).resolve().parents[2] / "shared/data/spider")
NO_GOOGLESQL = CheckOptions(googlesql=False)


def _item(question_id: str, sql: str, db_path: Path) -> Item:
    return Item(question_id=question_id, db_id=db_path.parent.name, question=f"question {question_id}",
                gold_sql=sql, db_path=db_path)


def test_demo_corpus_validates_completely(demo_corpus):
    items = load_items("demo", demo_corpus, "all")
    records = validate_items(items, workers=2, options=NO_GOOGLESQL, progress=False)
    assert [r["question_id"] for r in records] == [i.question_id for i in items]
    failures = {r["question_id"]: (r["validation"]["class"], r["validation"]["detail"])
                for r in records if r["validation"]["class"] != MATCH}
    assert not failures, failures
    assert all(r["pipe_sql"] and r["round_tripped_sql"] for r in records)


def test_bad_input_is_classified_and_the_batch_completes(demo_corpus, library_db, tmp_path):
    corrupt = tmp_path / "corrupt" / "corrupt.sqlite"
    corrupt.parent.mkdir()
    corrupt.write_bytes(b"this is not a SQLite database at all" * 100)
    runaway = ("WITH RECURSIVE c(n) AS (SELECT 1 UNION ALL SELECT n + 1 FROM c WHERE n < 1000000000000) "
               "SELECT count(*) FROM c")
    items = [
        _item("good-1", "SELECT count(*) FROM books", library_db),
        _item("malformed", "SELECT title FROM books WHERE WHERE", library_db),
        _item("dml", "DELETE FROM books", library_db),
        _item("missing-db", "SELECT 1", tmp_path / "nowhere" / "nowhere.sqlite"),
        _item("corrupt-db", "SELECT 1", corrupt),
        _item("runaway", runaway, library_db),
        _item("no-such-table", "SELECT x FROM nope", library_db),
        _item("good-2", "SELECT genre, count(*) FROM books GROUP BY genre", library_db),
    ]
    records = validate_items(items, workers=2, options=replace(NO_GOOGLESQL, timeout_s=0.5), progress=False)
    classes = {r["question_id"]: r["validation"]["class"] for r in records}
    assert classes == {
        "good-1": MATCH, "malformed": GOLD_ERROR, "dml": NOT_A_QUERY, "missing-db": DB_MISSING,
        "corrupt-db": DB_CORRUPT, "runaway": TIMEOUT, "no-such-table": GOLD_ERROR, "good-2": MATCH,
    }
    by_id = {r["question_id"]: r for r in records}
    assert "syntax error" in by_id["malformed"]["validation"]["detail"]
    assert "Delete" in by_id["dml"]["validation"]["detail"]
    assert "nowhere.sqlite" in by_id["missing-db"]["validation"]["detail"]
    assert by_id["runaway"]["validation"]["stage"] == "gold"
    summary = summarize(records, seconds=1.0, workers=2)
    assert summary["gold_executed"] == 2 and summary["match_rate"] == 1.0


ONE_STEP_GOLD = one_step_gold("books")


@pytest.mark.parametrize("workers", [1, 2])
def test_work_inside_one_step_costs_one_item_its_budget_and_the_batch_goes_on(library_db, workers):
    """Issue #21, class 1, in validate: gold SQL whose work is inside single VM steps (tens of
    seconds in process, past a 1 s query limit) ends as TIMEOUT once the item's budget is spent; its
    worker is killed and replaced, and every other item of its chunk and the batch is checked."""
    items = [_item(f"good-{i}", "SELECT count(*) FROM books", library_db) for i in range(3)]
    items.insert(1, _item("one-step", ONE_STEP_GOLD, library_db))
    items += [_item("after", "SELECT genre, count(*) FROM books GROUP BY genre", library_db)]
    options = replace(NO_GOOGLESQL, variants=0, timeout_s=1.0, item_timeout_s=2.0)
    start = time.monotonic()
    records = validate_items(items, workers=workers, options=options, progress=False)
    seconds = time.monotonic() - start
    assert [r["question_id"] for r in records] == [i.question_id for i in items]
    classes = {r["question_id"]: r["validation"]["class"] for r in records}
    assert classes == {"good-0": MATCH, "one-step": TIMEOUT, "good-1": MATCH, "good-2": MATCH, "after": MATCH}
    overrun = records[1]["validation"]
    assert overrun["stage"] == "budget" and "2 s" in overrun["detail"]
    assert 2.0 <= overrun["seconds"]["item_s"] < 2.0 + 1.0  # killed within the budget + 1 s
    assert seconds < 15  # two worker starts and the kill, far below the ~25 s the gold takes in one step


def test_gold_whose_result_sql_leaves_undefined_is_an_input_problem(library_db):
    # Each genre ordered by the year of whichever book SQLite scanned first: no other engine's
    # query has that result (PostgreSQL and GoogleSQL refuse the gold itself).
    items = [_item("scan-order", "SELECT DISTINCT genre FROM books ORDER BY published_year", library_db),
             _item("good", "SELECT count(*) FROM books", library_db)]
    records = validate_items(items, workers=1, options=NO_GOOGLESQL, progress=False)
    undefined = records[0]["validation"]
    assert (undefined["class"], undefined["stage"]) == (GOLD_UNDEFINED, "gold")
    assert undefined["detail"] == "unsupported:distinct_order_by_scan_order"
    # the proof: another answer the gold may give, each genre ordered by its smallest year
    assert undefined["witness"]["plan"] == "each output row ordered by the MIN of its rows' published_year"
    assert undefined["witness"]["gold"] != undefined["witness"]["other"]
    summary = summarize(records, seconds=1.0, workers=1)
    assert summary["gold_executed"] == 1 and summary["match_rate"] == 1.0


def test_a_gold_its_database_happens_to_define_is_undefined_only_with_a_variant_witness(tmp_path):
    """Each name once on the database: the gold's answer is the only one there. A variant with a
    name on two rows proves SQL does not define it (the variant saved); with no variant to look
    on, no witness: the refusal stays a failure, in the denominator. Before, the static rule
    alone moved such an item out of the denominator."""
    db = tmp_path / "district.sqlite"
    conn = sqlite3.connect(db)
    conn.executescript("""CREATE TABLE district (district_id int PRIMARY KEY, district_name text, city_area real);
        INSERT INTO district VALUES (1, 'North', 3.5), (2, 'South', 1.25), (3, 'East', 8.0), (4, 'West', 2.0);""")
    conn.commit()
    conn.close()
    item = _item("q1", "SELECT DISTINCT district_name FROM district ORDER BY city_area DESC", db)
    proven = _check_here([item], options=replace(NO_GOOGLESQL, variants=8), witness_dir=tmp_path / "witnesses")[0]
    validation = proven["validation"]
    assert validation["class"] == GOLD_UNDEFINED, validation
    saved = Path(validation["variant"]["witness"])
    variant = sqlite3.connect(saved)
    assert [list(r) for r in variant.execute(item.gold_sql)] == validation["witness"]["gold"]
    assert [list(r) for r in variant.execute(
        "SELECT district_name FROM district GROUP BY district_name ORDER BY " + (
            "MIN" if "MIN" in validation["witness"]["plan"] else "MAX") + "(city_area) DESC")] \
        == validation["witness"]["other"] != validation["witness"]["gold"]
    variant.close()
    unproven = _check_here([item], options=replace(NO_GOOGLESQL, variants=0))[0]["validation"]
    assert (unproven["class"], unproven["detail"]) == (DECOMPILE_FAIL, "unsupported:distinct_order_by_scan_order")
    # the search starts no variant past its budget (the item's, which a worker is killed past)
    from pipesql.sql.compare import compare_results
    from pipesql.validate.plans import second_plan_on_variants

    search = dict(count=32, rows=12, timeout_s=2.0, row_cap=1000)
    found = second_plan_on_variants(db, item.gold_sql, compare_results, budget_s=1000.0, **search)
    assert found is not None and found[0].index > 0
    found[0].connection.close()
    assert second_plan_on_variants(db, item.gold_sql, compare_results, budget_s=0.0, **search) is None


def _check_here(items: list[Item], *, options: CheckOptions, witness_dir: Path | None = None) -> list[dict]:
    """Records as a worker makes them, in this process: worker processes are spawned and would
    not see a monkeypatched decompiler."""
    databases, memo = DatabaseCache(), CheckMemo()
    return [check_item(item, options, databases, memo, witness_dir) for item in items]


def _fake_decompile(pipe_sql: str | None, reason: str | None = None):
    def decompile(sql, schema=None, dialect="sqlite", keys=None):
        return DecompileResult(pipe_sql, reason, ())
    return decompile


@pytest.mark.parametrize("pipe_sql, reason, label, stage", [
    (None, "unsupported:test", DECOMPILE_FAIL, "decompile"),
    ("FROM books |> WHERE (((", None, RT_ERROR, "transpile"),
    ("FROM no_such_table |> SELECT x", None, RT_ERROR, "execute"),
    ("FROM books |> WHERE genre = 'Poetry' |> AGGREGATE COUNT(*) AS n", None, MISMATCH, "compare"),
])
def test_pipeline_failures_are_classified(monkeypatch, library_db, pipe_sql, reason, label, stage):
    monkeypatch.setattr(pipesql.decompile, "decompile", _fake_decompile(pipe_sql, reason))
    [record] = _check_here([_item("q", "SELECT count(*) FROM books", library_db)], options=NO_GOOGLESQL)
    assert record["validation"]["class"] == label
    assert record["validation"]["stage"] == stage
    if label == MISMATCH:
        assert record["validation"]["subclass"] == "WRONG_VALUES"


def test_round_trip_timeout(monkeypatch, library_db):
    slow = ("FROM (WITH RECURSIVE c AS (SELECT 1 AS n UNION ALL SELECT n + 1 FROM c WHERE n < 1000000000000) "
            "SELECT n FROM c) |> AGGREGATE COUNT(*) AS n")
    monkeypatch.setattr(pipesql.decompile, "decompile", _fake_decompile(slow))
    [record] = _check_here([_item("q", "SELECT count(*) FROM books", library_db)], options=replace(NO_GOOGLESQL, timeout_s=0.5))
    assert record["validation"]["class"] in (TIMEOUT, RT_ERROR)
    if record["validation"]["class"] == TIMEOUT:
        assert record["validation"]["stage"] == "round_trip"


def test_statement_kind():
    assert statement_kind("SELECT 1") is None
    assert statement_kind("WITH a AS (SELECT 1) SELECT * FROM a") is None
    assert statement_kind("SELECT 1 UNION SELECT 2") is None
    assert statement_kind("DELETE FROM t") == "Delete"
    assert statement_kind("INSERT INTO t VALUES (1)") == "Insert"
    assert statement_kind("SELECT 1; SELECT 2") == "MultipleStatements"
    assert statement_kind("SELECT FROM WHERE ((") is None  # left to SQLite to refuse


def test_chunks_keep_one_database_each():
    items = [_item(f"q{i}", "SELECT 1", Path(f"/db/{i % 3}/{i % 3}.sqlite")) for i in range(60)]
    chunks = chunks_by_database(items, size=8)
    assert sorted(index for chunk in chunks for index, _ in chunk) == list(range(60))
    assert all(len({str(item.db_path) for _, item in chunk}) == 1 for chunk in chunks)
    assert max(len(c) for c in chunks) <= 8


def test_job_writes_every_output(demo_corpus, tmp_path):
    out = tmp_path / "out"
    settings = Settings(benchmark="demo", data_dir=demo_corpus, split="dev", limit=10, out=out, workers=1,
                        googlesql=True, progress=False)
    assert run(settings) == 0
    for name in ("golden_pairs.jsonl", "quarantine.jsonl", "summary.json", "report.md", "classes.png", "manifest.json"):
        assert (out / name).is_file(), name
    summary = json.loads((out / "summary.json").read_text())
    pairs = [record for _, record in read_jsonl(out / "golden_pairs.jsonl")]
    assert summary["items"] == 10 and summary["golden_pairs"] == len(pairs) == 10
    assert summary["match_rate"] == 1.0
    for pair in pairs:
        assert {"question_id", "db_id", "difficulty", "question", "gold_sql", "pipe_sql", "round_tripped_sql",
                "validation", "googlesql"} <= set(pair)
        assert set(pair["googlesql"]) >= {"analyzed", "error", "executed", "match"}
    analyzed = sum(p["googlesql"]["analyzed"] for p in pairs)
    assert summary["googlesql_ok_rate"] == pytest.approx(analyzed / 10)
    report = (out / "report.md").read_text()
    assert "tie-aware" in report and "match rate" in report
    assert (out / "classes.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["stage"] == "validate" and manifest["metrics"]["golden_pairs"] == 10


def test_job_reports_a_missing_benchmark(tmp_path, capsys):
    settings = Settings(benchmark="spider", data_dir=tmp_path / "absent", split="dev", out=tmp_path / "out",
                        workers=1, progress=False)
    assert run(settings) == 2
    assert "not found" in capsys.readouterr().err
    assert not (tmp_path / "out").exists()


@pytest.mark.spider
@pytest.mark.skipif(not (SPIDER_DIR / "dev.json").is_file(), reason="Spider data not available")
def test_spider_dev_subset():
    items = [i for i in load_items("spider", SPIDER_DIR, "dev") if i.db_path.is_file()][:120]
    records = validate_items(items, workers=2, options=CheckOptions(googlesql_execute_rows=0), progress=False)
    summary = summarize(records, seconds=1.0, workers=2)
    assert summary["gold_executed"] == len(items)
    assert summary["match_rate"] >= 0.99, summary["classes"]
    assert summary["googlesql_ok_rate"] >= 0.95


def test_malformed_entries_become_bad_item_records_and_the_batch_completes(demo_corpus, tmp_path):
    """A dev.json entry with no `query`, `query: 42`, no db_id or not an object is classified
    BAD_ITEM, named, kept out of the match rate's denominator; the good entries validate."""
    spider = tmp_path / "spider"
    (spider / "database").mkdir(parents=True)
    (spider / "database" / "library").symlink_to(demo_corpus / "database" / "library")
    entries = [
        {"db_id": "library", "query": "SELECT count(*) FROM books", "question": "How many books?"},
        {"db_id": "library", "question": "no query at all"},
        {"db_id": "library", "query": 42, "question": "a number"},
        {"query": "SELECT 1", "question": "no db_id"},
        {"db_id": "../library", "query": "SELECT 1"},
        ["not", "an", "object"],
        {"db_id": "library", "query": "SELECT title FROM books ORDER BY title LIMIT 2"},
        {"db_id": "library", "query": "SELECT 1", "question": "lone \ud800 surrogate"},  # issue #21, class 4
    ]
    (spider / "dev.json").write_text(json.dumps(entries))
    out = tmp_path / "out"
    settings = Settings(benchmark="spider", data_dir=spider, split="dev", out=out, workers=1, googlesql=False,
                        progress=False)
    assert run(settings) == 0
    records = [record for _, record in read_jsonl(out / "quarantine.jsonl")]
    bad = {r["question_id"]: r["validation"]["detail"] for r in records if r["validation"]["class"] == "BAD_ITEM"}
    assert bad == {
        "dev-00001": "dev-00001: entry has no 'query'",
        "dev-00002": "dev-00002: entry's 'query' is not SQL text (got int '42')",
        "dev-00003": "dev-00003: entry has no usable db_id (got None)",
        "dev-00004": "dev-00004: entry has no usable db_id (got '../library')",
        "dev-00005": "dev-00005: entry is a list, not an object",
        "dev-00007": "dev-00007: entry's 'question' holds a lone surrogate at character 5, not text",
    }
    assert {name for name in ("quarantine.jsonl", "summary.json", "report.md", "manifest.json")
            if (out / name).is_file()} == {"quarantine.jsonl", "summary.json", "report.md", "manifest.json"}
    summary = json.loads((out / "summary.json").read_text())
    assert summary["golden_pairs"] == 2 and summary["gold_executed"] == 2 and summary["match_rate"] == 1.0


# --- the per-process memo -------------------------------------------------------------------------

def test_an_item_asked_again_copies_the_first_outcome(library_db):
    """Spider asks most gold queries twice: the second item's record equals the one it gets
    checked alone, question fields aside, and it says its own (memo) cost."""
    golds = ["SELECT genre, count(*) FROM books GROUP BY genre ORDER BY count(*) DESC",
             "SELECT title FROM books WHERE pages > 300", "SELECT count(*) FROM nope"]
    items = [_item(f"q{i}", golds[i % 3], library_db) for i in range(6)]
    memo = CheckMemo()
    with closing(DatabaseCache()) as databases:
        remembered = [check_item(item, CheckOptions(), databases, memo) for item in items]
        alone = [check_item(item, CheckOptions(), databases) for item in items]
    assert [golden_pair(r) for r in remembered] == [golden_pair(r) for r in alone]
    assert [r["question_id"] for r in remembered] == [i.question_id for i in items]
    assert remembered[0]["validation"]["class"] == MATCH and remembered[0]["googlesql"]["executed"]
    assert set(remembered[3]["validation"]["seconds"]) == {"memo_s"}  # copied, not checked again
    assert "memo_s" not in remembered[0]["validation"]["seconds"]
    remembered[3]["googlesql"]["match"] = None  # each record is its own copy
    assert remembered[0]["googlesql"]["match"] is True


def test_a_changed_database_file_is_checked_again(library_db, tmp_path):
    copy = tmp_path / "library" / "library.sqlite"
    copy.parent.mkdir()
    copy.write_bytes(library_db.read_bytes())
    item = _item("q", "SELECT title FROM books", copy)
    memo = CheckMemo()
    with closing(DatabaseCache()) as databases:
        before = check_item(item, NO_GOOGLESQL, databases, memo)
        conn = sqlite3.connect(copy)
        conn.execute("DELETE FROM books WHERE book_id > 10")
        conn.commit()
        conn.close()
        databases.close()  # the connection cache is keyed by path; the memo by the file's identity
        after = check_item(item, NO_GOOGLESQL, databases, memo)
    assert "memo_s" not in after["validation"]["seconds"]
    assert before["validation"]["class"] == after["validation"]["class"] == MATCH
    assert after["validation"]["gold_rows"] == 10 < before["validation"]["gold_rows"]


# --- database variants --------------------------------------------------------------------------

def _absent_page_count(library_db: Path) -> int:
    """A page count no book has: ``pages > n`` and ``pages >= n`` agree on the library database."""
    conn = sqlite3.connect(library_db)
    taken = {row[0] for row in conn.execute("SELECT pages FROM books")}
    conn.close()
    return next(n for n in range(150, 900) if n not in taken)


def test_variants_catch_an_off_by_one_the_database_misses(library_db):
    n = _absent_page_count(library_db)
    gold = f"SELECT title FROM books WHERE pages > {n}"
    wrong, right = f"SELECT title FROM books WHERE pages >= {n}", f"SELECT title FROM books WHERE {n} < pages"
    conn = sqlite3.connect(library_db)
    assert sorted(conn.execute(gold)) == sorted(conn.execute(wrong))  # the database alone cannot tell
    conn.close()
    caught, kept = first_disagreement(library_db, gold, [wrong, right], count=3)
    assert caught is not None and caught.subclass == "EXTRA_ROWS"
    assert kept is None


def test_variants_keep_the_schema_and_are_deterministic(library_db):
    source = source_of(str(library_db))
    gold = "SELECT b.title FROM books AS b JOIN authors AS a ON b.author_id = a.author_id WHERE a.country = 'Chile'"
    hints = query_hints(gold, source)
    assert ("authors", "country") in hints.literals and hints.links
    first = build_variant(source, hints, variant_seed(library_db, gold, 0))
    again = build_variant(source, hints, variant_seed(library_db, gold, 0))
    assert list(first.iterdump()) == list(again.iterdump())
    original = sqlite3.connect(library_db)
    ddl = ("SELECT type, name, sql FROM sqlite_master WHERE name NOT LIKE 'sqlite_%' "
           "AND tbl_name IN ('books', 'authors') ORDER BY name")
    assert first.execute(ddl).fetchall() == original.execute(ddl).fetchall()
    assert hints.tables == {"books", "authors"}  # only the tables the query reads are built
    original.close()
    # joins hit: some book's author is in the variant
    assert first.execute("SELECT count(*) FROM books JOIN authors USING (author_id)").fetchone()[0] > 0
    assert first.execute("SELECT count(*) FROM authors WHERE country = 'Chile'").fetchone()[0] >= 0


def test_a_pair_only_variants_refute_is_quarantined_with_its_witness(monkeypatch, library_db, tmp_path):
    n = _absent_page_count(library_db)
    monkeypatch.setattr(pipesql.decompile, "decompile",
                        _fake_decompile(f"FROM books |> WHERE pages >= {n} |> SELECT title"))
    options = NO_GOOGLESQL
    [record] = _check_here([_item("q/1", f"SELECT title FROM books WHERE pages > {n}", library_db)],
                           options=options, witness_dir=tmp_path / "witnesses")
    validation = record["validation"]
    assert validation["class"] == VARIANT_MISMATCH and validation["stage"] == "variant"
    witness = Path(validation["variant"]["witness"])
    assert witness.is_file() and witness.parent == tmp_path / "witnesses"
    conn = sqlite3.connect(witness)  # anyone can rerun the two queries on the saved variant
    assert sorted(conn.execute(record["gold_sql"])) != sorted(conn.execute(record["round_tripped_sql"]))
    conn.close()
    summary = summarize([record], seconds=1.0, workers=1)
    assert summary["variant_only_quarantined"] == 1 and summary["match_rate"] == 0.0
    report = render_report(summary, [record], "test")
    assert "1 pairs matched on their database but disagreed" in report and str(witness) in report
    [unchecked] = _check_here([_item("q/1", f"SELECT title FROM books WHERE pages > {n}", library_db)],
                              options=replace(options, variants=0))
    assert unchecked["validation"]["class"] == MATCH


def test_each_item_a_variant_refutes_gets_its_own_witness(monkeypatch, library_db, tmp_path):
    # the witness file is named after the item, so the memo does not hand the second item the first one's
    n = _absent_page_count(library_db)
    monkeypatch.setattr(pipesql.decompile, "decompile",
                        _fake_decompile(f"FROM books |> WHERE pages >= {n} |> SELECT title"))
    items = [_item(name, f"SELECT title FROM books WHERE pages > {n}", library_db) for name in ("a", "b")]
    records = _check_here(items, options=NO_GOOGLESQL, witness_dir=tmp_path / "witnesses")
    witnesses = [Path(r["validation"]["variant"]["witness"]) for r in records]
    assert [w.name.split(".")[0] for w in witnesses] == ["a", "b"]
    assert all(w.is_file() for w in witnesses)


# --- variants run under the sandbox (issue #21, class 3) ---------------------------------------

def _costly_db(path: Path) -> Path:
    """A database whose own DDL holds a costly CHECK constraint (skipped while its rows were
    written, as a file made elsewhere may have been), and 200 rows."""
    with closing(sqlite3.connect(path)) as conn:
        conn.execute("PRAGMA ignore_check_constraints = 1")
        conn.execute("CREATE TABLE t (a INTEGER PRIMARY KEY, "
                     "b TEXT CHECK (length(printf('%.*c', 100000000, 'x')) > 0))")
        conn.executemany("INSERT INTO t VALUES (?, ?)", [(i, f"v{i % 7}") for i in range(200)])
        conn.commit()
    return path


@pytest.mark.parametrize("gold", [
    "SELECT b, count(*) FROM t GROUP BY b ORDER BY b",
    # cheap on the database (200 rows), another branch on a variant (at most 12 rows)
    "SELECT CASE WHEN (SELECT count(*) FROM t) > 100 THEN 1 ELSE length(printf('%.*c', 100000000, 'x')) END AS c",
])
def test_variants_are_built_and_run_inside_the_sandbox(tmp_path, gold):
    """The variants re-run a database's DDL and run the gold on generated rows: both under the
    sandbox's value limit, bounded functions, authorizer and deadline. Before, the CHECK
    constraint or the other branch built 100 MB strings for every row of every variant."""
    import time

    from sandbox_attacks import reset_peak_rss, rss_mb

    db = _costly_db(tmp_path / "costly.sqlite")
    source_of.cache_clear()
    reset_peak_rss()
    rss_before = rss_mb("VmRSS")
    start = time.monotonic()
    record = validate_items([_item("q1", gold, db)], workers=1, progress=False,
                            options=CheckOptions(timeout_s=2.0, googlesql=False, variants=8))[0]
    assert time.monotonic() - start < 8.0, record["validation"]  # about 1 s; before: 1 min each
    assert rss_mb("VmHWM") - rss_before < 100
    assert record["validation"]["class"] == MATCH, record["validation"]


def test_the_second_plan_copies_a_database_inside_the_sandbox(tmp_path):
    """The second-plan check copies the tables a gold reads by re-running the file's DDL: under
    the sandbox's limits too (before, the costly CHECK ran on every copied row: 200 rows of
    100 MB strings)."""
    import time

    from pipesql.sql.compare import compare_results
    from pipesql.sql.execute import connect_readonly, execute
    from pipesql.validate.plans import second_plan
    from sandbox_attacks import reset_peak_rss, rss_mb

    db = _costly_db(tmp_path / "costly.sqlite")
    source_of.cache_clear()
    conn = connect_readonly(db)
    gold = "SELECT b FROM t"
    rows = execute(conn, gold).rows
    reset_peak_rss()
    rss_before = rss_mb("VmRSS")
    start = time.monotonic()
    second_plan(conn, db, gold, rows, compare_results, timeout_s=2.0, row_cap=1000)
    assert time.monotonic() - start < 8.0
    assert rss_mb("VmHWM") - rss_before < 100


def test_the_database_cache_closes_what_it_drops(tmp_path) -> None:
    paths = []
    for name in ("one", "two"):
        path = tmp_path / f"{name}.sqlite"
        with closing(sqlite3.connect(path)) as conn:
            conn.execute("CREATE TABLE t (a INTEGER)")
        paths.append(path)
    with closing(DatabaseCache(size=1)) as databases:
        first = databases.get(paths[0])
        assert databases.get(paths[0]) is first
        databases.get(paths[1])
        with pytest.raises(sqlite3.ProgrammingError):  # dropped: its connection is closed
            first.connection.execute("SELECT 1")
        again = databases.get(paths[0])
        assert again is not first and again.connection.execute("SELECT count(*) FROM t").fetchone() == (0,)
