"""How a kernel family declares its implementations and how one is picked for a call.

Each op declares, once, an `Implementations` table of `Impl`s: the plain-torch reference (the
specification; runs on any device), the C++ CPU fast path (`kernels/csrc/<family>.cpp`, usable
where it builds) and the Triton path (CUDA; on CPU tensors only under Triton's interpreter, a
test tool). Each says which devices and dtypes it takes and whether it can run on this machine.

The choice, in one place (`Implementations.pick`), with one override:

- the op's `impl=` argument: "reference", "cpp" or "triton" runs that path directly (tests,
  benchmarks); "auto" (the default) goes through the op's `torch.library.custom_op`, whose
  kernel picks with impl="auto";
- "auto" means the environment variable `EFFITRAIN_KERNEL_IMPL` when it is set (one of the same
  names, for every op that has that path; an op without it keeps its automatic choice), else
  the first path that can run on the tensors' device: C++ on CPU, Triton on CUDA, and the
  reference everywhere else or when the fast path cannot run (no compiler, an unsupported dtype).

A name that is not a known path, a path the op does not have, or one that cannot run here is a
ValueError naming the choice and what could run instead: never a silent fallback.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import torch

from kernels._common import build

IMPLS = ("auto", "reference", "cpp", "triton")
ENV_VAR = "EFFITRAIN_KERNEL_IMPL"
_AUTO_ORDER = {"cpu": ("cpp", "reference"), "cuda": ("triton", "reference")}  # other devices: the reference


def interpreting_triton() -> bool:
    """Whether Triton kernels run under the interpreter (TRITON_INTERPRET=1), i.e. on CPU tensors."""
    return os.environ.get("TRITON_INTERPRET", "0") not in ("", "0")


def _triton_missing() -> str | None:
    try:
        import triton  # noqa: F401
    except ImportError:  # pragma: no cover - Triton ships with torch on Linux
        return "Triton is not installed"
    return None


@dataclass(frozen=True)
class Impl:
    """One implementation of an op.

    `fn` is called with the op's own arguments. `devices` are the device types it takes (None:
    any); `dtypes` the floating dtypes of its tensor arguments (None: any); `missing()` says why
    it cannot run on this machine at all (C++ does not build, no Triton), or None when it can.
    """

    name: str
    fn: Callable
    devices: tuple[str, ...] | None = None
    dtypes: tuple[torch.dtype, ...] | None = None
    missing: Callable[[], str | None] = lambda: None

    def unavailable(self, tensors: Sequence[torch.Tensor]) -> str | None:
        """Why this path cannot run on `tensors`, or None when it can."""
        for t in tensors:
            device = t.device.type
            on_cpu_interpreter = self.name == "triton" and device == "cpu" and interpreting_triton()
            if self.devices is not None and device not in self.devices and not on_cpu_interpreter:
                hint = " (on CPU tensors only under TRITON_INTERPRET=1)" if self.name == "triton" else ""
                return f"it runs on {', '.join(self.devices)} tensors{hint}, got a {device} tensor"
            if self.dtypes is not None and t.is_floating_point() and t.dtype not in self.dtypes:
                return f"it takes {', '.join(map(str, self.dtypes))} tensors, got {t.dtype}"
        return self.missing()


def reference(fn: Callable) -> Impl:
    """The plain-torch reference: the specification, runs anywhere."""
    return Impl("reference", fn)


def cpp(family: str, fn: Callable, dtypes: tuple[torch.dtype, ...] | None = None) -> Impl:
    """The C++ fast path of `family` (kernels/csrc/<family>.cpp): CPU tensors, where it builds."""

    def missing() -> str | None:
        try:
            build.load(family)
        except build.FastPathUnavailable as exc:
            return str(exc)
        return None

    return Impl("cpp", fn, devices=("cpu",), dtypes=dtypes, missing=missing)


def triton(fn: Callable, dtypes: tuple[torch.dtype, ...] | None = None) -> Impl:
    """The Triton path: CUDA tensors (CPU tensors under the interpreter)."""
    return Impl("triton", fn, devices=("cuda",), dtypes=dtypes, missing=_triton_missing)


def check_impl(impl: str, source: str = "impl") -> str:
    """`impl` if it is one of IMPLS, else a ValueError naming where it came from."""
    if impl not in IMPLS:
        raise ValueError(f"{source}={impl!r} is not one of {', '.join(IMPLS)}")
    return impl


class Implementations:
    """The implementations of one op (`op` names it in errors), and the one rule that picks among them."""

    def __init__(self, op: str, *impls: Impl):
        names = [i.name for i in impls]
        if "reference" not in names or len(set(names)) != len(names) or not set(names) <= set(IMPLS[1:]):
            raise ValueError(f"{op}: implementations {names} must be distinct names from {IMPLS[1:]}, "
                             f"including 'reference'")
        self.op = op
        self.impls = {i.name: i for i in impls}

    def __repr__(self) -> str:
        return f"Implementations({self.op!r}: {', '.join(self.impls)})"

    @property
    def names(self) -> tuple[str, ...]:
        return tuple(self.impls)

    def available(self, *tensors: torch.Tensor) -> tuple[str, ...]:
        """The paths that can run on `tensors` here (for tests and benchmarks)."""
        return tuple(name for name, i in self.impls.items() if i.unavailable(tensors) is None)

    def pick(self, impl: str = "auto", *tensors: torch.Tensor) -> Impl:
        """The implementation to run on `tensors` (see the module docstring for the rule)."""
        check_impl(impl)
        if impl == "auto":
            forced = os.environ.get(ENV_VAR, "").strip()
            if forced:
                check_impl(forced, ENV_VAR)
            if forced and forced != "auto" and forced in self.impls:
                return self._named(forced, tensors, f"{ENV_VAR}={forced}")
            return self._automatic(tensors)
        return self._named(impl, tensors, f"impl={impl!r}")

    def _named(self, name: str, tensors: Sequence[torch.Tensor], asked: str) -> Impl:
        if name not in self.impls:
            raise ValueError(f"{self.op}: {asked}, but it has no such path (it has: {', '.join(self.impls)})")
        reason = self.impls[name].unavailable(tensors)
        if reason is not None:
            runnable = ", ".join(self.available(*tensors))
            raise ValueError(f"{self.op}: {asked} cannot run here: {reason} (available: {runnable})")
        return self.impls[name]

    def _automatic(self, tensors: Sequence[torch.Tensor]) -> Impl:
        device = tensors[0].device.type if tensors else "cpu"
        for name in _AUTO_ORDER.get(device, ("reference",)):
            if name in self.impls and self.impls[name].unavailable(tensors) is None:
                return self.impls[name]
        return self.impls["reference"]
