"""The GRPO reward: execution match, scored exactly as ``pipesql evaluate`` scores, plus a small
format reward.

A completion is read as evaluation reads an answer (:mod:`pipesql.evaluate.answers`): the whole
query in one-shot mode, one operator appended to the query so far in step mode. The query is
then scored by :func:`pipesql.evaluate.scoring.score` against the target's gold SQL (transpiled
to SQLite, run read-only under :mod:`pipesql.sql.execute`'s time limit and row cap, compared
tie-aware), so a reward of 1 means what a match means in an evaluation report.

``reward = match + format_weight * well_formed``, where well-formed is:

- one-shot: the answer is a pipe query (``FROM`` or ``WITH`` first) that transpiles to SQLite;
- step: the answer is exactly one operator (``FROM``/``WITH`` first, ``|>`` later) or the end
  marker, the query so far plus it parses, and the model stopped by itself (its last token is an
  end-of-sequence token, not the length limit).

Scoring runs in worker processes (:class:`RewardPool`), one task per group of completions that
share a prompt, so the gold query runs once per group. A completion that hangs the transpiler or
the database costs 0 and never the run: a batch has a wall-clock deadline, completions not
scored by then get 0 with status ``timeout`` and the workers are replaced.
"""

from __future__ import annotations

import math
import multiprocessing
import time
from dataclasses import dataclass
from typing import Any, Iterable, Sequence

from pipesql.agent.prompts import END_MARKER, OPERATOR_SEPARATOR
from pipesql.corpora.items import Item
from pipesql.evaluate.answers import extract_query, parse_step
from pipesql.evaluate.scoring import MATCH, Limits, score_many, transpile

ONESHOT, STEP = "oneshot", "step"
PROMPT_FORMATS = (ONESHOT, STEP)
# Statuses beyond evaluate's: the completion's scoring ran past the deadline, or its worker died.
TIMEOUT = "timeout"
WORKER_ERROR = "worker_error"


@dataclass(frozen=True)
class Target:
    """What one prompt asks for: the gold SQL (SQLite) the answer must match on ``db_path``,
    and in step mode the pipe query so far that the answer continues."""

    question_id: str
    db_path: str
    gold_sql: str
    prefix: str = ""


@dataclass(frozen=True)
class Completion:
    """One sampled answer to score. ``stopped``: generation ended with an end-of-sequence token."""

    target: Target
    text: str
    prompt_format: str = ONESHOT
    stopped: bool = True


@dataclass(frozen=True)
class Reward:
    status: str  # evaluate's status (match, mismatch, exec_error, ...) or timeout / worker_error
    match: float
    well_formed: float
    detail: str = ""

    def total(self, format_weight: float) -> float:
        return self.match + format_weight * self.well_formed


def _starts_with(text: str, keywords: tuple[str, ...]) -> bool:
    words = text.split(None, 1)
    return bool(words) and words[0].upper() in keywords


def is_pipe_query(query: str) -> bool:
    """A pipe query (``FROM`` or ``WITH`` first, not plain ``SELECT``) that transpiles to one
    read-only query: ``WITH x AS (SELECT 1) DELETE ...`` starts like one and is a write."""
    from pipesql.sql.execute import require_query

    if not _starts_with(query, ("FROM", "WITH")):
        return False
    try:
        require_query(transpile(query))
    except Exception:  # QueryRefused, and the several unrelated types sqlglot raises on bad input
        return False
    return True


def _is_one_operator(operator: str, first: bool) -> bool:
    from pipesql.decompile import split_operators

    try:
        parts = [p for p in split_operators(operator) if p.strip()]
    except Exception:
        return False
    starts_right = _starts_with(operator, ("FROM", "WITH")) if first else operator.lstrip().startswith("|>")
    return len(parts) == 1 and starts_right


def query_of(completion: Completion) -> tuple[str, bool]:
    """``(the query to score, whether the answer is well-formed)``."""
    if completion.prompt_format == ONESHOT:
        query = extract_query(completion.text)
        return query, is_pipe_query(query)
    prefix = completion.target.prefix
    step = parse_step(completion.text)
    if step.operator is None:
        # The end marker alone: the query so far is the answer (well-formed once there is one).
        return prefix, step.finished and bool(prefix) and completion.stopped
    query = OPERATOR_SEPARATOR.join(p for p in (prefix, step.operator) if p)
    well_formed = (completion.stopped and completion.text.strip() != ""
                   and _is_one_operator(step.operator, first=not prefix) and is_pipe_query(query))
    return query, well_formed


def score_completion(completion: Completion, limits: Limits) -> Reward:
    """The reward of one completion; never raises (every failure is a status scoring 0)."""
    return score_group([completion], limits)[0]


def score_group(completions: Sequence[Completion], limits: Limits) -> list[Reward]:
    """The rewards of completions that share one target (a GRPO group): each is scored as it
    would be alone, by evaluate's :func:`~pipesql.evaluate.scoring.score_many`, which opens the
    database and runs the gold query once for the group. Never raises."""
    try:
        read = [query_of(c) for c in completions]
        target = completions[0].target
        item = Item(question_id=target.question_id, db_id="", question=None, gold_sql=target.gold_sql,
                    db_path=target.db_path)
        results = score_many(item, [query for query, _ in read], limits=limits)
    except Exception as error:  # a bug here must cost these completions, not the run
        return [Reward(WORKER_ERROR, 0.0, 0.0, f"{type(error).__name__}: {error}") for _ in completions]
    return [Reward(result.status, 1.0 if result.status == MATCH else 0.0, 1.0 if well_formed else 0.0, result.detail)
            for result, (_, well_formed) in zip(results, read)]


def group_by_target(completions: Sequence[Completion]) -> list[list[int]]:
    """Indices of ``completions`` grouped by target, groups in order of first appearance."""
    groups: dict[Target, list[int]] = {}
    for index, completion in enumerate(completions):
        groups.setdefault(completion.target, []).append(index)
    return list(groups.values())


def _warm_up() -> None:
    """Worker start-up: pay the imports and sqlglot's first-call costs before the first batch."""
    transpile("FROM t\n|> WHERE x > 1\n|> SELECT x")


def _warm_up_done(_: int) -> bool:
    return True


class RewardPool:
    """Score completions in ``workers`` processes (0: in this process, one group after another).

    One task is one group of completions with the same target. Workers are started with
    ``forkserver`` (``spawn`` where that is missing), never ``fork``: the training process holds
    threads (torch) that a forked child must not inherit. ``deadline_s`` bounds the scoring of
    one completion: a batch waits at most that times its completions per worker, then every
    completion not yet scored gets 0 (``timeout``) and the workers are replaced."""

    def __init__(self, workers: int = 2, limits: Limits = Limits(timeout_s=5.0), deadline_s: float = 30.0):
        self.workers = max(0, workers)
        self.limits = limits
        self.deadline_s = deadline_s
        self._pool = None

    def _start(self):
        if self._pool is None:
            methods = multiprocessing.get_all_start_methods()
            context = multiprocessing.get_context("forkserver" if "forkserver" in methods else "spawn")
            self._pool = context.Pool(self.workers, initializer=_warm_up)
            # Wait for the workers to be up, so their start-up is not taken from a batch's deadline.
            self._pool.map(_warm_up_done, range(self.workers), chunksize=1)
        return self._pool

    def close(self) -> None:
        if self._pool is not None:
            self._pool.terminate()
            self._pool.join()
            self._pool = None

    def __enter__(self) -> "RewardPool":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _score_here(self, completions: Sequence[Completion], groups: list[list[int]]) -> list[Reward]:
        """Scoring in this process, under the same deadline as the workers': each query is
        killed at its time limit (:mod:`pipesql.sql.isolated`), and a group not started by the
        batch's deadline gets 0 (``timeout``)."""
        rewards: list[Reward] = [Reward(TIMEOUT, 0.0, 0.0, f"not scored within {self.deadline_s:g} s")] * len(completions)
        deadline = time.monotonic() + self.deadline_s * len(completions)
        for group in groups:
            if time.monotonic() >= deadline:
                break
            for index, reward in zip(group, score_group([completions[i] for i in group], self.limits)):
                rewards[index] = reward
        return rewards

    def score(self, completions: Sequence[Completion]) -> list[Reward]:
        groups = group_by_target(completions)
        rewards: list[Reward | None] = [None] * len(completions)
        if self.workers == 0:
            return self._score_here(completions, groups)
        if not completions:
            return []
        pool = self._start()
        pending = [(group, pool.apply_async(score_group, ([completions[i] for i in group], self.limits)))
                   for group in groups]
        deadline = time.monotonic() + self.deadline_s * math.ceil(len(completions) / self.workers)
        late = False
        for group, result in pending:
            try:
                scored = result.get(timeout=max(0.0, deadline - time.monotonic()))
            except multiprocessing.TimeoutError:
                late = True
                scored = [Reward(TIMEOUT, 0.0, 0.0, f"not scored within {self.deadline_s:g} s")] * len(group)
            except Exception as error:  # the worker died or could not (un)pickle
                scored = [Reward(WORKER_ERROR, 0.0, 0.0, f"{type(error).__name__}: {error}")] * len(group)
            for index, reward in zip(group, scored):
                rewards[index] = reward
        if late:
            self.close()  # a worker may still be stuck on a late group: start fresh ones
        return rewards


def completion_text(completion: Any) -> str:
    """TRL hands completions as text or, for chat prompts, as a list of messages."""
    if isinstance(completion, str):
        return completion
    return "".join(m.get("content") or "" for m in completion if m.get("role") == "assistant")


class ExecutionReward:
    """The reward function TRL's GRPOTrainer calls: one float per completion. The dataset's
    ``question_id``, ``db_path``, ``gold_sql`` and ``prefix`` columns arrive as keyword lists.
    The match rate, format rate and statuses are logged beside TRL's own reward metrics."""

    def __init__(self, pool: RewardPool, prompt_format: str, format_weight: float,
                 eos_token_ids: Iterable[int] = ()):
        if prompt_format not in PROMPT_FORMATS:
            raise ValueError(f"unknown prompt format {prompt_format!r}; choose from {PROMPT_FORMATS}")
        self.__name__ = "execution_reward"  # what TRL names its reward metrics after
        self.pool = pool
        self.prompt_format = prompt_format
        self.format_weight = format_weight
        self.eos_token_ids = set(eos_token_ids)
        self.status_counts: dict[str, int] = {}

    def _stopped(self, ids: Sequence[int] | None) -> bool:
        if ids is None or not self.eos_token_ids:
            return True
        return len(ids) > 0 and int(ids[-1]) in self.eos_token_ids

    def __call__(self, prompts, completions, completion_ids=None, *, question_id, db_path, gold_sql,
                 prefix=None, log_metric=None, **_: Any) -> list[float]:
        prefixes = prefix or [""] * len(completions)
        ids = completion_ids or [None] * len(completions)
        batch = [Completion(Target(str(q), str(d), g, p or ""), completion_text(c), self.prompt_format,
                            self._stopped(i))
                 for q, d, g, p, c, i in zip(question_id, db_path, gold_sql, prefixes, completions, ids)]
        rewards = self.pool.score(batch)
        for reward in rewards:
            self.status_counts[reward.status] = self.status_counts.get(reward.status, 0) + 1
        if log_metric is not None and rewards:
            log_metric("execution_match", sum(r.match for r in rewards) / len(rewards))
            log_metric("well_formed", sum(r.well_formed for r in rewards) / len(rewards))
        return [r.total(self.format_weight) for r in rewards]
