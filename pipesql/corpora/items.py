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
from typing import Callable

from pipesql.storage.files import lone_surrogate, writable

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
    # Why the benchmark entry is unusable (no SQL, SQL not a string, no db_id ...); validate
    # classifies such an item instead of aborting the batch on it.
    problem: str | None = None


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


def usable_db_id(db_id: object) -> bool:
    """A database name that stays inside the folder it is looked up in: letters, digits and
    ``_-.``, not ``.`` or ``..`` (so never a path, absolute or relative)."""
    return (isinstance(db_id, str) and bool(db_id) and all(c.isalnum() or c in "_-." for c in db_id)
            and db_id not in (".", ".."))


def entry_problem(raw: object, sql_key: str) -> str | None:
    """What makes a benchmark entry unusable, or None: it must be an object with a non-empty
    string ``db_id`` (letters, digits, ``_-.``) and a non-empty string ``sql_key``."""
    if not isinstance(raw, dict):
        return f"entry is a {type(raw).__name__}, not an object"
    db_id = raw.get("db_id")
    if not usable_db_id(db_id):
        return f"entry has no usable db_id (got {db_id!r})"
    sql = raw.get(sql_key)
    if sql is None:
        return f"entry has no {sql_key!r}"
    if not isinstance(sql, str) or not sql.strip():
        return f"entry's {sql_key!r} is not SQL text (got {type(sql).__name__} {str(sql)[:40]!r})"
    return None


def _text_problem(raw: dict) -> str | None:
    """A text field that no output file can hold (a lone surrogate), named, or None."""
    for key, value in raw.items():
        if isinstance(value, str) and (position := lone_surrogate(value)) is not None:
            return f"entry's {writable(str(key))!r} holds a lone surrogate at character {position}, not text"
    return None


def _text(raw: object, key: str) -> str | None:
    value = raw.get(key) if isinstance(raw, dict) else None
    return value if isinstance(value, str) else None


def _item(question_id: str, raw: object, sql_key: str, database: Callable[[str], Path],
          difficulty: Callable[[str], str | None]) -> Item:
    """One benchmark entry as an :class:`Item`; a malformed entry becomes an item that says why."""
    problem = entry_problem(raw, sql_key) or _text_problem(raw)
    if problem is not None:
        db_id = _text(raw, "db_id") or ""
        question = _text(raw, "question")
        return Item(question_id, writable(db_id), writable(question) if question else question, "",
                    database(db_id if usable_db_id(db_id) else "_"), problem=f"{question_id}: {problem}")
    return Item(question_id=question_id, db_id=raw["db_id"], question=_text(raw, "question"), gold_sql=raw[sql_key],
                db_path=database(raw["db_id"]), difficulty=difficulty(raw[sql_key]),
                evidence=_text(raw, "evidence") or None)


def load_spider(data_dir: Path, split: str) -> list[Item]:
    from pipesql.corpora.difficulty import spider_hardness

    items = []
    for prefix, filename in _spider_files(split):
        path = data_dir / filename
        if prefix == "train_others" and not path.exists():
            continue
        for index, raw in enumerate(_load_json(path)):
            items.append(_item(f"{prefix}-{index:05d}", raw, "query",
                               lambda db_id: data_dir / "database" / db_id / f"{db_id}.sqlite",
                               lambda sql: _text(raw, "difficulty") or spider_hardness(sql)))
    return items


def load_bird(data_dir: Path, split: str) -> list[Item]:
    items = []
    for part in (("dev", "train") if split == "all" else (split,)):
        root = data_dir / part
        for index, raw in enumerate(_load_json(root / f"{part}.json")):
            number = raw.get("question_id", index) if isinstance(raw, dict) else index
            items.append(_item(f"{part}-{number}", raw, "SQL",
                               lambda db_id: root / f"{part}_databases" / db_id / f"{db_id}.sqlite",
                               lambda sql: _text(raw, "difficulty")))
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
    """``<folder>/<db_id>/<db_id>.sqlite`` in the first folder that has it; None for a db_id that
    is not a plain name (``/abs/path`` would otherwise open a file outside every folder)."""
    if not usable_db_id(db_id):
        return None
    for folder in db_dirs:
        candidate = Path(folder) / db_id / f"{db_id}.sqlite"
        if candidate.is_file():
            return candidate
    return None
