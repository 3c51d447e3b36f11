"""The contract every kernel family keeps, checked over `kernels.FAMILIES` from each family's `CONTRACT`.

For each public op (kernels/_common/contract.py `OpCase`): its custom ops pass `torch.library.opcheck`;
every fast path that can run here matches the reference (bit for bit, or for stochastic ops in
distribution, within 6 standard errors per element); bad input is a ValueError; a seed fixes the bits
and another seed changes them; the C++ and Triton paths give the same bits where the family says they
share a hash; and the dispatch override (`impl=`, `EFFITRAIN_KERNEL_IMPL`) picks what it names.
Without a GPU the Triton paths run under the interpreter (tests/conftest.py sets TRITON_INTERPRET=1).
A family added to FAMILIES is tested here without editing this file.
"""

from __future__ import annotations

import pkgutil
import shutil

import pytest
import torch

import kernels
from kernels._common import build, dispatch
from kernels._common.contract import FamilyContract, OpCase

CONTRACTS = {name: kernels.load_family(name).CONTRACT for name in kernels.FAMILIES}
CASES = [pytest.param(case, id=f"{family}-{case.name}") for family, c in CONTRACTS.items() for case in c.ops]
FAST = ("cpp", "triton")
# torch's fake-tensor converter reads .grad of a non-leaf while opcheck tests autograd
# (torch/_subclasses/meta_utils.py safe_grad); aten.relu trips it too, so it is not these ops' doing.
_NON_LEAF_GRAD = "ignore:The .grad attribute of a Tensor that is not a leaf:UserWarning"


def _cases(keep) -> list:
    """The CASES whose OpCase satisfies `keep`."""
    return [param for param in CASES if keep(param.values[0])]


def _bits(t: torch.Tensor) -> torch.Tensor:
    """The tensor's raw bits (NaN payloads and signed zeros included), for exact comparison."""
    t = t.detach().contiguous()
    if not t.is_floating_point():
        return t
    return t.view({2: torch.int16, 4: torch.int32, 8: torch.int64}[t.element_size()])


def _same_bits(a: torch.Tensor, b: torch.Tensor) -> bool:
    return a.dtype == b.dtype and a.shape == b.shape and torch.equal(_bits(a), _bits(b))


def _runnable(case: OpCase, impl: str, inputs: tuple) -> None:
    """Skip unless `impl` is declared for the op and can run on these inputs here."""
    if impl not in case.impls.names:
        pytest.skip(f"{case.name} declares no {impl} path")
    reason = case.impls.impls[impl].unavailable(case.dispatch_tensors(inputs))
    if reason is not None:
        pytest.skip(f"{case.name}: {impl} cannot run here: {reason}")


def _z(r: torch.Tensor, f: torch.Tensor, slack: torch.Tensor | float = 0.0) -> torch.Tensor:
    """|mean(f) - mean(r)| (over dim 0, less `slack`) in standard errors of the difference of two sample means."""
    n = r.shape[0]
    diff = ((f.mean(0) - r.mean(0)).abs() - slack).clamp(min=0)
    se = ((r.var(0) + f.var(0)) / n).sqrt()
    return torch.where(diff > 0, diff / se, torch.zeros_like(diff))  # inf where a deterministic value differs


def _assert_same_distribution(case: OpCase, impl: str, inputs: tuple) -> None:
    """`impl` and the reference, each over `case.draws` seeds, have the same distribution, within 6 standard
    errors (plus the case's float tolerance): per element, the mean and mean square; for a few fixed
    projections of the whole output (all ones, random weights, the reference's centred mean), the mean and
    the variance. The projections pool many elements, so they see a small bias or a wrong spread (an
    unbiased sampler with other probabilities) that one element's few draws cannot; seeds are independent
    draws even where the elements of one draw are not (crs)."""
    n = case.draws
    ref = torch.stack([case.call(inputs, seed, "reference").double() for seed in range(n)]).flatten(1)
    fast = torch.stack([case.call(inputs, seed, impl).double() for seed in range(n, 2 * n)]).flatten(1)
    for power in (1, 2):
        r, f = ref**power, fast**power
        z = _z(r, f, case.atol * power + case.rtol * r.mean(0).abs())
        worst = int(z.argmax())
        assert float(z[worst]) <= 6, f"{case.name} {impl}: moment {power} of element {worst}: {float(z[worst]):.3g} SE"
    mean = ref.mean(0)
    weights = torch.stack([torch.ones_like(mean), torch.randn(mean.shape, generator=torch.Generator().manual_seed(0),
                                                             dtype=torch.float64), mean - mean.mean()], 1)
    r, f = ref @ weights, fast @ weights
    slack = case.atol * weights.abs().sum(0) + case.rtol * (ref.abs() @ weights.abs()).mean(0)
    spread_r, spread_f = (r - r.mean(0)) ** 2, (f - f.mean(0)) ** 2
    z_mean, z_spread = _z(r, f, slack), _z(spread_r, spread_f, 2 * slack * r.abs().mean(0))
    assert bool((z_mean <= 6).all()), f"{case.name} {impl}: projected means differ by {z_mean.tolist()} SE"
    assert bool((z_spread <= 6).all()), f"{case.name} {impl}: projected variances differ by {z_spread.tolist()} SE"


# ---------------------------------------------------------------- the family list

def test_families_are_exactly_the_family_modules():
    """FAMILIES lists every public module of kernels/ and nothing else; an unknown name is an error."""
    modules = {m.name for m in pkgutil.iter_modules(kernels.__path__) if not m.name.startswith("_")}
    assert set(kernels.FAMILIES) == modules - {"benchmarks"}
    assert kernels.load_families() == list(kernels.FAMILIES)
    with pytest.raises(ValueError, match="gradapprox"):
        kernels.load_family("gradapprox")


@pytest.mark.parametrize("family", kernels.FAMILIES)
def test_family_declares_its_contract(family):
    contract = CONTRACTS[family]
    assert isinstance(contract, FamilyContract) and contract.family == family and contract.ops
    assert all(isinstance(case.impls, dispatch.Implementations) for case in contract.ops)


def test_every_custom_op_is_opchecked():
    """Every `effitrain::` custom op appears in some family's opcheck samples."""
    registered = {name for name in torch._C._dispatch_get_all_op_names() if name.startswith("effitrain::")}
    checked = {op._qualified_op_name for c in CONTRACTS.values() for op, _ in c.opchecks()}
    assert registered and registered <= checked, registered - checked


@pytest.mark.skipif(shutil.which("c++") is None, reason="no C++ compiler: the ops run their references")
@pytest.mark.parametrize("family", [f for f, c in CONTRACTS.items() if any("cpp" in o.impls.names for o in c.ops)])
def test_cpp_fast_path_builds(family):
    """With a compiler present a declared C++ path must build (else "auto" quietly runs the reference)."""
    assert build.available(family)


@pytest.mark.filterwarnings(_NON_LEAF_GRAD)
@pytest.mark.parametrize("family", kernels.FAMILIES)
def test_opcheck(family):
    for op, args in CONTRACTS[family].opchecks():
        torch.library.opcheck(op, args)


# ---------------------------------------------------------------- every op

@pytest.mark.parametrize("impl", FAST)
@pytest.mark.parametrize("case", CASES)
def test_fast_path_matches_reference(case, impl):
    inputs = case.inputs()
    _runnable(case, impl, inputs)
    if case.stochastic:
        _assert_same_distribution(case, impl, inputs)
    else:
        assert _same_bits(case.call(inputs, 0, impl), case.call(inputs, 0, "reference"))


@pytest.mark.parametrize("impl", dispatch.IMPLS)
@pytest.mark.parametrize("case", CASES)
def test_seed_fixes_the_bits(case, impl):
    inputs = case.inputs()
    if impl != "auto":
        _runnable(case, impl, inputs)
    first = case.call(inputs, 9, impl)
    assert _same_bits(first, case.call(inputs, 9, impl))
    if case.stochastic:
        assert not _same_bits(first, case.call(inputs, 10, impl))


@pytest.mark.parametrize("case", _cases(lambda case: case.stochastic))
def test_seed_drawn_from_torchs_generator(case):
    """seed=None draws from torch's generator, so torch.manual_seed repeats a run."""
    inputs = case.inputs()
    torch.manual_seed(0)
    first = case.call(inputs, None, "auto")
    torch.manual_seed(0)
    assert _same_bits(first, case.call(inputs, None, "auto"))


@pytest.mark.parametrize("case", _cases(lambda case: case.bad_inputs))
def test_bad_input_is_a_value_error(case):
    for i, bad in enumerate(case.bad_inputs):
        with pytest.raises(ValueError):
            bad()
            pytest.fail(f"{case.name}: bad input #{i} was accepted")


@pytest.mark.parametrize("case", _cases(lambda case: case.shared_bits and set(FAST) <= set(case.impls.names)))
def test_cpp_and_triton_give_the_same_bits(case):
    inputs = case.inputs()
    for impl in FAST:
        _runnable(case, impl, inputs)
    for seed in (0, 123456789, 2**40 + 5):
        assert _same_bits(case.call(inputs, seed, "cpp"), case.call(inputs, seed, "triton")), seed


@pytest.mark.parametrize("case", CASES)
def test_dispatch_override(case, monkeypatch):
    """impl="auto" runs the automatic choice, or the path EFFITRAIN_KERNEL_IMPL names; bad names are ValueErrors."""
    inputs = case.inputs()
    tensors = case.dispatch_tensors(inputs)
    monkeypatch.delenv(dispatch.ENV_VAR, raising=False)
    automatic = case.impls.pick("auto", *tensors).name
    assert _same_bits(case.call(inputs, 3, "auto"), case.call(inputs, 3, automatic))
    for name in case.impls.available(*tensors):
        monkeypatch.setenv(dispatch.ENV_VAR, name)
        assert case.impls.pick("auto", *tensors).name == name
        assert _same_bits(case.call(inputs, 3, "auto"), case.call(inputs, 3, name)), name
    monkeypatch.setenv(dispatch.ENV_VAR, "fortran")
    with pytest.raises(ValueError, match=dispatch.ENV_VAR):
        case.call(inputs, 3, "auto")
    monkeypatch.delenv(dispatch.ENV_VAR)
    with pytest.raises(ValueError, match="impl"):
        case.call(inputs, 3, "fortran")
    if "triton" in case.impls.names and tensors[0].device.type == "cpu":  # off the interpreter: unavailable
        monkeypatch.setenv("TRITON_INTERPRET", "0")
        with pytest.raises(ValueError, match="cannot run here"):
            case.call(inputs, 3, "triton")


@pytest.mark.parametrize("case", CASES)
def test_compiles_without_graph_breaks(case):
    """The public entry point traces whole (fullgraph) and gives the eager bits."""
    inputs = case.inputs()
    torch._dynamo.reset()  # one lambda's code for every case: start each from an empty cache, not a recompile
    compiled = torch.compile(lambda *args: case.call(args, 5, "auto"), fullgraph=True, backend="aot_eager")
    assert _same_bits(compiled(*inputs), case.call(inputs, 5, "auto"))
