"""The `effitrain` command line. Every command goes through the Runner.

Bad input (unknown paper, technique, recipe or dataset; bad scale; conflicting
techniques; a budget that makes no sense) prints one line on stderr and exits
with code 2 before any run starts or any file is written.
"""

from __future__ import annotations

import argparse
import shlex
import sys
from pathlib import Path
from typing import Any, Sequence

RESULTS_DIR = Path("reports/runs")


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> None:  # one line, exit 2
        raise SystemExit(_fail(f"{self.prog}: {message}"))


def _fail(message: str) -> int:
    print(f"effitrain: error: {message}", file=sys.stderr)
    return 2


def _seeds(n: int) -> list[int]:
    if n < 1:
        raise ValueError(f"--seeds {n}: expected a positive number of seeds")
    return list(range(n))


def _command_line(argv: Sequence[str]) -> str:
    return "effitrain " + " ".join(shlex.quote(a) for a in argv)


# ---------------------------------------------------------------- commands

def cmd_list(args: argparse.Namespace) -> int:
    from harness.data import DATASET_INFO
    from harness.recipes import recipes
    from harness.techniques import techniques
    from reproductions import PAPERS

    print("papers:")
    for pid, mod in PAPERS.items():
        print(f"  {pid:40s} {mod.CARD.title} ({mod.CARD.year})")
    print("techniques:")
    for name, cls in techniques().items():
        print(f"  {name:40s} {cls.description} [touches: {', '.join(sorted(cls.touches))}]")
    print("recipes:")
    for name, fn in recipes().items():
        print(f"  {name:40s} {(fn.__doc__ or '').strip().splitlines()[0]}")
    print("datasets:")
    for name, info in DATASET_INFO.items():
        print(f"  {name:40s} {info}")
    return 0


def _prepare(recipe: Any, seeds: list[int], data_root: str) -> None:
    """All checks before any file is written: recipe, techniques, data on disk."""
    from harness import data as datamod
    from harness.runner import validate

    validate(recipe, seeds)
    datamod.load_dataset(recipe.dataset, data_root)


def _execute(recipe: Any, seeds: list[int], args: argparse.Namespace, argv: Sequence[str], card: Any,
             out: Path, name: str | None = None) -> int:
    from harness.runner import Runner, write_results
    from harness.tracking import Tracker

    _prepare(recipe, seeds, args.data_root)
    tracker = None if args.no_track else Tracker()
    table = Runner(tracker, args.data_root).run(recipe, seeds, card, _command_line(argv), args.tag, name=name)
    path = write_results(table, out)
    _print_summary(table)
    print(f"results: {path}")
    return 0


def cmd_reproduce(args: argparse.Namespace, argv: Sequence[str]) -> int:
    from harness.recipes import SCALES, apply_overrides
    from reproductions import PAPERS

    if args.paper not in PAPERS:
        raise ValueError(f"unknown paper '{args.paper}'; expected one of: {', '.join(PAPERS)}")
    if args.params:
        _read_params(args)
    if args.scale not in SCALES:
        raise ValueError(f"scale '{args.scale}' is not one of {', '.join(SCALES)}")
    module = PAPERS[args.paper]
    recipe = apply_overrides(module.recipe(args.scale), args.set)
    out = Path(args.out) / args.paper / f"{args.scale}-{args.tag}.json"
    return _execute(recipe, _seeds(args.seeds), args, argv, module.CARD, out)


def _read_params(args: argparse.Namespace) -> None:
    """Take scale, seeds, tag and the tag's overrides for this paper from a params.yaml."""
    import yaml

    try:
        params = yaml.safe_load(Path(args.params).read_text())
        rep = params["reproduce"]
        args.scale, args.seeds, args.tag = rep["scale"], int(rep["seeds"]), str(rep["tag"])
        budgets = params.get("budgets", {})
        if args.tag not in budgets:
            raise ValueError(f"{args.params}: no budgets.{args.tag} for reproduce.tag={args.tag!r}")
        args.set = [str(x) for x in (budgets[args.tag].get(args.paper) or [])] + args.set
    except (OSError, yaml.YAMLError, KeyError, TypeError) as exc:
        raise ValueError(f"{args.params}: cannot read reproduce.scale/seeds/tag ({type(exc).__name__}: {exc})") from None


def cmd_run(args: argparse.Namespace, argv: Sequence[str]) -> int:
    from dataclasses import replace

    from harness.recipes import Arm, apply_overrides, get_recipe
    from harness.techniques import compose

    base = get_recipe(args.recipe, args.scale)
    if not args.technique:
        raise ValueError("give at least one --technique")
    names = tuple(c.name for c in compose(args.technique))
    label = "+".join(names)
    arms = (Arm("baseline", description=base.description), Arm(label, techniques=names, description=label))
    recipe = apply_overrides(replace(base, arms=arms, baseline_arm="baseline"), args.set)
    args.tag = f"{label}-{args.tag}"  # the results file and report section name the techniques
    out = Path(args.out) / f"run-{args.recipe}" / f"{args.scale}-{args.tag}.json"
    return _execute(recipe, _seeds(args.seeds), args, argv, None, out, name=f"run-{args.recipe}")


def cmd_matrix(args: argparse.Namespace, argv: Sequence[str]) -> int:
    from datetime import datetime, timezone

    from harness import combinability, matrix
    from harness.tracking import provenance, tracking_uri

    if args.params:
        _read_combine_params(args)
    if args.executor not in matrix.EXECUTORS:
        raise ValueError(f"executor '{args.executor}' is not one of {', '.join(matrix.EXECUTORS)}")
    if args.workers is not None and args.workers < 1:
        raise ValueError(f"--workers {args.workers}: expected a positive number")
    plan = matrix.make_plan(args.recipe, args.scale, args.set, args.techniques or None, args.settings)
    seeds = _seeds(args.seeds)
    _prepare(plan.recipe, seeds, args.data_root)
    print(f"matrix: {len(plan.names)} techniques, {sum(w is None for *_, w in plan.pairs)} pairs to run, "
          f"{sum(w is not None for *_, w in plan.pairs)} incompatible; {len(plan.arms)} arms x {len(seeds)} "
          f"seed(s) on '{plan.recipe_name}' ({args.scale}), executor {args.executor}")
    outcomes = matrix.run_matrix(plan, seeds, args.executor, args.workers, args.data_root,
                                 None if args.no_track else tracking_uri(), args.ray_address)
    meta = {"command": _command_line(argv), "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
            "code_version": matrix.code_version(), "executor": args.executor, "provenance": provenance()}
    summary = combinability.summarise(plan, outcomes, seeds, meta)
    paths = combinability.write_outputs(summary, args.out)
    for p in summary["pairs"]:
        print(f"  {p['a']} + {p['b']}: {p['verdict']}: {p['reason']}")
    print("wrote " + ", ".join(str(p) for p in paths))
    return 0


def _read_combine_params(args: argparse.Namespace) -> None:
    """Take recipe, scale, seeds, executor, techniques and the scale's overrides from params.yaml's `combine`."""
    import yaml

    try:
        c = yaml.safe_load(Path(args.params).read_text())["combine"]
        args.recipe, args.scale, args.seeds = str(c["recipe"]), str(c["scale"]), int(c["seeds"])
        args.executor = str(c.get("executor", args.executor))
        args.techniques = list(c.get("techniques") or []) or args.techniques
        args.set = [str(x) for x in ((c.get("set") or {}).get(args.scale) or [])] + args.set
        args.settings = {str(k): dict(v) for k, v in (c.get("settings") or {}).items()}
    except (OSError, yaml.YAMLError, KeyError, TypeError, AttributeError) as exc:
        raise ValueError(f"{args.params}: cannot read combine.recipe/scale/seeds/set/settings ({type(exc).__name__}: {exc})") from None


def cmd_report(args: argparse.Namespace) -> int:
    from harness.report import build_report

    path = build_report(args.runs_dir, args.out)
    print(f"report: {Path(path).resolve()}")
    return 0


def cmd_data(args: argparse.Namespace) -> int:
    from harness import data as datamod

    if args.action == "download":
        datamod.download(args.name, args.data_root)
        print(f"{args.name}: ok in {args.data_root}")
    else:
        d = datamod.load_dataset(args.name, args.data_root)
        summary = {"name": d.name, "train": list(d.train_x.shape), "test": list(d.test_x.shape),
                   "classes": d.classes, "mean": d.mean, "std": d.std, "md5": d.md5}
        if args.summary:
            from harness.runner import write_results

            write_results(summary, args.summary)
        print(f"{args.name}: train {tuple(d.train_x.shape)}, test {tuple(d.test_x.shape)}, md5 ok")
    return 0


def cmd_bench(args: argparse.Namespace) -> int:
    from harness import bench

    if args.which == "overhead":
        bench.overhead(steps=args.steps, repeats=args.repeats, data_root=args.data_root)
    elif args.which == "kernels":
        bench.kernels(device=args.device, repeats=args.repeats, only=args.op)
    else:
        bench.precision()
    return 0


def cmd_ui(args: argparse.Namespace) -> int:
    import subprocess

    from harness.tracking import tracking_uri

    cmd = [sys.executable, "-m", "mlflow", "ui", "--backend-store-uri", tracking_uri(),
           "--host", "127.0.0.1", "--port", str(args.port)]
    print("MLflow UI on http://127.0.0.1:%d (Ctrl-C stops it)" % args.port)
    return subprocess.call(cmd)


def _print_summary(table: dict[str, Any]) -> None:
    from harness.report import format_summary

    print(format_summary(table))


# ---------------------------------------------------------------- parser

def _common(p: argparse.ArgumentParser) -> None:
    p.add_argument("--scale", default="cpu", help="smoke | cpu | paper (default cpu)")
    p.add_argument("--seeds", type=int, default=1, help="number of seeds, 0..N-1 (default 1)")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                   help="override a recipe field, e.g. budget.epochs=2, optim.lr=0.05, teacher.budget.epochs=3")
    p.add_argument("--tag", default="full", help="name of this budget variant, in the results file name")
    p.add_argument("--out", default=str(RESULTS_DIR), help="results directory (default reports/runs)")
    p.add_argument("--no-track", action="store_true", help="do not log to MLflow")


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="effitrain", description="Reproduce and compare techniques for cheaper training.")
    parser.add_argument("--data-root", default="datasets", help="where datasets live (default datasets/)")
    sub = parser.add_subparsers(dest="command", required=True, parser_class=_Parser)
    sub.add_parser("list", help="papers, techniques, recipes and datasets")
    p = sub.add_parser("reproduce", help="run a paper's arms over seeds; write reports/runs/PAPER/SCALE-TAG.json")
    p.add_argument("paper")
    _common(p)
    p.add_argument("--params", help="read scale, seeds, tag and the tag's overrides from this params.yaml")
    p = sub.add_parser("run", help="baseline vs an ad-hoc technique combination on a recipe")
    p.add_argument("--recipe", required=True)
    p.add_argument("--technique", action="append", default=[], help="repeat to combine techniques")
    _common(p)
    p = sub.add_parser("matrix", help="baseline, each technique alone and every pair on one recipe; "
                                      "write reports/combinability.{csv,json,png}")
    p.add_argument("--recipe", default="mnist_cnn", help="the recipe every arm runs on (default mnist_cnn)")
    p.add_argument("--scale", default="cpu", help="smoke | cpu | paper (default cpu)")
    p.add_argument("--seeds", type=int, default=3, help="number of seeds, 0..N-1 (default 3)")
    p.add_argument("--techniques", nargs="+", metavar="NAME", help="only these techniques (default: all registered)")
    p.add_argument("--executor", default="inprocess", help="inprocess (default) | processes | ray")
    p.add_argument("--workers", type=int, help="processes: how many in parallel (default: one per CPU core)")
    p.add_argument("--ray-address", help="ray: the cluster to join, e.g. 127.0.0.1:6379 (default: start a local one)")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="override a recipe field")
    p.add_argument("--params", help="read recipe, scale, seeds, executor, techniques and overrides from "
                                    "this params.yaml's `combine` section")
    p.add_argument("--out", default="reports", help="where combinability.{csv,json,png} go (default reports)")
    p.add_argument("--no-track", action="store_true", help="do not log to MLflow (and reuse nothing)")
    p.set_defaults(settings=None)  # technique arguments come only from params.yaml's combine.settings
    p = sub.add_parser("report", help="build reports/index.html from reports/runs")
    p.add_argument("--runs-dir", default=str(RESULTS_DIR))
    p.add_argument("--out", default="reports")
    p = sub.add_parser("data", help="download (online) or check a dataset")
    p.add_argument("action", choices=["download", "check"])
    p.add_argument("name")
    p.add_argument("--summary", help="with check: write shapes, classes, mean/std and md5s to this JSON file")
    p = sub.add_parser("bench", help="benchmarks")
    p.add_argument("which", choices=["overhead", "precision", "kernels"],
                   help="overhead: harness vs plain loop; precision: ms/step in fp32, bf16, fp16; "
                        "kernels: each op's time as a fraction of copy bandwidth or matmul peak")
    p.add_argument("--steps", type=int, default=200)
    p.add_argument("--repeats", type=int, default=5)
    p.add_argument("--device", choices=["cpu", "cuda"], help="kernels: where to run (default: cuda if present)")
    p.add_argument("--op", help="kernels: only ops whose name contains this")
    p = sub.add_parser("ui", help="open the MLflow UI on the default store, bound to 127.0.0.1")
    p.add_argument("--port", type=int, default=5000)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    try:
        args = build_parser().parse_args(argv)
        handlers = {"list": cmd_list, "report": cmd_report, "data": cmd_data, "bench": cmd_bench, "ui": cmd_ui}
        if args.command in ("reproduce", "run", "matrix"):
            return {"reproduce": cmd_reproduce, "run": cmd_run, "matrix": cmd_matrix}[args.command](args, argv)
        return handlers[args.command](args)
    except SystemExit as exc:
        return int(exc.code or 0)
    except (ValueError, FloatingPointError) as exc:
        return _fail(str(exc).splitlines()[0] if str(exc) else type(exc).__name__)
    except KeyboardInterrupt:
        return _fail("interrupted")


if __name__ == "__main__":
    sys.exit(main())
