"""A small training set in the format ``pipesql generate`` writes: step-by-step conversations
(one pipe operator per assistant turn) and tool-calling conversations (OpenAI style, arguments
as JSON strings, ``tools`` as a JSON string)."""

from __future__ import annotations

import json
import random
from pathlib import Path

from pipesql.agent import prompts

TABLES = {
    "singer": ["singer_id", "name", "country", "age"],
    "concert": ["concert_id", "concert_name", "stadium_id", "year"],
    "stadium": ["stadium_id", "location", "capacity"],
}
TOOL_SPECS = [
    {"type": "function", "function": {"name": "describe_table", "description": "Columns of a table.",
                                      "parameters": {"type": "object", "properties": {"table": {"type": "string"}},
                                                     "required": ["table"]}}},
    {"type": "function", "function": {"name": "execute_pipe_sql", "description": "Run a pipe query.",
                                      "parameters": {"type": "object", "properties": {"sql": {"type": "string"}},
                                                     "required": ["sql"]}}},
]


def _schema(table: str) -> str:
    return f"CREATE TABLE {table} ({', '.join(TABLES[table])})"


def _query(rng: random.Random) -> tuple[str, str, list[str]]:
    table = rng.choice(sorted(TABLES))
    column = rng.choice(TABLES[table][1:])
    value = rng.randint(1, 99)
    kind = rng.randrange(3)
    if kind == 0:
        return table, f"How many rows of {table} have {column} above {value}?", [
            f"FROM {table}", f"|> WHERE {column} > {value}", "|> AGGREGATE COUNT(*)"]
    if kind == 1:
        return table, f"List the {column} of every {table}, largest first.", [
            f"FROM {table}", f"|> ORDER BY {column} DESC", f"|> SELECT {column}"]
    return table, f"Show the number of {table} rows for each {column}.", [
        f"FROM {table}", f"|> AGGREGATE COUNT(*) AS n GROUP BY {column}"]


def step_rows(rng: random.Random) -> list[dict]:
    table, question, operators = _query(rng)
    rows = []
    for index in range(len(operators) + 1):
        so_far = "\n".join(operators[:index])
        answer = operators[index] if index < len(operators) else prompts.END_MARKER
        rows.append({"messages": [
            {"role": "system", "content": prompts.STEP_SYSTEM_PROMPT},
            {"role": "user", "content": prompts.step_user_message(question, _schema(table), so_far)},
            {"role": "assistant", "content": answer},
        ]})
    return rows


def tool_row(rng: random.Random) -> dict:
    table, question, operators = _query(rng)
    query = "\n".join(operators)
    return {"tools": json.dumps(TOOL_SPECS), "messages": [
        {"role": "system", "content": prompts.AGENT_SYSTEM_PROMPT},
        {"role": "user", "content": prompts.agent_user_message(question, "concert_singer")},
        {"role": "assistant", "content": "", "tool_calls": [
            {"id": "call_0", "type": "function",
             "function": {"name": "describe_table", "arguments": json.dumps({"table": table})}}]},
        {"role": "tool", "tool_call_id": "call_0", "content": ", ".join(TABLES[table])},
        {"role": "assistant", "content": "", "tool_calls": [
            {"id": "call_1", "type": "function",
             "function": {"name": "execute_pipe_sql", "arguments": json.dumps({"sql": query})}}]},
        {"role": "tool", "tool_call_id": "call_1", "content": "3 rows"},
        {"role": "assistant", "content": query},
    ]}


def write_fixture(path: str | Path, conversations: int, seed: int = 0, tool_share: float = 0.25) -> Path:
    rng = random.Random(seed)
    rows: list[dict] = []
    while len(rows) < conversations:
        rows.extend([tool_row(rng)] if rng.random() < tool_share else step_rows(rng))
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(json.dumps(row) + "\n" for row in rows[:conversations]))
    return path


# The tiny-model run every training test starts from: 18 steps at a learning rate that moves a
# random model visibly, a checkpoint and an eval every 6.
TINY_RUN = dict(preset="smoke", model_name="tiny", max_steps=18, per_device_train_batch_size=4,
                per_device_eval_batch_size=6, gradient_accumulation_steps=1, learning_rate=1e-2, save_steps=6,
                eval_steps=6, logging_steps=3, gradient_checkpointing=False, report_to="none", max_seq_length=1024)


def tiny_run_values(train: Path, dev: Path | None, output_dir: Path, **overrides) -> dict:
    return {**TINY_RUN, "train_data": train, "dev_data": dev, "output_dir": output_dir, **overrides}


def as_flags(values: dict) -> list[str]:
    """``pipesql train`` flags for settings values, as a user types them."""
    flags = []
    for name, value in values.items():
        flag = "--" + name.replace("_", "-")
        if isinstance(value, bool):
            flags.append(flag if value else f"--no-{name.replace('_', '-')}")
        elif value is not None:
            flags += [flag, str(value)]
    return flags


def adapter_tensors(run_dir: Path, adapter: str = "final") -> dict:
    from safetensors.torch import load_file

    return load_file(str(Path(run_dir) / adapter / "adapter_model.safetensors"))
