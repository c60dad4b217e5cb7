"""Files that are never half-written, output folders that appear whole or not at all and that
only the stage that made them replaces, and JSONL that names the line it chokes on."""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable, Iterator


def _current_umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


# Read once at import: os.umask can only be read by setting it, which is not thread-safe.
_UMASK = _current_umask()


def share_file_modes(folder: str | Path) -> None:
    """Give every file under ``folder`` the mode a plain ``open()`` would (0666 less the umask).
    safetensors 0.8 creates its files 0600, so a saved model would be the one thing in a run
    (or in the shared model cache) that other users cannot read."""
    for path in Path(folder).rglob("*"):
        if path.is_file() and not path.is_symlink():
            path.chmod(0o666 & ~_UMASK)


@contextlib.contextmanager
def atomic_open(path: str | Path, mode: str = "w", encoding: str | None = "utf-8") -> Iterator[Any]:
    """Write to a temporary file beside ``path`` and rename it into place on success, so a
    reader never sees a partial file and a crash leaves the old one intact."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.chmod(tmp, 0o666 & ~_UMASK)  # mkstemp's 0600 would make results unreadable to other users
    try:
        with os.fdopen(fd, mode, encoding=None if "b" in mode else encoding) as handle:
            yield handle
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise


def lone_surrogate(text: str) -> int | None:
    """Where ``text`` holds a lone surrogate (JSON's ``"\\ud800"`` decodes to one, and UTF-8
    cannot encode it, so no output file could hold it), or None."""
    try:
        text.encode("utf-8")
    except UnicodeEncodeError as error:
        return error.start
    return None


def writable(text: str) -> str:
    """``text`` with every lone surrogate written as its escape (``\\ud800``), so it can be
    named in an output file."""
    return text.encode("utf-8", "backslashreplace").decode("utf-8")


# Written into every folder a stage makes: the stage's name. A stage replaces or deletes only a
# folder that names it (or, written before the marker existed, whose manifest.json does).
STAGE_MARKER = ".pipesql-stage"


def made_by(folder: str | Path) -> str | None:
    """The stage that made ``folder`` (its marker, else its manifest's ``stage``), or None."""
    folder = Path(folder)
    marker, manifest = folder / STAGE_MARKER, folder / "manifest.json"
    if marker.is_file():
        return marker.read_text(encoding="utf-8").strip()
    if manifest.is_file():
        try:
            return json.loads(manifest.read_text(encoding="utf-8")).get("stage")
        except (ValueError, AttributeError):
            return None
    return None


def check_replaceable(target: str | Path, stage: str) -> None:
    """Raise :class:`FileExistsError` unless ``target`` is absent, an empty folder, or a folder
    ``stage`` made: a stage never deletes what it did not make (``--merged-dir ~`` included)."""
    target = Path(target)
    if not target.exists() and not target.is_symlink():
        return
    if target.is_dir() and not target.is_symlink() and (not any(target.iterdir()) or made_by(target) == stage):
        return
    raise FileExistsError(f"{target} exists and was not made by pipesql {stage} (no {STAGE_MARKER} naming it); "
                          f"refusing to replace it: choose another folder or remove it yourself")


def replace_folder(staged: str | Path, target: str | Path, stage: str) -> Path:
    """Move the finished folder ``staged`` to ``target``, replacing a ``target`` that ``stage``
    made. Readers see the old folder, then (for a moment) none, then the new one: never a mix."""
    staged, target = Path(staged), Path(target)
    check_replaceable(target, stage)
    (staged / STAGE_MARKER).write_text(stage + "\n", encoding="utf-8")
    if not target.exists():
        os.replace(staged, target)
        return target
    old = target.with_name(f".{target.name}.old-{os.getpid()}")
    shutil.rmtree(old, ignore_errors=True)
    try:
        os.replace(target, old)
    except OSError:  # a mount point (a container's volume) cannot be renamed: replace what it holds
        return _replace_contents(staged, target)
    os.replace(staged, target)
    shutil.rmtree(old, ignore_errors=True)
    return target


def _replace_contents(staged: Path, target: Path) -> Path:
    for entry in target.iterdir():
        shutil.rmtree(entry) if entry.is_dir() and not entry.is_symlink() else entry.unlink()
    for entry in staged.iterdir():
        shutil.move(str(entry), target / entry.name)
    staged.rmdir()
    return target


@contextlib.contextmanager
def staged_folder(target: str | Path, stage: str) -> Iterator[Path]:
    """A fresh folder beside ``target`` for a stage's outputs; when the block ends without an
    error it replaces ``target`` whole (:func:`replace_folder`), else it is removed. A kill
    leaves ``target`` as it was, beside a ``.NAME.staging-*`` folder."""
    target = Path(target)
    check_replaceable(target, stage)  # before the long work, not after it
    target.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{target.name}.staging-", dir=target.parent))
    staging.chmod(0o777 & ~_UMASK)
    (staging / STAGE_MARKER).write_text(stage + "\n", encoding="utf-8")  # so the manifest lists it
    try:
        yield staging
        replace_folder(staging, target, stage)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise


def write_json(path: str | Path, data: Any) -> None:
    with atomic_open(path) as handle:
        json.dump(data, handle, indent=2, sort_keys=True, ensure_ascii=False)
        handle.write("\n")


def write_jsonl(path: str | Path, records: Iterable[Any]) -> int:
    count = 0
    with atomic_open(path) as handle:
        for record in records:
            handle.write(json.dumps(record, ensure_ascii=False, sort_keys=True))
            handle.write("\n")
            count += 1
    return count


@dataclass(frozen=True)
class BadLine:
    path: str
    line: int
    error: str

    def __str__(self) -> str:
        return f"{self.path}:{self.line}: {self.error}"


def read_jsonl(path: str | Path, errors: list[BadLine] | None = None) -> Iterator[tuple[int, Any]]:
    """Yield ``(line_number, record)``. A malformed line is appended to ``errors`` (or raised as
    ``ValueError`` naming file and line when no list is given) and reading goes on."""
    path = Path(path)
    with path.open(encoding="utf-8", errors="replace") as handle:
        for number, line in enumerate(handle, 1):
            if not line.strip():
                continue
            try:
                record = json.loads(line)
                if not isinstance(record, dict):
                    raise ValueError(f"expected a JSON object, got {type(record).__name__}")
            except ValueError as error:
                bad = BadLine(str(path), number, str(error))
                if errors is None:
                    raise ValueError(str(bad)) from None
                errors.append(bad)
                continue
            yield number, record


def sha256_file(path: str | Path, chunk: int = 1 << 20) -> str:
    digest = hashlib.sha256()
    with Path(path).open("rb") as handle:
        while block := handle.read(chunk):
            digest.update(block)
    return digest.hexdigest()
