"""Next-operator accuracy on dev trajectories (pipesql evaluate --trajectories): each step
sample's answer is judged against its one right answer, exactly and by kind, and the share of
answers that are one operator (or the end marker) and of end markers is counted."""

from __future__ import annotations

import json

import pytest

from pipesql.agent import prompts
from pipesql.evaluate.next_operator import judge, next_operator_accuracy, step_samples
from pipesql.models.backends import ScriptedBackend


def sample(kind: str, so_far: str, answer: str) -> dict:
    return {"kind": kind, "messages": [
        {"role": "system", "content": prompts.STEP_SYSTEM_PROMPT},
        {"role": "user", "content": prompts.step_user_message("How many singers?", "singer(id, age)", so_far)},
        {"role": "assistant", "content": answer}]}


@pytest.mark.parametrize("answer, gold, verdict", [
    ("|> WHERE age  > 30", "|> WHERE age > 30", dict(exact=True, kind=True, parses=True, end_marker=False)),
    ("|> WHERE age > 40", "|> WHERE age > 30", dict(exact=False, kind=True, parses=True, end_marker=False)),
    ("|> SELECT age", "|> WHERE age > 30", dict(exact=False, kind=False, parses=True, end_marker=False)),
    (prompts.END_MARKER, "|> WHERE age > 30", dict(exact=False, kind=False, parses=True, end_marker=True)),
    (prompts.END_MARKER, prompts.END_MARKER, dict(exact=True, kind=True, parses=True, end_marker=True)),
    ("The answer is 3 singers.", "FROM singer", dict(exact=False, kind=False, parses=False, end_marker=False)),
    ("FROM singer\n|> WHERE age > 30", "FROM singer", dict(exact=False, kind=True, parses=False, end_marker=False)),
    ("```sql\nFROM singer\n```", "FROM singer", dict(exact=True, kind=True, parses=True, end_marker=False)),
])
def test_judge(answer, gold, verdict):
    assert judge(answer, gold) == verdict


def test_accuracy_over_dev_steps_skips_tool_chats(tmp_path):
    path = tmp_path / "dev.jsonl"
    rows = [sample("step", "", "FROM singer"), sample("step", "FROM singer", "|> WHERE age > 30"),
            sample("end", "FROM singer\n|> WHERE age > 30", prompts.END_MARKER),
            {"kind": "tools", "messages": [{"role": "user", "content": "q"}, {"role": "assistant", "content": "x"}]}]
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    samples = step_samples(path)
    assert len(samples) == 3
    # A model that always stops: right once (the end sample), parses every time.
    stopper = ScriptedBackend(lambda messages: prompts.END_MARKER)
    result = next_operator_accuracy(samples, stopper)
    assert result == {"samples": 3, "gold_end_markers": 1, "exact": pytest.approx(1 / 3),
                      "kind": pytest.approx(1 / 3), "parses": 1.0, "end_marker": 1.0}
    # The model sees the question and the query so far, never the answer.
    assert all(chat.messages[-1]["role"] == "user" for chat, _ in stopper.calls)
    perfect = ScriptedBackend(lambda messages: next(r["messages"][-1]["content"] for r in samples
                                                    if r["messages"][1]["content"] == messages[-1]["content"]))
    assert next_operator_accuracy(samples, perfect)["exact"] == 1.0
