"""Variant build time per gold query: this checkout's variants against a baseline copy of the module.

    git show main:pipesql/validate/variants.py > /tmp/variants_base.py
    python benchmarks/variant_build.py --baseline /tmp/variants_base.py [--benchmark spider]
                                       [--data-dir DIR] [--split dev] [--variants 8] [--rounds 2]

For each gold query of the split, builds its K variants (the layout worked out once, then each
variant's rows; no query runs on them) with the baseline module and with this checkout's, in an
order that alternates per query, after a warm-up over the first 50 queries. Prints the mean per
gold query of each and their ratio, per round: the only figure that survives a shared machine.
"""

from __future__ import annotations

import argparse
import hashlib
import importlib.util
import os
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from pipesql.corpora.items import load_items  # noqa: E402
from pipesql.validate import variants as current  # noqa: E402

SPIDER = Path(os.environ.get("PIPESQL_SPIDER_DIR") or Path(__file__).resolve().parents[2] / "shared/data/spider")


def load_baseline(path: Path):
    spec = importlib.util.spec_from_file_location("variants_baseline", path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up while the class is made
    spec.loader.exec_module(module)
    return module


def build_seconds(module, item, count: int) -> float:
    """Seconds to build the ``count`` variants of one gold query with ``module``."""
    source = module.source_of(str(item.db_path))  # cached per database: read once, outside the timing
    start = time.perf_counter()
    layout = module._layout(source, module.query_hints(item.gold_sql, source))
    try:
        for index in range(count):
            seed = module.variant_seed(item.db_path, item.gold_sql, index)
            module._build(layout, seed, *module.variant_shape(index, module.DEFAULT_ROWS)).close()
    finally:
        layout.schema.close()
    return time.perf_counter() - start


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--baseline", type=Path, required=True, help="a copy of pipesql/validate/variants.py to compare with")
    parser.add_argument("--benchmark", choices=["spider", "bird", "demo"], default="spider")
    parser.add_argument("--data-dir", type=Path, default=None)
    parser.add_argument("--split", default="dev")
    parser.add_argument("--variants", type=int, default=8)
    parser.add_argument("--rounds", type=int, default=2)
    args = parser.parse_args()
    baseline = load_baseline(args.baseline)
    data_dir = args.data_dir or (SPIDER if args.benchmark == "spider" else None)
    items = [i for i in load_items(args.benchmark, data_dir, args.split) if i.problem is None and i.db_path.is_file()]
    for item in items[:50]:  # warm-up
        build_seconds(baseline, item, args.variants)
        build_seconds(current, item, args.variants)
    for round_number in range(args.rounds):
        totals = {"baseline": 0.0, "current": 0.0}
        for item in items:
            first = int(hashlib.sha256(f"{round_number}{item.question_id}".encode()).hexdigest(), 16) % 2
            order = [("baseline", baseline), ("current", current)][:: 1 if first else -1]
            for name, module in order:
                totals[name] += build_seconds(module, item, args.variants)
        per_query = {name: 1000 * seconds / len(items) for name, seconds in totals.items()}
        print(f"round {round_number + 1}: {len(items)} gold queries, K={args.variants}: baseline "
              f"{per_query['baseline']:.2f} ms, this checkout {per_query['current']:.2f} ms per gold query, "
              f"ratio {totals['current'] / totals['baseline']:.2f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
