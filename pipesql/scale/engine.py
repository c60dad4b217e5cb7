"""The Ray Data pipeline: pending shards -> ``map_batches`` over an actor pool -> shard outputs.

A job is a picklable object with ``setup()`` (run once in each actor: open ZetaSQL, caches),
``handle(unit) -> result`` and ``crashed(unit, detail) -> result`` (the result of a unit that kept
killing its worker). Results must be JSON-ready.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Any

from pipesql.scale.shards import ShardStore, process_shard

# CPUs Ray reserves per actor. Below one on purpose: on a 2-CPU machine two whole-CPU actors take
# every CPU and Ray Data's own tasks starve (the run hangs). Each actor still uses a core.
ACTOR_CPUS = 0.5


class ShardActor:
    """One pool actor: sets the job up once, then works whole shards (one per batch)."""

    def __init__(self, job: Any, root: str):
        self.job, self.store = job, ShardStore(Path(root))
        job.setup()

    def __call__(self, batch: dict[str, Any]) -> dict[str, list]:
        markers = [process_shard(self.store, int(shard), self.job.handle, self.job.crashed) for shard in batch["shard"]]
        return {"shard": [m["shard"] for m in markers], "units": [m["units"] for m in markers]}


def connect(cpus: int | None) -> None:
    """Join the cluster at ``RAY_ADDRESS``, or start one here with ``cpus`` CPUs (None: all)."""
    import ray

    if ray.is_initialized():
        return
    if os.environ.get("RAY_ADDRESS"):
        ray.init()
        return
    # Token authentication guards a cluster others can reach; this one lives and dies with the driver.
    os.environ.setdefault("RAY_AUTH_MODE", "disabled")
    ray.init(num_cpus=cpus, include_dashboard=False)


def cluster_cpus() -> int:
    import ray

    return max(1, int(ray.cluster_resources().get("CPU", 1)))


def run_shards(job: Any, store: ShardStore, workers: int = 0, progress: bool = True, desc: str = "shards") -> int:
    """Work every pending shard of ``store`` on Ray; returns the number of actors used. Shards
    already done are skipped; a shard whose actor dies is retried on a fresh one."""
    import ray
    from tqdm import tqdm

    connect(workers or None)
    pending = store.pending()
    actors = max(1, min(workers or cluster_cpus(), len(pending) or 1))
    if not pending:
        return actors
    context = ray.data.DataContext.get_current()
    context.enable_progress_bars = False  # one bar, below, counting units
    sizes = (store.plan() or {}).get("sizes", {})
    dataset = ray.data.from_items([{"shard": shard} for shard in pending], override_num_blocks=len(pending))
    results = dataset.map_batches(ShardActor, fn_constructor_args=(job, str(store.root)), batch_size=1,
                                  compute=ray.data.ActorPoolStrategy(size=actors), num_cpus=ACTOR_CPUS)
    with tqdm(total=sum(sizes.get(str(s), 0) for s in pending), desc=desc, unit="unit", file=sys.stderr,
              disable=not progress, dynamic_ncols=True, mininterval=0.5) as bar:
        for row in results.iter_rows():
            bar.update(sizes.get(str(row["shard"]), 0))
    return actors
