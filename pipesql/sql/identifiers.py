"""Quoting a name as an identifier, one function per dialect. Table and column names come from
database files, so every name pipesql puts into SQL text goes through one of these."""

from __future__ import annotations

import re

_PLAIN_IDENTIFIER = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")


def sqlite_identifier(name: str) -> str:
    """``name`` as a SQLite identifier, always double-quoted (a ``"`` inside is doubled).

    >>> sqlite_identifier('a"b')
    '"a""b"'
    """
    return '"' + name.replace('"', '""') + '"'


def googlesql_identifier(name: str) -> str:
    """``name`` as a GoogleSQL identifier: bare when it is a plain word, else in backticks (a
    backtick or backslash inside is escaped with a backslash), so the model copies a usable form.

    >>> googlesql_identifier("age"), googlesql_identifier("home town")
    ('age', '`home town`')
    """
    if _PLAIN_IDENTIFIER.match(name):
        return name
    return "`" + name.replace("\\", "\\\\").replace("`", "\\`") + "`"
