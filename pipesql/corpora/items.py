"""Benchmark items (question + gold SQL + database) from Spider, BIRD or the embedded demo.

Expected layouts (what ``pipesql fetch`` produces):

- spider: ``DIR/dev.json``, ``DIR/train_spider.json``, ``DIR/train_others.json``,
  ``DIR/database/<db_id>/<db_id>.sqlite``
- bird: ``DIR/dev/dev.json`` + ``DIR/dev/dev_databases/<db_id>/<db_id>.sqlite`` and
  ``DIR/train/train.json`` + ``DIR/train/train_databases/<db_id>/<db_id>.sqlite``
- demo: the Spider layout, built on demand by :mod:`pipesql.corpora.demo` (no download)
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

BENCHMARKS = ("spider", "bird", "demo")
SPLITS = ("dev", "train", "all")


@dataclass(frozen=True)
class Item:
    question_id: str
    db_id: str
    question: str | None  # Spider's train_others has gold SQL but no question
    gold_sql: str
    db_path: Path
    difficulty: str | None = None
    evidence: str | None = None  # BIRD's external-knowledge hint


class BenchmarkError(Exception):
    pass


def _spider_files(split: str) -> list[tuple[str, str]]:
    files = {"dev": [("dev", "dev.json")], "train": [("train", "train_spider.json"), ("train_others", "train_others.json")]}
    return files["dev"] + files["train"] if split == "all" else files[split]


def _load_json(path: Path) -> list[dict]:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise BenchmarkError(f"benchmark file not found: {path}") from None
    except ValueError as error:
        raise BenchmarkError(f"{path}: not valid JSON: {error}") from None


def load_spider(data_dir: Path, split: str) -> list[Item]:
    from pipesql.corpora.difficulty import spider_hardness

    items = []
    for prefix, filename in _spider_files(split):
        path = data_dir / filename
        if prefix == "train_others" and not path.exists():
            continue
        for index, raw in enumerate(_load_json(path)):
            db_id = raw["db_id"]
            items.append(Item(
                question_id=f"{prefix}-{index:05d}",
                db_id=db_id,
                question=raw.get("question"),
                gold_sql=raw["query"],
                db_path=data_dir / "database" / db_id / f"{db_id}.sqlite",
                difficulty=raw.get("difficulty") or spider_hardness(raw["query"]),
            ))
    return items


def load_bird(data_dir: Path, split: str) -> list[Item]:
    items = []
    for part in (("dev", "train") if split == "all" else (split,)):
        root = data_dir / part
        for index, raw in enumerate(_load_json(root / f"{part}.json")):
            db_id = raw["db_id"]
            items.append(Item(
                question_id=f"{part}-{raw.get('question_id', index)}",
                db_id=db_id,
                question=raw.get("question"),
                gold_sql=raw["SQL"],
                db_path=root / f"{part}_databases" / db_id / f"{db_id}.sqlite",
                difficulty=raw.get("difficulty"),
                evidence=raw.get("evidence") or None,
            ))
    return items


def load_items(benchmark: str, data_dir: str | Path | None, split: str, limit: int | None = None) -> list[Item]:
    if split not in SPLITS:
        raise BenchmarkError(f"unknown split {split!r}; choose from {SPLITS}")
    if benchmark == "demo":
        from pipesql.corpora.demo import ensure_corpus

        items = load_spider(ensure_corpus(data_dir), split)
    elif benchmark == "spider":
        items = load_spider(Path(data_dir), split)
    elif benchmark == "bird":
        items = load_bird(Path(data_dir), split)
    else:
        raise BenchmarkError(f"unknown benchmark {benchmark!r}; choose from {BENCHMARKS}")
    return items[:limit] if limit else items


def database_dirs(benchmark: str, data_dir: str | Path | None) -> list[Path]:
    """Folders holding ``<db_id>/<db_id>.sqlite`` for a benchmark (what ``--db-dir`` takes)."""
    if benchmark == "demo":
        from pipesql.corpora.demo import ensure_corpus

        return [ensure_corpus(data_dir) / "database"]
    root = Path(data_dir)
    if benchmark == "spider":
        return [root / "database"]
    return [root / "dev" / "dev_databases", root / "train" / "train_databases"]


def find_database(db_dirs: list[Path], db_id: str) -> Path | None:
    for folder in db_dirs:
        candidate = Path(folder) / db_id / f"{db_id}.sqlite"
        if candidate.is_file():
            return candidate
    return None
