"""Where pipesql keeps what it builds once per machine and reuses (the demo corpus, the compiled
ZetaSQL module): ``$PIPESQL_CACHE`` when set, else ``~/.cache/pipesql``."""

from __future__ import annotations

import os
from pathlib import Path


def cache_root() -> Path:
    configured = os.environ.get("PIPESQL_CACHE")
    return Path(configured).expanduser() if configured else Path.home() / ".cache" / "pipesql"
