"""The `effitrain` command line: parse, then call harness.experiments (reproduce, run, matrix) or the report.

Bad input (unknown paper, technique, recipe or dataset; bad scale; conflicting techniques; a budget
or target that makes no sense; a name that would become part of a path) prints one line on stderr
and exits with code 2 before any run starts or any file is written. SIGTERM stops a command within
a step with its runs marked KILLED and exit code 143; Ctrl-C does the same with 130. A stopped or
killed command continues with `--resume`.
"""

from __future__ import annotations

import argparse
import logging
import re
import shlex
import sys
from collections.abc import Sequence
from datetime import UTC
from pathlib import Path
from typing import Any

RESULTS_DIR = Path("reports/runs")
PREREGISTERED_DIR = Path("reports/preregistered")
SCALES = ("smoke", "cpu", "paper")  # harness.recipes.SCALES, repeated so `--help` needs no torch import
EXECUTORS = ("inprocess", "processes", "ray")  # harness.experiments.executors.EXECUTORS
_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.+-]{0,63}")  # what a tag may be: it becomes part of a file name


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


def _path_name(value: str, what: str) -> str:
    """A value that becomes part of a path: letters, digits, '_', '.', '+', '-'; no separators, no '..'."""
    if not _NAME.fullmatch(value) or ".." in value:
        raise ValueError(f"{what} {value!r}: expected 1-64 letters, digits, '_', '.', '+' or '-', starting with "
                         f"a letter or digit (it becomes part of a file name)")
    return value


def _command_line(argv: Sequence[str]) -> str:
    return "effitrain " + " ".join(shlex.quote(a) for a in argv)


# ---------------------------------------------------------------- commands

def cmd_list(args: argparse.Namespace) -> int:
    from harness.data import DATASET_INFO
    from harness.papers import papers
    from harness.recipes import recipes
    from harness.techniques import techniques

    print("papers:")
    for pid, mod in papers().items():
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


def _tracking(args: argparse.Namespace) -> str | None:
    from harness.tracking import tracking_uri

    return None if args.no_track else tracking_uri()


def _execute(recipe: Any, seeds: list[int], args: argparse.Namespace, argv: Sequence[str], card: Any,
             out: Path, name: str | None = None, target_rule: str | None = None) -> int:
    from harness.experiments import preregister
    from harness.experiments.reproduce import run_recipe
    from harness.train.strategy import is_rank_zero

    _prepare(recipe, seeds, args.data_root)
    preregister.check_seeds(seeds)
    table = run_recipe(recipe, seeds, card, command=_command_line(argv), tag=args.tag, name=name,
                       tracking_uri=_tracking(args), data_root=args.data_root, executor=args.executor,
                       workers=args.workers, ray_address=args.ray_address, rerun=args.rerun, resume=args.resume,
                       quiet=args.quiet, out_path=out, devices=args.devices, aa_control=not args.no_aa_control,
                       target_rule=target_rule)
    if not is_rank_zero(args.devices):
        return 0  # rank 0 reports
    if not args.quiet:
        _print_summary(table)
    print(f"results: {out}")
    return 0


def _check_run_flags(args: argparse.Namespace) -> None:
    if args.scale not in SCALES:
        raise ValueError(f"scale '{args.scale}' is not one of {', '.join(SCALES)}")
    if args.executor not in EXECUTORS:
        raise ValueError(f"executor '{args.executor}' is not one of {', '.join(EXECUTORS)}")
    if args.workers is not None and args.workers < 1:
        raise ValueError(f"--workers {args.workers}: expected a positive number")
    if args.rerun and args.resume:
        raise ValueError("--rerun starts every run afresh and --resume continues them: give one")
    _path_name(args.tag, "--tag")


def _defaults(args: argparse.Namespace, **defaults: Any) -> None:
    """Fill flags the user did not give (they are None until here, so --params can tell them apart)."""
    for key, value in defaults.items():
        if getattr(args, key) is None:
            setattr(args, key, value)


def cmd_reproduce(args: argparse.Namespace, argv: Sequence[str]) -> int:
    from harness.experiments import preregister
    from harness.papers import get_paper
    from harness.recipes import apply_overrides

    module = get_paper(args.paper)  # an unknown id raises, listing the known ones
    if args.params:
        _read_params(args)
    _defaults(args, scale="cpu", seeds=1, tag="full", executor="inprocess", preregistered=str(PREREGISTERED_DIR))
    _check_run_flags(args)
    if args.preregistered:
        prereg_path = preregister.path_for(args.preregistered, args.paper, args.scale)
        recipe, rule = preregister.apply(module.recipe(args.scale), preregister.load(prereg_path), prereg_path)
    else:
        recipe, rule = module.recipe(args.scale), "the recipe's own target (pre-registration not used)"
    recipe = apply_overrides(recipe, args.set)
    touched = [s for s in args.set if "target" in s.split("=")[0].split(".")]
    if touched:
        rule += f"; then set on the command line, not pre-registered: {', '.join(touched)}"
    out = Path(args.out) / args.paper / f"{args.scale}-{args.tag}.json"
    return _execute(recipe, _seeds(args.seeds), args, argv, module.CARD, out, target_rule=rule)


def cmd_calibrate(args: argparse.Namespace, argv: Sequence[str]) -> int:
    from harness.experiments import preregister
    from harness.recipes import apply_overrides

    if args.seeds < 1:
        raise ValueError(f"--seeds {args.seeds}: expected a positive number")
    made_for = None
    if args.paper == "matrix":  # the combinability matrix's shared recipe, as params.yaml's `combine` sets it
        recipe, made_for = _matrix_baseline(args)
    else:
        from harness.papers import get_paper

        module = get_paper(args.paper)
        if args.params:
            raise ValueError("--params is for `effitrain calibrate matrix`; a paper's recipe comes from its module")
        _defaults(args, scale="cpu")
        if args.scale not in SCALES:
            raise ValueError(f"scale '{args.scale}' is not one of {', '.join(SCALES)}")
        recipe = apply_overrides(module.recipe(args.scale), args.set)
    out = preregister.path_for(args.out, args.paper, args.scale)
    _prepare(recipe, [preregister.CALIBRATION_SEED], args.data_root)
    record = preregister.calibrate(recipe, args.seeds, args.tune, paper=args.paper, out=out, data_root=args.data_root,
                                   executor=args.executor, workers=args.workers, tracking_uri=_tracking(args),
                                   command=_command_line(argv), quiet=args.quiet, made_for=made_for)
    if not args.quiet:
        for arm, t in record["targets"].items():
            print(f"  {arm}: target {t['metric']} {t['value']:g} (calibration {t['calibration_metric']}: "
                  f"{', '.join(f'{v:.4g}' for v in t['values'])}; the recipe had {t['recipe_value']:g})")
        for arm, t in record["tuning"].items():
            print(f"  {arm}: chose {', '.join(t['chosen'])} ({t['budget']})")
    print(f"pre-registered: {out}")
    return 0


def _matrix_baseline(args: argparse.Namespace) -> tuple[Any, dict[str, Any]]:
    """The matrix's baseline recipe (from --params' `combine` section, then --set) and what it was made for."""
    from dataclasses import replace

    from harness.experiments import matrix, preregister

    combine = argparse.Namespace(params=args.params, recipe=None, scale=args.scale, seeds=None, executor=None,
                                 techniques=[], set=[], settings=None)
    if args.params:
        _read_combine_params(combine)
    _defaults(combine, recipe="mnist_cnn", scale="cpu")
    args.scale = combine.scale
    overrides = combine.set + args.set
    plan = matrix.make_plan(combine.recipe, combine.scale, overrides, combine.techniques or None, combine.settings,
                            aa_control=False)
    # The baseline (it fixes the target) and the single techniques `--tune` names, with the teacher they may need;
    # pairs are never tuned: they run at their techniques' settings (matrix.spread_tuning).
    tuned = {preregister.parse_grid(t)[0] for t in args.tune}
    keep = tuple(a for a in plan.recipe.arms if a.name in {"baseline", matrix.TEACHER} | tuned)
    recipe = replace(plan.recipe, arms=keep)
    return recipe, {"name": combine.recipe, "overrides": overrides}


def _read_params(args: argparse.Namespace) -> None:
    """Scale, seeds, tag and the tag's overrides for this paper from a params.yaml; explicit flags win.

    `--scale`, `--seeds` and `--tag` given on the command line beat the file's `reproduce` values;
    `--set` overrides apply after the file's `budgets.<tag>.<paper>` ones, so they win too.
    """
    import yaml

    try:
        params = yaml.safe_load(Path(args.params).read_text())
        rep = params["reproduce"]
        _defaults(args, scale=str(rep["scale"]), seeds=int(rep["seeds"]), tag=str(rep["tag"]),
                  preregistered=str(rep.get("preregistered", PREREGISTERED_DIR)))
        budgets = params.get("budgets", {})
        if args.tag not in budgets:
            raise ValueError(f"{args.params}: no budgets.{args.tag} for tag {args.tag!r}")
        args.set = [str(x) for x in (budgets[args.tag].get(args.paper) or [])] + args.set
    except (OSError, yaml.YAMLError, KeyError, TypeError) as exc:
        raise ValueError(f"{args.params}: cannot read reproduce.scale/seeds/tag "
                         f"({type(exc).__name__}: {exc})") from None


def cmd_run(args: argparse.Namespace, argv: Sequence[str]) -> int:
    from dataclasses import replace

    from harness.recipes import Arm, apply_overrides, get_recipe
    from harness.techniques import compose

    _defaults(args, scale="cpu", seeds=1, tag="full", executor="inprocess")
    _check_run_flags(args)
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
    from datetime import datetime

    from harness.experiments import matrix, preregister
    from harness.experiments.jobs import code_hash, code_version
    from harness.experiments.session import parent_run
    from harness.results import combinability
    from harness.tracking import Tracker, provenance
    from harness.train.strategy import is_rank_zero

    if args.params:
        _read_combine_params(args)
    _defaults(args, recipe="mnist_cnn", scale="cpu", seeds=3, executor="inprocess", cost="flops",
              preregistered=str(PREREGISTERED_DIR))
    _check_run_flags(args)
    record, prereg_path = None, None
    if args.preregistered:
        prereg_path = preregister.path_for(args.preregistered, "matrix", args.scale)
        record = preregister.load(prereg_path)
    plan = matrix.make_plan(args.recipe, args.scale, args.set, args.techniques or None, args.settings,
                            aa_control=not args.no_aa_control, preregistered=record, preregistered_path=prereg_path)
    seeds = _seeds(args.seeds)
    preregister.check_seeds(seeds)
    seeds = _seeds(args.seeds)
    _prepare(plan.recipe, seeds, args.data_root)
    lead = is_rank_zero(args.devices)  # with --devices N, the other ranks train the same jobs and write nothing
    if lead:
        print(f"matrix: {len(plan.names)} techniques, {sum(w is None for *_, w in plan.pairs)} pairs to run, "
              f"{sum(w is not None for *_, w in plan.pairs)} incompatible; {len(plan.arms)} arms x {len(seeds)} "
              f"seed(s) on '{plan.recipe_name}' ({args.scale}), executor {args.executor}")
    uri = _tracking(args) if lead else None
    tracker = Tracker(uri) if uri else None
    with parent_run(tracker, matrix.EXPERIMENT, f"matrix {args.recipe} {args.scale}",
                    {"recipe": args.recipe, "scale": args.scale, "seeds": len(seeds), "executor": args.executor},
                    {"command": _command_line(argv)}) as parent:
        outcomes = matrix.run_matrix(plan, seeds, args.executor, args.workers, args.data_root, uri,
                                     args.ray_address, progress=not args.quiet, parent_run_id=parent,
                                     rerun=args.rerun, resume=args.resume, devices=args.devices)
        if not lead:
            return 0
        from harness import data as datamod
        from harness.measure import COLLAPSE

        classes = datamod.load_dataset(plan.recipe.dataset, args.data_root).num_classes
        rule = plan.target_rule or "the recipe's own target (pre-registration not used)"
        files = matrix.plan_code_files(plan)
        prov = {**provenance(), "code_hash": code_hash(files), "code_files": files}
        meta = {"command": _command_line(argv), "created": datetime.now(UTC).isoformat(timespec="seconds"),
                "code_version": code_version(), "executor": args.executor, "provenance": prov,
                "protocol": {"classes": classes, "collapse_accuracy": COLLAPSE / classes, "target_rule": rule}}
        summary = combinability.summarise(plan, outcomes, seeds, meta, cost=args.cost, aa_arm=plan.aa_arm)
        paths = combinability.write_outputs(summary, args.out)
        if tracker and parent:
            for path in paths:
                tracker.log_artifact(parent, path, "combinability")
    for p in summary["pairs"]:
        print(f"  {p['a']} + {p['b']}: {p['verdict']}: {p['reason']}")
    print("wrote " + ", ".join(str(p) for p in paths))
    return 0


def _read_combine_params(args: argparse.Namespace) -> None:
    """Recipe, scale, seeds, executor, techniques, overrides and settings from params.yaml's `combine`.

    Flags given on the command line win over the file; `--set` applies after the file's overrides.
    """
    import yaml

    try:
        c = yaml.safe_load(Path(args.params).read_text())["combine"]
        _defaults(args, recipe=str(c["recipe"]), scale=str(c["scale"]), seeds=int(c["seeds"]),
                  executor=str(c.get("executor", "inprocess")))
        for key in ("cost", "preregistered"):  # matrix only; calibrate matrix reads the rest
            if key in c and hasattr(args, key):
                _defaults(args, **{key: str(c[key])})
        args.techniques = args.techniques or list(c.get("techniques") or [])
        args.set = [str(x) for x in ((c.get("set") or {}).get(args.scale) or [])] + args.set
        args.settings = {str(k): dict(v) for k, v in (c.get("settings") or {}).items()}
    except (OSError, yaml.YAMLError, KeyError, TypeError, AttributeError) as exc:
        raise ValueError(f"{args.params}: cannot read combine.recipe/scale/seeds/set/settings "
                         f"({type(exc).__name__}: {exc})") from None


def cmd_report(args: argparse.Namespace) -> int:
    from harness.report.build import build_report

    path = build_report(args.runs_dir, args.out, matrix_dir=args.matrix_dir, allow_dirty=args.allow_dirty)
    print(f"report: {Path(path).resolve()}")
    return 0


def cmd_data(args: argparse.Namespace) -> int:
    from harness import data as datamod

    if args.action == "download":
        datamod.download(args.name, args.data_root)
        print(f"{args.name}: ok in {args.data_root}")
    else:
        summary = datamod.describe(datamod.load_dataset(args.name, args.data_root))  # stream sets: decodes 2
        if args.summary:
            from harness.runner import write_results

            write_results(summary, args.summary)
        print(f"{args.name}: train {tuple(summary['train'])}, test {tuple(summary['test'])}, md5 ok")
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
    print(f"MLflow UI on http://127.0.0.1:{args.port} (Ctrl-C stops it)")
    return subprocess.call(cmd)


def _print_summary(table: dict[str, Any]) -> None:
    from harness.report.cells import format_summary
    from harness.results.schema import ResultsTable

    print(format_summary(ResultsTable.from_dict(table)))


# ---------------------------------------------------------------- parser

def _version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("effitrain")
    except PackageNotFoundError:
        return "unknown (not installed)"


def _run_flags(p: argparse.ArgumentParser, *, seeds_default: int, tag: bool = True) -> None:
    """Flags every training command shares; defaults are None so --params can tell what was given."""
    p.add_argument("--scale", choices=SCALES, help="smoke (synthetic, seconds), cpu (minutes), paper "
                                                   "(the paper's setting, for a GPU); default cpu")
    p.add_argument("--seeds", type=int, help=f"number of seeds, 0..N-1 (default {seeds_default})")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                   help="override a recipe field, e.g. budget.epochs=2, optim.lr=0.05, teacher.budget.epochs=3")
    if tag:
        p.add_argument("--tag", help="name of this budget variant, in the results file name (default full)")
    p.add_argument("--executor", choices=EXECUTORS, help="where jobs run (default inprocess)")
    p.add_argument("--workers", type=int, help="processes: how many in parallel (default: one per CPU core)")
    p.add_argument("--ray-address", help="ray: the cluster to join, e.g. 127.0.0.1:6379 (default: start a local one)")
    p.add_argument("--devices", type=int, default=1, metavar="N",
                   help="train each run data-parallel over N processes (Lightning DDP: gloo on CPU, NCCL on "
                        "GPUs); the recipe's batch size stays the global batch, each process trains on 1/N of "
                        "it (default 1)")
    p.add_argument("--no-track", action="store_true", help="do not log to MLflow (runs are then kept in "
                                                           ".effitrain/runs for reuse and resume)")
    p.add_argument("--no-aa-control", action="store_true",
                   help="skip the A/A control (the baseline run twice per seed): the table then has no timing "
                        "noise floor, and its wall-clock verdicts say so")
    again = p.add_mutually_exclusive_group()
    again.add_argument("--rerun", action="store_true", help="run every job afresh instead of reusing recorded runs")
    again.add_argument("--resume", action="store_true", help="continue runs a killed or stopped command left "
                                                             "unfinished, from their last checkpoint")


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="effitrain", description="Reproduce and compare techniques for cheaper training.")
    parser.add_argument("--version", action="version", version=f"effitrain {_version()}")
    parser.add_argument("--data-root", default="datasets", help="where datasets live (default datasets/)")
    loud = parser.add_mutually_exclusive_group()
    loud.add_argument("-q", "--quiet", action="store_true", help="only errors and the paths of what was written")
    loud.add_argument("-v", "--verbose", action="store_true", help="also Lightning's and MLflow's own messages")
    sub = parser.add_subparsers(dest="command", required=True, parser_class=_Parser,
                                metavar="{list,calibrate,reproduce,run,matrix,report,data,bench,ui}")
    sub.add_parser("list", help="papers, techniques, recipes and datasets")
    p = sub.add_parser("reproduce", help="run a paper's arms over seeds; write reports/runs/PAPER/SCALE-TAG.json")
    p.add_argument("paper", help="a paper id, as `effitrain list` shows")
    _run_flags(p, seeds_default=1)
    p.add_argument("--out", default=str(RESULTS_DIR), help="results directory (default reports/runs)")
    p.add_argument("--params", help="take scale, seeds, tag and the tag's overrides from this params.yaml "
                                    "(flags given here win)")
    p.add_argument("--preregistered", metavar="DIR",
                   help="where `effitrain calibrate` wrote the paper's targets and tuned settings, "
                        "DIR/PAPER/SCALE.json (default reports/preregistered; none there, or an empty DIR: the "
                        "recipe's own target, and the table says so)")
    p = sub.add_parser("calibrate", help="fix a paper's targets (and tune named arms) on validation data with "
                                         "calibration seeds, before any reported run; write "
                                         "reports/preregistered/PAPER/SCALE.json")
    p.add_argument("paper", help="a paper id, as `effitrain list` shows, or `matrix` for the combinability "
                                 "matrix's shared recipe")
    p.add_argument("--scale", choices=SCALES, help="default cpu (matrix: params.yaml's combine.scale)")
    p.add_argument("--seeds", type=int, default=3, help="calibration seeds, from 1000 on (default 3)")
    p.add_argument("--params", help="matrix only: take its recipe, scale, overrides and settings from this "
                                    "params.yaml's `combine` section")
    p.add_argument("--tune", action="append", default=[], metavar="ARM:KEY=V1,V2,...",
                   help="tune an arm's setting over a grid on validation data, e.g. sgd_large:optim.lr=1,2,4; every "
                        "tuned arm must get the same number of trials (repeat for more arms or keys)")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="override a recipe field")
    p.add_argument("--executor", choices=EXECUTORS, default="inprocess", help="where jobs run (default inprocess)")
    p.add_argument("--workers", type=int, help="processes: how many in parallel")
    p.add_argument("--no-track", action="store_true", help="do not log to MLflow")
    p.add_argument("--out", default=str(PREREGISTERED_DIR), help="default reports/preregistered")
    p = sub.add_parser("run", help="baseline vs an ad-hoc technique combination on a recipe")
    p.add_argument("--recipe", required=True, help="a base recipe, as `effitrain list` shows")
    p.add_argument("--technique", action="append", default=[], help="repeat to combine techniques")
    _run_flags(p, seeds_default=1)
    p.add_argument("--out", default=str(RESULTS_DIR), help="results directory (default reports/runs)")
    p = sub.add_parser("matrix", help="baseline, each technique alone and every pair on one recipe; "
                                      "write reports/combinability.{csv,json,png}")
    p.add_argument("--recipe", help="the recipe every arm runs on (default mnist_cnn)")
    p.add_argument("--techniques", nargs="+", metavar="NAME", help="only these techniques (default: all registered)")
    _run_flags(p, seeds_default=3, tag=False)
    p.add_argument("--params", help="take recipe, scale, seeds, executor, techniques, overrides and settings "
                                    "from this params.yaml's `combine` section (flags given here win)")
    p.add_argument("--out", default="reports", help="where combinability.{csv,json,png} go (default reports)")
    p.add_argument("--cost", choices=["flops", "seconds", "steps", "samples"],
                   help="the cost to target S and the interactions are measured in (default flops; wall-clock "
                        "seconds are reported beside it, or FLOPs when seconds lead)")
    p.add_argument("--preregistered", metavar="DIR",
                   help="where `effitrain calibrate matrix` wrote the target, DIR/matrix/SCALE.json (default "
                        "reports/preregistered; an empty DIR: the recipe's own target, and the matrix says so)")
    p.set_defaults(settings=None, tag="matrix")  # technique arguments come only from params.yaml's combine.settings
    p = sub.add_parser("report", help="build reports/index.html and reports/report.pdf from reports/runs")
    p.add_argument("--runs-dir", default=str(RESULTS_DIR), help="the results tables (default reports/runs)")
    p.add_argument("--matrix-dir", help="where combinability.{json,png} are (default: the --out folder)")
    p.add_argument("--out", default="reports", help="where the site and report.pdf go (default reports)")
    p.add_argument("--allow-dirty", action="store_true",
                   help="include tables whose runs came from uncommitted code (provenance.git_dirty), each marked "
                        "dirty on its page and in the PDF; without it such a table is refused")
    p = sub.add_parser("data", help="download (online) or check a dataset")
    p.add_argument("action", choices=["download", "check"])
    p.add_argument("name", help="a dataset name, as `effitrain list` shows")
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


def _set_verbosity(args: argparse.Namespace) -> None:
    level = logging.DEBUG if args.verbose else logging.ERROR if args.quiet else logging.WARNING
    for name in ("lightning.pytorch", "lightning.fabric", "mlflow", "alembic"):
        logging.getLogger(name).setLevel(level)


def main(argv: Sequence[str] | None = None) -> int:
    from harness.experiments.jobs import RunFailedError
    from harness.experiments.session import Stopped, handle_signals

    argv = list(sys.argv[1:] if argv is None else argv)
    try:
        with handle_signals():
            args = build_parser().parse_args(argv)
            _set_verbosity(args)
            handlers = {"list": cmd_list, "report": cmd_report, "data": cmd_data, "bench": cmd_bench, "ui": cmd_ui}
            if args.command in ("reproduce", "run", "matrix", "calibrate"):
                return {"reproduce": cmd_reproduce, "run": cmd_run, "matrix": cmd_matrix,
                        "calibrate": cmd_calibrate}[args.command](args, argv)
            return handlers[args.command](args)
    except SystemExit as exc:
        return int(exc.code or 0)
    except (ValueError, FloatingPointError) as exc:
        return _fail(str(exc).splitlines()[0] if str(exc) else type(exc).__name__)
    except RunFailedError as exc:  # a run raised: not the user's input, so not exit 2
        print(f"effitrain: error: {str(exc).splitlines()[0]} (traceback above)", file=sys.stderr)
        return 1
    except Stopped as exc:
        print(f"effitrain: {exc}; unfinished runs are marked KILLED (continue with --resume)", file=sys.stderr)
        return exc.exit_code


if __name__ == "__main__":
    sys.exit(main())
