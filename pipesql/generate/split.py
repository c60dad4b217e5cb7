"""Train/dev split: stratified by database, grouped by question, reproducible from the seed.

- Grouped: every sample of a question lands on one side, and pairs that ask the same question
  text (compared case- and whitespace-insensitively) form one group, so no question text is on
  both sides.
- Stratified: each database gives ``dev_fraction`` of its question groups to dev. Counts are
  rounded cumulatively over databases in name order, so the total is ``dev_fraction`` of all
  groups to within one while small databases still add up.
- Reproducible: which groups go to dev depends only on a SHA-256 of (seed, question text), not
  on input order or Python's hash seed.
"""

from __future__ import annotations

import hashlib
from typing import Iterable

from pipesql.generate.pairs import GoldenPair

TRAIN, DEV = "train", "dev"


def question_key(question: str) -> str:
    return " ".join(question.lower().split())


def seeded_rank(seed: int, namespace: str, key: str) -> str:
    """A stable pseudo-random sort key for ``key``."""
    return hashlib.sha256(f"{seed}\x00{namespace}\x00{key}".encode("utf-8")).hexdigest()


def seeded_fraction(seed: int, namespace: str, key: str) -> float:
    """A stable pseudo-random number in [0, 1) for ``key``."""
    return int(seeded_rank(seed, namespace, key)[:15], 16) / float(16**15)


def assign_splits(pairs: Iterable[GoldenPair], dev_fraction: float, seed: int) -> dict[str, str]:
    """``{question_id: "train" | "dev"}`` for every pair."""
    groups: dict[str, list[GoldenPair]] = {}
    for pair in pairs:
        groups.setdefault(question_key(pair.question), []).append(pair)
    by_database: dict[str, list[str]] = {}
    for key, members in groups.items():
        home = min(pair.db_id for pair in members)
        by_database.setdefault(home, []).append(key)

    dev_keys: set[str] = set()
    seen = 0
    for db_id in sorted(by_database):
        keys = sorted(by_database[db_id], key=lambda k: (seeded_rank(seed, "split", k), k))
        wanted = round((seen + len(keys)) * dev_fraction) - round(seen * dev_fraction)
        dev_keys.update(keys[:wanted])
        seen += len(keys)

    return {pair.question_id: DEV if key in dev_keys else TRAIN
            for key, members in groups.items() for pair in members}

