"""Fixtures shared by several test files."""

from __future__ import annotations

from pathlib import Path

import pytest


@pytest.fixture(scope="module")
def one_thread():
    """One intra-op torch thread for a module: on two shared cores, one thread is several times
    faster than two fighting. Use with ``pytestmark = pytest.mark.usefixtures("one_thread")``."""
    torch = pytest.importorskip("torch")
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="session")
def demo_corpus(tmp_path_factory) -> Path:
    """The embedded demo corpus (Spider layout: questions, tables.json, databases), built once for
    the whole run. Shared, so tests read it and never write into it."""
    from pipesql.corpora.demo import ensure_corpus

    return ensure_corpus(tmp_path_factory.mktemp("demo") / "corpus")


@pytest.fixture(scope="session")
def library_db(demo_corpus: Path) -> Path:
    """The demo corpus's ``library`` database (books and authors)."""
    return demo_corpus / "database" / "library" / "library.sqlite"
