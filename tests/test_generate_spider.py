"""`pipesql generate` on real Spider queries (decompiled here), when the Spider data is present."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from pipesql.corpora.items import load_items
from pipesql.decompile import decompile
from pipesql.generate import Settings, run
from pipesql.sql.schema import read_sqlite_schema

SPIDER = Path(os.environ.get("PIPESQL_SPIDER_DIR") or Path(__file__).resolve().parents[2] / "shared/data/spider")

pytestmark = [pytest.mark.spider,
              pytest.mark.skipif(not (SPIDER / "database").is_dir(), reason="Spider data not available")]


def golden_pairs_from_spider(path: Path, dev_items: int, others: int) -> int:
    """Decompile some dev items and train_others items (no question) into a golden-pairs file."""
    items = load_items("spider", SPIDER, "dev")[:dev_items]
    items += [i for i in load_items("spider", SPIDER, "train") if i.question is None][:others]
    schemas: dict = {}
    written = 0
    with path.open("w") as handle:
        for item in items:
            if not item.db_path.is_file():
                continue
            if item.db_id not in schemas:
                schemas[item.db_id] = read_sqlite_schema(item.db_path).sqlglot_mapping()
            result = decompile(item.gold_sql, schemas[item.db_id])
            if result.ok:
                handle.write(json.dumps({"question_id": item.question_id, "db_id": item.db_id,
                                         "difficulty": item.difficulty, "question": item.question,
                                         "gold_sql": item.gold_sql, "pipe_sql": result.pipe_sql}) + "\n")
                written += 1
    return written


def test_spider_dev_subset(tmp_path: Path) -> None:
    golden = tmp_path / "golden.jsonl"
    written = golden_pairs_from_spider(golden, dev_items=250, others=20)
    out = tmp_path / "out"
    assert run(Settings(golden_pairs=golden, db_dir=[SPIDER / "database"], output_dir=out, tool_calling=True,
                        workers=2)) == 0
    stats = json.loads((out / "stats.json").read_text())
    pairs = stats["pairs"]
    assert pairs["read"] == written
    assert pairs["skipped"].get("no_question", 0) >= 15  # train_others items are skipped and counted
    with_question = written - pairs["skipped"].get("no_question", 0)
    # prefixes of decompiled Spider queries nearly always execute
    assert pairs["used"] >= 0.97 * with_question
    assert pairs["used"] + pairs["skipped_total"] == written
    kinds = stats["samples"]["by_kind"]
    assert kinds["end"] == pairs["used"] and kinds["step"] >= 2 * pairs["used"]
    assert 0.15 * pairs["used"] <= kinds["tools"] <= 0.45 * pairs["used"]
    assert {"FROM", "WHERE", "AGGREGATE", "SELECT", "JOIN", "ORDER BY"} <= set(stats["samples"]["by_operator"])
    assert stats["questions"]["dev"] >= 1 and stats["samples"]["length"]["max"] > 0
