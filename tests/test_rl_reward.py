"""The GRPO reward on scripted completions: execution match scored as evaluate scores it, the
format reward, and the guarantees that a bad completion costs 0 and never the run."""

from __future__ import annotations

import hashlib
import sqlite3
from pathlib import Path

import pytest

from pipesql.evaluate.scoring import EXEC_ERROR, MATCH, MISMATCH, TRANSPILE_ERROR, Limits
from pipesql.rl.reward import (
    ONESHOT, STEP, TIMEOUT, Completion, ExecutionReward, RewardPool, Target, score_completion,
)

LIMITS = Limits(timeout_s=2.0, row_cap=1000)
# Four copies of a 300-row table: 8.1e9 rows to count, far past any time limit here.
RUNAWAY = ("FROM big AS a\n|> CROSS JOIN big AS b\n|> CROSS JOIN big AS c\n|> CROSS JOIN big AS d\n"
           "|> AGGREGATE COUNT(*) AS n")


@pytest.fixture(scope="module")
def db(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("reward") / "club.sqlite"
    conn = sqlite3.connect(path)
    conn.executescript("""
        CREATE TABLE player (player_id INTEGER PRIMARY KEY, name TEXT, team TEXT, score INTEGER);
        INSERT INTO player VALUES (1, 'Ada', 'red', 30), (2, 'Bo', 'blue', 30), (3, 'Cy', 'red', 10),
                                  (4, 'Di', 'blue', 20);
        CREATE TABLE big (x INTEGER);
    """)
    conn.executemany("INSERT INTO big VALUES (?)", [(i,) for i in range(300)])
    conn.commit()
    conn.close()
    return path


def oneshot(db: Path, gold_sql: str, text: str, stopped: bool = True) -> Completion:
    return Completion(Target("q1", str(db), gold_sql), text, ONESHOT, stopped)


def test_a_matching_query_scores_one_plus_the_format_reward(db):
    reward = score_completion(oneshot(db, "SELECT count(*) FROM player WHERE team = 'red'",
                                      "FROM player\n|> WHERE team = 'red'\n|> AGGREGATE COUNT(*) AS n"), LIMITS)
    assert (reward.status, reward.match, reward.well_formed) == (MATCH, 1.0, 1.0)
    assert reward.total(0.1) == pytest.approx(1.1)


def test_a_fenced_answer_is_read_as_evaluate_reads_it(db):
    text = "```sql\nFROM player\n|> AGGREGATE COUNT(*) AS n;\n```"
    reward = score_completion(oneshot(db, "SELECT count(*) FROM player", text), LIMITS)
    assert (reward.status, reward.match) == (MATCH, 1.0)


def test_a_wrong_but_valid_query_earns_only_the_format_reward(db):
    reward = score_completion(oneshot(db, "SELECT count(*) FROM player WHERE team = 'red'",
                                      "FROM player\n|> AGGREGATE COUNT(*) AS n"), LIMITS)
    assert (reward.status, reward.match, reward.well_formed) == (MISMATCH, 0.0, 1.0)
    assert reward.total(0.1) == pytest.approx(0.1)


def test_rows_tied_on_the_gold_order_key_are_interchangeable(db):
    # Ada and Bo tie at 30: the gold's LIMIT 1 may return either, so Bo matches too.
    gold = "SELECT name FROM player ORDER BY score DESC LIMIT 1"
    reward = score_completion(oneshot(db, gold, "FROM player\n|> WHERE name = 'Bo'\n|> SELECT name"), LIMITS)
    assert (reward.status, reward.match) == (MATCH, 1.0)
    assert "tied" in reward.detail
    wrong = score_completion(oneshot(db, gold, "FROM player\n|> WHERE name = 'Cy'\n|> SELECT name"), LIMITS)
    assert wrong.match == 0.0


@pytest.mark.parametrize("text", ["FROM player |> WHERE", "this is not SQL", "", "SELECT name FROM player"])
def test_invalid_or_non_pipe_answers_earn_no_format_reward(db, text):
    reward = score_completion(oneshot(db, "SELECT count(*) FROM player", text), LIMITS)
    assert reward.match == 0.0 and reward.well_formed == 0.0
    if text == "FROM player |> WHERE":
        assert reward.status == TRANSPILE_ERROR


def test_a_query_past_the_sql_time_limit_scores_zero(db):
    reward = score_completion(oneshot(db, "SELECT count(*) FROM player", RUNAWAY), Limits(timeout_s=0.2))
    assert (reward.status, reward.match) == (EXEC_ERROR, 0.0)
    assert reward.detail.startswith("timeout")


@pytest.mark.parametrize("text", ["DELETE FROM player", "DROP TABLE player", "UPDATE player SET score = 0",
                                  "INSERT INTO player VALUES (9, 'Zed', 'red', 99)"])
def test_a_write_attempt_scores_zero_and_writes_nothing(db, text):
    before = hashlib.sha256(db.read_bytes()).hexdigest()
    reward = score_completion(oneshot(db, "SELECT count(*) FROM player", text), LIMITS)
    assert reward.total(0.1) == 0.0
    assert reward.status in (EXEC_ERROR, TRANSPILE_ERROR)
    assert hashlib.sha256(db.read_bytes()).hexdigest() == before


def step(db: Path, prefix: str, gold_sql: str, text: str, stopped: bool = True) -> Completion:
    return Completion(Target("q1", str(db), gold_sql, prefix), text, STEP, stopped)


def test_step_mode_scores_the_query_so_far_plus_the_new_operator(db):
    next_prefix_gold = "SELECT * FROM player WHERE team = 'red'"
    good = score_completion(step(db, "FROM player", next_prefix_gold, "|> WHERE team = 'red'"), LIMITS)
    assert (good.status, good.match, good.well_formed) == (MATCH, 1.0, 1.0)
    # Another operator with the same result counts: the reward is execution, not string match.
    same = score_completion(step(db, "FROM player", next_prefix_gold, "|> WHERE team IN ('red')"), LIMITS)
    assert same.match == 1.0


def test_step_mode_format_needs_one_operator_and_a_proper_stop(db):
    gold = "SELECT * FROM player WHERE team = 'red'"
    two = score_completion(step(db, "FROM player", gold, "|> WHERE team = 'red'\n|> LIMIT 5"), LIMITS)
    assert two.well_formed == 0.0
    cut = score_completion(step(db, "FROM player", gold, "|> WHERE team = 'red'", stopped=False), LIMITS)
    assert (cut.match, cut.well_formed) == (1.0, 0.0)
    first = score_completion(step(db, "", "SELECT * FROM player", "|> WHERE team = 'red'"), LIMITS)
    assert first.well_formed == 0.0  # the first step must be a FROM clause


def test_the_end_marker_is_right_only_when_the_query_is_done(db):
    done = score_completion(step(db, "FROM player\n|> AGGREGATE COUNT(*) AS n", "SELECT count(*) FROM player",
                                 "-- done"), LIMITS)
    assert (done.match, done.well_formed) == (1.0, 1.0)
    early = score_completion(step(db, "FROM player", "SELECT count(*) FROM player", "-- done"), LIMITS)
    assert early.match == 0.0


def scripted_batch(db: Path) -> list[Completion]:
    gold = "SELECT count(*) FROM player WHERE team = 'red'"
    return [oneshot(db, gold, "FROM player\n|> WHERE team = 'red'\n|> AGGREGATE COUNT(*) AS n"),
            oneshot(db, gold, "FROM player\n|> AGGREGATE COUNT(*) AS n"),
            oneshot(db, gold, "FROM player |> WHERE"),
            oneshot(db, gold, "DELETE FROM player"),
            oneshot(db, "SELECT name FROM player ORDER BY score DESC LIMIT 1",
                    "FROM player\n|> WHERE name = 'Bo'\n|> SELECT name")]


def test_worker_processes_score_exactly_as_the_training_process_does(db):
    batch = scripted_batch(db)
    in_process = [score_completion(c, LIMITS) for c in batch]
    with RewardPool(workers=2, limits=LIMITS) as pool:
        assert pool.score(batch) == in_process
    assert [r.match for r in in_process] == [1.0, 0.0, 0.0, 0.0, 1.0]


def test_a_runaway_completion_costs_zero_and_the_pool_recovers(db):
    # The SQL limit is generous, the batch deadline short: the worker is abandoned, not waited for.
    batch = [oneshot(db, "SELECT count(*) FROM player", RUNAWAY), *scripted_batch(db)[:1]]
    with RewardPool(workers=1, limits=Limits(timeout_s=60.0), deadline_s=0.5) as pool:
        rewards = pool.score(batch)
        assert [r.status for r in rewards] == [TIMEOUT, TIMEOUT]
        assert all(r.total(0.1) == 0.0 for r in rewards)
        assert [r.status for r in pool.score(scripted_batch(db)[:2])] == [MATCH, MISMATCH]


def test_the_trl_reward_function_takes_dataset_columns_and_logs_its_parts(db):
    logged: dict[str, float] = {}
    reward = ExecutionReward(RewardPool(workers=0, limits=LIMITS), ONESHOT, format_weight=0.1, eos_token_ids=[7])
    completions = [[{"role": "assistant", "content": "FROM player\n|> AGGREGATE COUNT(*) AS n"}],
                   [{"role": "assistant", "content": "FROM player |> WHERE"}]]
    values = reward(prompts=[None, None], completions=completions, completion_ids=[[5, 7], [5, 5]],
                    question_id=["a", "b"], db_path=[str(db)] * 2, gold_sql=["SELECT count(*) FROM player"] * 2,
                    prefix=["", ""], log_metric=logged.__setitem__, trainer_state=None)
    assert values == pytest.approx([1.1, 0.0])
    assert logged == {"execution_match": 0.5, "well_formed": 0.5}
    assert reward.status_counts == {MATCH: 1, TRANSPILE_ERROR: 1}


def test_a_write_behind_a_cte_earns_no_format_reward(db):
    """Issue #21, class 7: ``WITH ... DELETE`` starts like a pipe query and transpiles; it is a
    write, so it is not well-formed."""
    reward = score_completion(oneshot(db, "SELECT count(*) FROM player",
                                      "WITH x AS (SELECT 1) DELETE FROM player WHERE TRUE"), LIMITS)
    assert (reward.match, reward.well_formed) == (0.0, 0.0)


def test_scoring_in_the_training_process_has_a_deadline_too(db):
    """Issue #21, class 7: with reward_workers 0 the batch keeps the pool's deadline: every query
    is killed at its limit (work inside one SQLite step included), and groups not started by
    the deadline score 0 with ``timeout`` (before: 12 s or more for one completion)."""
    import time

    instr = "instr(hex(zeroblob(131071)) || '1', hex(zeroblob(65535)) || '1')"
    one_step = "FROM player\n|> LIMIT 1\n|> SELECT " + " + ".join([instr] * 6) + " AS i"
    batch = [Completion(Target(f"q{k}", str(db), "SELECT count(*) FROM player"), one_step) for k in range(4)]
    pool = RewardPool(workers=0, limits=Limits(timeout_s=1.0), deadline_s=0.5)
    start = time.monotonic()
    rewards = pool.score(batch)
    # the batch deadline is 4 x 0.5 s; the group under way when it passes ends at its 1 s limit + 0.5 s grace
    assert time.monotonic() - start < 2.0 + 1.5 + 1.5
    assert rewards[0].status == EXEC_ERROR and "exceeded" in rewards[0].detail
    assert {r.status for r in rewards[1:]} <= {EXEC_ERROR, TIMEOUT} and TIMEOUT in {r.status for r in rewards}
