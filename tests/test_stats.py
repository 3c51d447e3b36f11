"""The protocol's statistics (harness/results/stats.py) and the claim judge built on them."""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy import stats as sp

from harness.cards import Claim, PaperCard
from harness.results.stats import (
    MIN_SEEDS,
    claim_verdict,
    for_fidelity,
    interval_method,
    median_interval,
    noise_floor,
    ordering_verdict,
    paired_ratios,
    speedup,
)
from harness.runner import RunResult
from tests.tiny import tiny_recipe


@pytest.mark.parametrize("n", range(6, 16))
def test_median_interval_is_scipys_exact_quantile_interval(n):
    x = np.random.default_rng(n).normal(size=n)
    low, high, coverage = median_interval(x)
    ci = sp.quantile_test(x, p=0.5).confidence_interval(0.95)
    assert (low, high) == (ci.low, ci.high) and coverage >= 0.95


def test_five_seeds_give_the_range_with_its_true_coverage_and_fewer_give_no_interval():
    low, high, coverage = median_interval([3.0, 1.0, 2.0, 5.0, 4.0])
    assert (low, high) == (1.0, 5.0) and coverage == pytest.approx(1 - 2 / 32)  # not a "95%" it cannot have
    assert median_interval([1.0, 2.0, 3.0, 4.0]) is None
    assert "93.8% at 5 seeds" in interval_method(5) and interval_method(3).startswith("range of 3 seeds")


def test_speedups_are_paired_by_seed():
    base = [10.0, 20.0, 30.0, 40.0, 50.0]  # seeds differ a lot; the technique is 1.5x faster on every one
    paired = speedup(base, [b / 1.5 for b in base])
    assert paired["speedup"] == pytest.approx(1.5) and paired["low"] == pytest.approx(1.5)
    assert paired["verdict"] == "faster" and paired["n_seeds"] == 5
    shuffled = speedup(base, [b / 1.5 for b in base[::-1]])  # same values, pairing broken: no longer clear
    assert shuffled["verdict"] == "inconclusive"


def test_speedup_verdicts():
    assert speedup([10.0] * 5, [5.0, 5.5, 6.0, 5.2, 4.8])["verdict"] == "faster"
    assert speedup([5.0] * 5, [10.0, 9.0, 11.0, 10.0, 12.0])["verdict"] == "slower"
    assert speedup([10.0, 5.0, 12.0, 8.0, 9.0], [9.0, 11.0, 6.0, 8.0, 9.5])["verdict"] == "inconclusive"
    four = speedup([10.0] * 4, [5.0, 5.5, 6.0, 5.2])
    assert four["verdict"] == "range only (under 5 seeds)" and (four["low"], four["high"]) == (10 / 6, 2.0)
    never = speedup([10.0] * 5, [None] * 5)
    assert never["speedup"] == 0.0 and never["success_rate"] == 0.0 and never["verdict"] == "slower"
    assert speedup([None] * 5, [None] * 5)["verdict"] == "target not reached"
    only = speedup([None] * 5, [4.0] * 5)
    assert only["speedup"] is None and only["verdict"] == "only the technique reached the target"
    assert paired_ratios([None, 2.0, None], [1.0, None, None]) == [math.inf, 0.0]  # neither reached: no ratio


def test_a_wall_clock_speedup_inside_the_aa_noise_floor_is_timing_noise():
    base, tech = [10.0] * 5, [9.0, 8.9, 9.1, 8.8, 9.0]  # about 1.11x on every seed
    assert speedup(base, tech)["verdict"] == "faster"
    floor = noise_floor([1.0, 1.0, 1.0, 1.0, 1.0], [1.1, 0.95, 1.0, 0.9, 1.02])  # A/A: up to 1/0.9 either way
    assert floor == pytest.approx(1 / 0.9)
    assert speedup(base, tech, floor)["verdict"] == "inconclusive (timing noise)"
    assert speedup(base, [5.0] * 5, floor)["verdict"] == "faster"


@pytest.mark.parametrize("kind, claimed, tol, low, high, claimed_high, verdict", [
    ("point", 74, 10, 70, 80, None, "reproduced"),
    ("point", 74, 10, 90, 120, None, "not reproduced"),
    ("point", 74, 10, 60, 90, None, "inconclusive"),
    ("at_least", 7, 0, 7.5, 9, None, "reproduced"),  # "upwards of 7%"
    ("at_least", 7, 0, 2, 5, None, "not reproduced"),
    ("at_least", 7, 0, 5, 9, None, "inconclusive"),
    ("at_most", 5.92, 0, 1.1, 1.3, None, "consistent"),  # "up to 5.92x": a value below is consistent
    ("at_most", 5.92, 0, 6.5, 7.0, None, "not reproduced"),
    ("at_most", 5.92, 0, 5.0, 7.0, None, "inconclusive"),
    ("range", 2, 0, 2.5, 3.5, 4, "reproduced"),
    ("range", 2, 0, 4.5, 5, 4, "not reproduced"),
    ("point", None, 0, 1, 2, None, "no number to compare"),
])
def test_claim_verdict_by_kind(kind, claimed, tol, low, high, claimed_high, verdict):
    assert claim_verdict(kind, claimed, tol, low, high, claimed_high) == verdict


def test_ordering_and_substitutes():
    assert ordering_verdict([(1.0, 3.0), (0.5, 2.0)]) == "reproduced"
    assert ordering_verdict([(1.0, 3.0), (-4.0, -1.0)]) == "not reproduced"
    assert ordering_verdict([(1.0, 3.0), (-1.0, 2.0)]) == "inconclusive"
    assert for_fidelity("not reproduced", "substitute") == "differs (substitute)"
    assert for_fidelity("reproduced", "substitute") == "agrees (substitute)"
    assert for_fidelity("not reproduced", "variant") == "not reproduced"


def _run(arm, seed, errors, **kw):
    return RunResult(arm, seed, None, 1.0, 0.1, 0.1, 0.1, 10, 320, 1e6, 1.0, None,
                     {"test/errors": errors, "test/acc": 1 - errors / 1e4}, [], "steps", **kw)


def _judge(claims, results, seeds=MIN_SEEDS, arms=None):
    from harness.experiments.reproduce import judge_claims
    from harness.recipes import Arm

    card = PaperCard("p", "t", "a", "v", 2000, "s", ("mnist",), ("mlp",), claims=claims)
    recipe = tiny_recipe(scale="cpu", arms=arms or [Arm(a) for a in results], baseline=next(iter(results)))
    return {r["id"]: r for r in judge_claims(card, recipe, results)}


def test_claims_are_judged_per_seed_by_kind_with_ranges_under_five_seeds():
    errs = {"base": (98, 100, 104, 101, 99), "tech": (50, 49, 55, 52, 51), "teacher": (30, 31, 29, 33, 30)}
    results = {a: [_run(a, s, e) for s, e in enumerate(v)] for a, v in errs.items()}
    claims = (
        Claim("b", "base errors", "test/errors", "base", 100, "Table 1", tolerance=10),
        Claim("gain", "tech minus base", "test/errors", "tech", -50, "Table 1", tolerance=10, minus_arm="base"),
        Claim("order", "teacher < tech < base", "test/errors", "tech", None, "Table 1", kind="ordering",
              arms=("teacher", "tech", "base")),
        Claim("mem", "memory", "memory/peak_ratio", "tech", 0.5, "Abstract"),
        Claim("big", "paper only", "test/errors", "tech", 1, "Table 2", scales=("paper",)),
    )
    rows = _judge(claims, results)
    assert rows["b"]["measured"] == 100 and rows["b"]["verdict"] == "reproduced"
    assert rows["gain"]["measured"] == -49 and rows["gain"]["verdict"] == "reproduced"  # paired by seed
    assert rows["order"]["verdict"] == "reproduced" and rows["order"]["kind"] == "ordering"
    assert rows["mem"]["verdict"] == "not measured" and rows["big"]["verdict"] == "not run at this scale"
    three = _judge(claims, {a: r[:3] for a, r in results.items()})
    assert three["b"]["verdict"] == "range only (under 5 seeds)" and three["b"]["low"] == 98
    assert three["order"]["verdict"] == "range only (under 5 seeds)"


def test_capped_collapsed_and_substitute_arms_get_their_own_verdicts():
    from harness.recipes import Arm

    base = [_run("base", s, 100) for s in range(5)]
    capped = [_run("tech", s, 100, capped=s == 2) for s in range(5)]
    collapsed = [_run("tech", s, 100, collapsed=s == 0) for s in range(5)]
    claim = (Claim("t", "tech errors", "test/errors", "tech", 20, "Table 1", tolerance=5),)
    assert _judge(claim, {"base": base, "tech": capped})["t"]["verdict"] == "capped"
    assert _judge(claim, {"base": base, "tech": collapsed})["t"]["verdict"] == "collapsed"
    arms = [Arm("base"), Arm("tech", fidelity="substitute", fidelity_note="our own method")]
    row = _judge(claim, {"base": base, "tech": [_run("tech", s, 100) for s in range(5)]}, arms=arms)["t"]
    assert row["verdict"] == "differs (substitute)" and row["fidelity"] == "substitute"


def test_claims_refuse_unknown_kinds_and_arms_refuse_unexplained_fidelity():
    from harness.recipes import Arm

    with pytest.raises(ValueError, match="kind 'up to'"):
        Claim("x", "x", "test/acc", "a", 1.0, "s", kind="up to")
    with pytest.raises(ValueError, match="ordering needs"):
        Claim("x", "x", "test/acc", "a", None, "s", kind="ordering", arms=("a",))
    with pytest.raises(ValueError, match="fidelity_note"):
        tiny_recipe(arms=[Arm("baseline"), Arm("v", fidelity="variant")]).validate()
