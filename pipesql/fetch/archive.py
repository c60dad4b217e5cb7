"""Unpack archives and copy folders into a staging folder, refusing anything that would write
outside it."""

from __future__ import annotations

import shutil
import tarfile
import zipfile
from pathlib import Path
from typing import Callable

from pipesql.progress import progress_bar

# macOS resource forks that BIRD's archives carry; never part of a dataset.
JUNK_NAMES = ("__MACOSX", ".DS_Store")


class ArchiveError(Exception):
    pass


def is_archive(path: Path) -> bool:
    return path.is_file() and (zipfile.is_zipfile(path) or tarfile.is_tarfile(path))


def _inside(root: Path, name: str) -> Path:
    target = (root / name).resolve()
    if not target.is_relative_to(root.resolve()):
        raise ArchiveError(f"archive member {name!r} would be written outside {root}")
    return target


def extract_archive(archive: Path, dest: Path) -> None:
    """Unpack a .zip or .tar(.gz/.bz2/.xz) into ``dest``."""
    dest.mkdir(parents=True, exist_ok=True)
    if zipfile.is_zipfile(archive):
        with zipfile.ZipFile(archive) as bundle:
            members = bundle.infolist()
            for member in members:
                _inside(dest, member.filename)
            for member in progress_bar(len(members), f"unzip {archive.name}", "file", iterable=members, leave=False):
                bundle.extract(member, dest)
    elif tarfile.is_tarfile(archive):
        with tarfile.open(archive) as bundle:
            members = bundle.getmembers()
            for member in members:
                _inside(dest, member.name)
                if member.issym() or member.islnk():
                    raise ArchiveError(f"{archive}: link member {member.name!r} refused")
            for member in progress_bar(len(members), f"untar {archive.name}", "file", iterable=members, leave=False):
                bundle.extract(member, dest, filter="data")
    else:
        raise ArchiveError(f"{archive}: neither a zip nor a tar archive")


def copy_file(source: Path, target: Path) -> None:
    # Contents only: a read-only source (a shared mount) must not make the copy read-only.
    shutil.copyfile(source, target)


def copy_tree(source: Path, dest: Path, copy: Callable[[Path, Path], None] | None = None) -> int:
    """Copy a folder's regular files (following no links out of it) into ``dest``; return the
    number of files. Copies rather than links, so the result is self-contained."""
    copy = copy or copy_file
    files = sorted(p for p in source.rglob("*") if p.is_file() and not set(p.relative_to(source).parts) & set(JUNK_NAMES))
    for path in progress_bar(len(files), f"copy {source.name}", "file", iterable=files, leave=False):
        target = dest / path.relative_to(source)
        target.parent.mkdir(parents=True, exist_ok=True)
        copy(path, target)
    return len(files)


def remove_junk(root: Path) -> None:
    for name in JUNK_NAMES:
        for path in list(root.rglob(name)):
            if path.is_dir():
                shutil.rmtree(path)
            else:
                path.unlink()


def find_root(tree: Path, marker: str) -> Path:
    """The shallowest folder under ``tree`` holding ``marker`` (archives wrap datasets in
    folders of varying names: ``spider/``, ``spider_data/``, ``dev_20240627/``...)."""
    candidates = sorted((p.parent for p in tree.rglob(marker) if not set(p.parts) & set(JUNK_NAMES)),
                        key=lambda p: (len(p.parts), str(p)))
    if not candidates:
        raise ArchiveError(f"no {marker} found under {tree}")
    return candidates[0]
