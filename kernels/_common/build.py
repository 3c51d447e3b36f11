"""Build the C++ CPU fast paths once and cache them.

Each op family has one source, `kernels/csrc/<name>.cpp`, that registers its
functions with `TORCH_LIBRARY(effitrain_<name>, m)` (no pybind11, so only ATen
headers compile); it may include the shared headers beside this file (`random.h`).
`load(name)` builds it with torch's extension tooling into a cache directory the
first time a fast path is called, never at import; later calls and later processes
reuse the shared library (ninja rebuilds only when the source or a header changed).
The cache key holds the torch version and the CPU's flag set,
because the code is compiled with `-march=native` (and 512-bit vectors where the CPU has them: GCC
prefers 256 by default, which cost the stochastic rounding op a quarter of its speed).

Cache: `$EFFITRAIN_KERNEL_CACHE`, else `~/.cache/effitrain/kernels`. When no
compiler is available `load` raises `FastPathUnavailable`; the ops then fall
back to their plain-torch reference (kernels/_common/dispatch.py), and `available(name)` says so.
"""

from __future__ import annotations

import functools
import hashlib
import logging
import os
import platform
import threading
from pathlib import Path

import torch

CSRC = Path(__file__).resolve().parents[1] / "csrc"
INCLUDE = Path(__file__).resolve().parent  # shared headers: random.h
_LOCK = threading.Lock()


class FastPathUnavailable(RuntimeError):
    """The C++ fast path could not be built on this machine."""


def cache_dir() -> Path:
    """Where built libraries go: `$EFFITRAIN_KERNEL_CACHE`, else ~/.cache/effitrain/kernels."""
    root = os.environ.get("EFFITRAIN_KERNEL_CACHE") or Path.home() / ".cache" / "effitrain" / "kernels"
    return Path(root)


def _cpu_key() -> str:
    """A short hash of the CPU model and flags: `-march=native` code is only valid on the same CPU."""
    text = platform.machine()
    try:
        info = Path("/proc/cpuinfo").read_text()
        text += "".join(line for line in info.splitlines() if line.startswith(("model name", "flags")))[:20000]
    except OSError:
        text += platform.processor()
    return hashlib.sha1(text.encode()).hexdigest()[:10]


def build_directory(name: str) -> Path:
    """The build folder of family `name`, keyed by torch version and CPU (see the module docstring)."""
    tag = f"torch{torch.__version__.split('+')[0]}-{_cpu_key()}"
    path = cache_dir() / tag / name
    path.mkdir(parents=True, exist_ok=True)
    return path


_FAILED: dict[str, FastPathUnavailable] = {}  # a build that failed is not retried in this process


def load(name: str):
    """Build (or reuse) `csrc/<name>.cpp`; return the op namespace `torch.ops.effitrain_<name>`.

    Raises FastPathUnavailable (every time, without rebuilding) where it cannot be built."""
    if name in _FAILED:
        raise _FAILED[name]
    try:
        return _load(name)
    except FastPathUnavailable as exc:
        _FAILED[name] = exc
        raise


@functools.cache
def _load(name: str):
    source = CSRC / f"{name}.cpp"
    if not source.exists():
        raise FastPathUnavailable(f"no C++ source for '{name}' ({source})")
    # Building for the CPU: torch's "No CUDA runtime is found" notice on import says nothing to a user here.
    logging.getLogger("torch.utils.cpp_extension").setLevel(logging.ERROR)
    from torch.utils import cpp_extension

    with _LOCK:
        try:
            cpp_extension.load(
                name=f"effitrain_{name}", sources=[str(source)], extra_include_paths=[str(INCLUDE)],
                build_directory=str(build_directory(name)),
                extra_cflags=["-O3", "-march=native", "-mprefer-vector-width=512", "-fopenmp", "-ffp-contract=off"],
                extra_ldflags=["-fopenmp"], with_cuda=False, is_python_module=False, verbose=False)
        except (RuntimeError, OSError, ImportError) as exc:  # no compiler, no ninja, or a build error
            first_line = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
            raise FastPathUnavailable(f"could not build the C++ fast path '{name}': {first_line}") from exc
    return getattr(torch.ops, f"effitrain_{name}")


def available(name: str) -> bool:
    """Whether the C++ fast path `name` builds and loads here."""
    try:
        load(name)
        return True
    except FastPathUnavailable:
        return False
