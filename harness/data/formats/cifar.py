"""CIFAR-10 and CIFAR-100 in their official python tarballs (www.cs.toronto.edu/~kriz/cifar.html).

Each batch file is a pickled dict with b"data", uint8 [N, 3072] (1024 red, then 1024 green, then
1024 blue values, each a row-major 32x32 plane) and the labels: b"labels" (CIFAR-10) or
b"fine_labels" / b"coarse_labels" (CIFAR-100, of which we use the 100 fine classes).
"""

from __future__ import annotations

import codecs
import pickle
import tarfile
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from harness.data.integrity import check_file
from harness.data.memory import ImageData, make_image_data
from harness.data.registry import DatasetSpec, Md5Table, register

__all__ = ["CIFAR100_TARBALL", "CIFAR10_CLASSES", "CIFAR10_TARBALL", "load_cifar10", "load_cifar100"]

CIFAR10_CLASSES = ["airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck"]
CIFAR10_TARBALL = "cifar-10-python.tar.gz"
CIFAR100_TARBALL = "cifar-100-python.tar.gz"


class _ArrayUnpickler(pickle.Unpickler):
    """Unpickler that only builds numpy arrays, so a tampered batch file cannot run code."""

    def find_class(self, module: str, name: str) -> Any:
        import numpy as np
        try:  # numpy >= 2 moved numpy.core to numpy._core; old pickles name the old path
            from numpy._core.multiarray import _reconstruct
        except ImportError:
            from numpy.core.multiarray import _reconstruct
        allowed = {("numpy", "ndarray"): np.ndarray, ("numpy", "dtype"): np.dtype,
                   ("numpy", "_reconstruct"): _reconstruct,
                   ("_codecs", "encode"): codecs.encode}  # protocol-2 pickles of bytes use it
        found = allowed.get((module.split(".")[0], name))
        if found is None:
            raise pickle.UnpicklingError(f"refusing to unpickle {module}.{name}")
        return found


def _read_batches(path: Path, wanted: set[str]) -> dict[str, dict]:
    """The pickled dicts of the tarball members whose base name is in `wanted` (any folder)."""
    batches: dict[str, dict] = {}
    with tarfile.open(path, "r:gz") as tar:
        for member in tar:
            base = member.name.rsplit("/", 1)[-1]
            if member.isfile() and base in wanted:
                batches[base] = _ArrayUnpickler(tar.extractfile(member), encoding="bytes").load()
    return batches


def _split(path: Path, batches: dict[str, dict], names: list[str], label_key: bytes) -> tuple[Tensor, Tensor]:
    """Concatenate the named batches into uint8 [N, 3, 32, 32] images and int64 labels."""
    missing = [n for n in names if n not in batches]
    if missing:
        raise ValueError(f"{path}: missing {missing} in the tarball")
    if any(label_key not in batches[n] for n in names):
        raise ValueError(f"{path}: a batch in {names} has no {label_key!r} entry")
    x = torch.cat([torch.as_tensor(batches[n][b"data"], dtype=torch.uint8) for n in names])
    y = torch.cat([torch.as_tensor(batches[n][label_key], dtype=torch.int64) for n in names])
    return x.reshape(-1, 3, 32, 32), y


def load_cifar10(root: str | Path = "datasets", *, expected_md5: Md5Table | None = None) -> ImageData:
    """CIFAR-10 from the official `cifar-10-python.tar.gz`: data_batch_1..5, test_batch, batches.meta."""
    path = Path(root) / "cifar10" / CIFAR10_TARBALL
    md5 = {path.name: check_file(CIFAR10, path, expected_md5)}
    train_names = [f"data_batch_{i}" for i in range(1, 6)]
    batches = _read_batches(path, {*train_names, "test_batch", "batches.meta"})
    meta = batches.get("batches.meta", {})
    classes = [c.decode() for c in meta.get(b"label_names", [])] or CIFAR10_CLASSES
    train = _split(path, batches, train_names, b"labels")
    return make_image_data("cifar10", train, _split(path, batches, ["test_batch"], b"labels"), classes, md5)


def load_cifar100(root: str | Path = "datasets", *, expected_md5: Md5Table | None = None) -> ImageData:
    """CIFAR-100 from the official `cifar-100-python.tar.gz`: train, test, meta; the 100 fine labels."""
    path = Path(root) / "cifar100" / CIFAR100_TARBALL
    md5 = {path.name: check_file(CIFAR100, path, expected_md5)}
    batches = _read_batches(path, {"train", "test", "meta"})
    names = [c.decode() for c in batches.get("meta", {}).get(b"fine_label_names", [])]
    if len(names) != 100:
        raise ValueError(f"{path}: meta has {len(names)} fine_label_names, expected 100")
    train = _split(path, batches, ["train"], b"fine_labels")
    return make_image_data("cifar100", train, _split(path, batches, ["test"], b"fine_labels"), names, md5)


# md5s and urls: the dataset's home page (www.cs.toronto.edu/~kriz/cifar.html) and torchvision
# datasets/cifar.py (`tgz_md5`).
CIFAR10 = register(DatasetSpec(
    name="cifar10", info="CIFAR-10, 50k/10k RGB 32x32, official python tarball (download when online)",
    input_shape=(3, 32, 32), num_classes=10, loader=load_cifar10,
    files={CIFAR10_TARBALL: ("c58f30108f718f92721af3b95e74349a",)},
    urls={CIFAR10_TARBALL: "https://www.cs.toronto.edu/~kriz/cifar-10-python.tar.gz"}))
CIFAR100 = register(DatasetSpec(
    name="cifar100", info="CIFAR-100, 50k/10k RGB 32x32, 100 fine classes, official python tarball "
                          "(download when online)",
    input_shape=(3, 32, 32), num_classes=100, loader=load_cifar100,
    files={CIFAR100_TARBALL: ("eb9058c3a382ffc7106e4002c42a8d85",)},
    urls={CIFAR100_TARBALL: "https://www.cs.toronto.edu/~kriz/cifar-100-python.tar.gz"}))
