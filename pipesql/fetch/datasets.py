"""What a fetched Spider, BIRD or SynSQL-2.5M folder must hold, how an unpacked archive is put into that
layout (see :mod:`pipesql.corpora.items`), and the verification that counts what is there against
the official release."""

from __future__ import annotations

import os
import shutil
from collections import Counter
from dataclasses import asdict, dataclass, field
from pathlib import Path

from pipesql.fetch.archive import extract_archive, find_root, remove_junk

# The official releases. A local copy may be a documented subset: reported, not refused.
SPIDER_OFFICIAL = {"databases": 166, "dev": 1034, "train_spider": 7000, "train_others": 1659}
BIRD_OFFICIAL = {
    "dev": {"databases": 11, "questions": 1534},
    "train": {"databases": 69, "questions": 9428},
}
# SynSQL-2.5M as its paper counts it ("2.5 million samples spanning over 16,000 synthetic
# databases", arXiv 2503.02240): round figures, so a lower bound of a complete copy.
SYNSQL_OFFICIAL = {"databases": 16_000, "questions": 2_500_000}
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


def _databases_asked(path: Path, errors: list[str]) -> Counter:
    """``{db_id: questions}`` of a benchmark file, read as a stream (SynSQL's holds 2.5M)."""
    from pipesql.corpora.items import BenchmarkError, iter_json_array

    asked: Counter = Counter()
    if not path.is_file():
        errors.append(f"{path.name} missing")
        return asked
    try:
        for entry in iter_json_array(path):
            asked[entry.get("db_id") if isinstance(entry, dict) else None] += 1
    except BenchmarkError as error:
        errors.append(str(error))
    return asked


def database_ids(folder: Path) -> set[str]:
    """Databases present as ``folder/<db_id>/<db_id>.sqlite``."""
    if not folder.is_dir():
        return set()
    return {d.name for d in folder.iterdir() if (d / f"{d.name}.sqlite").is_file()}


def _missing(verification: Verification, asked: Counter, present: set[str], known: set[str] = frozenset()) -> None:
    referenced = {db_id for db_id in asked if db_id} | set(known)
    missing = referenced - present
    verification.missing_databases = sorted(missing)
    verification.unrunnable_questions = sum(asked[db_id] for db_id in missing)


def verify_spider(root: str | Path) -> Verification:
    root = Path(root)
    verification = Verification("spider", official=dict(SPIDER_OFFICIAL))
    asked: Counter = Counter()
    for key, filename in SPIDER_QUESTION_FILES.items():
        if key == "train_others" and not (root / filename).exists():
            verification.counts[key] = 0  # an older release had no train_others: incomplete, not broken
            continue
        in_file = _databases_asked(root / filename, verification.errors)
        verification.counts[key] = sum(in_file.values())
        asked += in_file
    present = database_ids(root / "database")
    verification.counts["databases"] = len(present)
    if not present:
        verification.errors.append("database/ holds no <db_id>/<db_id>.sqlite")
    tables = root / "tables.json"
    known = set(_databases_asked(tables, [])) - {None} if tables.exists() else set()
    _missing(verification, asked, present, known)
    return verification


def verify_bird_part(root: str | Path, part: str) -> Verification:
    root = Path(root)
    verification = Verification(f"bird {part}", official=dict(BIRD_OFFICIAL[part]))
    asked = _databases_asked(root / f"{part}.json", verification.errors)
    present = database_ids(root / f"{part}_databases")
    verification.counts = {"databases": len(present), "questions": sum(asked.values())}
    if not present:
        verification.errors.append(f"{part}_databases/ holds no <db_id>/<db_id>.sqlite")
    _missing(verification, asked, present)
    return verification


def verify_synsql(root: str | Path) -> Verification:
    """``data.json`` (streamed), ``tables.json`` and ``databases/<db_id>/<db_id>.sqlite``."""
    root = Path(root)
    verification = Verification("synsql", official=dict(SYNSQL_OFFICIAL))
    asked = _databases_asked(root / "data.json", verification.errors)
    present = database_ids(root / "databases")
    verification.counts = {"databases": len(present), "questions": sum(asked.values())}
    if not present:
        verification.errors.append("databases/ holds no <db_id>/<db_id>.sqlite")
    if not (root / "tables.json").is_file():
        verification.errors.append("tables.json missing")
    _missing(verification, asked, present)
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


def unpack_nested_databases(staging: Path, name: str) -> None:
    """BIRD and SynSQL ship their databases as a zip inside the download (``dev_databases.zip``,
    ``databases.zip``): unpack it to ``<name>/`` and drop the inner archive."""
    folder, inner = staging / name, staging / f"{name}.zip"
    if folder.is_dir() or not inner.is_file():
        return
    unpacked = staging / ".unpacked-databases"
    extract_archive(inner, unpacked)
    remove_junk(unpacked)
    named = [p for p in unpacked.rglob(folder.name) if p.is_dir()]
    os.replace(named[0] if named else unpacked, folder)
    shutil.rmtree(unpacked, ignore_errors=True)
    inner.unlink()
