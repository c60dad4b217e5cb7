"""The embedded demo corpus: deterministic, Spider-shaped, every gold query runs, every feature used."""

from __future__ import annotations

import hashlib
import json
import re
from pathlib import Path

import pytest

from pipesql.corpora.items import load_items
from pipesql.corpora.demo import MARKER, DemoCorpusError, corpus_version, ensure_corpus
from pipesql.corpora.demo.questions import QUESTIONS
from pipesql.sql.schema import read_spider_tables, read_sqlite_schema
from pipesql.sql.execute import connect_readonly, execute


def _digest_tree(root: Path) -> dict[str, str]:
    return {str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(root.rglob("*")) if p.is_file()}


def test_builds_the_same_bytes_twice(demo_corpus, tmp_path):
    again = ensure_corpus(tmp_path / "again")
    assert _digest_tree(again) == _digest_tree(demo_corpus)


def test_spider_layout(demo_corpus):
    assert (demo_corpus / "dev.json").is_file() and (demo_corpus / "train_spider.json").is_file()
    assert (demo_corpus / "tables.json").is_file()
    db_ids = sorted(p.name for p in (demo_corpus / "database").iterdir())
    assert len(db_ids) >= 6
    for db_id in db_ids:
        assert (demo_corpus / "database" / db_id / f"{db_id}.sqlite").is_file()
    for name in ("dev.json", "train_spider.json"):
        for raw in json.loads((demo_corpus / name).read_text()):
            assert set(raw) == {"db_id", "question", "query", "difficulty"}
            assert raw["difficulty"] in ("easy", "medium", "hard", "extra")
            assert raw["question"].strip().endswith(("?", "."))


def test_enough_items_over_enough_schemas(demo_corpus):
    dev = load_items("demo", demo_corpus, "dev")
    train = load_items("demo", demo_corpus, "train")
    assert len(dev) + len(train) >= 150
    assert len({i.db_id for i in dev + train}) >= 6
    # like Spider, no database has questions in both splits
    assert not {i.db_id for i in dev} & {i.db_id for i in train}
    assert len(dev) >= 40 and len(train) >= 100
    assert len({i.question for i in dev + train}) == len(dev) + len(train)


def test_every_gold_query_executes_and_returns_rows(demo_corpus):
    for item in load_items("demo", demo_corpus, "all"):
        conn = connect_readonly(item.db_path)
        try:
            result = execute(conn, item.gold_sql, timeout_s=10)
        finally:
            conn.close()
        assert result.rows, f"{item.question_id} ({item.db_id}) returns no rows: {item.gold_sql}"
        assert not result.truncated


def test_tables_json_matches_the_databases(demo_corpus):
    described = read_spider_tables(demo_corpus / "tables.json")
    for db_id, schema in described.items():
        actual = read_sqlite_schema(demo_corpus / "database" / db_id / f"{db_id}.sqlite")
        assert [t.name for t in schema.tables] == [t.name for t in actual.tables]
        for spider_table, table in zip(schema.tables, actual.tables):
            assert [c.name for c in spider_table.columns] == [c.name for c in table.columns]
            assert [c.primary_key for c in spider_table.columns] == [c.primary_key for c in table.columns]
            assert {(f.column, f.ref_table) for f in spider_table.foreign_keys} == \
                   {(f.column, f.ref_table) for f in table.foreign_keys}


FEATURES = {
    "inner join": r"\bJOIN\b",
    "left join": r"\bLEFT JOIN\b",
    "comma join": r"\bFROM \w+ AS T1 , +\w+ AS T2\b",
    "self join": r"FROM (\w+) AS T1 JOIN \1 AS T2",
    "group by + having": r"\bGROUP BY\b.*\bHAVING\b",
    "distinct": r"SELECT DISTINCT\b",
    "count distinct": r"count\(DISTINCT\b",
    "order by aggregate": r"ORDER BY (count|sum|avg|max|min)\(",
    "limit": r"\bLIMIT \d+$",
    "offset": r"\bOFFSET \d+",
    "in subquery": r" IN \(SELECT\b",
    "not in subquery": r"NOT IN \(SELECT\b",
    "exists": r"\bEXISTS \(SELECT\b",
    "scalar subquery": r"[<>=] +\(SELECT (avg|max|min|count)\(",
    "from subquery": r"\bJOIN \(SELECT\b|FROM \(SELECT\b",
    "select subquery": r"^SELECT \w+ ,  \(SELECT\b",
    "cte": r"^WITH \w+ AS \(",
    "union": r"\bUNION\b",
    "intersect": r"\bINTERSECT\b",
    "except": r"\bEXCEPT\b",
    "window": r"\bOVER \(",
    "case": r"\bCASE WHEN\b",
    "cast": r"\bCAST\(",
    "strftime": r"\bstrftime\(",
    "julianday": r"\bjulianday\(",
    "date": r"\bdate\(",
    "substr": r"\bsubstr\(",
    "concatenation": r"\|\|",
    "upper": r"\bupper\(",
    "lower": r"\blower\(",
    "instr": r"\binstr\(",
    "length": r"\blength\(",
    "like": r"\bLIKE '",
}


@pytest.mark.parametrize("feature", sorted(FEATURES))
def test_every_feature_is_covered(feature):
    pattern = re.compile(FEATURES[feature])
    queries = [sql for items in QUESTIONS.values() for _, sql in items]
    assert any(pattern.search(sql) for sql in queries), f"no demo query uses {feature}"


def test_aggregates_only_in_having_or_order_by():
    queries = [sql for items in QUESTIONS.values() for _, sql in items]
    only_having = [q for q in queries if "HAVING count(*)" in q and "ORDER BY" not in q
                   and not re.search(r"^SELECT [^F]*count\(", q)]
    only_order = [q for q in queries if re.search(r"ORDER BY (count|sum)\(", q)
                  and not re.search(r"^SELECT [^F]*(count|sum)\(", q)]
    assert only_having and only_order


def test_order_by_a_column_not_selected():
    queries = [sql for items in QUESTIONS.values() for _, sql in items]
    assert any(re.fullmatch(r"SELECT title FROM books ORDER BY pages DESC LIMIT 5", q) for q in queries)


def test_ensure_corpus_reuses_a_current_build(demo_corpus):
    marker = demo_corpus / MARKER
    before = marker.stat().st_mtime_ns
    assert ensure_corpus(demo_corpus) == demo_corpus
    assert marker.stat().st_mtime_ns == before
    assert marker.read_text().strip() == corpus_version()


def test_ensure_corpus_defaults_to_the_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("PIPESQL_CACHE", str(tmp_path / "cache"))
    root = ensure_corpus()
    assert root == tmp_path / "cache" / "demo" / corpus_version()
    assert (root / "dev.json").is_file()
    assert not [p for p in root.parent.iterdir() if p.name.startswith(".")]  # no staging left behind


def test_refuses_to_overwrite_a_foreign_folder(tmp_path):
    (tmp_path / "mine.txt").write_text("keep me")
    with pytest.raises(DemoCorpusError):
        ensure_corpus(tmp_path)
    assert (tmp_path / "mine.txt").read_text() == "keep me"


def test_replaces_a_stale_build(tmp_path):
    root = ensure_corpus(tmp_path / "c")
    (root / MARKER).write_text("stale\n")
    (root / "leftover.txt").write_text("x")
    assert ensure_corpus(root) == root
    assert not (root / "leftover.txt").exists()
    assert (root / MARKER).read_text().strip() == corpus_version()
