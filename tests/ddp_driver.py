"""One rank of the data-parallel run tests/test_ddp.py checks: the DDP recipe through the real job pipeline.

Run as `python -m tests.ddp_driver OUT_DIR` in each of two processes given torchrun's variables
(MASTER_ADDR, MASTER_PORT, WORLD_SIZE=2, RANK, LOCAL_RANK, NODE_RANK); the test starts them itself,
so Lightning launches nothing. Each rank asks to write its table to OUT_DIR/table-rank<RANK>.json
(only rank 0 may) and prints one line `RESULT <json>`: its rank, pid and the curve it saw.
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

from harness.measure import Budget, Target
from harness.models import mlp
from harness.recipes import Recipe
from tests.tiny import tiny_recipe

DEVICES = 2


def ddp_recipe(batch_size: int = 64) -> Recipe:
    """An MLP without BatchNorm or dropout, plain SGD, no augmentation: the global step is one process's step."""
    return tiny_recipe(model=mlp((32,)), budget=Budget(steps=20), target=Target("val/acc", 0.99),
                       optim={"name": "sgd", "lr": 0.1}, batch_size=batch_size, eval_every_n_steps=2, n_val=64)


def main(out_dir: str) -> int:
    from harness.experiments.reproduce import run_recipe
    from harness.tracking import tracking_uri

    rank = int(os.environ["RANK"])
    table = run_recipe(ddp_recipe(), [0], tracking_uri=tracking_uri(), devices=DEVICES, aa_control=False,
                       out_path=Path(out_dir) / f"table-rank{rank}.json")
    run = table["arms"]["baseline"]["runs"][0]
    print("RESULT " + json.dumps({"rank": rank, "pid": os.getpid(), "curve": run["curve"], "samples": run["samples"],
                                  "steps": run["steps"], "flops": run["flops"]}), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1]))
