"""The committed pipeline is in step with the code: on a fresh clone `make demo` must rerun nothing.

`dvc status` compares every stage's dependencies (code, params, data) and outputs with `dvc.lock`; a change
to a file a stage reads, without rerunning the demo (`make demo`) and committing `dvc.lock` and
`reports/demo/`, fails here rather than costing the next user the whole pipeline.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


def test_dvc_lock_and_the_demo_outputs_match_the_code():
    dvc = shutil.which("dvc", path=str(Path(sys.executable).parent)) or shutil.which("dvc")
    if not (ROOT / "datasets" / "mnist").is_dir():
        pytest.skip("the datasets are not pulled (make test pulls them first)")
    out = subprocess.run([dvc, "status", "--json"], cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-2000:]
    changed = json.loads(out.stdout or "{}")
    assert changed == {}, f"rerun `make demo` and commit dvc.lock and reports/demo/: {sorted(changed)}"
