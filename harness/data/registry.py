"""The dataset registry: one `DatasetSpec` per dataset, in `DATASETS`.

Each built-in format module (`harness/data/formats/*.py`) registers its datasets when imported;
`harness/data/__init__.py` imports them all. A plug-in adds a dataset the same way, through the
`effitrain.plugins` entry-point group of `harness.registry`: `DATASETS.add(name, DatasetSpec(...))`.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Literal

from harness.registry import Registry

__all__ = ["DATASETS", "DatasetSpec", "Md5Table", "register", "spec_of"]

Md5Table = dict[str, str | tuple[str, ...]]  # file name -> accepted md5(s)


@dataclass(frozen=True)
class DatasetSpec:
    """What the harness knows about a dataset before loading it.

    `files` maps each official file name to its accepted md5s (a file absent from the table is
    not checked); `urls` maps file names to official download addresses (empty: no download).
    `source` says how else to get the files, e.g. "`dvc pull`". `kind` is "memory" (uint8 tensors
    in RAM, `BatchLoader`) or "stream" (decoded per sample by DataLoader workers, `StreamLoader`).
    `loader(root, **kw)` returns an `ImageData` (memory) or a `StreamData` (stream).
    """

    name: str
    info: str  # one line for `effitrain list`
    input_shape: tuple[int, int, int]  # C, H, W of one example as the model sees it
    num_classes: int
    loader: Callable[..., Any] = field(repr=False)
    files: dict[str, tuple[str, ...]] = field(default_factory=dict)
    urls: dict[str, str] = field(default_factory=dict)
    source: str = ""
    kind: Literal["memory", "stream"] = "memory"

    def __post_init__(self) -> None:
        if self.kind not in ("memory", "stream"):
            raise ValueError(f"dataset {self.name!r}: kind {self.kind!r}, expected 'memory' or 'stream'")
        if len(self.input_shape) != 3 or min(self.input_shape) < 1 or self.num_classes < 2:
            raise ValueError(f"dataset {self.name!r}: input_shape {self.input_shape} must be 3 positive sizes "
                             f"(C, H, W) and num_classes {self.num_classes} at least 2")

    def how_to_get(self) -> str:
        """The ways to obtain the files, for error messages: source, then download when online."""
        ways = [self.source] if self.source else []
        if self.urls:
            ways.append(f"`effitrain data download {self.name}` when online")
        return " or ".join(ways) or "no way to obtain it is known"


DATASETS: Registry[DatasetSpec] = Registry("dataset")
_BUILTIN: dict[str, DatasetSpec] = {}  # registered while harness.data imports, before any plug-in


def register(spec: DatasetSpec) -> DatasetSpec:
    """Add a built-in dataset (the format modules call this); plug-ins call `DATASETS.add` directly."""
    _BUILTIN[spec.name] = DATASETS.add(spec.name, spec)
    return spec


def spec_of(name: str) -> DatasetSpec:
    """The spec of `name`: built-ins without loading plug-ins (loading a dataset should not import
    every paper module), anything else through the registry, which loads plug-ins first."""
    return _BUILTIN.get(name) or DATASETS.get(name)
