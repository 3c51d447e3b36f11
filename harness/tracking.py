"""MLflow tracking: one run per (paper, arm, seed), with provenance.

The default store is an embedded SQLite file, `mlflow.db`, in the project
directory (the current directory, or $EFFITRAIN_HOME), with artifacts under
`mlartifacts/`; `MLFLOW_TRACKING_URI` points elsewhere (a server). Metrics are
buffered in memory and written with `log_batch` at each evaluation, so the
training loop never waits on the database per step.
"""

from __future__ import annotations

import os
import platform
import subprocess
import tempfile
import time
from pathlib import Path
from typing import Any

import lightning.pytorch as pl
import torch

_MAX_BATCH = 1000  # MLflow's limit on metrics per log_batch call


def project_dir() -> Path:
    return Path(os.environ.get("EFFITRAIN_HOME", os.getcwd())).resolve()


def tracking_uri() -> str:
    return os.environ.get("MLFLOW_TRACKING_URI") or f"sqlite:///{project_dir() / 'mlflow.db'}"


_CODE_ROOT = Path(__file__).resolve().parents[1]  # the checkout the running code comes from


def _git(*args: str) -> str | None:
    """Git, asked about the checkout the running code comes from (not the project folder runs are kept in)."""
    try:
        out = subprocess.run(["git", *args], cwd=_CODE_ROOT, capture_output=True, text=True, timeout=10)
    except (OSError, subprocess.TimeoutExpired):
        return None
    return out.stdout.strip() if out.returncode == 0 else None


_SOURCES = ("harness", "reproductions", "kernels", "params.yaml", "dvc.yaml", "pyproject.toml", "requirements.lock")
_COMMIT: list[str | None] = []


def git_commit() -> str | None:
    """The checkout's HEAD commit (once per process), or None outside a git checkout."""
    if not _COMMIT:
        _COMMIT.append(_git("rev-parse", "HEAD"))
    return _COMMIT[0]


def _cpu_model() -> str | None:
    """The CPU's model name from /proc/cpuinfo (Linux), with the architecture: wall-clock ratios depend on it
    (bf16 runs natively on an AMX Xeon and is emulated elsewhere)."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return f"{line.partition(':')[2].strip()} ({platform.machine()})"
    except OSError:
        pass
    return None


def provenance(dataset_md5: dict[str, str] | None = None) -> dict[str, Any]:
    """Where a result came from: code version, library versions, hardware, data.

    `git_dirty` says whether the code or configuration differs from the commit. Generated outputs
    (reports/, dvc.lock) do not count: a pipeline rewrites them while it runs, at a clean commit.
    """
    status = _git("status", "--porcelain", "--untracked-files=no", "--", *_SOURCES)
    cuda = torch.cuda.is_available()
    device = torch.cuda.get_device_name(0) if cuda else (_cpu_model() or platform.processor() or platform.machine())
    return {
        "git_commit": _git("rev-parse", "HEAD") or "unknown",
        "git_dirty": bool(status) if status is not None else None,
        "torch": torch.__version__,
        "lightning": pl.__version__,
        "python": platform.python_version(),
        "device": f"cuda: {device}" if torch.cuda.is_available() else f"cpu: {device}",
        "cpu_count": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "dataset_md5": dict(dataset_md5 or {}),
    }


class _Shielded:
    """An MlflowClient whose every call finishes before a SIGTERM or Ctrl-C takes effect
    (harness.experiments.session.shielded)."""

    def __init__(self, client: Any) -> None:
        self._client = client

    def __getattr__(self, name: str) -> Any:
        attr = getattr(self._client, name)
        if not callable(attr):
            return attr

        def call(*args: Any, **kwargs: Any) -> Any:
            from harness.experiments.session import shielded

            with shielded():
                return attr(*args, **kwargs)

        return call


class Tracker:
    """A thin wrapper over `MlflowClient` used by the Runner."""

    def __init__(self, uri: str | None = None) -> None:
        import mlflow  # imported lazily: it takes seconds

        self.uri = uri or tracking_uri()
        self.client = _Shielded(mlflow.MlflowClient(tracking_uri=self.uri))
        self._experiments: dict[str, str] = {}

    def _experiment(self, name: str) -> str:
        if name not in self._experiments:
            exp = self.client.get_experiment_by_name(name)
            if exp is None:
                artifacts = None
                if self.uri.startswith("sqlite:"):
                    artifacts = (project_dir() / "mlartifacts" / name.replace("/", "_")).as_uri()
                exp_id = self.client.create_experiment(name, artifact_location=artifacts)
            else:
                exp_id = exp.experiment_id
            self._experiments[name] = exp_id
        return self._experiments[name]

    def start(self, experiment: str, run_name: str, params: dict[str, Any], tags: dict[str, Any]) -> str:
        """Create a run with its params and tags; every run carries MLflow's standard source tags."""
        from mlflow.entities import Param

        commit = git_commit()
        tags = {"mlflow.source.type": "LOCAL", "mlflow.source.name": "effitrain",
                **({"mlflow.source.git.commit": commit} if commit else {}), **tags}
        # The tags come with the run itself, so a run is never RUNNING without the host and pid that let a
        # later command tell whether its process died; if the params then fail to go in, the run ends FAILED.
        run = self.client.create_run(self._experiment(experiment), run_name=run_name,
                                     tags={k: str(v)[:5000] for k, v in tags.items()})
        run_id = run.info.run_id
        flat_params = [Param(k, str(v)[:6000]) for k, v in sorted(params.items())]
        try:
            for i in range(0, len(flat_params), 100):
                self.client.log_batch(run_id, params=flat_params[i:i + 100])
        except BaseException:
            self.client.set_terminated(run_id, status="FAILED")
            raise
        return run_id

    def log_metrics(self, run_id: str, rows: list[tuple[str, float, int]]) -> None:
        from mlflow.entities import Metric

        now = int(time.time() * 1000)
        metrics = [Metric(k, float(v), now, int(step)) for k, v, step in rows]
        for i in range(0, len(metrics), _MAX_BATCH):
            self.client.log_batch(run_id, metrics=metrics[i:i + _MAX_BATCH])

    def log_artifact(self, run_id: str, path: str | Path, subdir: str | None = None) -> None:
        self.client.log_artifact(run_id, str(path), subdir)

    def find_tagged(self, experiment: str, tag: str, value: str, status: str | None = "FINISHED") -> str | None:
        """The newest run of `experiment` whose tag `tag` equals `value` (and with `status`), or None."""
        exp = self.client.get_experiment_by_name(experiment)
        if exp is None:
            return None
        query = f"tags.`{tag}` = '{value}'" + (f" and attributes.status = '{status}'" if status else "")
        runs = self.client.search_runs([exp.experiment_id], filter_string=query, max_results=1,
                                       order_by=["attributes.start_time DESC"])
        return runs[0].info.run_id if runs else None

    def log_bytes(self, run_id: str, data: bytes, artifact_file: str) -> None:
        """Store bytes as a file artifact (weights, outcomes): a real file in the run, not text."""
        with tempfile.TemporaryDirectory() as tmp:
            path = Path(tmp) / Path(artifact_file).name
            path.write_bytes(data)
            folder = str(Path(artifact_file).parent)
            self.client.log_artifact(run_id, str(path), None if folder == "." else folder)

    def read_bytes(self, run_id: str, artifact_path: str) -> bytes:
        """The bytes of one artifact of a run."""
        with tempfile.TemporaryDirectory() as tmp:
            return Path(self.client.download_artifacts(run_id, artifact_path, tmp)).read_bytes()

    def read_text(self, run_id: str, artifact_path: str) -> str:
        """The text of one artifact of a run."""
        with tempfile.TemporaryDirectory() as tmp:
            local = self.client.download_artifacts(run_id, artifact_path, tmp)
            return Path(local).read_text()

    def end(self, run_id: str, status: str = "FINISHED") -> None:
        self.client.set_terminated(run_id, status=status)


class MetricBuffer(pl.Callback):
    """Collect per-step training metrics; flush to MLflow at each evaluation and at the end."""

    def __init__(self, tracker: Tracker | None, run_id: str | None, clock: Any, log_every_n_steps: int = 10) -> None:
        self.tracker, self.run_id, self.clock = tracker, run_id, clock
        self.log_every_n_steps = log_every_n_steps
        self.rows: list[tuple[str, Any, int]] = []

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        step = trainer.global_step
        if step % self.log_every_n_steps == 0 and pl_module.last_loss is not None:
            self.rows.append(("train/loss", pl_module.last_loss, step))  # a detached tensor: no sync here
            self.rows.append(("time/train_seconds", self.clock.seconds, step))
            self.rows.extend((k, v, step) for k, v in pl_module.step_metrics.items())  # "<technique>/<stat>"

    def add(self, step: int, metrics: dict[str, float]) -> None:
        self.rows.extend((k, v, step) for k, v in metrics.items() if k != "step")
        self.flush()

    def flush(self) -> None:
        rows = [(k, float(v), s) for k, v, s in self.rows]
        self.rows = []
        if self.tracker and self.run_id and rows:
            self.tracker.log_metrics(self.run_id, rows)
