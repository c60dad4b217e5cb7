"""benchmarks/mutation_bench.py on any BIRD-layout folder (here one built from the demo corpus)."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from pipesql.corpora.demo import ensure_corpus
from pipesql.corpora.items import load_items

BENCH = Path(__file__).resolve().parents[1] / "benchmarks" / "mutation_bench.py"


@pytest.fixture(scope="module")
def bird_dir(tmp_path_factory) -> Path:
    """The demo dev split in BIRD's layout: dev/dev.json (``SQL``, ``question_id``) and
    dev/dev_databases/<db>/<db>.sqlite."""
    demo = ensure_corpus(tmp_path_factory.mktemp("demo") / "corpus")
    folder = tmp_path_factory.mktemp("bird")
    entries = []
    for number, raw in enumerate(json.loads((demo / "dev.json").read_text())):
        target = folder / "dev" / "dev_databases" / raw["db_id"]
        if not target.exists():
            target.mkdir(parents=True)
            shutil.copy(demo / "database" / raw["db_id"] / f"{raw['db_id']}.sqlite", target)
        entries.append({"question_id": 100 + number, "db_id": raw["db_id"], "question": raw["question"],
                        "evidence": "", "SQL": raw["query"], "difficulty": "simple"})
    (folder / "dev" / "dev.json").write_text(json.dumps(entries))
    return folder


def _bench(*args: str) -> str:
    run = subprocess.run([sys.executable, str(BENCH), *args], capture_output=True, text=True, timeout=600)
    assert run.returncode == 0, run.stderr
    return run.stdout


def test_bench_measures_a_bird_layout_folder(bird_dir):
    out = _bench("--benchmark", "bird", "--data-dir", str(bird_dir), "--split", "dev", "--limit", "8",
                 "--variants", "2", "--show-uncaught", "3")
    section = out[out.index(f"bird dev ({bird_dir})"):]
    assert "mutation" in section and "+ K=2" in section and "\nall " in section
    assert "variant check per gold query (K=2)" in section


def test_mutants_as_predictions_name_every_question(bird_dir, tmp_path):
    path = tmp_path / "preds.jsonl"
    _bench("--benchmark", "bird", "--data-dir", str(bird_dir), "--split", "dev", "--predictions-out", str(path))
    lines = [json.loads(line) for line in path.read_text().splitlines()]
    items = load_items("bird", bird_dir, "dev")
    assert [line["question_id"] for line in lines] == [item.question_id for item in items]
    assert sum(line["mutation"] is not None for line in lines) > len(lines) // 2


def test_the_uncaught_mutants_are_written_with_their_question(bird_dir, tmp_path):
    path = tmp_path / "uncaught.jsonl"
    out = _bench("--benchmark", "bird", "--data-dir", str(bird_dir), "--split", "dev", "--limit", "12",
                 "--variants", "1", "--show-uncaught", "1000", "--dump-uncaught", str(path))
    lines = [json.loads(line) for line in path.read_text().splitlines()]
    assert len(lines) == out.count("\nuncaught ")  # the demo corpus and the BIRD folder, each mutant once
    questions = {item.question_id for item in load_items("bird", bird_dir, "dev")}
    bird = [line for line in lines if line["corpus"].startswith("bird")]
    assert bird and all(line["question_id"] in questions for line in bird)
    assert all(line["gold"] != line["mutant"] and line["mutation"] and line["db_id"] for line in lines)
