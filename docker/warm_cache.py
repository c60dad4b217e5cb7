"""Fill the pipesql cache at image build time, so a container's first job does not pay for it:
the demo corpus and the compiled ZetaSQL module (see pipesql.sql.googlesql).

    python docker/warm_cache.py [--reuse DIR]

--reuse DIR: a folder kept between builds (a build cache mount). A compiled module found there
under its current name (a hash of the zetasql module, wasmtime and the engine settings) is used
instead of compiling; a new one is saved there for the next build.
"""

from __future__ import annotations

import argparse
import shutil
import sys
import time
from pathlib import Path


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--reuse", type=Path, help="folder kept between builds for the compiled module")
    args = parser.parse_args(argv)
    from pipesql.corpora.demo import ensure_corpus
    from pipesql.sql import googlesql

    started = time.monotonic()
    print(f"demo corpus: {ensure_corpus()}", file=sys.stderr)
    kept = args.reuse / googlesql.compiled_module_path().name if args.reuse else None
    if kept is not None and kept.is_file():
        googlesql.compiled_module_path().parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(kept, googlesql.compiled_module_path())
    compiled = googlesql.ensure_compiled()
    if kept is not None and not kept.is_file():
        shutil.copyfile(compiled, kept)
    print(f"ZetaSQL module ready in the cache ({time.monotonic() - started:.0f} s)", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
