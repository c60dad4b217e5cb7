"""The bounded cache every layer shares: what it keeps, what it drops, and when it says so."""

from pipesql.lru import LRU


def test_keeps_the_most_recently_used_and_drops_the_oldest_in_order() -> None:
    dropped = []
    recent = LRU(2, on_drop=lambda key, value: dropped.append((key, value)))
    recent.put("a", 1)
    recent.put("b", 2)
    assert recent.get("a") == 1  # "a" is now newer than "b"
    recent.put("c", 3)
    recent.put("d", 4)
    assert dropped == [("b", 2), ("a", 1)]
    assert list(recent) == ["c", "d"] and len(recent) == 2
    assert "a" not in recent and recent.get("a") is None


def test_put_of_a_known_key_replaces_it_as_the_newest_without_dropping() -> None:
    dropped = []
    recent = LRU(2, on_drop=lambda key, value: dropped.append(key))
    recent.put("a", 1)
    recent.put("b", 2)
    recent.put("a", 10)
    assert dropped == [] and list(recent) == ["b", "a"] and recent.get("a") == 10
    recent.put("c", 3)
    assert dropped == ["b"]


def test_a_lookup_by_in_or_iteration_changes_no_order_and_a_miss_gives_the_default() -> None:
    recent = LRU(2)
    recent.put("a", None)  # a value may be None: a default tells a miss from it
    recent.put("b", 2)
    missing = object()
    assert "a" in recent and list(recent) == ["a", "b"]
    assert recent.get("a", missing) is None and recent.get("x", missing) is missing
    assert list(recent) == ["b", "a"]


def test_clear_forgets_without_calling_on_drop() -> None:
    dropped = []
    recent = LRU(3, on_drop=lambda key, value: dropped.append(key))
    for key in "abc":
        recent.put(key, key)
    assert recent.values() == ["a", "b", "c"] and recent.items() == [("a", "a"), ("b", "b"), ("c", "c")]
    recent.clear()
    assert len(recent) == 0 and dropped == []
