"""Shared fixtures: a temp project dir with its own MLflow store, private caches. (Builders: tests/tiny.py,
tests/helpers.py.)"""

from __future__ import annotations

import os

import torch

# Without a GPU the Triton fast paths run under Triton's interpreter on CPU tensors, so their
# correctness is tested here too. Triton reads the variable when it is first imported (its own
# @jit helpers such as tl.rand are decorated then), and Lightning imports it through harness,
# so it is set before anything else is imported.
if not torch.cuda.is_available():
    os.environ.setdefault("TRITON_INTERPRET", "1")

import pytest  # noqa: E402

torch.set_num_threads(min(2, os.cpu_count() or 1))


@pytest.fixture
def project(tmp_path, monkeypatch):
    """Run in a temp project dir with its own MLflow SQLite store."""
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("EFFITRAIN_HOME", str(tmp_path))
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    return tmp_path


@pytest.fixture(autouse=True)
def _private_dirs(tmp_path, monkeypatch):
    """Caches, the run store and the default MLflow store go to the test's temp dir, never the user's."""
    monkeypatch.setenv("EFFITRAIN_CACHE", str(tmp_path / ".cache"))
    monkeypatch.setenv("EFFITRAIN_HOME", str(tmp_path))
