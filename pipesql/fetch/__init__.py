"""``pipesql fetch``: Spider, BIRD and models, downloaded or imported from a local copy.

::

    pipesql fetch spider                         # official archive from Google Drive (gdown)
    pipesql fetch spider --from ../shared/data/spider --data-dir data/spider
    pipesql fetch bird --split dev               # BIRD dev archive over HTTP, resumable
    pipesql fetch synsql                         # SynSQL-2.5M from the Hugging Face hub
    pipesql fetch synsql --from ../SynSQL-2.5M   # or a local copy (folder, .zip or .tar)
    pipesql fetch model smollm2-135m             # registry model, built into the cache
    pipesql fetch model Qwen/Qwen2.5-Coder-1.5B-Instruct   # into the Hugging Face cache

Every dataset folder is built beside its destination and renamed into place once verified, with
a ``manifest.json`` holding the counts and a SHA-256 of each file; a second fetch that finds it
intact does nothing. Layouts are those :mod:`pipesql.corpora.items` reads.
"""

from __future__ import annotations

import shutil
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import ClassVar

from pipesql.fetch.archive import ArchiveError, copy_tree, find_root, is_archive
from pipesql.fetch.datasets import (Verification, unpack_into, unpack_nested_databases, verify_bird_part, verify_spider,
                                    verify_synsql)
from pipesql.fetch.download import DownloadError, gdrive_download, http_download
from pipesql.fetch.landing import LandingError, read_landed_manifest, staged
from pipesql.storage.manifest import write_manifest
from pipesql.config.settings import option

# Spider 1.0 as linked from the project page (spider_data.zip).
SPIDER_GDRIVE_ID = "1TqleXec_OykOYFREKKtschzY29dUcVAQ"
BIRD_URLS = {
    "dev": "https://bird-bench.oss-cn-beijing.aliyuncs.com/dev.zip",
    "train": "https://bird-bench.oss-cn-beijing.aliyuncs.com/train.zip",
}
SYNSQL_REPO = "seeklhy/SynSQL-2.5M"
# The dataset repository's files: the questions (one JSON array), the schemas, the databases.
SYNSQL_FILES = ("data.json", "tables.json", "databases.zip")
TARGETS = ("spider", "bird", "synsql", "model")


class FetchError(Exception):
    pass


@dataclass
class Settings:
    stage: ClassVar[str] = "fetch"
    # No argparse choices: with an optional positional, argparse would check its absent default
    # against them; run() names the targets instead.
    target: str | None = option(None, "What to fetch: spider, bird, synsql or model.", positional=True)
    name: str | None = option(None, "The model to fetch (target 'model'): a registry name or a hub id.",
                              positional=True)
    data_root: Path = option(Path("data"), "Each dataset lands in DATA_ROOT/<target> unless --data-dir is given.")
    data_dir: Path | None = option(None, "The dataset's own folder (what --data-dir of validate/generate takes).")
    from_path: Path | None = option(None, "Import this local copy (folder, .zip or .tar) instead of downloading.",
                                    flag="--from")
    split: str = option("all", "BIRD parts to fetch.", choices=("dev", "train", "all"))
    download_dir: Path | None = option(None, "Where archives are kept while downloading (default: beside the dataset).")
    keep_archives: bool = option(False, "Keep downloaded archives after unpacking.")
    force: bool = option(False, "Fetch again even if a verified copy is present (replaces it).")
    spider_gdrive_id: str = option(SPIDER_GDRIVE_ID, "Google Drive file id of the Spider archive.")
    bird_dev_url: str = option(BIRD_URLS["dev"], "URL of BIRD's dev archive.")
    bird_train_url: str = option(BIRD_URLS["train"], "URL of BIRD's train archive.")
    synsql_repo: str = option(SYNSQL_REPO, "Hugging Face dataset repository of SynSQL-2.5M.")
    revision: str | None = option(None, "Model revision (branch, tag or commit) for hub models.")


def _say(message: str) -> None:
    print(message, file=sys.stderr)


def _report(verification: Verification) -> None:
    for line in verification.lines():
        _say(line)


def dataset_dir(settings: Settings) -> Path:
    return Path(settings.data_dir) if settings.data_dir else Path(settings.data_root) / settings.target


def _already_landed(dest: Path, settings: Settings) -> bool:
    manifest = read_landed_manifest(dest)
    if manifest is None or settings.force:
        return False
    verification = manifest.get("metrics", {}).get("verification", {})
    _say(f"{dest}: already fetched, {manifest['outputs']['.']['files']} files as written; "
         f"{_coverage(verification)}; nothing to do (--force fetches again)")
    return True


def _coverage(verification: dict) -> str:
    """How much of the official release a landed copy holds, from its recorded verification."""
    if verification.get("complete"):
        return "the whole official release"
    counts, official = verification.get("counts", {}), verification.get("official", {})
    short = [f"{key} {counts.get(key, 0):,}/{wanted:,}" for key, wanted in official.items()
             if counts.get(key, 0) < wanted]
    missing = verification.get("missing_databases") or []
    if missing:
        short.append(f"missing {', '.join(missing)}")
    return f"part of the official release ({'; '.join(short) or 'counts not recorded'})"


def _land(dest: Path, settings: Settings, source: Path, fill, verify, *, strict: bool) -> Verification:
    """Build ``dest`` in a staging folder with ``fill(staging)``, verify it, write its manifest
    and rename it into place. ``strict``: an incomplete download is an error (an imported copy
    may be a documented subset)."""
    started = time.monotonic()
    with staged(dest, replace=settings.force) as staging:
        fill(staging)
        verification = verify(staging)
        _report(verification)
        if not verification.usable or (strict and not verification.complete):
            raise FetchError(f"{dest}: verification failed; nothing was written")
        write_manifest(staging, "fetch", settings, inputs=[source], outputs=[staging], metrics={
            "verification": verification.as_dict(), "source": str(source),
            "seconds": round(time.monotonic() - started, 2),
        })
    _say(f"{dest}: fetched from {source}")
    return verification


def _fill_from(source: Path, marker: str):
    """How to fill a staging folder from a local folder or archive holding ``marker``."""
    def fill(staging: Path) -> None:
        if source.is_dir():
            copy_tree(find_root(source, marker), staging)
        elif is_archive(source):
            unpack_into(source, staging, marker)
        else:
            raise FetchError(f"--from {source}: not a folder, .zip or .tar archive")
    return fill


def _source(settings: Settings, download) -> tuple[Path, bool]:
    """``(source, strict)``: the local copy given with --from (a documented subset is accepted),
    else what ``download()`` fetched (it must be complete)."""
    if settings.from_path:
        return Path(settings.from_path), False
    return download(), True


def _archive_dir(settings: Settings, dest: Path) -> Path:
    return Path(settings.download_dir) if settings.download_dir else dest.parent / ".downloads"


def fetch_spider(settings: Settings) -> int:
    dest = dataset_dir(settings)
    if _already_landed(dest, settings):
        return 0
    source, strict = _source(settings, lambda: gdrive_download(settings.spider_gdrive_id,
                                                               _archive_dir(settings, dest) / "spider_data.zip"))
    _land(dest, settings, source, _fill_from(source, "dev.json"), verify_spider, strict=strict)
    if not settings.from_path and not settings.keep_archives:
        source.unlink(missing_ok=True)
    return 0


def fetch_bird(settings: Settings) -> int:
    root = dataset_dir(settings)
    parts = ("dev", "train") if settings.split == "all" else (settings.split,)
    urls = {"dev": settings.bird_dev_url, "train": settings.bird_train_url}
    failed = []
    for part in parts:
        dest = root / part
        if _already_landed(dest, settings):
            continue
        source, strict = _source(settings, lambda part=part: http_download(
            urls[part], _archive_dir(settings, root) / f"bird_{part}.zip"))
        fill = _fill_from(source, f"{part}.json")

        def fill_part(staging: Path, fill=fill, part=part) -> None:
            fill(staging)
            unpack_nested_databases(staging, f"{part}_databases")

        try:
            _land(dest, settings, source, fill_part, lambda staging, part=part: verify_bird_part(staging, part), strict=strict)
        except (FetchError, ArchiveError) as error:
            _say(f"bird {part}: {error}")
            failed.append(part)
            continue
        if not settings.from_path and not settings.keep_archives:
            source.unlink(missing_ok=True)
    return 1 if failed else 0


def fetch_synsql(settings: Settings) -> int:
    """SynSQL-2.5M (about 2.5M questions over 16K databases): its three files from the hub, or a
    local copy; ``databases.zip`` is unpacked to ``databases/``."""
    dest = dataset_dir(settings)
    if _already_landed(dest, settings):
        return 0
    source, strict = _source(settings, lambda: _synsql_download(settings, _archive_dir(settings, dest) / "synsql"))
    fill = _fill_from(source, "data.json")

    def fill_and_unpack(staging: Path) -> None:
        fill(staging)
        unpack_nested_databases(staging, "databases")

    _land(dest, settings, source, fill_and_unpack, verify_synsql, strict=strict)
    if not settings.from_path and not settings.keep_archives:
        shutil.rmtree(source, ignore_errors=True)
    return 0


def _synsql_download(settings: Settings, folder: Path) -> Path:
    from huggingface_hub import hf_hub_download

    for filename in SYNSQL_FILES:  # resumable, like the hub's own downloads
        hf_hub_download(settings.synsql_repo, filename, repo_type="dataset", local_dir=folder)
    return folder


def fetch_model(settings: Settings) -> int:
    """A registry model (``tiny``, ``smollm2-135m``) is built into the pipesql cache by
    :mod:`pipesql.models.registry`; anything else is a hub id downloaded into the Hugging Face cache
    (``$HF_HOME``), which resumes interrupted files by itself."""
    from pipesql.models.registry import resolve_model

    if not settings.name:
        raise FetchError("pipesql fetch model NAME: say which model")
    started = time.monotonic()
    resolved = resolve_model(settings.name)
    if Path(resolved).is_dir():
        path, revision = Path(resolved), None
    else:
        from huggingface_hub import snapshot_download

        path = Path(snapshot_download(repo_id=resolved, revision=settings.revision))
        revision = path.name  # snapshot folders are named by commit
    files = [p for p in path.rglob("*") if p.is_file()]
    if not any(p.name == "config.json" for p in files):
        raise FetchError(f"model {settings.name}: no config.json in {path}")
    record_dir = Path(settings.data_root) / "models" / settings.name.replace("/", "--")
    write_manifest(record_dir, "fetch", settings, metrics={
        "model": settings.name, "path": str(path), "revision": revision, "files": len(files),
        "bytes": sum(p.stat().st_size for p in files), "seconds": round(time.monotonic() - started, 2),
    })
    _say(f"model {settings.name}: {path} ({len(files)} files); manifest {record_dir}")
    print(path)
    return 0


def run(settings: Settings) -> int:
    handlers = {"spider": fetch_spider, "bird": fetch_bird, "synsql": fetch_synsql, "model": fetch_model}
    if settings.target not in handlers:
        _say(f"pipesql fetch: say what to fetch: one of {', '.join(TARGETS)}")
        return 2
    try:
        return handlers[settings.target](settings)
    except DownloadError as error:
        _say(f"pipesql fetch {settings.target}: {error}")
        _say(f"Offline, or the download keeps failing? Import a copy you already have instead: "
             f"pipesql fetch {settings.target} --from PATH (a folder, .zip or .tar archive)")
        return 1
    except (FetchError, ArchiveError, LandingError) as error:
        _say(f"pipesql fetch {settings.target}: {error}")
        return 1
