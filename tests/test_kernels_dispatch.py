"""kernels/_common: the dispatch rule on made-up implementations, and the seed and hash helpers."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from kernels._common import dispatch
from kernels._common import random as krandom


def _table(cpp_missing: str | None = None) -> dispatch.Implementations:
    """reference / cpp (fp32 only) / triton paths that return their own name."""
    return dispatch.Implementations(
        "toy", dispatch.reference(lambda x: "reference"),
        dispatch.Impl("cpp", lambda x: "cpp", devices=("cpu",), dtypes=(torch.float32,),
                      missing=lambda: cpp_missing),
        dispatch.triton(lambda x: "triton"))


@pytest.fixture(autouse=True)
def _no_override(monkeypatch):
    monkeypatch.delenv(dispatch.ENV_VAR, raising=False)


def test_auto_prefers_cpp_on_cpu_and_falls_back_to_the_reference():
    x = torch.zeros(3)
    assert _table().pick("auto", x).name == "cpp"
    assert _table().pick("auto", x.double()).name == "reference"  # cpp takes fp32 only
    assert _table("no compiler").pick("auto", x).name == "reference"
    assert _table().pick("auto", x.to("meta")).name == "reference"  # a device without a fast path


def test_auto_never_picks_triton_on_cpu_but_a_name_can(monkeypatch):
    x = torch.zeros(3)
    monkeypatch.setenv("TRITON_INTERPRET", "1")
    assert _table("no compiler").pick("auto", x).name == "reference"
    assert _table().pick("triton", x).name == "triton"
    monkeypatch.setenv("TRITON_INTERPRET", "0")
    with pytest.raises(ValueError, match="TRITON_INTERPRET"):
        _table().pick("triton", x)


def test_named_paths_that_cannot_run_are_value_errors():
    x = torch.zeros(3)
    with pytest.raises(ValueError, match="no compiler"):
        _table("no compiler").pick("cpp", x)
    with pytest.raises(ValueError, match="float64"):
        _table().pick("cpp", x.double())
    with pytest.raises(ValueError, match="not one of"):
        _table().pick("fortran", x)
    only_reference = dispatch.Implementations("ref-only", dispatch.reference(lambda x: "reference"))
    with pytest.raises(ValueError, match="no such path"):
        only_reference.pick("cpp", x)


def test_environment_override(monkeypatch):
    x = torch.zeros(3)
    monkeypatch.setenv(dispatch.ENV_VAR, "reference")
    assert _table().pick("auto", x).name == "reference"
    assert _table().pick("cpp", x).name == "cpp"  # an explicit impl= wins over the variable
    monkeypatch.setenv(dispatch.ENV_VAR, "cpp")
    with pytest.raises(ValueError, match=f"{dispatch.ENV_VAR}=cpp cannot run"):
        _table("no compiler").pick("auto", x)
    only_reference = dispatch.Implementations("ref-only", dispatch.reference(lambda x: "reference"))
    assert only_reference.pick("auto", x).name == "reference"  # ops without the named path keep their choice
    monkeypatch.setenv(dispatch.ENV_VAR, "fastest")
    with pytest.raises(ValueError, match=dispatch.ENV_VAR):
        _table().pick("auto", x)


def test_a_table_needs_a_reference_and_distinct_known_names():
    with pytest.raises(ValueError, match="reference"):
        dispatch.Implementations("bad", dispatch.Impl("cpp", print))
    with pytest.raises(ValueError):
        dispatch.Implementations("bad", dispatch.reference(print), dispatch.Impl("cuda", print))


@pytest.mark.parametrize("seed", [0, 7, 2**63 - 1, np.int64(5), torch.tensor(3)])
def test_check_seed_accepts_integers(seed):
    assert krandom.check_seed(seed) == int(seed)


@pytest.mark.parametrize("seed", [-1, 2**63, 1.5, "3", None])
def test_check_seed_refuses_the_rest(seed):
    with pytest.raises(ValueError, match="seed"):
        krandom.check_seed(seed)


def test_drawn_seeds_follow_torchs_generator():
    torch.manual_seed(0)
    first = krandom.seed_or_draw(None)
    torch.manual_seed(0)
    assert krandom.seed_or_draw(None) == first and 0 <= first < 2**31
    assert krandom.seed_or_draw(None, torch.Generator().manual_seed(1)) == krandom.draw_seed(
        torch.Generator().manual_seed(1))


def test_host_hash_helpers():
    """fmix32 is a bijection with murmur3's known value for 1; keys are int32 kernel arguments."""
    assert krandom.fmix32(0) == 0 and krandom.fmix32(1) == 0x514E28B7
    for seed in (0, 1, 2**40 + 5, 2**63 - 1):
        for keys in (krandom.rounding_keys(seed), krandom.sparsify_keys(seed)):
            assert all(-(2**31) <= k < 2**31 for k in keys)
        assert 0 <= krandom.crs_key32(seed) < 2**31
