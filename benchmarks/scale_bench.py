"""The ray engine against the local one: items/s of `pipesql validate` at 1 and 2 CPUs, and the
peak memory of the ray engine's driver and workers as the corpus grows.

    python benchmarks/scale_bench.py --data-dir ../shared/data/spider               # throughput
    python benchmarks/scale_bench.py --data-dir ../shared/data/spider --rss 10000,100000

Throughput: Spider train, each configuration one whole `pipesql validate` command (what a user
waits for: start-up, a Ray cluster's included), pinned to its CPUs (sched_setaffinity), local and
ray alternating, after one warm-up run of each engine. Printed as ratios to local at the same CPUs.

Memory: a corpus of N items built from Spider train, every gold query under many question ids
(the train entries repeated, renumbered), validated by the ray engine on 2 CPUs; the peak RSS of
the driver and of the largest worker, sampled every 0.2 s (psutil). Streaming means they do not
grow with N.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import psutil

from pipesql.corpora.items import iter_json_array


def validate_command(data_dir: Path, out: Path, engine: str, cpus: int, extra: list[str]) -> list[str]:
    return [sys.executable, "-m", "pipesql", "validate", "--benchmark", "spider", "--data-dir", str(data_dir),
            "--split", "train", "--out", str(out), "--engine", engine, "--workers", str(cpus), "--no-progress", *extra]


class PeakMemory:
    """Peak RSS of a process (the driver) and of the largest of its descendants (the workers:
    pool processes, or Ray's actors), sampled in a thread."""

    def __init__(self, pid: int):
        self.root, self.driver, self.worker = psutil.Process(pid), 0, 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._sample, daemon=True)
        self._thread.start()

    def _sample(self) -> None:
        while not self._stop.is_set():
            try:
                self.driver = max(self.driver, self.root.memory_info().rss)
                for child in self.root.children(recursive=True):
                    if _is_worker(child):
                        self.worker = max(self.worker, child.memory_info().rss)
            except psutil.Error:
                pass  # a process ended between listing and reading it
            self._stop.wait(0.2)

    def stop(self) -> None:
        self._stop.set()
        self._thread.join()


def _is_worker(process: psutil.Process) -> bool:
    name = " ".join(process.cmdline())
    return "MapWorker" in name or "ShardActor" in name or "multiprocessing" in name


def run(command: list[str], cpus: int, out: Path) -> dict:
    start = time.perf_counter()
    process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
                               preexec_fn=lambda: os.sched_setaffinity(0, set(range(cpus))))
    memory = PeakMemory(process.pid)
    _, stderr = process.communicate()
    memory.stop()
    seconds = time.perf_counter() - start
    if process.returncode:
        raise SystemExit(f"{' '.join(command)} failed:\n{stderr[-3000:]}")
    summary = json.loads((out / "summary.json").read_text())
    return {"items": summary["items"], "golden": summary["golden_pairs"], "seconds": seconds,
            "items_per_s": summary["items"] / seconds, "driver_mb": memory.driver / 2**20,
            "worker_mb": memory.worker / 2**20}


def throughput(data_dir: Path, work: Path, extra: list[str]) -> None:
    for engine in ("local", "ray"):  # warm-up: file cache, ZetaSQL's compiled module, Ray's first start
        run(validate_command(data_dir, work / f"warm-{engine}", engine, 2, ["--limit", "200", *extra]), 2,
            work / f"warm-{engine}")
    results = {}
    for cpus in (1, 2):
        for engine in ("local", "ray"):
            out = work / f"{engine}-{cpus}"
            results[engine, cpus] = run(validate_command(data_dir, out, engine, cpus, extra), cpus, out)
            print(f"  {engine} at {cpus} CPU(s): {results[engine, cpus]['seconds']:.1f} s", file=sys.stderr)
    print(f"{'engine':<7} {'CPUs':>4} {'items':>6} {'golden':>6} {'seconds':>8} {'items/s':>8} {'x local':>8} "
          f"{'same golden_pairs.jsonl':>24}")
    for (engine, cpus), row in results.items():
        ratio = row["items_per_s"] / results["local", cpus]["items_per_s"]
        same = _sorted_lines(work / f"{engine}-{cpus}") == _sorted_lines(work / f"local-{cpus}")
        print(f"{engine:<7} {cpus:>4} {row['items']:>6} {row['golden']:>6} {row['seconds']:>8.1f} "
              f"{row['items_per_s']:>8.1f} {ratio:>8.2f} {str(same):>24}")


def _sorted_lines(out: Path) -> list[str]:
    return sorted((out / "golden_pairs.jsonl").read_text().splitlines())


def repeated_corpus(data_dir: Path, size: int, folder: Path) -> Path:
    """A Spider-layout folder whose train_spider.json holds ``size`` entries: Spider train's,
    again and again (the same gold queries under new question ids), written as a stream."""
    folder.mkdir(parents=True)
    (folder / "database").symlink_to((data_dir / "database").resolve())
    entries = list(iter_json_array(data_dir / "train_spider.json"))
    with (folder / "train_spider.json").open("w") as handle:
        handle.write("[")
        for n in range(size):
            handle.write(("," if n else "") + json.dumps({**entries[n % len(entries)], "question": f"#{n}"}))
        handle.write("]")
    return folder


def memory(data_dir: Path, work: Path, sizes: list[int], extra: list[str]) -> None:
    print(f"{'items':>7} {'golden':>7} {'seconds':>8} {'driver MB':>10} {'worker MB':>10}")
    rows = []
    for size in sizes:
        corpus = repeated_corpus(data_dir, size, work / f"corpus-{size}")
        out = work / f"rss-{size}"
        row = run(validate_command(corpus, out, "ray", 2, extra), 2, out)
        rows.append(row)
        print(f"{size:>7} {row['golden']:>7} {row['seconds']:>8.1f} {row['driver_mb']:>10.0f} {row['worker_mb']:>10.0f}")
    first, last = rows[0], rows[-1]
    print(f"largest / smallest: driver {last['driver_mb'] / first['driver_mb']:.2f}x, "
          f"worker {last['worker_mb'] / first['worker_mb']:.2f}x")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data-dir", type=Path, required=True, help="Spider (dev.json, train_spider.json, database/)")
    parser.add_argument("--rss", default=None, help="comma-separated corpus sizes: measure memory instead")
    parser.add_argument("--work", type=Path, default=None, help="where the runs' outputs stay (default: a temporary "
                                                                  "folder, removed)")
    parser.add_argument("extra", nargs="*", help="more `pipesql validate` flags, after --")
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory() as scratch:
        work = args.work or Path(scratch)
        if args.rss:
            memory(args.data_dir, work, [int(n) for n in args.rss.split(",")], args.extra)
        else:
            throughput(args.data_dir, work, args.extra)
    return 0


if __name__ == "__main__":
    sys.exit(main())
