"""Why a query could not be decompiled: one exception type carrying a stable reason code."""

from __future__ import annotations


class Unsupported(Exception):
    """Raised by any rule that meets SQL it cannot express faithfully in pipe syntax.

    ``reason`` is a short machine-readable code (``unsupported:dml``,
    ``unsupported:natural_join`` ...) that :func:`pipesql.decompile.decompile` returns.
    """

    def __init__(self, reason: str):
        super().__init__(reason)
        self.reason = reason
