"""What the GoogleSQL check raises and returns."""

from __future__ import annotations

from dataclasses import dataclass


class GoogleSQLError(Exception):
    """GoogleSQL refused or failed a query."""


class GoogleSQLAnalysisError(GoogleSQLError):
    """GoogleSQL does not accept the query (what :func:`analyze` reports)."""


class GoogleSQLTimeout(GoogleSQLError):
    """A call ran past its deadline and was interrupted."""


class GoogleSQLUnavailable(GoogleSQLError):
    """The ZetaSQL engine could not be started."""


class NotRepresentable(GoogleSQLError):
    """A stored value does not fit its column's GoogleSQL type, so the database cannot be loaded."""


@dataclass(frozen=True)
class GoogleSQLResult:
    columns: tuple[str, ...]
    rows: tuple[tuple, ...]
    truncated: bool
