"""Progress of a command's jobs, one line per finished job, readable in a log file as on a terminal.

Each line says where the command is (done/total), what finished and how, the time spent so far and
an estimate of the time left (the mean time of the jobs run so far times the jobs still to run;
reused jobs take no time and do not count in the mean). `-q` silences it.
"""

from __future__ import annotations

import sys
import time
from typing import Any, TextIO

__all__ = ["Progress", "duration"]


def duration(seconds: float) -> str:
    """'42 s', '3 min 05 s', '1 h 02 min'."""
    seconds = max(0.0, seconds)
    if seconds < 60:
        return f"{seconds:.0f} s"
    minutes, secs = divmod(int(round(seconds)), 60)
    if minutes < 60:
        return f"{minutes} min {secs:02d} s"
    hours, minutes = divmod(minutes, 60)
    return f"{hours} h {minutes:02d} min"


class Progress:
    """Counts finished jobs of `total` and prints a line for each (unless quiet)."""

    def __init__(self, total: int, label: str, quiet: bool = False, stream: TextIO | None = None,
                 split: str = "test") -> None:
        self.total, self.label, self.quiet, self.split = total, label, quiet, split  # split: whose accuracy to show
        self.stream = stream or sys.stderr
        self.done = self.ran = 0
        self.t0 = time.monotonic()
        self._ran_seconds = 0.0
        self._last = self.t0

    def update(self, outcome: dict[str, Any]) -> str:
        now = time.monotonic()
        self.done += 1
        if not outcome.get("reused"):
            self.ran += 1
            self._ran_seconds += now - self._last
        self._last = now
        line = f"[{self.label} {self.done}/{self.total}] {describe(outcome, self.split)}; {self.eta(now - self.t0)}"
        if not self.quiet:
            print(line, file=self.stream, flush=True)
        return line

    def eta(self, elapsed: float) -> str:
        left = self.total - self.done
        if left == 0:
            return f"done in {duration(elapsed)}"
        if self.ran == 0:
            return f"{duration(elapsed)} so far, {left} to go"
        return f"{duration(elapsed)} so far, about {duration(self._ran_seconds / self.ran * left)} left"


def describe(out: dict[str, Any], split: str = "test") -> str:
    """One finished job in words: what ran and how it ended, with its final accuracy on `split`."""
    head = f"{out['arm']} seed {out['seed']}"
    if out.get("error"):
        return f"{head}: {'diverged' if out.get('diverged') else 'failed'}: {out['error']}"
    r = out["result"]
    how = "reused, " if out.get("reused") else f"resumed at step {r['resumed_from_step']}, " if out.get("resumed") \
        else ""
    tta = "not reached" if r["time_to_target_s"] is None else f"{r['time_to_target_s']:.1f} s"
    acc = r["final"].get(f"{split}/acc")
    return (f"{head}: {how}{r['steps']} steps, {r['train_seconds']:.1f} s training, time to target {tta}"
            + (f", {split} acc {100 * acc:.2f}%" if acc is not None else ""))
