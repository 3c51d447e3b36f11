"""Executors: where jobs run. Each yields outcomes as jobs finish, whatever the executor.

- inprocess: one after another in this process (the timings then come from an otherwise idle machine);
- processes: a pool of spawned local processes (`concurrent.futures`), runs share the cores, so their
  times compare within one command only;
- ray: a Ray cluster (`--ray-address`, or a local one started for the command).

On SIGTERM or Ctrl-C (harness.experiments.session turns both into exceptions) the pool's workers are
killed and the cluster's tasks cancelled before the exception goes on, so nothing keeps training.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from concurrent.futures import ProcessPoolExecutor, as_completed
from multiprocessing import get_context
from typing import Any

from harness.experiments.jobs import Job, Outcome, run_job

__all__ = ["EXECUTORS", "execute", "threads_per_job"]

EXECUTORS = ("inprocess", "processes", "ray")


def threads_per_job(executor: str, workers: int | None) -> int | None:
    """Torch threads per job: all cores in-process, the cores shared out between parallel workers."""
    if executor == "inprocess":
        return None
    if executor == "ray":
        return 1  # each task asks Ray for one CPU; the cluster, not --workers, decides how many run at once
    cores = os.cpu_count() or 1
    return max(1, cores // (workers or cores))


def execute(jobs: list[Job], executor: str = "inprocess", workers: int | None = None,
            ray_address: str | None = None) -> Iterator[Outcome]:
    """Yield each job's outcome as it finishes, from the chosen executor."""
    if executor not in EXECUTORS:
        raise ValueError(f"executor '{executor}' is not one of {', '.join(EXECUTORS)}")
    if not jobs:
        return
    if executor == "inprocess":
        for job in jobs:
            yield run_job(job)
    elif executor == "processes":
        yield from _processes(jobs, workers or min(len(jobs), os.cpu_count() or 1))
    else:
        yield from _ray(jobs, ray_address)


_STOPPED: list[int] = []  # in a pool worker: the signal that stopped it, so it starts no queued job


def _run_in_worker(job: Job) -> Outcome:
    """`run_job` in a pool worker: SIGTERM (the command stopping its pool) or Ctrl-C ends the run KILLED,
    and the worker then refuses the jobs still queued for it, so the pool empties within seconds."""
    from harness.experiments.session import Stopped, handle_signals

    if _STOPPED:
        raise Stopped(_STOPPED[0])
    try:
        with handle_signals():
            return run_job(job)
    except Stopped as exc:
        _STOPPED.append(exc.signum)
        raise


def _processes(jobs: list[Job], workers: int) -> Iterator[Outcome]:
    pool = ProcessPoolExecutor(max_workers=workers, mp_context=get_context("spawn"))
    try:
        for fut in as_completed([pool.submit(_run_in_worker, j) for j in jobs]):
            yield fut.result()
    except BaseException:
        for proc in list(getattr(pool, "_processes", {}).values()):  # stop the runs now, not after them
            proc.terminate()
        pool.shutdown(wait=True, cancel_futures=True)
        raise
    pool.shutdown(wait=True)


def _ray_init(address: str | None) -> Any:
    if address is None or address.split(":")[0] in ("127.0.0.1", "localhost"):
        # A one-machine cluster: Ray's single-node mode keeps every address on the loopback interface.
        os.environ.setdefault("RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER", "0")
    import ray

    if not ray.is_initialized():
        # Workers inherit the cluster's environment, not ours: pass on what decides where files and runs go.
        from harness.tracking import project_dir

        env = {k: os.environ[k] for k in ("TRITON_INTERPRET", "EFFITRAIN_CACHE") if k in os.environ}
        env["EFFITRAIN_HOME"] = str(project_dir())  # run store and default MLflow store, whatever the worker's cwd
        ray.init(address=address, include_dashboard=False, log_to_driver=False, configure_logging=False,
                 runtime_env={"env_vars": env})
    return ray


def _ray(jobs: list[Job], address: str | None) -> Iterator[Outcome]:
    ray = _ray_init(address)
    remote = ray.remote(num_cpus=1)(run_job)
    pending = [remote.remote(j) for j in jobs]
    try:
        while pending:
            done, pending = ray.wait(pending, num_returns=1)
            yield ray.get(done[0])
    except BaseException:
        for ref in pending:  # not force: the task's run sees the interrupt and ends KILLED (harness.runner)
            ray.cancel(ref, force=False)
        raise
