"""Downloads that resume: HTTP with Range requests, Google Drive through gdown.

Both keep a ``.part`` file beside the target and rename it to the target only when it is
complete, so a finished file is always whole and an interrupted one is picked up where it
stopped.
"""

from __future__ import annotations

import os
import re
import urllib.error
import urllib.request
from pathlib import Path

from pipesql.progress import progress_bar

CHUNK_BYTES = 1 << 20
TIMEOUT_S = 60


class DownloadError(Exception):
    pass


def _part_path(dest: Path) -> Path:
    return dest.with_name(dest.name + ".part")


def _total_from_content_range(header: str | None) -> int | None:
    # "bytes 100-199/1000" or "bytes */1000"
    match = re.search(r"/(\d+)\s*$", header or "")
    return int(match.group(1)) if match else None


def http_download(url: str, dest: str | Path, *, expected_bytes: int | None = None, timeout_s: float = TIMEOUT_S) -> Path:
    """Download ``url`` to ``dest``, resuming a previous ``dest.part`` with a Range request.

    A server that ignores the Range header (answers 200) gets a fresh download; a size that does
    not match ``expected_bytes`` or the server's Content-Length raises :class:`DownloadError`
    and keeps the ``.part`` file for the next attempt.
    """
    dest = Path(dest)
    if dest.is_file() and (expected_bytes is None or dest.stat().st_size == expected_bytes):
        return dest
    dest.parent.mkdir(parents=True, exist_ok=True)
    part = _part_path(dest)
    have = part.stat().st_size if part.exists() else 0
    request = urllib.request.Request(url, headers={"Range": f"bytes={have}-"} if have else {})
    try:
        response = urllib.request.urlopen(request, timeout=timeout_s)
    except urllib.error.HTTPError as error:
        if error.code == 416 and have and _total_from_content_range(error.headers.get("Content-Range")) == have:
            os.replace(part, dest)  # the previous attempt had already got every byte
            return dest
        raise DownloadError(f"{url}: HTTP {error.code} {error.reason}") from None
    except urllib.error.URLError as error:
        raise DownloadError(f"{url}: {error.reason}") from None
    with response:
        resumed = response.status == 206
        if resumed:
            total = _total_from_content_range(response.headers.get("Content-Range"))
        else:
            have = 0
            length = response.headers.get("Content-Length")
            total = int(length) if length is not None else None
        total = total or expected_bytes
        with part.open("ab" if resumed else "wb") as out, progress_bar(
            total, dest.name, "B", initial=have, unit_scale=True, leave=False
        ) as bar:
            while block := response.read(CHUNK_BYTES):
                out.write(block)
                bar.update(len(block))
    size = part.stat().st_size
    for wanted, source in ((total, "server"), (expected_bytes, "expected")):
        if wanted is not None and size != wanted:
            raise DownloadError(f"{url}: got {size} bytes, {source} size is {wanted}; run again to resume")
    os.replace(part, dest)
    return dest


def gdrive_download(file_id: str, dest: str | Path) -> Path:
    """Download a public Google Drive file with gdown, which handles the confirmation page for
    large files, keeps its own ``.part`` file, resumes it and renames it to ``dest`` only when
    complete."""
    try:
        import gdown
    except ImportError:
        raise DownloadError("Google Drive downloads need gdown: pip install 'pipesql[fetch]'") from None
    dest = Path(dest)
    if dest.is_file():
        return dest
    dest.parent.mkdir(parents=True, exist_ok=True)
    try:
        gdown.download(id=file_id, output=str(dest), quiet=False, resume=True)
    except Exception as error:  # gdown raises its own and requests' errors
        raise DownloadError(f"Google Drive file {file_id}: {error}; run again to resume") from None
    if not dest.is_file() or dest.stat().st_size == 0:
        raise DownloadError(f"Google Drive file {file_id}: nothing was downloaded to {dest}")
    return dest
