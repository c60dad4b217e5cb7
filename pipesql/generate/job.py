"""``pipesql generate``: settings and the run that ties reading, generation, split and stats."""

from __future__ import annotations

import multiprocessing
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

from pipesql.corpora.items import BENCHMARKS, database_dirs, find_database
from pipesql.storage.files import check_replaceable, staged_folder, write_json, write_jsonl
from pipesql.generate.pairs import MISSING_DATABASE, GoldenPair, Problem, count_reasons, read_golden_pairs
from pipesql.generate.plot import plot_stats
from pipesql.generate.split import DEV, TRAIN, assign_splits
from pipesql.generate.stats import char_lengths, lengths_by_kind, sample_stats, samples_per_pair, token_lengths
from pipesql.generate.worker import DatabaseResult, DatabaseWork, WorkOptions, run_task
from pipesql.progress import progress_bar
from pipesql.storage.manifest import require_inputs, write_manifest
from pipesql.config.machine import usable_cores
from pipesql.config.settings import option
from pipesql.scale import ENGINES

# How many problems of one reason are printed; all of them are in skipped.jsonl.
_PRINTED_PER_REASON = 10


@dataclass
class Settings:
    stage: ClassVar[str] = "generate"

    golden_pairs: Path | None = option(None, "Golden pairs JSONL written by `pipesql validate` (required).")
    db_dir: list[Path] = option([], "Folder holding <db_id>/<db_id>.sqlite; repeatable.")
    benchmark: str | None = option(None, "Use this benchmark's database folders (with --data-dir; demo needs none).",
                                   choices=BENCHMARKS)
    data_dir: Path | None = option(None, "Benchmark root for --benchmark spider/bird (demo: where to build it).")
    output_dir: Path = option(Path("out/generate"), "Where train.jsonl, dev.jsonl and stats.json go.")
    tool_calling: bool = option(False, "Also write tool-calling conversations for a share of the pairs.")
    tool_ratio: float = option(0.3, "Share of pairs that also get a tool-calling conversation (seeded choice).")
    limit: int | None = option(None, "Use only the first N usable pairs of the file.")
    seed: int = option(42, "Seed of the train/dev split and of the tool-calling choice.")
    dev_fraction: float = option(0.05, "Share of question groups in dev.")
    tokenizer: str | None = option(None, "Tokenizer (local path or pipesql model name) for token-length stats; "
                                         "offline only. Without it, lengths are in characters.")
    cut_off_tokens: int = option(4096, "The training --max-seq-length to draw on stats.png (the Qwen2.5-Coder "
                                       "recipes use 4096).")
    workers: int = option(0, "Processes, or Ray actors (one database at a time each); 0 = one per CPU core "
                             "(of the cluster, for ray).")
    engine: str = option("local", "local: processes on this machine; ray: a Ray Data pipeline on the cluster at "
                                  "RAY_ADDRESS, else on a local one (docs/scale.md).", choices=ENGINES)
    shard_pairs: int = option(512, "Ray engine: about this many pairs per shard, whole databases (the unit a "
                                   "rerun skips once done).")
    timeout_s: float = option(10.0, "Time limit for each prefix execution, seconds.")
    values_per_column: int = option(3, "Example values per column in the prompt schema.")
    schema_max_chars: int = option(8000, "Budget of the prompt schema text; example values shrink to fit.")
    trim_schema_to_query: bool = option(False, "Show only the tables and columns the gold query uses "
                                                 "(an experiment: evaluation shows the whole schema).")
    progress: bool = option(True, "Show a progress bar on stderr.")


def log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def database_folders(settings: Settings) -> list[Path]:
    folders = [Path(p) for p in settings.db_dir]
    if settings.benchmark:
        if settings.benchmark != "demo" and settings.data_dir is None:
            raise SystemExit(f"--benchmark {settings.benchmark} needs --data-dir")
        folders += database_dirs(settings.benchmark, settings.data_dir)
    if not folders:
        raise SystemExit("give --db-dir DIR (repeatable) or --benchmark")
    return folders


def plan_work(pairs: list[GoldenPair], folders: list[Path], golden_path: str) -> tuple[list[DatabaseWork], list[Problem]]:
    """Pairs grouped by database; pairs whose database is in none of the folders are problems."""
    by_database: dict[str, list[GoldenPair]] = {}
    for pair in pairs:
        by_database.setdefault(pair.db_id, []).append(pair)
    work, problems = [], []
    for db_id in sorted(by_database):
        path = find_database(folders, db_id)
        if path is None:
            problems += [Problem(golden_path, p.line, p.question_id, MISSING_DATABASE,
                                 f"no {db_id}/{db_id}.sqlite in {', '.join(map(str, folders))}") for p in by_database[db_id]]
            continue
        work.append(DatabaseWork(db_id, path, by_database[db_id]))
    return work, problems


def run_work(work: list[DatabaseWork], options: WorkOptions, workers: int, total_pairs: int,
             progress: bool = True) -> list[DatabaseResult]:
    """Every database's samples, in database-name order whatever order the processes finish in."""
    # Biggest first, so one large database does not start last and leave a core idle.
    tasks = [(w, options) for w in sorted(work, key=lambda w: (-len(w.pairs), w.db_id))]
    sizes = {w.db_id: len(w.pairs) for w in work}
    results: dict[str, DatabaseResult] = {}
    pool = None
    if workers > 1 and len(tasks) > 1:
        _warm_imports()  # forked workers inherit the imported modules
        # Fork before the progress bar starts its monitor thread: forking a process with threads is fragile.
        pool = multiprocessing.get_context("fork").Pool(min(workers, len(tasks)))
    try:
        outcomes = pool.imap_unordered(run_task, tasks) if pool else map(run_task, tasks)
        with progress_bar(total_pairs, "generate", "pair", disable=not progress) as bar:
            for outcome in outcomes:
                results[outcome.db_id] = outcome
                bar.update(sizes[outcome.db_id])
    except BaseException:
        if pool is not None:
            pool.terminate()  # Ctrl-C or a crash: do not wait for the remaining databases
        raise
    if pool is not None:
        pool.close()
        pool.join()
    return [results[db_id] for db_id in sorted(results)]


def _warm_imports() -> None:
    import importlib

    for name in ("sqlglot", "pipesql.decompile", "pipesql.sql.transpile"):
        try:
            importlib.import_module(name)
        except ImportError:
            pass  # the worker reports it per pair


def load_length_measure(name: str | None):
    """``(unit, tokenizer name, lengths(samples))``: tokens with a local tokenizer, else characters."""
    if not name:
        return "characters", None, char_lengths
    from transformers import AutoTokenizer

    path = name
    try:
        from pipesql.models.registry import resolve_model

        path = resolve_model(name)
    except ImportError:
        pass
    try:
        tokenizer = AutoTokenizer.from_pretrained(path, local_files_only=True)
    except (OSError, ValueError) as error:
        raise SystemExit(f"--tokenizer {name}: cannot load it offline ({error})") from None
    return "tokens", name, token_lengths(tokenizer)


def log_lengths(by_kind: dict[str, dict[str, Any]], unit: str, cut_off: int) -> None:
    """One line per kind: its lengths, and in tokens how many train's cut-off would skip."""
    for kind, length in by_kind.items():
        over = "" if length["over_cut_off"] is None else f"; {length['over_cut_off']} longer than the cut-off {cut_off}"
        log(f"generate: {length['count']} {kind} samples, {length['min']}-{length['max']} {unit} "
            f"(median {length['p50']}){over}")


def report_problems(problems: list[Problem], skipped_path: Path) -> None:
    printed: dict[str, int] = {}
    for problem in problems:
        printed[problem.reason] = printed.get(problem.reason, 0) + 1
        if printed[problem.reason] <= _PRINTED_PER_REASON:
            log(f"warning: {problem}")
    for reason, count in sorted(printed.items()):
        if count > _PRINTED_PER_REASON:
            log(f"warning: ... {count - _PRINTED_PER_REASON} more '{reason}' (all in {skipped_path})")


def build_stats(settings: Settings, lines_read: int, pairs: list[GoldenPair], problems: list[Problem],
                notes: list[Problem], split_of: dict[str, str], train: list[dict], dev: list[dict],
                lengths: dict[str, list[int]], length_unit: str, tokenizer: str | None) -> dict[str, Any]:
    used = {s["question_id"] for s in train} | {s["question_id"] for s in dev}
    skipped = count_reasons(problems)
    everything = train + dev
    stats = {
        "pairs": {
            "read": lines_read,
            "usable": len(pairs),
            "used": len(used),
            "skipped": skipped,
            "skipped_total": sum(skipped.values()),
            "dropped_prefix": skipped.get("prefix_failed", 0),
            "tool_chat_failed": len(notes),
        },
        "questions": {"train": sum(1 for q in used if split_of[q] == TRAIN), "dev": sum(1 for q in used if split_of[q] == DEV)},
        "samples": sample_stats(everything, lengths[TRAIN] + lengths[DEV]),
        "train": sample_stats(train, lengths[TRAIN]),
        "dev": sample_stats(dev, lengths[DEV]),
        "samples_per_pair": samples_per_pair(everything),
        "length_by_kind": lengths_by_kind(everything, lengths[TRAIN] + lengths[DEV],
                                          settings.cut_off_tokens if length_unit == "tokens" else None),
        "length_unit": length_unit,
        "tokenizer": tokenizer,
        "settings": {"seed": settings.seed, "dev_fraction": settings.dev_fraction, "tool_calling": settings.tool_calling,
                     "tool_ratio": settings.tool_ratio, "limit": settings.limit,
                     "trim_schema_to_query": settings.trim_schema_to_query},
    }
    for side in ("train", "dev"):
        del stats[side]["by_database"]  # the overall table is enough; per side it is noise
    return stats


def gather(results: list[DatabaseResult], problems: list[Problem]
           ) -> tuple[dict[int, list[dict]], list[Problem], list[Problem]]:
    """``(samples by golden-pairs line, every problem, tool-chat notes)``, problems in line order."""
    samples_by_line: dict[int, list[dict]] = {}
    problems = list(problems)
    notes: list[Problem] = []
    for result in results:
        samples_by_line.update(result.samples)
        problems += result.problems
        notes += result.notes
    problems.sort(key=lambda p: (p.line, p.reason))
    notes.sort(key=lambda p: p.line)
    return samples_by_line, problems, notes


def write_outputs(out: Path, train: list[dict], dev: list[dict], stats: dict[str, Any], problems: list[Problem],
                  lengths: dict[str, list[int]], unit: str, cut_off_tokens: int) -> list[Path]:
    """The data files (deterministic bytes) and the plot; each written atomically."""
    paths = {name: out / name for name in ("train.jsonl", "dev.jsonl", "stats.json", "skipped.jsonl", "stats.png")}
    report_problems(problems, paths["skipped.jsonl"])
    write_jsonl(paths["train.jsonl"], train)
    write_jsonl(paths["dev.jsonl"], dev)
    write_jsonl(paths["skipped.jsonl"], (p.as_dict() for p in problems))
    write_json(paths["stats.json"], stats)
    plot_stats(paths["stats.png"], train + dev, lengths[TRAIN] + lengths[DEV], unit, stats["samples"]["by_operator"],
               cut_off_tokens)
    return list(paths.values())


def run(settings: Settings) -> int:
    started = time.monotonic()
    if settings.golden_pairs is None:
        raise SystemExit("--golden-pairs FILE is required")
    golden = Path(settings.golden_pairs)
    if not golden.is_file():
        log(f"error: golden pairs not found: {golden}")
        return 1
    if not 0.0 <= settings.tool_ratio <= 1.0 or not 0.0 <= settings.dev_fraction < 1.0:
        raise SystemExit("--tool-ratio must be in [0, 1] and --dev-fraction in [0, 1)")
    require_inputs(Settings.stage, [golden])
    folders = database_folders(settings)
    out = Path(settings.output_dir)
    check_replaceable(out, Settings.stage)  # fail before the long part, not after it
    unit, tokenizer_name, measure = load_length_measure(settings.tokenizer)  # fail before the long part

    lines_read, pairs, problems = read_golden_pairs(golden)
    if settings.limit:
        pairs = pairs[: settings.limit]
    work, missing = plan_work(pairs, folders, str(golden))
    problems += missing
    options = WorkOptions(str(golden), settings.tool_calling, settings.tool_ratio, settings.seed, settings.timeout_s,
                          settings.values_per_column, settings.schema_max_chars, settings.trim_schema_to_query)
    if settings.engine == "ray":
        from pipesql.generate.ray_engine import run_work_on_ray

        results, workers = run_work_on_ray(work, options, out, settings.workers, settings.shard_pairs, settings.progress)
    else:
        workers = settings.workers or usable_cores()
        results = run_work(work, options, workers, sum(len(w.pairs) for w in work), settings.progress)
    generated_at = time.monotonic()

    samples_by_line, problems, notes = gather(results, problems)
    used_pairs = [p for p in pairs if p.line in samples_by_line]
    split_of = assign_splits(used_pairs, settings.dev_fraction, settings.seed)
    train: list[dict] = []
    dev: list[dict] = []
    for pair in used_pairs:  # file order
        (dev if split_of[pair.question_id] == DEV else train).extend(samples_by_line[pair.line])
    lengths = {TRAIN: measure(train), DEV: measure(dev)}
    stats = build_stats(settings, lines_read, pairs, problems, notes, split_of, train, dev, lengths, unit, tokenizer_name)

    with staged_folder(out, Settings.stage) as staging:  # the outputs appear together or not at all
        outputs = write_outputs(staging, train, dev, stats, problems + notes, lengths, unit, settings.cut_off_tokens)
        seconds = time.monotonic() - started
        write_manifest(staging, Settings.stage, settings, inputs=[golden], outputs=outputs, metrics={
            "samples": stats["samples"]["total"], "train_samples": len(train), "dev_samples": len(dev),
            "pairs_used": stats["pairs"]["used"], "dropped_prefix": stats["pairs"]["dropped_prefix"],
            "seconds": round(seconds, 2), "generation_seconds": round(generated_at - started, 2), "workers": workers})
    log(f"generate: {stats['pairs']['used']} of {lines_read} pairs used; {len(train)} train + {len(dev)} dev samples "
        f"({stats['samples']['by_kind']}); {stats['pairs']['dropped_prefix']} dropped by a failing prefix; "
        f"{stats['samples_per_pair']['mean']} samples per pair; {seconds:.1f} s -> {out}")
    log_lengths(stats["length_by_kind"], stats["length_unit"], settings.cut_off_tokens)
    return 0 if train or dev else 1
