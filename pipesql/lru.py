"""A bounded mapping that keeps the entries used most recently: the one least-recently-used
cache every layer shares (open databases, registered catalogs, remembered outcomes, key/value
caches of prompts), for what ``functools.lru_cache`` cannot hold: values made elsewhere, a
close or unregister when an entry is dropped, lookups by more than a key.

>>> recent = LRU(2)
>>> recent.put("a", 1); recent.put("b", 2); recent.get("a")
1
>>> recent.put("c", 3)  # "b" was used least recently
>>> list(recent)
['a', 'c']
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Callable, Iterator
from typing import Generic, TypeVar

K = TypeVar("K")
V = TypeVar("V")


class LRU(Generic[K, V]):
    """At most ``size`` entries; :meth:`get` and :meth:`put` make an entry the newest, and past
    ``size`` the oldest are dropped, each handed to ``on_drop`` (which may close it)."""

    def __init__(self, size: int, on_drop: Callable[[K, V], None] | None = None):
        self.size = size
        self._on_drop = on_drop
        self._entries: OrderedDict[K, V] = OrderedDict()

    def get(self, key: K, default: V | None = None) -> V | None:
        """The value of ``key``, now the newest entry, or ``default`` when there is none."""
        if key not in self._entries:
            return default
        self._entries.move_to_end(key)
        return self._entries[key]

    def put(self, key: K, value: V) -> None:
        """``key`` holds ``value``, as the newest entry; the oldest beyond ``size`` are dropped."""
        self._entries[key] = value
        self._entries.move_to_end(key)
        while len(self._entries) > self.size:
            dropped = self._entries.popitem(last=False)
            if self._on_drop is not None:
                self._on_drop(*dropped)

    def values(self) -> list[V]:
        """The values, oldest first (a copy: dropping them while going through it is safe)."""
        return list(self._entries.values())

    def items(self) -> list[tuple[K, V]]:
        """The entries, oldest first (a copy, like :meth:`values`)."""
        return list(self._entries.items())

    def clear(self) -> None:
        """Forget every entry, without ``on_drop`` (the caller has dealt with them, or they are gone)."""
        self._entries.clear()

    def __contains__(self, key: object) -> bool:
        return key in self._entries

    def __iter__(self) -> Iterator[K]:
        """The keys, oldest first; looking them up with ``in`` changes no order."""
        return iter(self._entries)

    def __len__(self) -> int:
        return len(self._entries)
