"""``pipesql generate``: golden pairs -> chat training data.

For each golden pair (question, gold SQL, pipe SQL) whose every pipe prefix executes through the
round trip (pipe SQL -> SQLite, read-only, time limit):

- N *step* samples, one per operator, and one *end* sample answering
  :data:`pipesql.agent.prompts.END_MARKER` (:mod:`pipesql.generate.trajectory`);
- for a seeded ``--tool-ratio`` share of pairs (with ``--tool-calling``), one *tools* sample: a
  multi-turn conversation using the five agent tools (:mod:`pipesql.generate.toolchat`).

Samples are split 95/5 into ``train.jsonl`` and ``dev.jsonl`` by question and stratified by
database (:mod:`pipesql.generate.split`); ``stats.json`` describes them
(:mod:`pipesql.generate.stats`) and ``skipped.jsonl`` lists every pair left out and why.
"""

from pipesql.generate.job import Settings, run

__all__ = ["Settings", "run"]
