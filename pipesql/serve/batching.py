"""Requests that arrive together are generated together, by one thread that owns the model.

After the first waiting request, the worker takes every request that arrives within
``wait_s`` (up to ``max_batch``), then generates each group of equal sampling parameters in one
backend call. Requests reach the queue already validated and templated; should a batch still
fail, each of its requests is retried alone, so one bad request fails only itself. A request
whose client has gone (:meth:`BatchQueue.abandon`) is skipped if it has not started, and stops
generating if it has (the backend asks between tokens), so the next request does not wait for it.
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from concurrent.futures import Future
from dataclasses import dataclass, field

from pipesql.models.backends import Backend, Chat, Completion, SamplingParams

log = logging.getLogger(__name__)


@dataclass
class _Pending:
    chat: Chat
    params: SamplingParams
    future: Future = field(default_factory=Future)
    abandoned: threading.Event = field(default_factory=threading.Event)


class BatchQueue:
    def __init__(self, backend: Backend, *, max_batch: int = 16, wait_s: float = 0.01):
        self.backend = backend
        self.max_batch = max(1, max_batch)
        self.wait_s = max(0.0, wait_s)
        self._queue: queue.Queue[_Pending | None] = queue.Queue()
        self.batch_sizes: list[int] = []  # one entry per backend call, for tests and logs
        self._thread = threading.Thread(target=self._work, name="pipesql-generate", daemon=True)
        self._thread.start()

    def submit(self, chat: Chat, params: SamplingParams) -> "Future[Completion]":
        """Queue one chat; its completion (or the error generating it) arrives in the future."""
        pending = _Pending(chat, params)
        pending.future.abandoned = pending.abandoned  # type: ignore[attr-defined] - for abandon()
        self._queue.put(pending)
        return pending.future

    @staticmethod
    def abandon(future: "Future[Completion]") -> None:
        """Nobody waits for ``future`` any more (the client disconnected or timed out): skip its
        generation, or stop it where it is."""
        future.cancel()
        future.abandoned.set()  # type: ignore[attr-defined]

    def close(self) -> None:
        self._queue.put(None)
        self._thread.join(timeout=5)

    def _collect(self, first: _Pending) -> tuple[list[_Pending], bool]:
        batch, deadline = [first], time.monotonic() + self.wait_s
        while len(batch) < self.max_batch:
            remaining = deadline - time.monotonic()
            try:
                pending = self._queue.get(timeout=remaining) if remaining > 0 else self._queue.get_nowait()
            except queue.Empty:
                break
            if pending is None:
                return batch, True
            batch.append(pending)
        return batch, False

    def _work(self) -> None:
        while True:
            first = self._queue.get()
            if first is None:
                return
            batch, closing = self._collect(first)
            # A client that gave up (timeout, disconnect) cancelled its future: skip its work.
            batch = [p for p in batch if p.future.set_running_or_notify_cancel()]
            groups: dict[SamplingParams, list[_Pending]] = {}
            for pending in batch:
                groups.setdefault(pending.params, []).append(pending)
            for params, group in groups.items():
                self._generate(group, params)
            if closing:
                return

    def _generate(self, group: list[_Pending], params: SamplingParams) -> None:
        self.batch_sizes.append(len(group))
        try:
            completions = self.backend.complete([p.chat for p in group], params,
                                                cancelled=lambda index: group[index].abandoned.is_set())
        except Exception as error:
            if len(group) == 1:
                log.warning("generation failed: %s: %s", type(error).__name__, error)
                group[0].future.set_exception(error)
                return
            log.warning("a batch of %d failed (%s); retrying its requests one by one", len(group), error)
            for pending in group:
                self._generate([pending], params)
            return
        for pending, completion in zip(group, completions):
            if not pending.future.done():
                pending.future.set_result(completion)
