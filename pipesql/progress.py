"""Progress on stderr: a bar on a terminal; plain lines in a log file, a pipe or CI.

A bar redraws itself with carriage returns and cursor moves, which a file keeps as noise. Away
from a terminal, pipesql's own bars print a line at most every :data:`LINE_INTERVAL_S` seconds
(and one at the end), and the libraries' bars (datasets, transformers, huggingface_hub) are off:
the trainer logs a line per logging step instead (``disable_tqdm`` in
:func:`pipesql.train.runner.training_arguments`).
"""

from __future__ import annotations

import os
import sys
from typing import Any

# Seconds between two progress lines in a log: a ten-minute stage writes about twenty.
LINE_INTERVAL_S = 30.0
LINE_FORMAT = "{desc}: {n_fmt}/{total_fmt} {unit} ({percentage:.0f}%) in {elapsed}, {rate_fmt}"
OPEN_LINE_FORMAT = "{desc}: {n_fmt} {unit} in {elapsed}, {rate_fmt}"  # no total known
# Read by datasets and huggingface_hub (which transformers asks) when they are first imported;
# TQDM_DISABLE is every tqdm's default (transformers' GGUF conversion calls tqdm directly).
LIBRARY_SWITCHES = ("HF_DATASETS_DISABLE_PROGRESS_BARS", "HF_HUB_DISABLE_PROGRESS_BARS", "TQDM_DISABLE")


def on_terminal() -> bool:
    return sys.stderr.isatty()


def _line_progress_class():
    from tqdm import tqdm

    class LineProgress(tqdm):
        """tqdm that writes each refresh as a line of its own, never moving the cursor."""

        def display(self, msg: str | None = None, pos: int | None = None) -> bool:
            if msg == "":  # tqdm clearing a finished bar: nothing to clear (False: no "\r" either)
                return False
            self.fp.write(f"{msg or self}\n")
            self.fp.flush()
            return True

        def close(self) -> None:
            if self.leave and not self.disable:
                self._ema_dt = lambda: None  # the last line gives the overall rate, as tqdm's does
                self.display()
            self.leave = False  # tqdm would end the last line again, leaving a blank one
            super().close()

    return LineProgress


def progress_bar(total: int | None, description: str, unit: str, **options: Any):
    """A tqdm for ``total`` units on stderr: a bar on a terminal, else plain lines (in
    ``options["bar_format"]`` when given)."""
    from tqdm import tqdm

    if on_terminal():
        return tqdm(total=total, desc=description, unit=unit, file=sys.stderr, dynamic_ncols=True, **options)
    options = {"mininterval": LINE_INTERVAL_S, "bar_format": LINE_FORMAT if total else OPEN_LINE_FORMAT,
               "disable": False, **options}  # explicit, over TQDM_DISABLE
    return _line_progress_class()(total=total, desc=description, unit=unit, file=sys.stderr, **options)


def prepare_output() -> None:
    """Away from a terminal: turn off the bars of libraries imported after this call (a switch
    that a user set stays as set), and write stdout a line at a time, so that the trainer's log
    lines reach a log file as they happen instead of when a buffer fills."""
    if on_terminal():
        return
    for name in LIBRARY_SWITCHES:
        os.environ.setdefault(name, "1")
    if hasattr(sys.stdout, "reconfigure"):  # a text stream; a replaced stdout may not be one
        sys.stdout.reconfigure(line_buffering=True)
