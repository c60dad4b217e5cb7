"""Decompiler cost per query against the decompiler pipesql replaces and against sqlglot's own
parse + qualify + generate (the floor), all three on the same sqlglot build, in one run; then,
optionally, validation throughput on the same queries.

    python benchmarks/decompile_bench.py [--data-dir SPIDER] [--split dev|train|all] [--limit N] [--repeat 7]
        [--replaced PATH] [--baseline PATH] [--phases] [--digest] [--validation --workers N]

Like with like:

- One process, one sqlglot: the replaced decompiler (``--replaced PATH``, a scratch checkout of
  ``nittygritty-zzy/sqlglot`` kept outside this repository) is imported from that checkout's
  ``pipe_sql/`` only; ``sqlglot`` is the one installed here (compiled), never the checkout's
  fork. A child process also runs it once on the fork's own pure-Python sqlglot, and the script
  says whether its output is byte-identical on both (so it does the same work here).
- Each side builds what it needs per database once per pass, inside its time: ours its
  :func:`pipesql.decompile.prepare_schema`, the floor sqlglot's ``MappingSchema`` (what
  ``qualify(schema=dict)`` would otherwise rebuild for every query). The replaced decompiler
  takes no schema (it qualifies nothing).
- One untimed warm-up pass of every side; then each round times one pass of every side, the
  order rotated round by round, so machine load and cache state fall on all sides alike. Each
  pass is timed on the CPU clock of the process that runs it (waiting for a core on a shared
  machine does not count) and on the wall clock. Per side the best and the median pass are
  printed; per pair of sides the ratio of the best passes and the median of the ratios within
  a round, all from this one run.

``--baseline PATH`` adds another checkout of pipesql (say, a worktree of main before a change)
as a fourth side, in a child process that times its own passes within the same rotation, and
says whether its output is identical to this checkout's: before and after in one run.

``--digest`` prints a SHA-256 of pipesql's output (pipe SQL, or the reason it refused) for every
query of the split, in order: equal digests before and after a change mean identical output.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import sqlglot
from sqlglot import exp
from sqlglot.optimizer.qualify import qualify
from sqlglot.schema import MappingSchema

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from pipesql.corpora.items import load_items  # noqa: E402
from pipesql.decompile import decompile, prepare_schema  # noqa: E402
from pipesql.sql.schema import read_sqlite_schema  # noqa: E402
from pipesql.validate import CheckOptions, validate_items  # noqa: E402
from pipesql.validate.check import primary_keys  # noqa: E402

SPIDER = Path(os.environ.get("PIPESQL_SPIDER_DIR") or Path(__file__).resolve().parents[2] / "shared/data/spider")
DEFAULT_REPLACED = Path("/work/scratch/replaced")
GOAL = 1.2  # pipesql's time at most this many times the replaced decompiler's, on the same sqlglot

# Runs in a child process on the replaced checkout's own sqlglot: the digest of its outputs.
_OWN_SQLGLOT_WORKER = """
import hashlib, json, sys
import sqlglot
from pipe_sql.decompiler import decompile
assert sqlglot.__file__.startswith(sys.argv[2]), sqlglot.__file__
digest = hashlib.sha256()
for sql in json.load(open(sys.argv[1])):
    try:
        out = decompile(sql)
    except Exception as error:
        out = "error: " + type(error).__name__
    digest.update(json.dumps(out).encode() + b"\\n")
print(digest.hexdigest())
"""


# Runs in a child process on another checkout of pipesql (--baseline): the digest of its output
# after a warm-up pass, then its own CPU and wall seconds for one pass per input line.
_BASELINE_WORKER = """
import hashlib, json, sys, time
import pipesql
from pipesql.decompile import decompile, prepare_schema
assert pipesql.__file__.startswith(sys.argv[2]), pipesql.__file__
work = json.load(open(sys.argv[1]))
def one_pass():
    prepared, outputs = {}, []
    for sql, db_id, mapping, keys in work:
        schema = prepared.get(db_id) or prepared.setdefault(db_id, prepare_schema(mapping, keys))
        result = decompile(sql, schema)
        outputs.append(result.pipe_sql or result.reason)
    return outputs
digest = hashlib.sha256()
for out in one_pass():
    digest.update(json.dumps(out).encode() + b"\\n")
print(digest.hexdigest(), flush=True)
for _ in sys.stdin:
    cpu, wall = time.process_time(), time.perf_counter()
    one_pass()
    print(time.process_time() - cpu, time.perf_counter() - wall, flush=True)
"""


def load(data_dir: Path, split: str, limit: int | None):
    """The items whose database is present, and (gold SQL, db_id, schema, keys) for each."""
    items = [i for i in load_items("spider", data_dir, split) if i.db_path.is_file()]
    items = items[:limit] if limit else items
    schemas = {}
    for item in items:
        if item.db_id not in schemas:
            schema = read_sqlite_schema(item.db_path)
            schemas[item.db_id] = (schema.sqlglot_mapping(), primary_keys(schema))
    return items, [(item.gold_sql, item.db_id, *schemas[item.db_id]) for item in items]


def ours(work) -> list[str]:
    prepared = {}
    outputs = []
    for sql, db_id, mapping, keys in work:
        schema = prepared.get(db_id) or prepared.setdefault(db_id, prepare_schema(mapping, keys))
        result = decompile(sql, schema)
        outputs.append(result.pipe_sql or result.reason)
    return outputs


def floor(work) -> list[str | None]:
    """``parse_one`` + ``qualify`` + ``.sql("bigquery")`` per query, as a sqlglot user writes
    it, with each database's ``MappingSchema`` built once."""
    schemas = {}
    outputs = []
    for sql, db_id, mapping, _ in work:
        schema = schemas.get(db_id) or schemas.setdefault(db_id, MappingSchema(mapping, dialect="sqlite"))
        try:
            tree = sqlglot.parse_one(sql, read="sqlite")
            tree = qualify(tree, schema=schema, dialect="sqlite", validate_qualify_columns=False)
            outputs.append(tree.sql(dialect="bigquery"))
        except Exception:  # noqa: BLE001 - a failing query still costs what it cost
            outputs.append(None)
    return outputs


def import_replaced(path: Path) -> Callable[[str], str]:
    """The replaced ``decompile(sql)``, imported from ``path``'s ``pipe_sql/`` on the sqlglot
    already imported here. ``path`` goes last on ``sys.path``, so its fork of sqlglot is never
    found first."""
    if not (path / "pipe_sql" / "decompiler").is_dir():
        raise SystemExit(f"{path}: no pipe_sql/decompiler/ (want a checkout of nittygritty-zzy/sqlglot)")
    sys.path.append(str(path))
    from pipe_sql.decompiler import decompile as replaced_decompile

    for module in (sqlglot, sys.modules["pipe_sql"]):
        where = Path(module.__file__).resolve()
        inside = where.is_relative_to(path.resolve())
        if inside != (module is not sqlglot):
            raise SystemExit(f"{module.__name__} imported from {where}: expected {'inside' if inside else 'outside'} {path}")
    return replaced_decompile


def _replaced_after_parse() -> Callable[[exp.Expr], str]:
    """What the replaced ``decompile`` does after ``sqlglot.parse_one`` (its emitter and serializer)."""
    from pipe_sql.decompiler.emitter import emit_pipe_query
    from pipe_sql.decompiler.serializer import serialize

    return lambda tree: serialize(emit_pipe_query(tree, dialect="sqlite"))


def replaced_side(decompile_replaced: Callable[[str], str]) -> Callable[[list], list[str]]:
    def replaced(work) -> list[str]:
        outputs = []
        for sql, _, _, _ in work:
            try:
                outputs.append(decompile_replaced(sql))
            except Exception as error:  # noqa: BLE001 - the replaced code raises on what it cannot handle
                outputs.append("error: " + type(error).__name__)
        return outputs
    return replaced


def digest(outputs) -> str:
    hashed = hashlib.sha256()
    for out in outputs:
        hashed.update(json.dumps(out).encode() + b"\n")
    return hashed.hexdigest()


def own_sqlglot_digest(path: Path, queries: list[str]) -> str:
    """The replaced decompiler's output digest on its checkout's own (pure-Python) sqlglot."""
    with tempfile.NamedTemporaryFile("w", suffix=".json", delete=False) as handle:
        json.dump(queries, handle)
    queries_file = Path(handle.name)
    try:
        done = subprocess.run([sys.executable, "-c", _OWN_SQLGLOT_WORKER, str(queries_file), str(path.resolve())],
                              cwd=path, env=dict(os.environ, PYTHONPATH=str(path)), capture_output=True,
                              text=True, check=True)
    finally:
        queries_file.unlink()
    return done.stdout.strip()


class Baseline:
    """pipesql's decompiler from another checkout (``--baseline PATH``, e.g. a worktree of main)
    in a child process, so two versions run in one benchmark: it times its own passes (its CPU
    time is its own process's) and reports the digest of its output."""

    def __init__(self, path: Path, work):
        with tempfile.NamedTemporaryFile("w", suffix=".json", delete=False) as handle:
            json.dump(work, handle)
        self._work_file = Path(handle.name)
        self._child = subprocess.Popen([sys.executable, "-c", _BASELINE_WORKER, self._work_file, str(path.resolve())],
                                       cwd=path, env=dict(os.environ, PYTHONPATH=str(path.resolve())),
                                       stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
        self.digest = self._line()

    def _line(self) -> str:
        line = self._child.stdout.readline()
        if not line:
            raise RuntimeError("the baseline's process ended")
        return line.strip()

    def one_pass(self) -> tuple[float, float]:
        self._child.stdin.write("go\n")
        self._child.stdin.flush()
        cpu, wall = self._line().split()
        return float(cpu), float(wall)

    def close(self) -> None:
        self._child.stdin.close()
        self._child.wait(timeout=60)
        self._work_file.unlink()


CLOCKS = ("cpu", "wall")


def in_process(side: Callable, work) -> Callable[[], tuple[float, float]]:
    """One pass of ``side`` over ``work``, timed: (CPU seconds of this process, wall seconds)."""
    def one_pass() -> tuple[float, float]:
        cpu, wall = time.process_time(), time.perf_counter()
        side(work)
        return time.process_time() - cpu, time.perf_counter() - wall
    return one_pass


def timed_rounds(passes: dict[str, Callable[[], tuple[float, float]]], repeat: int) -> dict[str, dict[str, list[float]]]:
    """Seconds per pass of each side on each clock (``cpu``: the side's process's CPU time,
    which waiting for a core on a shared machine does not inflate; ``wall``): one untimed
    warm-up pass each, then ``repeat`` rounds with the order of the sides rotated by one every
    round."""
    names = list(passes)
    for name in names:
        passes[name]()
    seconds = {clock: {name: [] for name in names} for clock in CLOCKS}
    for round_index in range(repeat):
        shift = round_index % len(names)
        for name in names[shift:] + names[:shift]:
            for clock, taken in zip(CLOCKS, passes[name]()):
                seconds[clock][name].append(taken)
    return seconds


def report(seconds: dict[str, list[float]], clock: str, n: int) -> None:
    """Per side its best and median pass; per pair of sides the ratio of the best passes and
    the median of the ratios within a round (rounds are minutes apart on a shared machine, the
    sides of one round seconds)."""
    best = {name: min(times) for name, times in seconds.items()}
    print(f"{clock} time, best (median) of the rounds:")
    for name, times in seconds.items():
        print(f"  {name:9s} {1e3 * best[name] / n:.3f} ms/query ({1e3 * statistics.median(times) / n:.3f}), "
              f"{n / best[name]:.0f} queries/s")
    pairs = [("pipesql", "baseline"), ("pipesql", "replaced"), ("replaced", "floor"), ("pipesql", "floor")]
    for a, b in pairs:
        if a in best and b in best:
            paired = statistics.median(x / y for x, y in zip(seconds[a], seconds[b]))
            goal = (f"; goal at most {GOAL}x: {'met' if max(best[a] / best[b], paired) <= GOAL else 'NOT met'}"
                    if (a, b) == ("pipesql", "replaced") else "")
            print(f"  {a} / {b}: {best[a] / best[b]:.2f}x best, {paired:.2f}x median within a round{goal}")


def phase_seconds(work, decompile_replaced: Callable[[str], str] | None) -> dict[str, float]:
    """CPU seconds of one pass per phase: pipesql's parse, the passes before qualify, qualify
    (identifiers, tables, columns) and the emitter; the replaced decompiler's parse and the rest."""
    import importlib

    prepare = importlib.import_module("pipesql.decompile.prepare")
    emit = importlib.import_module("pipesql.decompile.emit")
    taken: dict[str, float] = {}

    def phase(name: str, step: Callable, *args):
        start = time.process_time()
        try:
            return step(*args)
        finally:
            taken[name] = taken.get(name, 0.0) + time.process_time() - start

    prepared = {}
    for sql, db_id, mapping, keys in work:
        schema = prepared.get(db_id) or prepared.setdefault(db_id, phase("pipesql schema", prepare_schema, mapping, keys))
        try:
            tree = phase("pipesql parse", prepare.parse, sql, schema.reader)
            nodes = phase("pipesql before qualify", prepare._nodes, tree)
            if schema.sqlite:
                phase("pipesql before qualify", prepare.double_quoted_strings, nodes, schema.column_names)
            plain = phase("pipesql before qualify", prepare.plain_sources, nodes)
            tree = phase("pipesql qualify", prepare.qualified, tree, nodes, schema.mapping, schema.dialect,
                         schema.catalog, plain)
            phase("pipesql emit", lambda: emit.emit_query(tree, schema.catalog.for_query(), None).lines())
        except Exception:  # noqa: BLE001 - a refused query costs what it cost up to there
            continue
    for sql, *_ in work if decompile_replaced else []:
        try:
            tree = phase("replaced parse", sqlglot.parse_one, sql, "sqlite")
        except Exception:  # noqa: BLE001
            continue
        try:
            phase("replaced rest", decompile_replaced, tree)
        except Exception:  # noqa: BLE001
            pass
    return taken


def validation_seconds(items, workers: int, googlesql: bool) -> float:
    start = time.perf_counter()
    validate_items(items, workers=workers, options=CheckOptions(googlesql=googlesql), progress=False)
    return time.perf_counter() - start


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data-dir", type=Path, default=SPIDER, help=f"Spider (default: {SPIDER})")
    parser.add_argument("--split", choices=["dev", "train", "all"], default="dev")
    parser.add_argument("--limit", type=int, default=None)
    parser.add_argument("--repeat", type=int, default=7, help="timed rounds; the best of each side counts")
    parser.add_argument("--replaced", type=Path, default=None,
                        help=f"checkout of nittygritty-zzy/sqlglot (default: {DEFAULT_REPLACED} when present)")
    parser.add_argument("--baseline", type=Path, default=None,
                        help="another pipesql checkout (e.g. a worktree of main), timed as a fourth side")
    parser.add_argument("--phases", action="store_true", help="also print CPU time per phase, one pass")
    parser.add_argument("--digest", action="store_true",
                        help="only print the SHA-256 of pipesql's output on every query of the split")
    parser.add_argument("--validation", action="store_true", help="also time validation, without and with ZetaSQL")
    parser.add_argument("--workers", type=int, default=1, help="validation worker processes")
    args = parser.parse_args()
    items, work = load(args.data_dir, args.split, args.limit)
    n = len(work)
    if args.digest:
        print(f"pipesql output of {n} Spider {args.split} queries: sha256 {digest(ours(work))}")
        return 0
    sides = {"pipesql": ours, "replaced": None, "floor": floor}
    replaced_path = args.replaced or (DEFAULT_REPLACED if DEFAULT_REPLACED.is_dir() else None)
    replaced_emit = None
    if replaced_path:
        sides["replaced"] = replaced_side(import_replaced(replaced_path))
        replaced_emit = _replaced_after_parse()
    else:
        del sides["replaced"]
    print(f"queries: {n} (Spider {args.split}); sqlglot {sqlglot.__version__} from {Path(sqlglot.__file__).parent}"
          f" ({'compiled' if _compiled(sqlglot) else 'pure Python'}) for every side")
    if replaced_path:
        here = digest(sides["replaced"](work))
        own = own_sqlglot_digest(replaced_path, [w[0] for w in work])
        print(f"replaced decompiler's output on this sqlglot vs on its checkout's own sqlglot: "
              f"{'byte-identical' if here == own else 'DIFFERENT'} (sha256 {here[:16]} / {own[:16]})")
    passes = {name: in_process(side, work) for name, side in sides.items()}
    baseline = Baseline(args.baseline, work) if args.baseline else None
    if baseline:
        same = baseline.digest == digest(ours(work))
        print(f"pipesql's output vs the baseline's ({args.baseline}): {'identical' if same else 'DIFFERENT'}")
        passes["baseline"] = baseline.one_pass
    print(f"load average at the start: {' '.join(f'{x:.1f}' for x in os.getloadavg())}")
    try:
        seconds = timed_rounds(passes, args.repeat)
    finally:
        if baseline:
            baseline.close()
    print(f"{args.repeat} rounds after a warm-up pass of each side, order rotated")
    if "replaced" not in sides:
        print("replaced decompiler: skipped (no --replaced checkout, and /work/scratch/replaced is absent)")
    for clock in CLOCKS:
        report(seconds[clock], clock, n)
    print(f"load average at the end: {' '.join(f'{x:.1f}' for x in os.getloadavg())}")
    if args.phases:
        phase_seconds(work, replaced_emit)  # warm-up
        taken = phase_seconds(work, replaced_emit)
        print("cpu time per phase, one pass:")
        for side in ("pipesql", "replaced"):
            total = sum(v for k, v in taken.items() if k.startswith(side))
            for name, value in taken.items():
                if name.startswith(side):
                    print(f"  {name:24s} {1e3 * value / n:.3f} ms/query ({100 * value / total:.0f}%)")
    if args.validation:
        for googlesql in (False, True):
            seconds_taken = validation_seconds(items, args.workers, googlesql)
            label = "with ZetaSQL" if googlesql else "without ZetaSQL"
            print(f"validate ({label}, {args.workers} worker(s)): {n / seconds_taken:.1f} items/s, "
                  f"{1e3 * seconds_taken / n:.2f} ms/item")
    return 0


def _compiled(module) -> bool:
    """Whether sqlglot runs compiled (mypyc extension modules beside its sources)."""
    return any(Path(module.__file__).parent.glob("*.so"))


if __name__ == "__main__":
    raise SystemExit(main())
