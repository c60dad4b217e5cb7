"""pipesql fetch: imports and downloads land atomically, are verified, and a second run is a no-op."""

import http.server
import json
import os
import signal
import sqlite3
import subprocess
import sys
import tarfile
import threading
import time
import zipfile
from pathlib import Path

import pytest

from pipesql import cli
from pipesql.corpora import items as benchmarks
from pipesql.fetch import archive, datasets, download, landing
from pipesql.storage.manifest import verify_manifest

SHARED_SPIDER = Path(os.environ.get("PIPESQL_SPIDER_DIR") or Path(__file__).resolve().parents[2] / "shared/data/spider")
needs_spider = pytest.mark.skipif(not (SHARED_SPIDER / "dev.json").is_file(), reason="needs ../shared/data/spider")


# ---------------------------------------------------------------------------------------------
# fixtures: small datasets in the official layouts


def make_db(path: Path, table: str = "singer") -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with sqlite3.connect(path) as conn:
        conn.execute(f"CREATE TABLE {table} (id INTEGER PRIMARY KEY, name TEXT)")
        conn.executemany(f"INSERT INTO {table} VALUES (?, ?)", [(1, "a"), (2, "b")])
    conn.close()


def make_spider(root: Path, db_ids=("alpha", "beta", "gamma"), missing=()) -> Path:
    """A Spider-layout folder: every db in ``db_ids`` is referenced, those in ``missing`` have no
    .sqlite file."""
    root.mkdir(parents=True, exist_ok=True)
    for db_id in db_ids:
        if db_id not in missing:
            make_db(root / "database" / db_id / f"{db_id}.sqlite")
    question = lambda db_id, i: {"db_id": db_id, "question": f"How many {i}?", "query": "SELECT count(*) FROM singer"}
    (root / "dev.json").write_text(json.dumps([question(d, i) for i, d in enumerate(db_ids)]))
    (root / "train_spider.json").write_text(json.dumps([question(d, i) for i, d in enumerate(db_ids * 2)]))
    (root / "train_others.json").write_text(json.dumps([{"db_id": db_ids[0], "query": "SELECT 1"}]))
    (root / "tables.json").write_text(json.dumps([{"db_id": d} for d in db_ids]))
    return root


def official_for(monkeypatch, db_ids=("alpha", "beta", "gamma")) -> None:
    """Make the fixture the 'official release' so that strict (download) verification can pass."""
    monkeypatch.setattr(datasets, "SPIDER_OFFICIAL",
                        {"databases": len(db_ids), "dev": len(db_ids), "train_spider": 2 * len(db_ids), "train_others": 1})


def zip_folder(folder: Path, archive_path: Path, prefix: str, junk: bool = True) -> Path:
    with zipfile.ZipFile(archive_path, "w") as bundle:
        for path in sorted(folder.rglob("*")):
            if path.is_file():
                bundle.write(path, f"{prefix}/{path.relative_to(folder).as_posix()}")
        if junk:  # what archives made on macOS carry
            bundle.writestr(f"__MACOSX/{prefix}/._dev.json", b"junk")
    return archive_path


def fetch(*args: str) -> int:
    return cli.main(["fetch", *map(str, args)])


def snapshot(folder: Path) -> dict[str, bytes]:
    return {p.relative_to(folder).as_posix(): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


# ---------------------------------------------------------------------------------------------
# spider: import, idempotence, atomicity


def test_import_folder_lands_verified_copy_with_manifest(tmp_path, capsys):
    source = make_spider(tmp_path / "src", missing=("gamma",))
    dest = tmp_path / "data" / "spider"
    assert fetch("spider", "--from", source, "--data-dir", dest) == 0

    assert (dest / "dev.json").read_bytes() == (source / "dev.json").read_bytes()
    assert not (dest / "database").is_symlink()
    manifest = json.loads((dest / "manifest.json").read_text())
    verification = manifest["metrics"]["verification"]
    # A subset is accepted on import, and what is missing is reported, not hidden.
    assert verification["counts"]["databases"] == 2
    assert verification["missing_databases"] == ["gamma"]
    assert verification["unrunnable_questions"] == 1 + 2  # one dev and two train questions
    assert verification["complete"] is False
    assert "missing 1 databases: gamma" in capsys.readouterr().err
    assert verify_manifest(dest).ok
    items = benchmarks.load_items("spider", dest, "dev")
    assert [item.db_id for item in items] == ["alpha", "beta", "gamma"]
    assert not landing.stale_staging_dirs(dest)


def test_second_fetch_is_a_noop_and_says_so(tmp_path, capsys):
    source = make_spider(tmp_path / "src")
    dest = tmp_path / "spider"
    assert fetch("spider", "--from", source, "--data-dir", dest) == 0
    before = {p: p.stat().st_mtime_ns for p in dest.rglob("*")}
    capsys.readouterr()

    assert fetch("spider", "--from", source, "--data-dir", dest) == 0
    assert "nothing to do" in capsys.readouterr().err
    assert {p: p.stat().st_mtime_ns for p in dest.rglob("*")} == before


def test_import_from_zip_and_tar_normalise_the_wrapping_folder(tmp_path):
    source = make_spider(tmp_path / "src")
    expected = snapshot(source)
    packed = zip_folder(source, tmp_path / "spider_data.zip", prefix="spider_data")
    assert fetch("spider", "--from", packed, "--data-dir", tmp_path / "from_zip") == 0
    got = snapshot(tmp_path / "from_zip")
    got.pop("manifest.json")
    got.pop("recipe.yaml")  # the fetch settings, written beside every manifest
    assert got == expected  # the __MACOSX junk and the wrapping folder are gone

    tarball = tmp_path / "spider.tar.gz"
    with tarfile.open(tarball, "w:gz") as bundle:
        bundle.add(source, arcname="spider")
    assert fetch("spider", "--from", tarball, "--data-dir", tmp_path / "from_tar") == 0
    assert (tmp_path / "from_tar" / "database" / "beta" / "beta.sqlite").is_file()


def test_archive_member_escaping_the_destination_is_refused(tmp_path):
    evil = tmp_path / "evil.tar"
    payload = tmp_path / "payload.txt"
    payload.write_text("x")
    with tarfile.open(evil, "w") as bundle:
        bundle.add(payload, arcname="../escaped.txt")
    with pytest.raises(archive.ArchiveError, match="outside"):
        archive.extract_archive(evil, tmp_path / "out")
    assert not (tmp_path / "escaped.txt").exists()


def test_failure_mid_copy_leaves_no_half_written_dataset(tmp_path, monkeypatch):
    source = make_spider(tmp_path / "src")
    dest = tmp_path / "spider"
    copied = []

    def copy_then_fail(src, target):
        if len(copied) == 2:
            raise OSError("disk full (simulated)")
        archive.shutil.copyfile(src, target)
        copied.append(target)

    monkeypatch.setattr(archive, "copy_file", copy_then_fail)
    with pytest.raises(OSError, match="disk full"):
        fetch("spider", "--from", source, "--data-dir", dest)
    assert len(copied) == 2
    assert not dest.exists()
    assert not landing.stale_staging_dirs(dest)

    monkeypatch.undo()
    assert fetch("spider", "--from", source, "--data-dir", dest) == 0
    assert verify_manifest(dest).ok


SLOW_COPY = """
import sys, time
from pipesql import cli
from pipesql.fetch import archive
original = archive.copy_file
def slow(src, dst):
    original(src, dst)
    time.sleep(0.2)
archive.copy_file = slow
sys.exit(cli.main(["fetch", "spider", "--from", sys.argv[1], "--data-dir", sys.argv[2]]))
"""


def test_killed_fetch_leaves_no_dataset_and_next_run_cleans_up(tmp_path):
    source = make_spider(tmp_path / "src", db_ids=tuple(f"db{i}" for i in range(30)))
    dest = tmp_path / "spider"
    process = subprocess.Popen([sys.executable, "-c", SLOW_COPY, str(source), str(dest)],
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:  # wait until the copy is under way
            staging = landing.stale_staging_dirs(dest)
            if staging and len([p for p in staging[0].rglob("*") if p.is_file()]) >= 3:
                break
            time.sleep(0.05)
        else:
            pytest.fail("the fetch never started copying")
        os.kill(process.pid, signal.SIGKILL)
    finally:
        process.wait(timeout=30)
    assert process.returncode == -signal.SIGKILL
    assert not dest.exists()  # whatever was copied is only in the staging folder
    assert landing.stale_staging_dirs(dest)

    assert fetch("spider", "--from", source, "--data-dir", dest) == 0
    assert not landing.stale_staging_dirs(dest)
    assert datasets.verify_spider(dest).counts["databases"] == 30


def test_existing_foreign_or_tampered_folder_needs_force(tmp_path, capsys):
    source = make_spider(tmp_path / "src")
    dest = tmp_path / "spider"
    dest.mkdir()
    (dest / "notes.txt").write_text("mine")
    assert fetch("spider", "--from", source, "--data-dir", dest) == 1
    assert "--force" in capsys.readouterr().err
    assert (dest / "notes.txt").read_text() == "mine"

    assert fetch("spider", "--from", source, "--data-dir", dest, "--force") == 0
    assert not (dest / "notes.txt").exists()

    # A landed copy whose file changed is no longer taken as present, and the manifest says why.
    db = dest / "database" / "alpha" / "alpha.sqlite"
    db.write_bytes(db.read_bytes() + b"\0")
    check = verify_manifest(dest)
    assert not check.ok and any("database/alpha/alpha.sqlite" in p for p in check.problems)
    assert fetch("spider", "--from", source, "--data-dir", dest) == 1
    assert fetch("spider", "--from", source, "--data-dir", dest, "--force") == 0
    assert verify_manifest(dest).ok


@needs_spider
def test_import_shared_spider_subset_and_report_what_is_missing(tmp_path, capsys):
    dest = tmp_path / "spider"
    assert fetch("spider", "--from", SHARED_SPIDER, "--data-dir", dest) == 0
    verification = json.loads((dest / "manifest.json").read_text())["metrics"]["verification"]
    # The documented subset (PROVENANCE.md): 163 of 166 databases, all questions.
    assert verification["counts"] == {"databases": 163, "dev": 1034, "train_spider": 7000, "train_others": 1659}
    assert verification["missing_databases"] == ["baseball_1", "soccer_1", "wta_1"]
    assert "INCOMPLETE" in capsys.readouterr().err
    assert len(benchmarks.load_items("spider", dest, "dev", limit=50)) == 50
    assert fetch("spider", "--from", SHARED_SPIDER, "--data-dir", dest) == 0
    again = capsys.readouterr().err
    assert "nothing to do" in again and "complete=" not in again
    assert "part of the official release (databases 163/166; missing baseball_1, soccer_1, wta_1)" in again


@needs_spider
def test_validate_runs_on_the_fetched_copy(tmp_path):
    pytest.importorskip("pipesql.validate")
    dest = tmp_path / "spider"
    assert fetch("spider", "--from", SHARED_SPIDER, "--data-dir", dest) == 0
    out = tmp_path / "validated"
    result = subprocess.run(
        [sys.executable, "-m", "pipesql", "validate", "--benchmark", "spider", "--data-dir", str(dest),
         "--split", "dev", "--limit", "50", "--out", str(out)],
        capture_output=True, text=True, timeout=170,
    )
    assert result.returncode == 0, result.stderr[-2000:]
    assert (out / "manifest.json").is_file()


# ---------------------------------------------------------------------------------------------
# downloads: Google Drive through gdown (faked: Google is not reachable here), HTTP with Range


def test_spider_download_through_gdown_is_verified_strictly(tmp_path, monkeypatch):
    import gdown

    source = make_spider(tmp_path / "src")
    packed = zip_folder(source, tmp_path / "release.zip", prefix="spider_data")
    calls = []

    def fake_gdown(id=None, output=None, quiet=False, resume=False, **kwargs):
        calls.append({"id": id, "resume": resume})
        Path(output).write_bytes(packed.read_bytes())
        return output

    monkeypatch.setattr(gdown, "download", fake_gdown)
    dest = tmp_path / "data" / "spider"

    # Against the real official counts this 3-database archive is a broken download: refused.
    assert fetch("spider", "--data-dir", dest, "--keep-archives") == 1
    assert not dest.exists() and not landing.stale_staging_dirs(dest)
    assert calls == [{"id": "1TqleXec_OykOYFREKKtschzY29dUcVAQ", "resume": True}]
    assert (tmp_path / "data" / ".downloads" / "spider_data.zip").is_file()  # kept for the next try

    official_for(monkeypatch)
    assert fetch("spider", "--data-dir", dest, "--spider-gdrive-id", "other-id") == 0
    assert len(calls) == 1  # the archive already downloaded was reused
    assert datasets.verify_spider(dest).complete
    assert not (tmp_path / "data" / ".downloads" / "spider_data.zip").exists()


class RangeHandler(http.server.BaseHTTPRequestHandler):
    """Serves ``payloads[path]`` with Range support; ``cut_after`` bytes of the first full
    response are sent before the connection is dropped (an interrupted download)."""

    payloads: dict[str, bytes] = {}
    ranges_seen: list[str] = []
    cut_after: int | None = None
    honour_range = True

    def log_message(self, *args):
        pass

    def do_GET(self):
        body = self.payloads.get(self.path)
        if body is None:
            self.send_error(404)
            return
        requested = self.headers.get("Range")
        type(self).ranges_seen.append(requested)
        start = int(requested.split("=")[1].rstrip("-")) if requested and self.honour_range else 0
        if start >= len(body) and requested:
            self.send_response(416)
            self.send_header("Content-Range", f"bytes */{len(body)}")
            self.end_headers()
            return
        self.send_response(206 if start else 200)
        if start:
            self.send_header("Content-Range", f"bytes {start}-{len(body) - 1}/{len(body)}")
        self.send_header("Content-Length", str(len(body) - start))
        self.end_headers()
        chunk = body[start:]
        if type(self).cut_after is not None:
            chunk, type(self).cut_after = chunk[: type(self).cut_after], None
            self.wfile.write(chunk)
            self.wfile.flush()
            self.close_connection = True
            return
        self.wfile.write(chunk)


@pytest.fixture
def server():
    class Handler(RangeHandler):
        payloads, ranges_seen, cut_after, honour_range = {}, [], None, True

    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield Handler, f"http://127.0.0.1:{httpd.server_address[1]}"
    httpd.shutdown()
    httpd.server_close()


def test_http_download_resumes_with_a_range_request(tmp_path, server):
    handler, base = server
    body = os.urandom(3 * download.CHUNK_BYTES + 123)
    handler.payloads["/big.zip"] = body
    handler.cut_after = download.CHUNK_BYTES + 7
    dest = tmp_path / "big.zip"

    with pytest.raises(download.DownloadError, match="resume"):
        download.http_download(f"{base}/big.zip", dest, timeout_s=10)
    assert not dest.exists()
    assert (tmp_path / "big.zip.part").stat().st_size == download.CHUNK_BYTES + 7

    download.http_download(f"{base}/big.zip", dest, timeout_s=10)
    assert dest.read_bytes() == body
    assert handler.ranges_seen == [None, f"bytes={download.CHUNK_BYTES + 7}-"]
    assert not (tmp_path / "big.zip.part").exists()


def test_http_download_restarts_when_the_server_ignores_range(tmp_path, server):
    handler, base = server
    handler.payloads["/f"] = b"0123456789" * 1000
    handler.honour_range = False
    (tmp_path / "f.part").write_bytes(b"garbage")
    download.http_download(f"{base}/f", tmp_path / "f", timeout_s=10)
    assert (tmp_path / "f").read_bytes() == handler.payloads["/f"]


def make_bird_dev_zip(tmp_path: Path, db_ids=("schools", "cards")) -> Path:
    """Shaped like BIRD's dev.zip: a dated folder holding dev.json and a zip of the databases."""
    stage = tmp_path / "bird_build"
    for db_id in db_ids:
        make_db(stage / "dev_databases" / db_id / f"{db_id}.sqlite")
    inner = tmp_path / "dev_databases.zip"
    zip_folder(stage / "dev_databases", inner, prefix="dev_databases")
    questions = [{"question_id": i, "db_id": d, "question": "q?", "SQL": "SELECT count(*) FROM singer",
                  "evidence": "", "difficulty": "simple"} for i, d in enumerate(db_ids * 3)]
    outer = tmp_path / "dev.zip"
    with zipfile.ZipFile(outer, "w") as bundle:
        bundle.writestr("dev_20240627/dev.json", json.dumps(questions))
        bundle.writestr("dev_20240627/dev_tables.json", "[]")
        bundle.write(inner, "dev_20240627/dev_databases.zip")
        bundle.writestr("__MACOSX/dev_20240627/._dev.json", b"junk")
    return outer


def test_bird_dev_download_is_normalised_to_the_benchmark_layout(tmp_path, server, monkeypatch):
    handler, base = server
    handler.payloads["/dev.zip"] = make_bird_dev_zip(tmp_path).read_bytes()
    monkeypatch.setitem(datasets.BIRD_OFFICIAL, "dev", {"databases": 2, "questions": 6})
    root = tmp_path / "data" / "bird"

    assert fetch("bird", "--split", "dev", "--data-dir", root, "--bird-dev-url", f"{base}/dev.zip") == 0
    assert sorted(p.name for p in (root / "dev" / "dev_databases").iterdir()) == ["cards", "schools"]
    assert not (root / "dev" / "dev_databases.zip").exists()
    assert not list(root.rglob("__MACOSX"))
    items = benchmarks.load_items("bird", root, "dev")
    assert len(items) == 6 and items[0].db_path.is_file()
    assert verify_manifest(root / "dev").ok

    assert fetch("bird", "--split", "dev", "--data-dir", root, "--bird-dev-url", f"{base}/dev.zip") == 0
    assert handler.ranges_seen == [None]  # the second run downloaded nothing


def test_bird_import_from_a_local_archive_accepts_a_subset(tmp_path):
    packed = make_bird_dev_zip(tmp_path)
    root = tmp_path / "bird"
    assert fetch("bird", "--split", "dev", "--from", packed, "--data-dir", root) == 0
    verification = datasets.verify_bird_part(root / "dev", "dev")
    assert verification.counts == {"databases": 2, "questions": 6}
    assert not verification.complete


def make_bird_train_zip(tmp_path: Path, db_ids=("works_cycles", "movie")) -> Path:
    """Shaped like BIRD's train.zip: train/ holding train.json, train_tables.json and a zip of the
    databases (train_databases/<db_id>/<db_id>.sqlite)."""
    stage = tmp_path / "bird_train_build"
    for db_id in db_ids:
        make_db(stage / "train_databases" / db_id / f"{db_id}.sqlite")
    inner = tmp_path / "train_databases.zip"
    zip_folder(stage / "train_databases", inner, prefix="train_databases")
    questions = [{"db_id": d, "question": "q?", "evidence": "", "SQL": "SELECT count(*) FROM singer"}
                 for d in db_ids * 4]
    outer = tmp_path / "train.zip"
    with zipfile.ZipFile(outer, "w") as bundle:
        bundle.writestr("train/train.json", json.dumps(questions))
        bundle.writestr("train/train_tables.json", "[]")
        bundle.writestr("train/train_gold.sql", "SELECT count(*) FROM singer\tworks_cycles\n")
        bundle.write(inner, "train/train_databases.zip")
    return outer


def test_bird_train_import_lands_its_layout(tmp_path):
    root = tmp_path / "bird"
    assert fetch("bird", "--split", "train", "--from", make_bird_train_zip(tmp_path), "--data-dir", root) == 0
    assert sorted(p.name for p in (root / "train" / "train_databases").iterdir()) == ["movie", "works_cycles"]
    assert datasets.verify_bird_part(root / "train", "train").counts == {"databases": 2, "questions": 8}
    items = benchmarks.load_items("bird", root, "train")
    assert [i.question_id for i in items][:2] == ["train-0", "train-1"] and all(i.db_path.is_file() for i in items)


def make_synsql(folder: Path, db_ids=("sports_league", "hotel_bookings"), questions_per_db=3) -> Path:
    """Shaped like the seeklhy/SynSQL-2.5M repository: data.json (one array), tables.json and
    databases.zip (databases/<db_id>/<db_id>.sqlite)."""
    stage = folder.parent / f"{folder.name}_build"
    for db_id in db_ids:
        make_db(stage / "databases" / db_id / f"{db_id}.sqlite")
    folder.mkdir(parents=True)
    zip_folder(stage / "databases", folder / "databases.zip", prefix="databases")
    entries = [{"db_id": d, "sql_complexity": "Simple", "question_style": "Formal", "question": f"q{i}?",
                "external_knowledge": "", "cot": "...", "sql": "SELECT count(*) FROM singer"}
               for i, d in enumerate(db_ids * questions_per_db)]
    (folder / "data.json").write_text(json.dumps(entries))
    (folder / "tables.json").write_text(json.dumps([{"db_id": d, "table_names": ["singer"]} for d in db_ids]))
    return folder


def test_synsql_import_unpacks_the_databases_and_loads(tmp_path):
    root = tmp_path / "data" / "synsql"
    assert fetch("synsql", "--from", make_synsql(tmp_path / "copy"), "--data-dir", root) == 0
    assert sorted(p.name for p in (root / "databases").iterdir()) == ["hotel_bookings", "sports_league"]
    assert not (root / "databases.zip").exists()
    verification = datasets.verify_synsql(root)
    assert verification.counts == {"databases": 2, "questions": 6} and not verification.complete  # a subset
    items = benchmarks.load_items("synsql", root, "train")
    assert len(items) == 6 and all(i.db_path.is_file() and i.difficulty == "Simple" for i in items)
    assert verify_manifest(root).ok


def test_synsql_download_takes_the_three_files_from_the_hub(tmp_path, monkeypatch):
    import huggingface_hub

    copy = make_synsql(tmp_path / "hub")
    calls = []

    def fake_hf_hub_download(repo_id, filename, repo_type=None, local_dir=None, **kwargs):
        calls.append((repo_id, filename, repo_type))
        Path(local_dir).mkdir(parents=True, exist_ok=True)
        (Path(local_dir) / filename).write_bytes((copy / filename).read_bytes())
        return str(Path(local_dir) / filename)

    monkeypatch.setattr(huggingface_hub, "hf_hub_download", fake_hf_hub_download)
    monkeypatch.setattr(datasets, "SYNSQL_OFFICIAL", {"databases": 2, "questions": 6})
    root = tmp_path / "data" / "synsql"
    assert fetch("synsql", "--data-dir", root) == 0
    assert calls == [("seeklhy/SynSQL-2.5M", name, "dataset") for name in ("data.json", "tables.json", "databases.zip")]
    assert datasets.verify_synsql(root).complete
    assert not (tmp_path / "data" / ".downloads" / "synsql").exists()  # nothing kept but the dataset


# ---------------------------------------------------------------------------------------------
# models


def test_hub_model_goes_through_snapshot_download_and_is_recorded(tmp_path, monkeypatch):
    import huggingface_hub

    snapshot_dir = tmp_path / "hf" / "models--org--coder" / "snapshots" / "abc123"
    calls = []

    def fake_snapshot_download(repo_id, revision=None, **kwargs):
        calls.append((repo_id, revision))
        snapshot_dir.mkdir(parents=True, exist_ok=True)
        (snapshot_dir / "config.json").write_text("{}")
        (snapshot_dir / "model.safetensors").write_bytes(b"\0" * 10)
        return str(snapshot_dir)

    monkeypatch.setattr(huggingface_hub, "snapshot_download", fake_snapshot_download)
    assert fetch("model", "org/coder", "--data-root", tmp_path / "data", "--revision", "main") == 0
    assert calls == [("org/coder", "main")]
    manifest = json.loads((tmp_path / "data" / "models" / "org--coder" / "manifest.json").read_text())
    assert manifest["metrics"]["revision"] == "abc123"
    assert manifest["metrics"]["files"] == 2


def test_registry_model_is_built_by_pipesql_models(tmp_path, capsys):
    from pipesql.models.registry import tiny_model_dir

    assert fetch("model", "tiny", "--data-root", tmp_path / "data") == 0
    path = Path(capsys.readouterr().out.strip())
    assert path == tiny_model_dir() and (path / "config.json").is_file()
    manifest = json.loads((tmp_path / "data" / "models" / "tiny" / "manifest.json").read_text())
    assert manifest["metrics"]["path"] == str(path) and manifest["metrics"]["revision"] is None


def test_fetch_without_a_target_says_what_to_fetch(capsys):
    assert fetch() == 2
    assert "spider, bird, synsql, model" in capsys.readouterr().err


def test_failed_download_points_at_importing_a_local_copy(tmp_path, monkeypatch, capsys):
    import gdown

    def offline(**kwargs):
        raise ConnectionError("Failed to resolve 'drive.google.com'")

    monkeypatch.setattr(gdown, "download", offline)
    assert fetch("spider", "--data-dir", tmp_path / "spider") == 1
    err = capsys.readouterr().err
    assert "drive.google.com" in err and "pipesql fetch spider --from PATH" in err


def test_fetch_job_script_lands_the_dataset_under_data_root(tmp_path):
    """jobs/fetch.sh, the compose `fetch` service's entrypoint, run natively."""
    source = make_spider(tmp_path / "src")
    env = {**os.environ, "DATA_ROOT": str(tmp_path / "data"),
           "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}"}
    env = {k: v for k, v in env.items() if not k.startswith("PIPESQL_FETCH_")}
    script = Path(__file__).resolve().parents[1] / "jobs" / "fetch.sh"
    result = subprocess.run(["sh", str(script), "spider", "--from", str(source)], env=env,
                            capture_output=True, text=True, timeout=120, cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert verify_manifest(tmp_path / "data" / "spider").ok
