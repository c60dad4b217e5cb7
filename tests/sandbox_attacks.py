"""The attacks of issue #10, shared by the Python-API tests (test_sandbox.py) and the HTTP tests
(test_serve.py): each is tried on a copy of a small database, and a test checks the database's
hash, the files around it and the answers of later queries before and after.

Every attack here went through before the sandbox (checked on the code before it): the ATTACH
emptied the attached file's table, VACUUM INTO and ATTACH created files, the TEMP table and the
PRAGMA changed every later answer, and the huge values ran for minutes using gigabytes.
"""

from __future__ import annotations

import hashlib
import re
import sqlite3
from pathlib import Path

# A 1 GB value and a 10-million-row result: answered with an error (or 20 rows) at once.
HUGE_VALUES = [
    "FROM singer |> SELECT zeroblob(1000000000) AS z",
    "FROM singer |> SELECT printf('%.*c', 900000000, 'x') AS s",
    "FROM singer |> SELECT randomblob(1000000000) AS r",
    "FROM singer |> SELECT replace(hex(zeroblob(100000000)), '0', 'xx') AS s",
]
# Work inside one SQLite VM step, where neither the progress handler nor interrupt() reach
# (issue #21): a trim with a long character set, printf with a BLOB format or a width given as
# text, each seconds to minutes per call, and several calls back to back in one expression.
ONE_STEP_ESCAPES = [
    # 60,000 characters, each compared with 20,001 (trim's own allocation caps the set near 21,000)
    "FROM singer |> LIMIT 1 |> SELECT length(trim(replace(hex(zeroblob(30000)), '0', 'a'), "
    "hex(zeroblob(10000)) || 'a')) AS t",
    "FROM singer |> SELECT length(printf(CAST('%.*c' AS BLOB), 600000000, 'x')) AS p",
    "FROM singer |> SELECT length(printf('%.*c', '600000000x', 'x')) AS p",
]
# instr of a value half as long in one of the value limit's length, matching only at its end,
# takes 0.3 s (a quiet machine) to seconds (a loaded one) inside one step; 32 of them back to back
# are several times the tests' 2 s tool limit even on a CPU a few times faster than ours (six
# were not: on a quiet machine they finished in 1.9 s).
INSTR = "instr(hex(zeroblob(131071)) || '1', hex(zeroblob(65535)) || '1')"
BACK_TO_BACK = "FROM singer |> LIMIT 1 |> SELECT " + " + ".join([INSTR] * 32) + " AS i"


def one_step_gold(table: str) -> str:
    """Gold SQL of 48 such ``instr`` calls on one row of ``table``: past a 2 s budget even on a CPU
    several times faster than ours (validation's per-item kill, locally and on Ray)."""
    return "SELECT " + " + ".join([INSTR] * 48) + f" AS i FROM {table} LIMIT 1"
TEN_MILLION_ROWS = "WITH RECURSIVE n AS (SELECT 1 AS i UNION ALL SELECT i + 1 FROM n WHERE i < 10000000) FROM n"
TEN_MILLION_ROWS_SORTED = TEN_MILLION_ROWS + " |> ORDER BY i DESC"

# Pipe SQL that tries to write, open files or change what later callers see. {victim}: another
# database file (a copy) the attack wants to change; {new_file}: a path that must not appear.
WRITES = [
    "ATTACH ('{victim}') AS w",
    "DELETE FROM w.singer WHERE TRUE",
    "COMMIT",
    "ATTACH ('{new_file}') AS x",
    "VACUUM INTO '{new_file}'",
    "CREATE TEMP TABLE singer AS SELECT 1 AS singer_id",
    "CREATE TEMP VIEW concert AS SELECT 1 AS x",
    "PRAGMA case_sensitive_like = 1",
    "PRAGMA query_only = 0",
    "BEGIN",
    "DELETE FROM singer WHERE TRUE",
    "FROM singer |> SELECT load_extension('{new_file}') AS e",
]

# Queries whose answers must be the same after every attack.
PROBES = [
    "FROM singer |> AGGREGATE COUNT(*) AS n",
    "FROM singer |> WHERE name LIKE 'a%' |> SELECT name |> ORDER BY name",
    "FROM concert |> SELECT concert_id, singer_id |> ORDER BY concert_id",
]


def build_db(path: Path) -> Path:
    conn = sqlite3.connect(path)
    conn.executescript("""
        CREATE TABLE singer (singer_id INTEGER PRIMARY KEY, name TEXT, age INTEGER);
        CREATE TABLE concert (concert_id INTEGER PRIMARY KEY, singer_id INTEGER REFERENCES singer(singer_id));
    """)
    conn.executemany("INSERT INTO singer VALUES (?, ?, ?)",
                     [(1, "Ada", 31), (2, "alan", 44), (3, "Bea", 25), (4, "ANNE", 52)])
    conn.executemany("INSERT INTO concert VALUES (?, ?)", [(1, 1), (2, 1), (3, 4)])
    conn.commit()
    conn.close()
    return path


def file_hash(path: Path) -> str:
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


def files_under(folder: Path) -> set[str]:
    return {str(p.relative_to(folder)) for p in Path(folder).rglob("*")}


def fill(template: str, victim: Path, new_file: Path) -> str:
    return template.format(victim=victim, new_file=new_file)


def reset_peak_rss() -> None:
    """Make VmHWM (peak resident memory) start from now (Linux: clear_refs 5)."""
    Path("/proc/self/clear_refs").write_text("5")


def rss_mb(field: str = "VmHWM", pid: str = "self") -> float:
    text = Path(f"/proc/{pid}/status").read_text()
    return int(re.search(rf"{field}:\s+(\d+) kB", text).group(1)) / 1024
