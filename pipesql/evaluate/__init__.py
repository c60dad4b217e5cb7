"""``pipesql evaluate``: execution accuracy of a model on Spider, BIRD or the demo corpus.

For each question the model writes pipe SQL (one-shot, or one operator at a time as an agent,
see :mod:`pipesql.evaluate.predict`); the query is transpiled to SQLite, run read-only and its
result compared with the gold query's (:mod:`pipesql.evaluate.scoring`).

Writes to ``--out``:

- ``eval_results.jsonl``: one record per question (status, detail, prediction, trajectory, timings);
- ``eval_summary.json``: accuracy overall and by difficulty, status counts, throughput;
- ``eval_chart.png``: accuracy by difficulty and the outcome of each difficulty's questions;
- ``manifest.json``.

Python API: ``run(settings, backend=...)`` evaluates with any :class:`pipesql.models.backends.Backend`
(e.g. a :class:`~pipesql.models.backends.ScriptedBackend` to score given predictions).
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar, Sequence

from pipesql.corpora.items import BENCHMARKS, SPLITS, BenchmarkError, Item, load_items
from pipesql.evaluate.next_operator import next_operator_accuracy, step_samples
from pipesql.evaluate.predict import GenerationOptions, Prediction, predict_agent, predict_oneshot
from pipesql.evaluate.report import plot_summary, summarize
from pipesql.evaluate.scoring import GOLD_ERROR, NO_PREDICTION, STATUSES, Limits, Score, score
from pipesql.storage.files import write_json, write_jsonl
from pipesql.models.backends import Backend, BackendSettings, load_backend
from pipesql.models.registry import describe_model
from pipesql.progress import progress_bar
from pipesql.config.settings import option

log = logging.getLogger(__name__)

MODES = ("oneshot", "agent")
RESULTS_NAME = "eval_results.jsonl"
SUMMARY_NAME = "eval_summary.json"
CHART_NAME = "eval_chart.png"

__all__ = ["Settings", "run", "evaluate_items", "MODES", "STATUSES"]


@dataclass
class Settings(BackendSettings, GenerationOptions):
    """What to evaluate and where the outputs go. How answers are generated is
    :class:`~pipesql.evaluate.predict.GenerationOptions` and how the model runs
    :class:`~pipesql.models.backends.BackendSettings`, both inherited with their defaults."""

    stage: ClassVar[str] = "evaluate"

    model: str = option("", "Model directory (a merged fine-tune) or registry name (tiny, smollm2-135m).")
    benchmark: str = option("demo", "Benchmark to evaluate on.", choices=BENCHMARKS)
    data_dir: Path | None = option(None, "Benchmark folder (Spider/BIRD layout); demo builds its own when unset.")
    split: str = option("dev", "Benchmark split.", choices=SPLITS)
    mode: str = option("oneshot", "oneshot: the whole query in one answer; agent: one operator per step, "
                                  "checked with the agent tools.", choices=MODES)
    limit: int | None = option(None, "Evaluate only the first N questions.")
    out: Path = option(Path("out/evaluate"), "Output folder.")
    row_cap: int = option(100_000, "Most rows read from one query result.")
    variants: int = option(8, "Test-suite accuracy: a match counts only if it also agrees with the gold on this "
                              "many generated variants of the database (those validate builds); 0: off.")
    predictions: Path | None = option(None, "Score the predictions in this JSONL file (question_id and pipe or "
                                      "standard SQL under sql) instead of a model's; --model is then not needed.")
    trajectories: Path | None = option(None, "Also score next-operator accuracy on the step samples of this "
                                       "training-data file (dev.jsonl of pipesql generate).")
    trajectory_limit: int | None = option(None, "Score only the first N of those step samples.")


def _progress(total: int, description: str, **options: Any):
    return progress_bar(total, description, "q", **options)


def _predict_with_progress(items: Sequence[Item], schemas: Sequence[str], backend: Backend,
                           settings: Settings) -> list[Prediction]:
    """One-shot: the bar counts answers as they finish. Agent: questions finish together in the
    last rounds, so the bar counts finished questions without an ETA (it would extrapolate
    from the first early finisher) and shows the model answers so far, which move each step."""
    if settings.mode != "agent":
        with _progress(len(items), "oneshot generation") as bar:
            return predict_oneshot(items, schemas, backend, settings, bar.update)
    answers = 0
    with _progress(len(items), "agent generation",
                   bar_format="{desc}: {n_fmt}/{total_fmt} questions finished [{elapsed}{postfix}]") as bar:
        def on_answer(count: int) -> None:
            nonlocal answers
            answers += count
            bar.set_postfix_str(f"{answers} model answers", refresh=False)
            bar.update(0)  # redraws when mininterval allows

        return predict_agent(items, schemas, backend, settings, bar.update, on_answer)


def _schemas(items: Sequence[Item]) -> tuple[list[str | None], dict[str, str]]:
    """Prompt schema per item; malformed items and items whose database cannot be read get
    ``None`` and an error."""
    from pipesql.agent.schema_text import schema_text
    from pipesql.sql.execute import DatabaseError

    schemas: list[str | None] = []
    errors: dict[str, str] = {}
    for item in items:
        if item.problem is not None:  # a malformed benchmark entry: a gold error, named
            schemas.append(None)
            errors[item.question_id] = item.problem
            continue
        try:
            schemas.append(schema_text(item.db_path))
        except DatabaseError as error:
            schemas.append(None)
            errors[item.question_id] = f"{item.question_id} ({item.db_id}): {error}"
    return schemas, errors


def _record(item: Item, prediction: Prediction | None, result: Score) -> dict[str, Any]:
    record: dict[str, Any] = {
        "question_id": item.question_id,
        "db_id": item.db_id,
        "difficulty": item.difficulty,
        "question": item.question,
        "gold_sql": item.gold_sql,
        "prediction": prediction.query if prediction else None,
        "prediction_sqlite": result.sqlite_sql,
        "status": result.status,
        "detail": result.detail,
        "test_suite": result.test_suite,
        "timings": {"generate_s": round(prediction.generate_s, 4) if prediction else 0.0,
                    **{k: round(v, 4) for k, v in result.timings.items()}},
    }
    if result.test_suite_detail:
        record["test_suite_detail"] = result.test_suite_detail
    if prediction is not None:
        record["completion_tokens"] = prediction.completion_tokens
        if prediction.answer is not None:
            record["answer"] = prediction.answer
        if prediction.steps is not None:
            record["steps"] = prediction.steps
            record["tool_calls"] = prediction.tool_calls
            record["finish"] = prediction.finish
    return record


def evaluate_items(items: Sequence[Item], backend: Backend, settings: Settings) -> tuple[list[dict[str, Any]], float]:
    """Predict and score ``items``; returns the records (in item order) and generation seconds."""
    schemas, schema_errors = _schemas(items)
    for message in schema_errors.values():
        log.error("skipping generation: %s", message)
    usable = [i for i, s in enumerate(schemas) if s is not None]
    started = time.monotonic()
    predictions = _predict_with_progress([items[i] for i in usable], [schemas[i] for i in usable], backend, settings)
    generation_seconds = time.monotonic() - started
    by_index: dict[int, Prediction] = dict(zip(usable, predictions))

    return score_items(items, by_index, schema_errors, settings), generation_seconds


def _limits(settings: Settings) -> Limits:
    return Limits(timeout_s=settings.timeout_s, row_cap=settings.row_cap, variants=max(0, settings.variants),
                  standard_sql=settings.predictions is not None)


def score_items(items: Sequence[Item], by_index: dict[int, Prediction], errors: dict[str, str],
                settings: Settings) -> list[dict[str, Any]]:
    """The records of ``items``; an item without a prediction is a gold error when ``errors``
    names it, else ``no_prediction``."""
    limits = _limits(settings)
    records = []
    with _progress(len(items), "scoring") as bar:
        for index, item in enumerate(items):
            prediction = by_index.get(index)
            if prediction is not None:
                result = score(item, prediction.query, limits=limits)
            elif item.question_id in errors:
                result = Score(GOLD_ERROR, errors[item.question_id])
            else:
                result = Score(NO_PREDICTION, "no prediction for this question")
            records.append(_record(item, prediction, result))
            bar.update(1)
    return records


def score_prediction_file(items: Sequence[Item], settings: Settings) -> list[dict[str, Any]]:
    """Score the predictions of ``settings.predictions`` (made elsewhere); bad lines are logged,
    naming the line, and the rest is scored."""
    from pipesql.evaluate.predictions import read_predictions

    read = read_predictions(settings.predictions, {item.question_id for item in items})
    for problem in read.problems:
        log.error("skipping prediction line: %s", problem)
    by_index = {index: Prediction(read.queries[item.question_id]) for index, item in enumerate(items)
                if item.question_id in read.queries}
    log.info("scoring %d predictions from %s (%d bad lines)", len(by_index), settings.predictions, len(read.problems))
    errors = {item.question_id: item.problem for item in items if item.problem is not None}
    return score_items(items, by_index, errors, settings)


def run(settings: Settings, *, backend: Backend | None = None) -> int:
    """Evaluate and write the outputs. ``backend`` overrides loading ``settings.model``."""
    from pipesql.storage.files import check_replaceable
    from pipesql.storage.manifest import require_inputs

    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    if backend is None and not settings.model and settings.predictions is None:
        raise SystemExit("pipesql evaluate: --model is required (a directory or a registry name), "
                         "or --predictions FILE")
    if settings.predictions is not None and not Path(settings.predictions).is_file():
        raise SystemExit(f"pipesql evaluate: predictions file not found: {settings.predictions}")
    if settings.benchmark != "demo" and settings.data_dir is None:
        raise SystemExit(f"pipesql evaluate: --data-dir is required for --benchmark {settings.benchmark}")
    started = time.monotonic()
    try:
        items = load_items(settings.benchmark, settings.data_dir, settings.split, settings.limit)
    except BenchmarkError as error:
        raise SystemExit(f"pipesql evaluate: {error}") from None
    if not items:
        raise SystemExit(f"pipesql evaluate: no questions in {settings.benchmark} {settings.split}")
    check_replaceable(settings.out, "evaluate")  # before the long part, not after it
    require_inputs("evaluate", [settings.trajectories])
    if settings.predictions is not None:
        return _write_outputs(settings, score_prediction_file(items, settings), started, 0.0,
                              {"model": f"predictions {Path(settings.predictions).name}",
                               "model_description": str(settings.predictions), "backend": "predictions file"})
    if backend is None:
        require_inputs("evaluate", [settings.model])  # a model folder a stage wrote must match its manifest
        backend = load_backend(settings.model, settings.backend, device=settings.device, dtype=settings.dtype,
                               batch_size=settings.batch_size, gpu_memory_utilization=settings.gpu_memory_utilization,
                               prefix_cache=settings.prefix_cache)
    log.info("evaluating %s on %d %s %s questions (%s)", backend.name, len(items), settings.benchmark,
             settings.split, settings.mode)

    records, generation_seconds = evaluate_items(items, backend, settings)
    return _write_outputs(settings, records, started, generation_seconds, {
        "model": backend.name, "model_description": describe_model(settings.model or backend.name),
        "backend": type(backend).__name__}, backend)


def _write_outputs(settings: Settings, records: list[dict[str, Any]], started: float, generation_seconds: float,
                   model: dict[str, Any], backend: Backend | None = None) -> int:
    from pipesql.storage.files import staged_folder
    from pipesql.storage.manifest import write_manifest

    seconds = time.monotonic() - started
    out = Path(settings.out)
    summary = summarize(records, seconds=seconds, generation_seconds=generation_seconds, context={
        **model, "mode": settings.mode if settings.predictions is None else "predictions",
        "benchmark": settings.benchmark, "split": settings.split, "limit": settings.limit,
        "variants": max(0, settings.variants),
    })
    if settings.trajectories and backend is not None:
        summary["next_operator"] = next_operator_accuracy(
            step_samples(settings.trajectories, settings.trajectory_limit), backend,
            max_new_tokens=settings.step_max_new_tokens, batch_size=settings.batch_size)
        steps = summary["next_operator"]
        log.info("next operator on %d dev steps: %.1f%% exact, %.1f%% right kind, %.1f%% parse, %.1f%% end markers",
                 steps["samples"], 100 * steps["exact"], 100 * steps["kind"], 100 * steps["parses"],
                 100 * steps["end_marker"])
    with staged_folder(out, "evaluate") as staging:  # the outputs appear together or not at all
        results_path, summary_path, chart_path = staging / RESULTS_NAME, staging / SUMMARY_NAME, staging / CHART_NAME
        write_jsonl(results_path, records)
        write_json(summary_path, summary)
        plot_summary(summary, chart_path)
        inputs = [p for p in (settings.data_dir, Path(settings.model) if settings.model else None, settings.predictions)
                  if p and Path(p).exists()]
        write_manifest(staging, "evaluate", settings, inputs=inputs, outputs=[results_path, summary_path, chart_path],
                       metrics={k: summary[k] for k in ("questions", "matches", "execution_accuracy",
                                                        "test_suite_matches", "test_suite_accuracy", "status_counts",
                                                        "answers_parse", "seconds", "questions_per_s", "next_operator")
                                if k in summary})
    log.info("execution accuracy %.1f%% (%d/%d), test-suite accuracy %s in %.1f s; %s",
             100 * summary["execution_accuracy"], summary["matches"], summary["questions"],
             "off" if summary["test_suite_accuracy"] is None else f"{100 * summary['test_suite_accuracy']:.1f}% "
             f"({summary['test_suite_matches']}/{summary['questions']}, {summary['variants']} variants)", seconds,
             ", ".join(f"{k} {v}" for k, v in summary["status_counts"].items() if v))
    return 0
