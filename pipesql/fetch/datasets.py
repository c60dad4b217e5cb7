"""What a fetched Spider or BIRD folder must hold, how an unpacked archive is put into that
layout (see :mod:`pipesql.corpora.items`), and the verification that counts what is there against
the official release."""

from __future__ import annotations

import json
import os
import shutil
from dataclasses import asdict, dataclass, field
from pathlib import Path

from pipesql.fetch.archive import extract_archive, find_root, remove_junk

# The official releases. A local copy may be a documented subset: reported, not refused.
SPIDER_OFFICIAL = {"databases": 166, "dev": 1034, "train_spider": 7000, "train_others": 1659}
BIRD_OFFICIAL = {
    "dev": {"databases": 11, "questions": 1534},
    "train": {"databases": 69, "questions": 9428},
}
SPIDER_QUESTION_FILES = {"dev": "dev.json", "train_spider": "train_spider.json", "train_others": "train_others.json"}


@dataclass
class Verification:
    """Counts found in a dataset folder beside the official ones. ``errors`` make the folder
    unusable; a shortfall against the official counts only makes it incomplete."""

    dataset: str
    counts: dict[str, int] = field(default_factory=dict)
    official: dict[str, int] = field(default_factory=dict)
    missing_databases: list[str] = field(default_factory=list)
    unrunnable_questions: int = 0  # questions whose database is missing
    errors: list[str] = field(default_factory=list)

    @property
    def usable(self) -> bool:
        return not self.errors

    @property
    def complete(self) -> bool:
        reached = all(self.counts.get(key, 0) >= wanted for key, wanted in self.official.items())
        return self.usable and reached and not self.missing_databases

    def as_dict(self) -> dict:
        return {**asdict(self), "usable": self.usable, "complete": self.complete}

    def lines(self) -> list[str]:
        counted = ", ".join(f"{key} {self.counts.get(key, 0):,}/{wanted:,}" for key, wanted in self.official.items())
        out = [f"{self.dataset}: {counted} (found/official) - {'complete' if self.complete else 'INCOMPLETE'}"]
        if self.missing_databases:
            out.append(f"  missing {len(self.missing_databases)} databases: {', '.join(self.missing_databases)}"
                       f" ({self.unrunnable_questions:,} questions cannot be executed)")
        out.extend(f"  error: {error}" for error in self.errors)
        return out


def _read_json_list(path: Path, errors: list[str]) -> list[dict]:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        errors.append(f"{path.name} missing")
        return []
    except ValueError as error:
        errors.append(f"{path}: not valid JSON: {error}")
        return []
    if not isinstance(data, list):
        errors.append(f"{path}: expected a JSON list of questions")
        return []
    return data


def database_ids(folder: Path) -> set[str]:
    """Databases present as ``folder/<db_id>/<db_id>.sqlite``."""
    if not folder.is_dir():
        return set()
    return {d.name for d in folder.iterdir() if (d / f"{d.name}.sqlite").is_file()}


def _missing(verification: Verification, questions: list[dict], present: set[str], known: set[str] = frozenset()) -> None:
    referenced = {q.get("db_id") for q in questions if q.get("db_id")} | set(known)
    missing = referenced - present
    verification.missing_databases = sorted(missing)
    verification.unrunnable_questions = sum(1 for q in questions if q.get("db_id") in missing)


def verify_spider(root: str | Path) -> Verification:
    root = Path(root)
    verification = Verification("spider", official=dict(SPIDER_OFFICIAL))
    questions: list[dict] = []
    for key, filename in SPIDER_QUESTION_FILES.items():
        if key == "train_others" and not (root / filename).exists():
            verification.counts[key] = 0  # an older release had no train_others: incomplete, not broken
            continue
        items = _read_json_list(root / filename, verification.errors)
        verification.counts[key] = len(items)
        questions.extend(items)
    present = database_ids(root / "database")
    verification.counts["databases"] = len(present)
    if not present:
        verification.errors.append("database/ holds no <db_id>/<db_id>.sqlite")
    tables = root / "tables.json"
    known = {t["db_id"] for t in _read_json_list(tables, []) if "db_id" in t} if tables.exists() else set()
    _missing(verification, questions, present, known)
    return verification


def verify_bird_part(root: str | Path, part: str) -> Verification:
    root = Path(root)
    verification = Verification(f"bird {part}", official=dict(BIRD_OFFICIAL[part]))
    questions = _read_json_list(root / f"{part}.json", verification.errors)
    present = database_ids(root / f"{part}_databases")
    verification.counts = {"databases": len(present), "questions": len(questions)}
    if not present:
        verification.errors.append(f"{part}_databases/ holds no <db_id>/<db_id>.sqlite")
    _missing(verification, questions, present)
    return verification


def _move_children(source: Path, dest: Path) -> None:
    for child in list(source.iterdir()):
        os.replace(child, dest / child.name)


def unpack_into(archive: Path, staging: Path, marker: str) -> None:
    """Unpack ``archive`` and move the folder holding ``marker`` to be ``staging`` itself."""
    unpacked = staging / ".unpacked"
    extract_archive(archive, unpacked)
    root = find_root(unpacked, marker)
    _move_children(root, staging)
    shutil.rmtree(unpacked)
    remove_junk(staging)


def unpack_nested_databases(staging: Path, part: str) -> None:
    """BIRD ships its databases as a zip inside the zip (``dev_databases.zip``): unpack it to
    ``<part>_databases/`` and drop the inner archive."""
    folder, inner = staging / f"{part}_databases", staging / f"{part}_databases.zip"
    if folder.is_dir() or not inner.is_file():
        return
    unpacked = staging / ".unpacked-databases"
    extract_archive(inner, unpacked)
    remove_junk(unpacked)
    named = [p for p in unpacked.rglob(folder.name) if p.is_dir()]
    os.replace(named[0] if named else unpacked, folder)
    shutil.rmtree(unpacked, ignore_errors=True)
    inner.unlink()
