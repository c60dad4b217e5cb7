"""The ray engine of validate and generate (pipesql.scale): shards, resume, same outputs as local."""

from __future__ import annotations

import dataclasses
import json
import os
import signal
import sqlite3
import subprocess
import sys
import time
from collections import Counter
from contextlib import closing
from pathlib import Path

import pytest

from pipesql.corpora.demo import ensure_corpus
from pipesql.corpora.items import BenchmarkError, iter_items, load_items
from pipesql.scale.shards import ShardStore, iter_results, pack, process_shard, write_input_shards
from pipesql.validate.check import CheckOptions
from pipesql.validate.report import render_report, summarize
from sandbox_attacks import one_step_gold

NO_GOOGLESQL = CheckOptions(googlesql=False)


@pytest.fixture(scope="module")
def corpus(tmp_path_factory) -> Path:
    return ensure_corpus(tmp_path_factory.mktemp("demo") / "corpus")


# --- shards, without Ray -------------------------------------------------------------------------

def test_pack_keeps_each_database_in_one_shard():
    weights = Counter({"big": 70, "a": 20, "b": 20, "c": 15, "d": 5})
    shard_of = pack(weights, 40)
    shards = Counter()
    for key, weight in weights.items():
        shards[shard_of[key]] += weight
    assert shards[shard_of["big"]] == 70  # heavier than a shard: alone, never split
    assert all(total <= 40 for shard, total in shards.items() if shard != shard_of["big"])


class _Died(BaseException):
    """Stands for the worker process dying: nothing after it runs, as after a SIGKILL."""


def _store(tmp_path: Path, units: list[dict]) -> ShardStore:
    store = ShardStore(tmp_path / "shards")
    write_input_shards(store, lambda: units, key=lambda u: u["db"], weight=lambda u: 1, shard_weight=100,
                       job_fingerprint="test")
    return store


def test_a_shard_resumes_where_its_worker_died_and_an_item_that_keeps_killing_it_is_classified(tmp_path):
    units = [{"db": "x", "n": n} for n in range(6)]
    store = _store(tmp_path, units)
    (shard,) = store.shards()
    calls: Counter = Counter()

    def handle(unit):
        calls[unit["n"]] += 1
        if unit["n"] == 2 and calls[2] == 1:
            raise _Died  # killed once (say, by the OOM killer): tried again
        if unit["n"] == 4:
            raise _Died  # kills its worker every time
        return {"n": unit["n"], "ok": True}

    def crashed(unit, detail):
        return {"n": unit["n"], "ok": False, "detail": detail}

    for _ in range(3):  # the first try dies at 2, the second and third at 4
        with pytest.raises(_Died):
            process_shard(store, shard, handle, crashed)
    assert store.pending() == [shard]
    marker = process_shard(store, shard, handle, crashed)
    assert marker["units"] == 6 and store.pending() == []
    results = list(iter_results(store))
    assert [r["n"] for r in results] == list(range(6))  # every item once, in order
    assert [r["ok"] for r in results] == [True, True, True, True, False, True]
    assert "died 2 times" in results[4]["detail"]
    assert calls == {0: 1, 1: 1, 2: 2, 3: 1, 4: 2, 5: 1}  # nothing done twice but the killed ones


def test_a_torn_last_result_line_is_redone(tmp_path):
    store = _store(tmp_path, [{"db": "x", "n": n} for n in range(3)])
    (shard,) = store.shards()
    store.partial(shard).parent.mkdir(parents=True, exist_ok=True)
    store.partial(shard).write_text(json.dumps({"index": 0, "result": {"n": 0}}) + '\n{"index": 1, "res')
    process_shard(store, shard, lambda unit: {"n": unit["n"]}, lambda unit, detail: None)
    assert list(iter_results(store)) == [{"n": 0}, {"n": 1}, {"n": 2}]


def test_input_shards_are_kept_for_the_same_job_and_replaced_for_another(tmp_path):
    store = _store(tmp_path, [{"db": "x", "n": 1}])
    (shard,) = store.shards()
    process_shard(store, shard, lambda unit: unit, lambda unit, detail: None)
    _store(tmp_path, [{"db": "x", "n": 1}])  # a rerun of the same job: the finished shard stays done
    assert store.pending() == []
    write_input_shards(store, lambda: [{"db": "y", "n": 2}], key=lambda u: u["db"], weight=lambda u: 1,
                       shard_weight=100, job_fingerprint="another")
    assert store.pending() == store.shards() and len(store.shards()) == 1


def test_summary_and_report_read_the_records_once(corpus):
    from pipesql.validate import validate_items

    records = validate_items(load_items("demo", corpus, "dev")[:12], workers=1, options=NO_GOOGLESQL, progress=False)
    records[3]["validation"] = {"class": "MISMATCH", "stage": "compare", "subclass": "rows", "detail": "x"}
    assert summarize(iter(records), 1.0, 1) == summarize(records, 1.0, 1)
    summary = summarize(records, 1.0, 1)
    assert render_report(summary, iter(records), "t") == render_report(summary, records, "t")
    assert "### MISMATCH" in render_report(summary, iter(records), "t")


# --- corpora at scale ----------------------------------------------------------------------------

def _synsql(root: Path, corpus: Path, entries: list) -> Path:
    (root / "databases").mkdir(parents=True)
    (root / "databases" / "library").symlink_to(corpus / "database" / "library")
    (root / "data.json").write_text(json.dumps(entries))
    (root / "tables.json").write_text("[]")
    return root


SYNSQL_ENTRY = {"db_id": "library", "sql_complexity": "Simple", "question_style": "Formal",
                "question": "How many books are there?", "external_knowledge": "", "cot": "...",
                "sql": "SELECT count(*) FROM book"}


def test_synsql_items_in_its_layout(corpus, tmp_path):
    root = _synsql(tmp_path / "synsql", corpus, [SYNSQL_ENTRY, {**SYNSQL_ENTRY, "external_knowledge": "books = rows",
                                                                "sql_complexity": "Moderate"}, {"db_id": "library"}])
    items = load_items("synsql", root, "train")
    assert [i.question_id for i in items] == ["synsql-0000000", "synsql-0000001", "synsql-0000002"]
    assert items[0].db_path == root / "databases" / "library" / "library.sqlite" and items[0].db_path.is_file()
    assert (items[0].difficulty, items[0].evidence, items[1].evidence) == ("Simple", None, "books = rows")
    assert items[2].problem and "'sql'" in items[2].problem
    with pytest.raises(BenchmarkError, match="one split"):
        load_items("synsql", root, "dev")


def test_benchmark_files_are_read_as_a_stream(corpus, tmp_path):
    root = _synsql(tmp_path / "synsql", corpus, [])
    entries = ",".join(json.dumps({**SYNSQL_ENTRY, "question": f"q{n}"}) for n in range(50))
    (root / "data.json").write_text(f"[{entries}, {{broken")  # the tail is never reached by a streaming reader
    stream = iter_items("synsql", root, "all")
    assert [next(stream).question for _ in range(3)] == ["q0", "q1", "q2"]
    with pytest.raises(BenchmarkError, match="data.json"):
        list(stream)


def test_the_engine_is_a_setting_of_validate_and_generate(tmp_path):
    from pipesql.config.settings import resolve
    from pipesql.generate import Settings as GenerateSettings
    from pipesql.validate import Settings as ValidateSettings

    assert resolve(ValidateSettings, {}, environ={}, dotenv={}).engine == "local"  # the default
    assert resolve(ValidateSettings, {}, environ={"PIPESQL_VALIDATE_ENGINE": "ray"}, dotenv={}).engine == "ray"
    recipe = tmp_path / "generate.yaml"
    recipe.write_text("stage: generate\nengine: ray\nshard_pairs: 64\n")
    settings = resolve(GenerateSettings, {"config": recipe}, environ={}, dotenv={})
    assert (settings.engine, settings.shard_pairs) == ("ray", 64)
    recipe.write_text("engine: spark\n")
    with pytest.raises(SystemExit, match="engine"):
        resolve(GenerateSettings, {"config": recipe}, environ={}, dotenv={})


def test_the_rayjob_in_the_docs_runs_an_accepted_command_on_the_pinned_ray():
    import importlib.util
    import shlex
    import tomllib

    from pipesql.cli import command_parser
    from pipesql.config.settings import resolve
    from pipesql.validate import Settings

    spec = importlib.util.spec_from_file_location("check_rayjob", Path(__file__).parents[1] / "docker/check_rayjob.py")
    check_rayjob = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(check_rayjob)
    (job,) = [m for m in check_rayjob.manifests() if m["kind"] == "RayJob"]
    argv = shlex.split(job["spec"]["entrypoint"])
    assert argv[:2] == ["pipesql", "validate"]
    settings = resolve(Settings, vars(command_parser("validate", Settings).parse_args(argv[2:])), environ={}, dotenv={})
    assert (settings.engine, settings.benchmark) == ("ray", "synsql")
    pyproject = tomllib.loads((Path(__file__).parents[1] / "pyproject.toml").read_text())
    assert f"=={job['spec']['rayClusterSpec']['rayVersion']}" in pyproject["project"]["optional-dependencies"]["cluster"][0]


# --- the ray engine --------------------------------------------------------------------------------

ray = pytest.importorskip("ray")


@pytest.fixture(scope="module")
def cluster():
    """One local 2-CPU cluster for the module's in-process runs (about 7 s to start)."""
    from pipesql.scale.engine import connect

    connect(2)
    yield
    ray.shutdown()


def _validate(engine: str, corpus: Path, out: Path, **extra) -> int:
    from pipesql.validate import Settings, run

    # Time limits far above any item's need: a ZetaSQL execution past the default 2 s on a loaded
    # machine would make one engine's record differ from the other's for a reason that is not the engine.
    extra = {"timeout_s": 30.0, "googlesql_timeout_s": 30.0, **extra}
    settings = Settings(benchmark="demo", data_dir=corpus, split="all", out=out, engine=engine, workers=2,
                        shard_items=30, progress=False, **extra)
    return run(settings)


def test_ray_engine_gives_the_local_outputs_for_validate_and_generate(cluster, corpus, tmp_path):
    """The CI run of the ray engine: a local 2-CPU cluster, the demo corpus (167 items, 6 databases,
    ZetaSQL on), validate and generate both."""
    from pipesql.generate import Settings as GenerateSettings
    from pipesql.generate import run as generate

    for engine in ("local", "ray"):
        assert _validate(engine, corpus, tmp_path / engine / "validate") == 0
    for name in ("golden_pairs.jsonl", "quarantine.jsonl"):
        assert (tmp_path / "ray/validate" / name).read_bytes() == (tmp_path / "local/validate" / name).read_bytes(), name
    summary = json.loads((tmp_path / "ray/validate/summary.json").read_text())
    assert summary["items"] == 167 and summary["workers"] == 2
    assert not (tmp_path / "ray/.validate.shards").exists()  # removed once the outputs hold everything
    for engine in ("local", "ray"):
        settings = GenerateSettings(golden_pairs=tmp_path / "local/validate/golden_pairs.jsonl", benchmark="demo",
                                    data_dir=corpus, output_dir=tmp_path / engine / "generate", engine=engine,
                                    workers=2, tool_calling=True, shard_pairs=40, progress=False)
        assert generate(settings) == 0
    for name in ("train.jsonl", "dev.jsonl", "skipped.jsonl"):
        local, ray_made = (tmp_path / engine / "generate" / name for engine in ("local", "ray"))
        assert ray_made.read_bytes() == local.read_bytes(), name
    assert (tmp_path / "ray/generate/train.jsonl").stat().st_size > 0


class _KillingJob:
    """Validate's job, except that one item kills its worker once and another kills it every time."""

    def __init__(self, inner, flag_dir: str):
        self.inner, self.flag_dir = inner, flag_dir

    def setup(self):
        self.inner.setup()

    def handle(self, row):
        flag = Path(self.flag_dir) / "killed-once"
        if row["question_id"] == "dev-00003" and not flag.exists():
            flag.touch()
            os.kill(os.getpid(), signal.SIGKILL)
        if row["question_id"] == "dev-00005":
            os.kill(os.getpid(), signal.SIGKILL)
        return self.inner.handle(row)

    def crashed(self, row, detail):
        return self.inner.crashed(row, detail)


def test_a_killed_worker_loses_nothing_and_an_item_that_kills_every_worker_is_classified(cluster, corpus, tmp_path):
    from ray import cloudpickle

    from pipesql.scale.engine import run_shards
    from pipesql.validate.ray_engine import SHARDS, ValidateJob, item_row

    cloudpickle.register_pickle_by_value(sys.modules[__name__])  # the actors cannot import this test module
    items = load_items("demo", corpus, "dev")[:30]
    store = ShardStore(tmp_path / SHARDS)
    write_input_shards(store, lambda: map(item_row, items), key=lambda row: row["db_id"], weight=lambda row: 1,
                       shard_weight=10, job_fingerprint="kill")
    run_shards(_KillingJob(ValidateJob(NO_GOOGLESQL, None, os.getcwd()), str(tmp_path)), store, workers=2, progress=False)
    records = list(iter_results(store))
    assert [r["question_id"] for r in records] == [i.question_id for i in items]  # complete, no duplicates
    classes = {r["question_id"]: r["validation"]["class"] for r in records}
    assert classes.pop("dev-00005") == "INTERNAL_ERROR"
    assert set(classes.values()) == {"MATCH"}  # dev-00003 was tried again after its worker died
    crashed = next(r for r in records if r["question_id"] == "dev-00005")
    assert crashed["validation"]["stage"] == "worker" and "died" in crashed["validation"]["detail"]


def test_an_item_past_its_budget_costs_one_item_on_ray_too(cluster, corpus, tmp_path):
    """Issue #21, class 1, on the ray engine: the actors check items in a supervised worker, so
    gold whose work is inside single VM steps (48 ``instr`` calls: past its budget on a CPU several
    times ours) ends as
    TIMEOUT once its 2 s budget is spent, and every other item is checked (before: the actor ran it
    to the end in process)."""
    from pipesql.scale.engine import run_shards
    from pipesql.validate.ray_engine import SHARDS, ValidateJob, item_row

    items = load_items("demo", corpus, "dev")[:6]
    with closing(sqlite3.connect(items[0].db_path)) as conn:
        table = conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'").fetchone()[0]
    items.insert(2, dataclasses.replace(items[0], question_id="one-step", gold_sql=one_step_gold(f'"{table}"')))
    store = ShardStore(tmp_path / SHARDS)
    write_input_shards(store, lambda: map(item_row, items), key=lambda row: row["db_id"], weight=lambda row: 1,
                       shard_weight=10, job_fingerprint="budget")
    options = dataclasses.replace(NO_GOOGLESQL, variants=0, timeout_s=1.0, item_timeout_s=2.0)
    run_shards(ValidateJob(options, None, os.getcwd()), store, workers=2, progress=False)
    records = {r["question_id"]: r["validation"] for r in iter_results(store)}
    assert set(records) == {item.question_id for item in items}
    overrun = records.pop("one-step")
    assert (overrun["class"], overrun["stage"]) == ("TIMEOUT", "budget")
    assert 2.0 <= overrun["seconds"]["item_s"] < 2.0 + 1.0  # killed within the budget + 1 s
    assert {r["class"] for r in records.values()} == {"MATCH"}


def test_a_killed_driver_is_resumed_by_a_rerun(corpus, tmp_path):
    """Kill the whole driver (and the cluster it started) once some shards are done; the rerun
    skips those shards, and the outputs equal the local engine's."""
    out = tmp_path / "ray"
    command = [sys.executable, "-m", "pipesql", "validate", "--benchmark", "demo", "--data-dir", str(corpus),
               "--split", "all", "--out", str(out), "--engine", "ray", "--workers", "2", "--shard-items", "15",
               "--no-googlesql", "--no-progress"]
    driver = subprocess.Popen(command, start_new_session=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    from pipesql.validate.ray_engine import shard_store, validate_on_ray

    done = shard_store(out).root / "done"
    deadline = time.monotonic() + 90
    while time.monotonic() < deadline and driver.poll() is None and len(list(done.glob("*.json"))) < 2:
        time.sleep(0.1)
    assert driver.poll() is None, "the run ended before it could be killed"
    os.killpg(driver.pid, signal.SIGKILL)  # the driver and every process of its cluster
    driver.wait()
    before = {path.name: path.read_text() for path in done.glob("*.json")}
    assert before and (shard_store(out).root / "plan.json").is_file()

    records, _ = validate_on_ray(lambda: iter_items("demo", corpus, "all"), NO_GOOGLESQL, out, out / "witnesses", workers=2,
                                 shard_items=15, progress=False, job_key=("demo", corpus, "all", None))
    ray.shutdown()
    assert {name: (done / name).read_text() for name in before} == before  # skipped, not redone
    ids = [record["question_id"] for record in records]
    assert ids == [item.question_id for item in load_items("demo", corpus, "all")]  # complete, no duplicates
    assert _validate("local", corpus, tmp_path / "local", googlesql=False) == 0
    local = [json.loads(line) for line in (tmp_path / "local/golden_pairs.jsonl").read_text().splitlines()]
    from pipesql.validate.report import golden_pair

    assert [golden_pair(r) for r in records if r["validation"]["class"] == "MATCH"] == local
