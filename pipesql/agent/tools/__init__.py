"""The five agent tools: one implementation for training-data generation, the evaluation agent
and the server.

- ``list_tables()``: every table with its column and row counts.
- ``describe_table(table)``: the table's ``CREATE TABLE`` text with example values, exactly as
  in the prompt schema (:mod:`pipesql.agent.schema_text`).
- ``sample_data(table, limit)``: the first ``limit`` rows (1 to ``SAMPLE_LIMIT_MAX``).
- ``execute_pipe_sql(sql)``: pipe SQL translated to SQLite (:func:`pipesql.sql.transpile.pipe_to_sqlite`)
  and run read-only with a time limit; the first ``row_cap`` rows come back.
- ``validate_pipe_sql(sql)``: parses as GoogleSQL (sqlglot, BigQuery dialect), translates, and
  compiles against the database without running it (SQLite ``EXPLAIN``); optionally also
  analyzed by ZetaSQL (:mod:`pipesql.sql.googlesql`) when that is installed and asked for.

Every output is real text from the database, bounded (:mod:`~pipesql.agent.tools.specs` holds
the bounds): at most ``row_cap`` rows, cells cut to ``CELL_CHARS`` characters, and the whole output
cut to ``char_cap`` characters (``catalog_char_cap`` for ``list_tables`` and ``describe_table``),
with a line saying so. :meth:`Toolbox.call` never raises: a bad tool name, bad
arguments or a failing query come back as a line starting with ``Error:`` that the model can
read and act on.
"""

from pipesql.agent.tools.output import cut, format_result
from pipesql.agent.tools.session import Session, to_sqlite
from pipesql.agent.tools.specs import (CATALOG_CHAR_CAP, CELL_CHARS, CHAR_CAP, ROW_CAP, SAMPLE_LIMIT_DEFAULT, SAMPLE_LIMIT_MAX, TIMEOUT_S,
                                       TOOL_NAMES, TOOL_SPECS, ToolError)
from pipesql.agent.tools.toolbox import Toolbox

__all__ = ["CATALOG_CHAR_CAP", "CELL_CHARS", "CHAR_CAP", "ROW_CAP", "SAMPLE_LIMIT_DEFAULT", "SAMPLE_LIMIT_MAX", "TIMEOUT_S", "TOOL_NAMES",
           "TOOL_SPECS", "Session", "ToolError", "Toolbox", "cut", "format_result", "to_sqlite"]
