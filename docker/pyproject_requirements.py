"""Print the requirements of pyproject.toml (core + the named extras), one per line, so the image
can install the whole stack in a layer that only changes when pyproject.toml does.

    python pyproject_requirements.py pyproject.toml train,gpu,fetch > requirements.txt
"""

from __future__ import annotations

import sys
import tomllib
from pathlib import Path


def requirements(pyproject: Path, extras: list[str]) -> list[str]:
    project = tomllib.loads(pyproject.read_text(encoding="utf-8"))["project"]
    optional = project.get("optional-dependencies", {})
    unknown = [extra for extra in extras if extra not in optional]
    if unknown:
        raise SystemExit(f"{pyproject}: no extra(s) {', '.join(unknown)}; have {', '.join(sorted(optional))}")
    wanted = list(project.get("dependencies", []))
    for extra in extras:
        wanted.extend(optional[extra])
    return list(dict.fromkeys(wanted))  # keep order, drop repeats


def main(argv: list[str]) -> int:
    if len(argv) not in (1, 2):
        print(__doc__, file=sys.stderr)
        return 2
    extras = [e.strip() for e in argv[1].split(",") if e.strip()] if len(argv) == 2 else []
    print("\n".join(requirements(Path(argv[0]), extras)))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
