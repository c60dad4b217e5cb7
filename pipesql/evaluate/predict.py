"""Predictions for a list of benchmark items: one-shot, or step by step as an agent.

Both modes build their prompts with :mod:`pipesql.agent.prompts` and :func:`pipesql.agent.schema_text.schema_text`,
the functions the training data was made with, and generate for many questions at once.

**One-shot**: ``ONESHOT_SYSTEM_PROMPT`` + ``oneshot_user_message``; the answer is the whole query.

**Agent**: the step protocol of the training data. Each round asks every unfinished question for
its next operator (``STEP_SYSTEM_PROMPT`` + ``step_user_message`` with the query so far). The new
prefix is checked with the shared agent tools (:class:`pipesql.agent.tools.Toolbox`, by default
``execute_pipe_sql``, whose output is the prefix's columns and first rows). A prefix the tool
rejects is not kept: the step is asked again, sampling (``retry_temperature``) so that a
different candidate can come out, at most ``max_retries`` times. A question ends at the end
marker, after ``max_steps`` operators, or when its retries run out; its prediction is then the
last prefix the tool accepted (or, if none was, the last candidate, so its failure is scored).
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Sequence

from pipesql.agent import prompts
from pipesql.config.settings import option
from pipesql.corpora.items import Item
from pipesql.evaluate.answers import extract_query, parse_step
from pipesql.models.backends import Backend, Chat, Completion, SamplingParams

CHECK_TOOLS = ("execute_pipe_sql", "validate_pipe_sql")

# A step answer is one line (no operator the decompiler writes spans two); a blank line means the
# model has gone on past its answer, mostly into a made-up next prompt, so generation stops there
# instead of running to the token limit. A fenced answer has no blank line, so it stays whole.
STEP_STOP = ("\n\n",)

# Why an agent stopped.
FINISH_END_MARKER = "end_marker"
FINISH_STEP_LIMIT = "step_limit"
FINISH_RETRIES = "retries_exhausted"


@dataclass
class GenerationOptions:
    """How answers are generated and, for the agent, checked. ``pipesql evaluate``'s settings
    extend it, so the stage hands its settings to :func:`predict_oneshot` / :func:`predict_agent`
    as they are."""

    batch_size: int = option(16, "Questions per generate call (transformers: per forward pass).")
    max_new_tokens: int = option(384, "Longest one-shot answer, in tokens.")
    step_max_new_tokens: int = option(128, "Longest agent step answer, in tokens.")
    temperature: float = option(0.0, "Sampling temperature; 0 is greedy decoding.")
    max_steps: int = option(12, "Agent: most operators per query.")
    max_retries: int = option(2, "Agent: new candidates sampled for a step the tools rejected.")
    retry_temperature: float = option(0.7, "Agent: sampling temperature of those retries.")
    check_tool: str = option("execute_pipe_sql", "Agent: the tool that checks each new prefix.", choices=CHECK_TOOLS)
    seed: int = option(0, "Seed for sampled generations.")
    timeout_s: float = option(30.0, "Time limit of one SQL query (the agent's tools, and scoring), in seconds.")


@dataclass
class Prediction:
    query: str  # the pipe query to score ("" when the model gave none)
    answer: str | None = None  # one-shot: the model's raw answer
    generate_s: float = 0.0  # this question's share of the batched generation time
    completion_tokens: int = 0
    steps: list[dict[str, Any]] | None = None  # agent: one entry per model call
    tool_calls: int = 0
    finish: str | None = None


Progress = Callable[[int], None]


def _no_progress(_: int) -> None:
    return None


def complete_in_batches(backend: Backend, chats: Sequence[Chat], params: SamplingParams, batch_size: int,
                        progress: Progress = _no_progress) -> tuple[list[Completion], list[float]]:
    """Completions for ``chats`` generated ``batch_size`` at a time, with each chat's share of
    its batch's wall time. ``progress`` is told of each answer as the backend finishes it."""
    completions: list[Completion] = []
    shares: list[float] = []
    batch_size = max(1, batch_size)
    for start in range(0, len(chats), batch_size):
        batch = chats[start:start + batch_size]
        began = time.monotonic()
        results = backend.complete(batch, params, on_finished=progress)
        if len(results) != len(batch):
            raise RuntimeError(f"backend {backend.name!r} returned {len(results)} completions for {len(batch)} chats")
        elapsed = time.monotonic() - began
        completions.extend(results)
        shares.extend([elapsed / len(batch)] * len(batch))
    return completions, shares


def oneshot_chat(item: Item, schema: str) -> Chat:
    return Chat.of([
        {"role": "system", "content": prompts.ONESHOT_SYSTEM_PROMPT},
        {"role": "user", "content": prompts.oneshot_user_message(item.question or "", schema, item.evidence)},
    ])


def step_chat(item: Item, schema: str, query_so_far: str) -> Chat:
    return Chat.of([
        {"role": "system", "content": prompts.STEP_SYSTEM_PROMPT},
        {"role": "user", "content": prompts.step_user_message(item.question or "", schema, query_so_far, item.evidence)},
    ])


def predict_oneshot(items: Sequence[Item], schemas: Sequence[str], backend: Backend, options: GenerationOptions,
                    progress: Progress = _no_progress) -> list[Prediction]:
    params = SamplingParams(max_new_tokens=options.max_new_tokens, temperature=options.temperature,
                            seed=options.seed if options.temperature > 0 else None)
    chats = [oneshot_chat(item, schema) for item, schema in zip(items, schemas)]
    completions, shares = complete_in_batches(backend, chats, params, options.batch_size, progress)
    return [
        Prediction(query=extract_query(c.text), answer=c.text, generate_s=share, completion_tokens=c.completion_tokens)
        for c, share in zip(completions, shares)
    ]


@dataclass
class _AgentState:
    item: Item
    schema: str
    toolbox: Any
    operators: list[str] = field(default_factory=list)
    steps: list[dict[str, Any]] = field(default_factory=list)
    attempt: int = 0  # failed tries at the current step
    last_candidate: str = ""
    finish: str | None = None
    generate_s: float = 0.0
    completion_tokens: int = 0
    tool_calls: int = 0

    @property
    def query(self) -> str:
        return "\n".join(self.operators)

    def prediction(self) -> Prediction:
        return Prediction(query=self.query or self.last_candidate, generate_s=self.generate_s,
                          completion_tokens=self.completion_tokens, steps=self.steps,
                          tool_calls=self.tool_calls, finish=self.finish)


def _check(state: _AgentState, candidate: str, tool: str) -> tuple[bool, str]:
    output = state.toolbox.call(tool, {"sql": candidate})
    state.tool_calls += 1
    return not output.startswith("Error:"), output


def _advance(state: _AgentState, completion: Completion, options: GenerationOptions) -> None:
    """Apply one step answer to an agent's state."""
    step = parse_step(completion.text)
    record: dict[str, Any] = {"step": len(state.operators) + 1, "attempt": state.attempt,
                              "answer": completion.text, "operator": step.operator, "finished": step.finished}
    state.steps.append(record)
    if step.operator is None and step.finished:
        if state.operators:
            state.finish = FINISH_END_MARKER
            return
        # No query answers a question, so an end marker before the first operator is a rejected
        # step like any other (a barely trained model otherwise stops at once, every time).
        record["rejected"] = "end marker before any operator"
    accepted = False
    if step.operator is not None:
        candidate = "\n".join([*state.operators, step.operator])
        state.last_candidate = candidate
        # The answer is kept whole: the tools bound it (pipesql.agent.tools), as the tool chats show it.
        ok, output = _check(state, candidate, options.check_tool)
        record["tool"] = {"name": options.check_tool, "arguments": {"sql": candidate}, "ok": ok, "output": output}
        accepted = ok
    record["accepted"] = accepted
    if accepted:
        state.operators.append(step.operator)
        state.attempt = 0
        if step.finished:
            state.finish = FINISH_END_MARKER
        elif len(state.operators) >= options.max_steps:
            state.finish = FINISH_STEP_LIMIT
        return
    state.attempt += 1
    if state.attempt > options.max_retries:
        state.finish = FINISH_RETRIES


def predict_agent(items: Sequence[Item], schemas: Sequence[str], backend: Backend, options: GenerationOptions,
                  progress: Progress = _no_progress, on_answer: Progress = _no_progress) -> list[Prediction]:
    """``progress``: questions finished; ``on_answer``: model answers (steps) finished, which is
    what moves while every question is still being built."""
    from pipesql.agent.tools import Toolbox

    if options.check_tool not in CHECK_TOOLS:
        raise ValueError(f"unknown check tool {options.check_tool!r}; choose from {CHECK_TOOLS}")
    toolboxes: dict[Path, Toolbox] = {}
    states = []
    for item, schema in zip(items, schemas):
        if item.db_path not in toolboxes:
            toolboxes[item.db_path] = Toolbox(item.db_path, timeout_s=options.timeout_s)
        states.append(_AgentState(item, schema, toolboxes[item.db_path]))
    greedy = SamplingParams(max_new_tokens=options.step_max_new_tokens, temperature=options.temperature,
                            stop=STEP_STOP, seed=options.seed if options.temperature > 0 else None)
    try:
        round_number = 0
        while True:
            active = [s for s in states if s.finish is None]
            if not active:
                break
            round_number += 1
            # First tries decode as configured (greedy by default); retries sample, seeded per
            # round so a rerun reproduces the same trajectory.
            retry = SamplingParams(max_new_tokens=options.step_max_new_tokens, stop=STEP_STOP,
                                   temperature=options.retry_temperature, seed=options.seed + round_number)
            for group, params in (([s for s in active if s.attempt == 0], greedy),
                                  ([s for s in active if s.attempt > 0], retry)):
                if not group:
                    continue
                chats = [step_chat(s.item, s.schema, s.query) for s in group]
                completions, shares = complete_in_batches(backend, chats, params, options.batch_size, on_answer)
                for state, completion, share in zip(group, completions, shares):
                    state.generate_s += share
                    state.completion_tokens += completion.completion_tokens
                    _advance(state, completion, options)
                    if state.finish is not None:
                        progress(1)
    finally:
        for toolbox in toolboxes.values():
            toolbox.close()
    return [s.prediction() for s in states]
