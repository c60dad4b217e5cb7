"""The divergence guard's decisions and the checkpoint bookkeeping, without training."""

from __future__ import annotations

import math

import pytest

from pipesql.train.checkpoints import (
    STAGING, checkpoint_step, complete_checkpoints, latest_checkpoint, publish, remove_incomplete,
)
from pipesql.train.stability import (
    StabilityGuard, append_event, learning_rate_after, read_events, rollbacks_done,
)


def warmed_guard(losses=(1.0, 0.9, 0.8, 0.7, 0.6), **kwargs) -> StabilityGuard:
    guard = StabilityGuard(spike_factor=3.0, window=10, warmup=len(losses), **kwargs)
    for step, loss in enumerate(losses, 1):
        assert guard.check(step, loss, 0.5) is None
    return guard


def test_non_finite_loss_or_norm_trips_even_during_warmup():
    guard = StabilityGuard(warmup=100)
    assert guard.check(1, math.nan, 1.0)["reason"] == "non-finite loss"
    assert guard.check(1, math.inf, 1.0)["reason"] == "non-finite loss"
    verdict = guard.check(1, 2.0, math.nan)
    assert verdict["reason"] == "non-finite gradient norm" and verdict["grad_norm"] == "nan"
    assert guard.good_steps == 0  # bad steps never join the history


def test_a_spike_trips_only_after_warmup_and_above_the_factor():
    cold = StabilityGuard(spike_factor=3.0, warmup=5)
    assert cold.check(1, 1.0, 0.1) is None and cold.check(2, 50.0, 0.1) is None  # still warming up
    guard = warmed_guard()  # median 0.8
    assert guard.check(6, 2.3, 0.5) is None  # 2.9 x median 0.8: noisy but not a spike
    verdict = guard.check(7, 2.6, 0.5)  # the median is now 0.85, so the bar is 2.55
    assert verdict is not None and verdict["reason"].startswith("loss spike") and verdict["step"] == 7


def test_the_replaced_systems_collapse_is_caught_at_its_first_big_jump():
    # Loss at steps 600-620 of the failed 7B run: 0.25 steady, then 0.87, 2.15, ...
    guard = warmed_guard(losses=[0.25 + 0.01 * (i % 3) for i in range(20)])
    assert guard.check(21, 0.87, 0.92)["step"] == 21


def test_guard_state_survives_a_restart():
    guard = warmed_guard()
    restored = StabilityGuard(spike_factor=3.0, window=10, warmup=5)
    restored.load_state(guard.state())
    assert restored.check(6, 5.0, 0.1) is not None and list(restored.history) == list(guard.history)


def test_events_count_rollbacks_and_set_the_learning_rate(tmp_path):
    assert read_events(tmp_path) == [] and learning_rate_after(1e-4, 0.5, []) == 1e-4
    append_event(tmp_path, {"action": "rollback", "step": 7, "loss": "nan"})
    append_event(tmp_path, {"action": "rollback", "step": 9})
    events = read_events(tmp_path)
    assert [e["step"] for e in events] == [7, 9] and all("time" in e for e in events)
    assert rollbacks_done(events) == 2 and learning_rate_after(1e-4, 0.5, events) == pytest.approx(2.5e-5)


def make_checkpoint(run, step, complete=True):
    path = run / f"checkpoint-{step}"
    path.mkdir(parents=True)
    names = ["trainer_state.json", "optimizer.pt", "scheduler.pt", "adapter_model.safetensors"]
    for name in names if complete else names[:2]:
        (path / name).write_text("x")
    return path


def test_only_complete_checkpoints_count_and_leftovers_are_removed(tmp_path):
    run = tmp_path / "run"
    for step in (10, 2, 30):
        make_checkpoint(run, step)
    make_checkpoint(run, 40, complete=False)
    (run / STAGING / "checkpoint-50").mkdir(parents=True)
    (run / "checkpoint-notanumber").mkdir()
    assert [checkpoint_step(p) for p in complete_checkpoints(run)] == [2, 10, 30]
    assert latest_checkpoint(run).name == "checkpoint-30"
    assert latest_checkpoint(run, before_step=30).name == "checkpoint-10"
    assert latest_checkpoint(run, before_step=2) is None
    removed = {p.name for p in remove_incomplete(run)}
    assert removed == {STAGING, "checkpoint-40"}
    assert sorted(p.name for p in run.iterdir()) == ["checkpoint-10", "checkpoint-2", "checkpoint-30",
                                                     "checkpoint-notanumber"]


def test_publish_replaces_a_checkpoint_of_the_same_step(tmp_path):
    old = make_checkpoint(tmp_path / "run", 4)
    staged = make_checkpoint(tmp_path / "run" / STAGING, 4)
    (staged / "marker").write_text("new")
    publish(staged, old)
    assert (old / "marker").read_text() == "new" and not staged.exists()
