"""Fill the pipesql cache at image build time, so a container's first job does not pay for it:
the demo corpus and the compiled ZetaSQL module (see pipesql.sql.googlesql)."""

from __future__ import annotations

import sys
import time


def main() -> int:
    from pipesql.corpora.demo import ensure_corpus

    started = time.monotonic()
    print(f"demo corpus: {ensure_corpus()}", file=sys.stderr)
    from pipesql.sql import googlesql

    googlesql.ensure_compiled()
    print(f"ZetaSQL module compiled and cached ({time.monotonic() - started:.0f} s)", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
