"""The transformers backend's prompt caches: which one a prompt starts from, and which are kept."""

from pipesql.models.prefix_cache import PrefixCache


class Cache:
    """Stands in for a transformers cache: its length in tokens, cut by ``crop``."""

    def __init__(self, length: int):
        self.length = length

    def get_seq_length(self) -> int:
        return self.length

    def crop(self, drop: int) -> None:
        self.length += drop  # transformers 5: a negative count of tokens to drop


def test_a_prompt_starts_from_its_longest_cached_prefix_and_the_least_recent_is_dropped() -> None:
    prefixes = PrefixCache(entries=2, min_shared=2)
    prefixes.keep([1, 2, 3, 4], Cache(4))
    prefixes.keep([5, 6, 7], Cache(3))
    start = prefixes.start([1, 2, 3, 9])
    assert start is not None and start.length == 3  # a cropped copy; the kept one stays whole
    assert prefixes.reused_tokens == 3 and prefixes.computed_tokens == 1
    prefixes.keep([8, 8, 8], Cache(3))  # [5, 6, 7] is the least recently used now
    assert len(prefixes) == 2
    assert prefixes.start([5, 6, 7, 1]) is None
    assert prefixes.start([1, 2, 3, 4, 5]).length == 4
