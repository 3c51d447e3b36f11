"""Data parallelism: two DDP processes (gloo, CPU) at batch B/2 each follow one process at batch B.

The two ranks are started here as subprocesses with torchrun's variables, so Lightning launches
nothing (and never re-runs pytest); each runs tests/ddp_driver.py, which drives the DDP recipe through
the real job pipeline (`run_recipe(..., devices=2)`) with MLflow on.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from harness.experiments.reproduce import run_recipe
from harness.runner import Runner
from harness.train.strategy import check_devices
from tests.ddp_driver import DEVICES, ddp_recipe

ROOT = Path(__file__).resolve().parents[1]

# Relative tolerance on the validation loss. The two runs differ only in float32 rounding: one process
# averages the loss gradient over 64 examples, two average over 32 each and DDP averages the two, so the
# sums are taken in another order (float32 epsilon is 1.2e-7 per operation) and the difference carries
# through the 20 SGD steps. Measured: at most 2.2e-7. 1e-5 leaves a 45-fold margin for other BLAS
# kernels and thread counts, while a real error (a wrong shard, gradients summed instead of averaged, a
# rank on another batch) moves the loss by 1e-2 or more after a step or two.
RTOL = 1e-5


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _two_ranks(home: Path, out: Path) -> list[dict]:
    """Run the driver as ranks 0 and 1 of one DDP group; their RESULT lines, by rank."""
    env = {**os.environ, "EFFITRAIN_HOME": str(home), "MASTER_ADDR": "127.0.0.1", "MASTER_PORT": str(_free_port()),
           "WORLD_SIZE": str(DEVICES), "NODE_RANK": "0", "OMP_NUM_THREADS": "1"}
    env.pop("MLFLOW_TRACKING_URI", None)
    procs = [subprocess.Popen([sys.executable, "-m", "tests.ddp_driver", str(out)], cwd=ROOT, text=True,
                              env={**env, "RANK": str(r), "LOCAL_RANK": str(r)}, stdout=subprocess.PIPE,
                              stderr=subprocess.STDOUT) for r in range(DEVICES)]
    results = []
    try:
        for proc in procs:
            log, _ = proc.communicate(timeout=180)
            assert proc.returncode == 0, log[-3000:]
            results += [json.loads(line.split(" ", 1)[1]) for line in log.splitlines() if line.startswith("RESULT ")]
    finally:
        for proc in procs:
            proc.kill()
    return sorted(results, key=lambda r: r["rank"])


@pytest.mark.slow
def test_two_processes_at_half_batch_follow_one_process_at_the_full_batch(tmp_path):
    import mlflow

    home = tmp_path / "ddp"  # the ranks' project dir (the single-process run below keeps its runs in tmp_path)
    home.mkdir()
    ranks = _two_ranks(home, tmp_path / "out")
    assert [r["rank"] for r in ranks] == [0, 1]
    one = run_recipe(ddp_recipe(), [0], aa_control=False)["arms"]["baseline"]["runs"][0]  # one process, batch 64

    for r in ranks:
        assert [p["step"] for p in r["curve"]] == [p["step"] for p in one["curve"]]
        assert [p["val/loss"] for p in r["curve"]] == pytest.approx([p["val/loss"] for p in one["curve"]], rel=RTOL)
        # Budget counters and FLOPs are the global step's, as one process at batch 64 counts them.
        assert (r["steps"], r["samples"]) == (one["steps"], one["samples"]) == (20, 20 * 64)
        assert r["flops"] == pytest.approx(one["flops"], rel=1e-9)
    # Every rank evaluates the full validation set with the same weights: the same curve, bit for bit.
    assert [p["val/loss"] for p in ranks[0]["curve"]] == [p["val/loss"] for p in ranks[1]["curve"]]

    # Only rank 0 wrote: its results table, and every MLflow run (the command's parent and the job's).
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == [  # the table, its DVC metrics and curves
        "table-rank0.curves", "table-rank0.json", "table-rank0.metrics.json"]
    table = json.loads((tmp_path / "out" / "table-rank0.json").read_text())
    assert table["arms"]["baseline"]["runs"][0]["curve"] == ranks[0]["curve"]
    client = mlflow.MlflowClient(f"sqlite:///{home / 'mlflow.db'}")
    runs = client.search_runs([e.experiment_id for e in client.search_experiments()], max_results=100)
    assert len(runs) == 2 and {r.data.tags["effitrain.pid"] for r in runs} == {str(ranks[0]["pid"])}
    # The run store holds checkpoints only while a run is unfinished (rank 0 writes them); none is left.
    assert not list((home / ".effitrain").rglob("*.ckpt")) and not list((home / ".effitrain").rglob("*.tmp"))


def test_a_batch_the_processes_cannot_share_equally_is_refused():
    with pytest.raises(ValueError, match="batch_size 63 is not divisible by --devices 2"):
        run_recipe(ddp_recipe(batch_size=63), [0], devices=2)
    with pytest.raises(ValueError, match="batch_size 63 is not divisible by --devices 2"):
        Runner(devices=2).loaders(ddp_recipe(batch_size=63), seed=0)


@pytest.mark.parametrize("devices, executor", [(0, "inprocess"), (2, "processes"), (2, "ray")])
def test_bad_device_counts_and_parallel_executors_are_refused(devices, executor):
    with pytest.raises(ValueError, match=f"--devices {devices}"):
        check_devices(devices, executor)


@pytest.mark.parametrize("command", ["reproduce", "run", "matrix"])
def test_devices_flag_is_documented(command, capsys):
    from harness.cli import main

    assert main([command, "--help"]) == 0
    text = " ".join(capsys.readouterr().out.split())
    assert "--devices N train each run data-parallel over N processes" in text
