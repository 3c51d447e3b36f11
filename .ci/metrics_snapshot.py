"""Final metrics of every paper's smoke recipe (seeds 0 and 1) and one cpu recipe, for a before/after check.

A restructuring must not change what training measures. Run this on the old and the new checkout and
compare the two files (steps, final metrics and evaluation curves, clock readings left out):

    PYTHONPATH=/path/to/old python .ci/metrics_snapshot.py before.json --cpu
    PYTHONPATH=/path/to/new python .ci/metrics_snapshot.py after.json --cpu
    python .ci/metrics_snapshot.py --compare before.json after.json

It reads the papers from `reproductions.PAPERS` (the layout before issue 9) or the paper registry.
"""

from __future__ import annotations

import json
import os
import sys

os.environ.setdefault("TRITON_INTERPRET", "1")

CPU_CHECK = ("gupta2015_fixed_point", ["budget.epochs=1", "n_train=5000"])  # params.yaml's demo budget


def _papers() -> dict:
    import reproductions

    found = getattr(reproductions, "PAPERS", None)
    if found is None:
        from harness.papers import papers

        found = papers()
    return found


def _table(module, recipe, seeds: list[int], data_root: str) -> dict:
    try:
        from harness.experiments.reproduce import run_recipe
    except ImportError:  # the old layout
        from harness.runner import Runner

        return Runner(None, data_root, progress=False).run(recipe, seeds, module.CARD)
    return run_recipe(recipe, seeds, module.CARD, data_root=data_root)


def snapshot(out: str, cpu: bool, data_root: str = "datasets") -> None:
    from harness.recipes import apply_overrides

    papers = _papers()
    jobs = [(pid, "smoke", [], [0, 1]) for pid in sorted(papers)]
    if cpu:
        jobs.append((CPU_CHECK[0], "cpu", CPU_CHECK[1], [0]))
    found = {}
    for pid, scale, sets, seeds in jobs:
        table = _table(papers[pid], apply_overrides(papers[pid].recipe(scale), sets), seeds, data_root)
        found[f"{pid}/{scale}"] = {
            arm: [{"seed": r["seed"], "steps": r["steps"], "final": r["final"],
                   "curve": [{k: v for k, v in p.items() if "second" not in k} for p in r["curve"]]}
                  for r in body["runs"]] for arm, body in table["arms"].items()}
        print(pid, scale, "done", file=sys.stderr)
    with open(out, "w") as fh:
        json.dump(found, fh, indent=1, sort_keys=True)


def compare(before: str, after: str) -> int:
    with open(before) as fh:
        old = json.load(fh)
    with open(after) as fh:
        new = json.load(fh)
    differ = sorted(k for k in old.keys() | new.keys() if old.get(k) != new.get(k))
    for key in sorted(old.keys() | new.keys()):
        print(f"{key}: {'DIFFERS' if key in differ else 'identical'}")
    return 1 if differ else 0


if __name__ == "__main__":
    if sys.argv[1] == "--compare":
        sys.exit(compare(sys.argv[2], sys.argv[3]))
    snapshot(sys.argv[1], "--cpu" in sys.argv, os.environ.get("EFFITRAIN_DATA_ROOT", "datasets"))
