"""What a kernel family declares so that one contract test (tests/test_kernels_contract.py) covers it.

Each family module ends with `CONTRACT = FamilyContract(...)`: its public ops as `OpCase`s
(example inputs, how to call one path, the op's `Implementations`, whether it is stochastic,
inputs that must be refused) and sample calls of each of its `torch.library` custom ops for
`opcheck`. The test is parametrised over `kernels.FAMILIES`, so a family added there is tested
without touching the test. Nothing here imports pytest: the declarations are plain data.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import torch

from kernels._common.dispatch import Implementations


@dataclass(frozen=True)
class OpCase:
    """One public op (or one mode of it) as the contract test drives it.

    `call(inputs, seed, impl)` runs the public entry point on `inputs` (a tuple from `inputs()`)
    with `seed` (None: drawn from torch's generator) and `impl` ("auto" or a path name), and
    returns the output tensor. `impls` is the op's declared implementations; `dispatch_tensors`
    picks, from the inputs, the tensors its choice looks at (default: every tensor input).

    Deterministic ops (`stochastic=False`) must match the reference bit for bit on every path;
    stochastic ones in distribution: per element, the mean and mean square over `draws` seeds
    agree within 6 standard errors, plus `atol` + `rtol` * |value| for rounding in the arithmetic
    (sums in another order). `shared_bits`: the C++ and Triton paths give the same bits for one
    seed (kernels/_common/random.py says which families do). `bad_inputs` each raise ValueError.
    """

    name: str
    call: Callable[[tuple, int | None, str], torch.Tensor]
    inputs: Callable[[], tuple]
    impls: Implementations
    stochastic: bool
    bad_inputs: tuple[Callable[[], object], ...] = ()
    shared_bits: bool = True
    draws: int = 200
    atol: float = 0.0
    rtol: float = 0.0
    dispatch_tensors: Callable[[tuple], tuple[torch.Tensor, ...]] = \
        lambda inputs: tuple(t for t in inputs if isinstance(t, torch.Tensor))


@dataclass(frozen=True)
class FamilyContract:
    """A family's declaration: its ops, and `opchecks()` -> [(custom op, args), ...] for opcheck.

    Every `torch.ops.effitrain` op the family registers must appear in `opchecks()` at least once,
    as a `torch.ops.effitrain.<name>` packet.
    """

    family: str
    ops: tuple[OpCase, ...]
    opchecks: Callable[[], list[tuple[object, tuple]]] = field(default=lambda: [])
