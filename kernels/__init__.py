"""Compiled ops for the arithmetic-level techniques.

Each op family is one module: a plain-torch reference (the specification), a
`torch.library.custom_op` with a fake implementation and an autograd rule, a
C++ CPU fast path (`csrc/<family>.cpp`, built once and cached by `_build`) and a
Triton path for CUDA. Importing a family registers its quick benchmarks
(`_machine.BENCHES`) for `effitrain bench kernels`; asv benchmarks live in
`benchmarks/` (configuration `asv.conf.json`).
"""

from __future__ import annotations

import importlib
import pkgutil

FAMILIES = ("rounding", "sparsify", "crs", "gradapprox")


def load_families() -> list[str]:
    """Import every op family present in this checkout; return their names."""
    present = {m.name for m in pkgutil.iter_modules(__path__)}
    loaded = []
    for name in FAMILIES:
        if name in present:
            importlib.import_module(f"kernels.{name}")
            loaded.append(name)
    return loaded
