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

Scoring runs in worker processes (:class:`RewardPool`), so one completion that hangs the
transpiler or the database costs that completion 0 and never the run: a batch has a wall-clock
deadline, late completions score 0 with status ``timeout`` and the pool is replaced.
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
from pipesql.evaluate.scoring import MATCH, Limits, score, transpile

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
    """A pipe query (``FROM`` or ``WITH`` first: not a write, not plain ``SELECT``) that transpiles."""
    if not _starts_with(query, ("FROM", "WITH")):
        return False
    try:
        transpile(query)
    except Exception:  # sqlglot raises several unrelated types on bad input
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
    try:
        query, well_formed = query_of(completion)
        target = completion.target
        item = Item(question_id=target.question_id, db_id="", question=None, gold_sql=target.gold_sql,
                    db_path=target.db_path)
        result = score(item, query, limits=limits)
    except Exception as error:  # a bug here must cost one completion, not the run
        return Reward(WORKER_ERROR, 0.0, 0.0, f"{type(error).__name__}: {error}")
    return Reward(result.status, 1.0 if result.status == MATCH else 0.0, 1.0 if well_formed else 0.0,
                  result.detail)


def _score_in_worker(completion: Completion, limits: Limits) -> Reward:
    return score_completion(completion, limits)


class RewardPool:
    """Score completions in ``workers`` processes (0: in this process, one after another).

    Workers are started with ``forkserver`` (``spawn`` where that is missing), never ``fork``: the
    training process holds threads (torch) that a forked child must not inherit. ``deadline_s``
    bounds one completion's scoring; a batch waits at most that times its share per worker."""

    def __init__(self, workers: int = 2, limits: Limits = Limits(timeout_s=5.0), deadline_s: float = 30.0):
        self.workers = max(0, workers)
        self.limits = limits
        self.deadline_s = deadline_s
        self._pool = None

    def _start(self):
        if self._pool is None:
            methods = multiprocessing.get_all_start_methods()
            context = multiprocessing.get_context("forkserver" if "forkserver" in methods else "spawn")
            self._pool = context.Pool(self.workers)
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

    def score(self, completions: Sequence[Completion]) -> list[Reward]:
        if not completions:
            return []
        if self.workers == 0:
            return [score_completion(c, self.limits) for c in completions]
        pool = self._start()
        pending = [pool.apply_async(_score_in_worker, (c, self.limits)) for c in completions]
        rounds = math.ceil(len(completions) / self.workers)
        deadline = time.monotonic() + self.deadline_s * rounds
        rewards, late = [], False
        for result in pending:
            try:
                rewards.append(result.get(timeout=max(0.0, deadline - time.monotonic())))
            except multiprocessing.TimeoutError:
                late = True
                rewards.append(Reward(TIMEOUT, 0.0, 0.0, f"not scored within {self.deadline_s:g} s"))
            except Exception as error:  # the worker raised while (un)pickling
                rewards.append(Reward(WORKER_ERROR, 0.0, 0.0, f"{type(error).__name__}: {error}"))
        if late:
            self.close()  # a worker may still be stuck on the late completion: start fresh ones
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
