"""GRPO reward throughput on CPU, against one sequential evaluate scoring pass.

The completions: for each of N questions (Spider dev when ``--data-dir`` is given, else the demo
corpus), three one-shot answers a policy might sample: the gold query decompiled to pipe SQL
(a match), the same query without its last operator (usually a mismatch) and an unfinished
query (a transpile error).

Baseline (measured in the same run): evaluate's scoring loop, :func:`pipesql.evaluate.scoring.score`
on each completion in turn, in this process. Then :class:`pipesql.rl.reward.RewardPool` with 1
and 2 worker processes, each on a pool already started (a training run starts it once; its
start-up is printed on its own). The configurations run in interleaved rounds and the fastest
of each is kept, since the machine may be shared. The rewards must agree with the baseline's
statuses; the script says so or fails.

    python benchmarks/reward_bench.py                                           # demo corpus
    python benchmarks/reward_bench.py --data-dir ../shared/data/spider --questions 300

Prints completions scored per second and each figure as a ratio to the baseline.
"""

from __future__ import annotations

import argparse
import os
import time

from pipesql.corpora.items import load_items
from pipesql.decompile import decompile
from pipesql.evaluate.scoring import MATCH, Limits, score
from pipesql.rl.reward import ONESHOT, Completion, RewardPool, Target


def completions_for(items) -> tuple[list, list[Completion]]:
    """``(item per completion, completions)``."""
    pairs = []
    for item in items:
        result = decompile(item.gold_sql)
        if not result.ok or len(result.operators) < 2:
            continue
        whole = "\n".join(result.operators)
        for text in (whole, "\n".join(result.operators[:-1]), result.operators[0] + "\n|> WHERE"):
            pairs.append((item, Completion(Target(item.question_id, str(item.db_path), item.gold_sql), text, ONESHOT)))
    return [p[0] for p in pairs], [p[1] for p in pairs]


def sequential(items, completions, limits: Limits) -> tuple[float, list[str]]:
    started = time.perf_counter()
    statuses = [score(item, c.text, limits=limits).status for item, c in zip(items, completions)]
    return time.perf_counter() - started, statuses


def pooled(pool: RewardPool, completions) -> tuple[float, list[str]]:
    started = time.perf_counter()
    rewards = pool.score(completions)
    return time.perf_counter() - started, [r.status for r in rewards]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data-dir", default=None, help="Spider folder; default: the demo corpus")
    parser.add_argument("--questions", type=int, default=100)
    parser.add_argument("--timeout-s", type=float, default=5.0)
    parser.add_argument("--rounds", type=int, default=3, help="interleaved rounds; the fastest of each is kept")
    args = parser.parse_args()

    benchmark = "spider" if args.data_dir else "demo"
    items, completions = completions_for(load_items(benchmark, args.data_dir, "dev", args.questions))
    limits = Limits(timeout_s=args.timeout_s)
    print(f"{len(completions)} completions from {len(set(i.question_id for i in items))} {benchmark} dev questions; "
          f"{os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.1f} at the start")

    pools = {workers: RewardPool(workers, limits) for workers in (1, 2)}
    startup = {}
    for workers, pool in pools.items():
        started = time.perf_counter()
        pool.score(completions[:workers])  # start the workers (a training run starts them once)
        startup[workers] = time.perf_counter() - started
    best: dict[str, float] = {}
    _, statuses = sequential(items, completions, limits)  # warm-up: first-call costs are not the method's
    try:
        # Interleaved rounds, so that a burst of load from other users hits every configuration.
        for _ in range(args.rounds):
            runs = {"baseline": sequential(items, completions, limits)}
            runs.update({workers: pooled(pool, completions) for workers, pool in pools.items()})
            for name, (seconds, got) in runs.items():
                if got != statuses:
                    raise SystemExit(f"{name}: statuses differ from evaluate's scoring")
                best[name] = min(best.get(name, seconds), seconds)
    finally:
        for pool in pools.values():
            pool.close()

    print(f"statuses agree with evaluate's in every configuration; {statuses.count(MATCH)}/{len(statuses)} matches; "
          f"load average {os.getloadavg()[0]:.1f} at the end; fastest of {args.rounds} rounds")
    rows = [("evaluate scoring, sequential (baseline)", best["baseline"])]
    rows += [(f"reward pool, {w} worker{'s' * (w > 1)} (start-up {startup[w]:.2f} s, once)", best[w]) for w in pools]
    print(f"{'configuration':<58} {'seconds':>8} {'completions/s':>14} {'vs baseline':>12}")
    for name, seconds in rows:
        print(f"{name:<58} {seconds:>8.2f} {len(completions) / seconds:>14.1f} {best['baseline'] / seconds:>11.2f}x")


if __name__ == "__main__":
    main()
