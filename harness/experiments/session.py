"""What every command that trains shares: signals, a parent MLflow run, and no run left RUNNING.

- SIGTERM (how schedulers preempt) and SIGINT (Ctrl-C) become `Stopped` exceptions in the main
  thread, so training stops within a step, every open run is marked KILLED on its way out and the
  command exits 143 or 130. Lightning's own Ctrl-C handling (which exits 1) never sees them.
- One parent MLflow run per command; each job's run is its child. The results table and figures
  are logged to the parent.
- Runs left RUNNING by a process that no longer exists (SIGKILL, power loss) are marked KILLED when
  the next command on the same host opens the same experiment: each run carries its host and process id.
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
from collections.abc import Iterator
from typing import Any

__all__ = ["Stopped", "handle_signals", "mark_dead_runs", "parent_run", "shielded"]

HOST_TAG, PID_TAG = "effitrain.host", "effitrain.pid"


class Stopped(BaseException):
    """The command was asked to stop (SIGTERM or SIGINT). A BaseException, so no `except Exception` keeps going."""

    def __init__(self, signum: int) -> None:
        super().__init__(f"stopped by {signal.Signals(signum).name}")
        self.signum = signum

    def __reduce__(self) -> tuple:  # a pool worker's Stopped travels back to the command pickled
        return (Stopped, (self.signum,))

    @property
    def exit_code(self) -> int:
        return 128 + self.signum  # the shell's convention: 143 for SIGTERM, 130 for SIGINT


@contextlib.contextmanager
def handle_signals() -> Iterator[None]:
    """Turn SIGTERM and SIGINT into `Stopped` for the duration of a command (main thread only)."""

    def stop(signum: int, frame: Any) -> None:
        for s in (signal.SIGTERM, signal.SIGINT):  # a second signal of either kind must not interrupt the clean-up
            signal.signal(s, signal.SIG_IGN)
        if _SHIELD[0]:  # inside an MLflow call: raise when it is done, not halfway through its transaction
            _PENDING.append(signum)
            return
        raise Stopped(signum)

    old = {s: signal.signal(s, stop) for s in (signal.SIGTERM, signal.SIGINT)}
    try:
        yield
    finally:
        for s, handler in old.items():
            signal.signal(s, handler)


_SHIELD = [0]  # how many shielded blocks this process is inside
_PENDING: list[int] = []  # a signal that arrived inside one


@contextlib.contextmanager
def shielded() -> Iterator[None]:
    """Hold a stop off a block that must not be cut halfway (an MLflow write: cut inside its SQLite
    transaction, the store stayed locked and ending the runs waited 20 s); the stop comes right after."""
    _SHIELD[0] += 1
    try:
        yield
    finally:
        _SHIELD[0] -= 1
    if not _SHIELD[0] and _PENDING:
        raise Stopped(_PENDING.pop())


def process_tags() -> dict[str, str]:
    """Tags that let a later command tell whether the process that owns a run is still alive."""
    return {HOST_TAG: socket.gethostname(), PID_TAG: str(os.getpid())}


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # exists, another user's
        return True
    return True


def mark_dead_runs(tracker: Any, experiment: str) -> list[str]:
    """Mark KILLED the RUNNING runs of `experiment` whose process on this host is gone; their ids."""
    exp = tracker.client.get_experiment_by_name(experiment)
    if exp is None:
        return []
    host = socket.gethostname()
    runs = tracker.client.search_runs([exp.experiment_id], filter_string="attributes.status = 'RUNNING'",
                                      max_results=1000)
    dead = []
    for run in runs:
        tags = run.data.tags
        pid = tags.get(PID_TAG, "")
        if tags.get(HOST_TAG) == host and pid.isdigit() and int(pid) != os.getpid() and not _alive(int(pid)):
            tracker.client.set_terminated(run.info.run_id, status="KILLED")
            dead.append(run.info.run_id)
    return dead


@contextlib.contextmanager
def parent_run(tracker: Any, experiment: str, name: str, params: dict[str, Any],
               tags: dict[str, Any]) -> Iterator[str | None]:
    """A parent MLflow run for one command (None without a tracker), ended FINISHED, FAILED or KILLED."""
    if tracker is None:
        yield None
        return
    mark_dead_runs(tracker, experiment)
    run_id = tracker.start(experiment, name, params, {**tags, **process_tags()})
    status = "FAILED"
    try:
        yield run_id
        status = "FINISHED"
    except Stopped:
        status = "KILLED"
        raise
    finally:
        tracker.end(run_id, status)
