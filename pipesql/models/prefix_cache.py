"""Reuse of attention key/value caches between prompts that start the same way.

An agent asks the model about the same question again and again: each step's prompt is the
system prompt, the question and the schema (hundreds of tokens), then the query so far (a few
dozen). Without reuse every step pays for the whole prompt again, and on a CPU that prefill is
most of the time. vLLM does this by itself (automatic prefix caching); for the transformers
backend this module keeps the caches of recent prompts, and a new prompt starts from a copy of
the one it shares most tokens with, cut to the shared part.

Only the tokens in common are reused, so answers are the ones a cold prompt would get (up to
floating-point rounding of the same sums done in another order).
"""

from __future__ import annotations

import copy
from typing import Any, Sequence

from pipesql.lru import LRU


def shared_prefix_length(a: Sequence[int], b: Sequence[int]) -> int:
    """How many leading tokens ``a`` and ``b`` have in common.

    >>> shared_prefix_length([1, 2, 3, 4], [1, 2, 5])
    2
    """
    shared = 0
    for x, y in zip(a, b):
        if x != y:
            break
        shared += 1
    return shared


class PrefixCache:
    """The key/value caches of the last ``entries`` prompts (with their answers), newest last.

    ``min_shared``: a copy costs memory traffic, so a match shorter than this is not reused."""

    def __init__(self, entries: int = 16, min_shared: int = 32) -> None:
        self.entries = entries
        self.min_shared = min_shared
        self._caches: LRU[tuple[int, ...], Any] = LRU(entries)
        self.reused_tokens = 0
        self.computed_tokens = 0

    def __len__(self) -> int:
        return len(self._caches)

    def start(self, ids: Sequence[int]) -> Any | None:
        """A cache for ``ids``'s longest cached prefix, to be extended by ``generate`` (a copy:
        the stored one stays as it is), or None. At least one token is always left to compute,
        since generation starts from the logits of the prompt's last token."""
        best, best_key = 0, None
        for key in self._caches:
            shared = shared_prefix_length(key, ids)
            if shared > best:
                best, best_key = shared, key
        best = min(best, len(ids) - 1)
        if best_key is None or best < self.min_shared:
            self.computed_tokens += len(ids)
            return None
        cache = copy.deepcopy(self._caches.get(best_key))
        cache.crop(best - cache.get_seq_length())  # transformers 5: a negative count of tokens to drop
        self.reused_tokens += best
        self.computed_tokens += len(ids) - best
        return cache

    def keep(self, ids: Sequence[int], cache: Any) -> None:
        """Remember ``cache``, which holds the keys and values of exactly ``ids``."""
        if self.entries <= 0:
            return
        self._caches.put(tuple(ids), cache)
