"""The embedded demo corpus: six small SQLite databases and Spider-style questions over them,
built from seeded code in about a second, so that every stage runs without a download.

>>> root = ensure_corpus()            # doctest: +SKIP
>>> sorted(p.name for p in root.iterdir())   # doctest: +SKIP
['database', 'dev.json', 'tables.json', 'train_spider.json']

The corpus lives in ``<cache>/demo/<version>`` (the cache is ``$PIPESQL_CACHE`` or
``~/.cache/pipesql``), where ``version`` hashes the code that builds it: editing a question or
a generator gives a new folder, and an unchanged one is reused. Pass ``data_dir`` to build
somewhere else. Building is atomic: a temporary folder beside the target is renamed into place,
so a reader (or a second builder in another process) never sees half a corpus.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import shutil
import sqlite3
import sys
import tempfile
from pathlib import Path

from pipesql.storage.cache import cache_root

MARKER = ".pipesql-demo"
_SOURCES = ("databases.py", "questions.py", "corpus.py")


class DemoCorpusError(Exception):
    pass


def corpus_version() -> str:
    """A hash of everything the corpus bytes depend on: its code and the SQLite library."""
    digest = hashlib.sha256()
    here = Path(__file__).parent
    for name in _SOURCES:
        digest.update((here / name).read_bytes())
    digest.update(sqlite3.sqlite_version.encode())
    digest.update(f"{sys.version_info.major}.{sys.version_info.minor}".encode())
    return digest.hexdigest()[:12]


def default_corpus_dir() -> Path:
    return cache_root() / "demo" / corpus_version()


def _is_current(folder: Path, version: str) -> bool:
    marker = folder / MARKER
    return marker.is_file() and marker.read_text().strip() == version


def ensure_corpus(data_dir: str | Path | None = None) -> Path:
    """Build the demo corpus into ``data_dir`` (default: the cache) unless it is there already,
    and return its root folder. Refuses to overwrite a non-empty folder it did not build."""
    version = corpus_version()
    target = Path(data_dir).expanduser() if data_dir else default_corpus_dir()
    if _is_current(target, version):
        return target
    if target.exists() and not (target / MARKER).exists() and any(target.iterdir()):
        raise DemoCorpusError(f"{target} exists and is not a pipesql demo corpus; not overwriting it")
    target.parent.mkdir(parents=True, exist_ok=True)

    from pipesql.corpora.demo.corpus import build_corpus

    staging = Path(tempfile.mkdtemp(prefix=f".{target.name}.build-", dir=target.parent))
    try:
        build_corpus(staging)
        (staging / MARKER).write_text(version + "\n")
        _swap_into_place(staging, target, version)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return target


def _swap_into_place(staging: Path, target: Path, version: str) -> None:
    if _is_current(target, version):
        return  # another process finished the same build first
    if target.exists():
        # An empty folder, or an older build of ours: move it aside, then replace it.
        retired = Path(tempfile.mkdtemp(prefix=f".{target.name}.old-", dir=target.parent))
        os.replace(target, retired / "corpus")
        shutil.rmtree(retired, ignore_errors=True)
    try:
        os.replace(staging, target)
    except OSError:
        # Another process finished the same build first; theirs is as good as ours.
        if not _is_current(target, version):
            raise
    with contextlib.suppress(OSError):
        os.chmod(target, 0o755)  # mkdtemp makes 0700 folders


__all__ = ["DemoCorpusError", "corpus_version", "default_corpus_dir", "ensure_corpus"]
