"""Progress of long steps: a bar on a terminal, and in a log file (Snakemake's `2> log`) a
line at a steady interval, so a job that runs for minutes never looks stalled.

    with progress(total, "finetune nli", unit="step") as bar:
        for ...: bar.update(1)

A log line reads `[finetune nli] 120/750 step (16%), 8.1 step/s, ETA 78 s`. The interval is
AMURO_PROGRESS_SECONDS (default 30; 0 silences the lines).
"""

from __future__ import annotations

import os
import sys
import time

from tqdm import tqdm


class LogProgress:
    """tqdm's update/close/set_postfix for a stream that is not a terminal."""

    def __init__(self, total: int, desc: str, unit: str, initial: int = 0,
                 every: float | None = None, stream=None):
        self.total, self.desc, self.unit, self.n = total, desc, unit, initial
        if every is None:
            every = float(os.environ.get("AMURO_PROGRESS_SECONDS", 30))
        self.every = every
        self.stream = stream or sys.stderr
        self.start = self.last = time.monotonic()
        self.initial = initial

    def update(self, n: int = 1) -> None:
        self.n += n
        now = time.monotonic()
        if self.every > 0 and now - self.last >= self.every:
            self.last = now
            self.stream.write(self.line(now) + "\n")
            self.stream.flush()

    def line(self, now: float) -> str:
        done = self.n - self.initial
        rate = done / max(now - self.start, 1e-9)
        share = f" ({100 * self.n / self.total:.0f}%)" if self.total else ""
        eta = f", ETA {(self.total - self.n) / rate:.0f} s" if rate > 0 and self.total else ""
        return (f"[{self.desc}] {self.n}/{self.total} {self.unit}{share}, "
                f"{rate:.1f} {self.unit}/s{eta}")

    def set_postfix(self, **kwargs) -> None:
        pass

    def close(self) -> None:
        pass

    def __enter__(self):
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def progress(total: int, desc: str, unit: str = "it", initial: int = 0, leave: bool = True):
    """A tqdm bar on a terminal, LogProgress lines otherwise."""
    if sys.stderr.isatty():
        return tqdm(total=total, initial=initial, desc=desc, unit=unit, leave=leave)
    return LogProgress(total, desc, unit, initial)
