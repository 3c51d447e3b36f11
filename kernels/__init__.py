"""Compiled ops for the arithmetic-level techniques.

Each op family is one module: a plain-torch reference (the specification), a
`torch.library.custom_op` with a fake implementation and an autograd rule, a
C++ CPU fast path (`csrc/<family>.cpp`) and a Triton path for CUDA. What the
families share lives in `_common/`: how a family declares its paths and how one
is picked (`dispatch`: the `impl=` argument, else `EFFITRAIN_KERNEL_IMPL`), seeds
and hashes (`random.py`, `random.h`), building the C++ (`build`), the machine's
ceilings and the quick benchmark registry (`machine`), and the declaration every
family ends with, `CONTRACT`, that tests/test_kernels_contract.py runs over.
Importing a family registers its quick benchmarks for `effitrain bench kernels`;
asv benchmarks live in `benchmarks/` (configuration `asv.conf.json`).

A new family: a module here, its name in FAMILIES, a `CONTRACT`, a source in
`csrc/` if it has a C++ path, and a `benchmarks/bench_<family>.py`.
"""

from __future__ import annotations

import importlib
from types import ModuleType

FAMILIES = ("rounding", "sparsify", "crs")


def load_family(name: str) -> ModuleType:
    """Import the op family `name` (registering its ops and benchmarks); ValueError if there is none."""
    if name not in FAMILIES:
        raise ValueError(f"kernel family '{name}' is not one of {', '.join(FAMILIES)}")
    return importlib.import_module(f"kernels.{name}")


def load_families() -> list[str]:
    """Import every op family; return their names."""
    for name in FAMILIES:
        load_family(name)
    return list(FAMILIES)
