"""Builders shared by the report tests: results tables and a combinability matrix, made with the schema's records.

One paper (hinton2015_distillation) whose table has a claim the paper gives no number for, a run
that never reached the target and a technique arm whose speedup is unknown; variants of it for a
second family and an `effitrain run` table without a paper; and a three-technique matrix.
"""

from __future__ import annotations

import copy
import io
from dataclasses import replace
from pathlib import Path

from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from harness.results.schema import (
    ArmResult,
    CardSummary,
    ClaimResult,
    ClaimVerdict,
    Combinability,
    CostView,
    Pair,
    PairVerdict,
    Protocol,
    Provenance,
    ResultsTable,
    Run,
    Single,
    Speedup,
    SpeedupVerdict,
    Target,
    variant,
    write_table,
)

__all__ = ["PAPER", "HINTON_BIBTEX", "MARKUP", "MP_TITLE", "NO_PAPER", "run", "table",
           "write", "paper_tables", "combinability", "heatmap"]

PAPER = "hinton2015_distillation"
HINTON_BIBTEX = ("@article{hinton2015distilling,\n  title={Distilling the Knowledge in a Neural Network},\n"
                 "  author={Hinton, Geoffrey and Vinyals, Oriol and Dean, Jeff},\n  journal={arXiv preprint "
                 "arXiv:1503.02531},\n  year={2015}\n}")
MP_BIBTEX = ("@inproceedings{micikevicius2018mixed,\n  title={Mixed Precision Training},\n  author={Micikevicius, "
             "Paulius and others},\n  booktitle={ICLR},\n  year={2018}\n}")
# Text that is Typst markup: spliced into the template it would fail to compile (@nokey, #panic).
MARKUP = 'Soft targets *help* #panic("spliced") $x^2$ @nokey <lbl> `raw` \\ _under_ = head'
MP_TITLE = "Mixed Precision Training"
NO_PAPER = "run-mnist_cnn"


def run(seed: int, tta: float | None, top: float, errors: int) -> Run:
    """One run record: a rising accuracy curve that ends at `top`."""
    curve = [{"step": 50 * (i + 1), "train_seconds": 1.5 * (i + 1) + 0.1 * seed,
              "val/acc": top - 0.012 * (5 - i) ** 1.5, "val/loss": 0.3 / (i + 1)} for i in range(6)]
    return Run(seed=seed, run_id=f"run{seed}", train_seconds=9.3, eval_seconds=0.8, eval_share=0.08,
               warmup_seconds=0.4, steps=300, samples=38400, time_to_target_s=tta,
               final={"test/acc": top - 0.001, "test/errors": errors, "val/acc": top}, curve=curve,
               stopped_by="epochs")


def _claims() -> list[ClaimResult]:
    return [
        ClaimResult(id="distilled_errors", text="distilled student test errors", metric="test/errors",
                    arm="distilled", claimed=74, paper_baseline=146, source="Section 3", tolerance=10,
                    measured=190.0, low=180.0, high=200.0, verdict=ClaimVerdict.NOT_REPRODUCED),
        ClaimResult(id="soft_targets_help", text="soft targets beat hard targets", metric="test/acc",
                    arm="distilled", claimed=None, source="Section 3, text", tolerance=0.002, measured=0.981,
                    low=0.979, high=0.983, verdict=ClaimVerdict.INCONCLUSIVE),
        ClaimResult(id="full_mnist", text="60k-image result", metric="test/acc", arm="distilled", claimed=0.9926,
                    source="Table 1", tolerance=0.001, measured=None, low=None, high=None,
                    verdict=ClaimVerdict.NOT_RUN),
    ]


def table(scale: str, budget: str) -> ResultsTable:
    """hinton2015_distillation at `scale` (no budget tag, so its file is `<scale>.json`)."""
    card = CardSummary(title="Distilling the Knowledge in a Neural Network <script>alert(1)</script>",
                       authors="Hinton, Vinyals, Dean", venue="NIPS Deep Learning Workshop", year=2015,
                       arxiv="1503.02531", url="https://arxiv.org/abs/1503.02531",
                       summary="Train a small student on a teacher's softened outputs.", bibtex=HINTON_BIBTEX)
    arms = {
        "hard_student": ArmResult(description="student on hard labels",
                                  runs=[run(0, 6.2, 0.975, 250), run(1, None, 0.965, 350)]),
        "distilled": ArmResult(description="student on teacher soft targets", techniques=["distillation"],
                               runs=[run(0, 5.1, 0.982, 180), run(1, 5.5, 0.981, 190)]),
        "temperature_1": ArmResult(description="T=1", techniques=["distillation"],
                                   runs=[run(0, None, 0.95, 500), run(1, None, 0.95, 500)]),
    }
    speedups = {"distilled": Speedup(speedup=1.21, low=0.95, high=1.4, success_rate=1.0,
                                     verdict=SpeedupVerdict.INCONCLUSIVE),
                "temperature_1": Speedup(speedup=None, low=None, high=None, success_rate=0.0,
                                         verdict=SpeedupVerdict.INCONCLUSIVE)}
    prov = Provenance(git_commit="0123abcd", git_dirty=True, torch="2.5.1", lightning="2.4.0", device="cpu",
                      cpu_count=2, dataset_md5={"mnist/train.npz": "d41d8cd9"})
    return ResultsTable(paper=PAPER, scale=scale, card=card, budget=budget,
                        command=f"effitrain reproduce {PAPER} --scale {scale} --seeds 2",
                        created="2026-11-21T18:00:00+00:00", seeds=[0, 1],
                        target=Target(metric="val/acc", value=0.97, mode="max"), baseline_arm="hard_student",
                        arms=arms, speedups=speedups, claims=_claims(), provenance=prov)


def write(runs: Path, results: ResultsTable) -> Path:
    """Write a table where the report looks for it: `<runs>/<paper>/<variant>.json`."""
    return write_table(results, runs / results.paper / f"{variant(results)}.json")


def paper_tables() -> list[ResultsTable]:
    """hinton (family model), a copy as micikevicius (family arithmetic) and a run without a paper."""
    hinton = table("cpu", "cpu: students 2 epochs on 10k MNIST")
    hinton.card = replace(hinton.card, family="model", summary=MARKUP, notes="Our tolerances.")
    mp = copy.deepcopy(hinton)
    mp.paper = "micikevicius2018_mixed_precision"
    mp.card = replace(mp.card, title=MP_TITLE, family="arithmetic", authors="Micikevicius et al.",
                      summary="fp16 with fp32 master weights and loss scaling.", bibtex=MP_BIBTEX)
    no_paper = copy.deepcopy(hinton)
    no_paper.paper, no_paper.claims = NO_PAPER, []
    no_paper.card = CardSummary(title="mnist_cnn", authors="", venue="", year=None, summary="MNIST CNN")
    return [hinton, mp, no_paper]


def _pair(a: str, b: str, verdict: PairVerdict, **numbers: float | None) -> Pair:
    """One pair record; numbers not given are null, as for an incompatible pair."""
    nulls = {f"{k}{suffix}": None for k in ("s_a", "s_b", "s_ab", "interaction") for suffix in ("", "_low", "_high")}
    nulls.update({k: None for k in ("acc_base", "dacc_a", "dacc_b", "dacc_ab", "dacc_sum", "dacc_excess",
                                    "success_ab")})
    return Pair(**{**nulls, **numbers}, a=a, b=b, verdict=verdict,
                status="incompatible" if verdict is PairVerdict.INCOMPATIBLE else "composed",
                reason=f"{a} and {b}: reason <b>in words</b>", recipe="mnist_cnn", recipe_note="the shared recipe",
                seeds=3)


def combinability(prov: Provenance) -> Combinability:
    """A matrix of three techniques: one stacking pair, one overlapping pair, one incompatible pair."""
    single = dict(speedup=1.2, low=1.05, high=1.4, verdict=SpeedupVerdict.FASTER, success_rate=1.0, dacc=-0.002,
                  dacc_low=-0.004, dacc_high=0.0, error=None)
    singles = {"bf16_autocast": Single(**single, paper="micikevicius2018_mixed_precision"),
               "distillation": Single(**{**single, "speedup": 0.8, "low": 0.7, "high": 0.9,
                                         "verdict": SpeedupVerdict.SLOWER}, paper="hinton2015_distillation"),
               "fixed_point": Single(**{**single, "verdict": SpeedupVerdict.INCONCLUSIVE},
                                     paper="gupta2015_fixed_point")}
    pairs = [_pair("bf16_autocast", "distillation", PairVerdict.STACKS, s_a=1.2, s_a_low=1.05, s_a_high=1.4,
                   s_b=0.8, s_b_low=0.7, s_b_high=0.9, s_ab=0.97, s_ab_low=0.9, s_ab_high=1.05, interaction=1.01,
                   interaction_low=0.9, interaction_high=1.1, dacc_ab=-0.003, dacc_sum=-0.004, dacc_excess=0.001),
             _pair("bf16_autocast", "fixed_point", PairVerdict.INCOMPATIBLE),
             _pair("distillation", "fixed_point", PairVerdict.OVERLAP, s_ab=0.5, interaction=0.52)]
    return Combinability(
        scale="cpu", recipe="mnist_cnn", recipe_description="MNIST 55k/5k, CNN conv16-conv32-FC128",
        budget="epochs=2; batch 128", overrides=["n_train=12000"],
        target=Target(metric="val/acc", value=0.97, mode="max"), seeds=[0, 1, 2],
        techniques=["bf16_autocast", "distillation", "fixed_point"],
        composition_order=["bf16_autocast", "fixed_point", "distillation"],
        recipe_rule="every pair runs on mnist_cnn, the one recipe all three techniques accept",
        command="effitrain matrix --scale cpu --seeds 3", created="2026-11-22T09:00:00+00:00",
        code_version="abc123", runs={"run": 12, "reused": 3, "failed": 0}, provenance=prov,
        singles=singles, pairs=pairs, cost="flops",
        secondary=CostView(cost="seconds", singles={n: Single(**{**vars(x), "verdict": SpeedupVerdict.TIMING_NOISE})
                                                    for n, x in singles.items()},
                           pairs=[_pair("bf16_autocast", "distillation", PairVerdict.CAPPED),
                                  _pair("bf16_autocast", "fixed_point", PairVerdict.INCOMPATIBLE),
                                  _pair("distillation", "fixed_point", PairVerdict.STACKS, s_ab=0.9, interaction=1.0)]),
        protocol=Protocol(min_seeds=5, interval_method="range of 3 seeds (no verdict under 5)", coverage=None,
                          noise_floor=1.07, aa_arm="baseline_aa", arm_order="drawn from the seed", classes=10,
                          collapse_accuracy=0.15, capped_runs=["bf16_autocast+distillation seed 2"],
                          collapsed_runs=[], target_rule="pre-registered (reports/preregistered/matrix/cpu.json)"))


def heatmap(path: Path) -> None:
    """A small PNG standing in for the matrix command's heatmap."""
    fig = Figure(figsize=(3, 2), dpi=60)
    FigureCanvasAgg(fig)
    fig.add_subplot().imshow([[1.0, 0.5], [0.5, 1.0]])
    buf = io.BytesIO()
    fig.savefig(buf, format="png")
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(buf.getvalue())
