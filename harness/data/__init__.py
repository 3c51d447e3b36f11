"""Datasets: a registry of specs, one loader per official file format, and two kinds of loaders.

- memory kind (MNIST, CIFAR-10/100, cifar10-jpeg75, STL-10, smallNORB, synthetic): uint8 tensors
  in RAM, batches gathered and augmented as whole-batch tensor ops by `BatchLoader`;
- stream kind (ImageNet): examples decoded per sample by DataLoader workers in `StreamLoader`.

Both shard by rank and resume mid-epoch (`state_dict`/`load_state_dict`). Files live under
`root/<name>/` (`root` defaults to `datasets/`, filled offline by `dvc pull` for MNIST and the
JPEG copy of CIFAR-10); every load checks the md5 of the files it reads against the dataset's
`DatasetSpec.files` unless told otherwise. Layout: `registry.py` (DatasetSpec, DATASETS),
`formats/` (one file per format, each registering its datasets), `memory.py`, `stream.py`,
`order.py` (shuffle, shards, resume), `augment.py`, `integrity.py` (md5, cache, download),
`loaders.py` (a run's train/val/test loaders).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from harness.data.augment import batch_crop, batch_flip
from harness.data.formats.cifar import CIFAR10_CLASSES, CIFAR10_TARBALL, CIFAR100_TARBALL, load_cifar10, load_cifar100
from harness.data.formats.idx import MNIST_FILES, load_mnist
from harness.data.formats.imagenet import load_imagenet
from harness.data.formats.jpeg_tar import JPEG75_TARBALL, load_cifar10_jpeg75
from harness.data.formats.smallnorb import SMALLNORB_FILES, load_smallnorb
from harness.data.formats.stl10 import STL10_TARBALL, load_stl10
from harness.data.formats.synthetic import synthetic
from harness.data.integrity import ChecksumError, DatasetMissingError, cache_dir, download, md5_of
from harness.data.loaders import describe, make_loaders
from harness.data.memory import BatchLoader, ImageData, channel_stats, split_validation, subset
from harness.data.registry import DATASETS, DatasetSpec, Md5Table, spec_of
from harness.data.stream import SampleIndex, StreamData, StreamLoader

__all__ = [
    "CIFAR100_TARBALL", "CIFAR10_CLASSES", "CIFAR10_TARBALL", "DATASETS", "DATASET_INFO", "DOWNLOAD_URLS",
    "JPEG75_TARBALL", "KNOWN_MD5", "MNIST_FILES", "SMALLNORB_FILES", "STL10_TARBALL", "BatchLoader",
    "ChecksumError", "DatasetMissingError", "DatasetSpec", "ImageData", "Md5Table", "SampleIndex", "StreamData",
    "StreamLoader", "batch_crop", "batch_flip", "cache_dir", "channel_stats", "clear_memo", "describe", "download",
    "load_cifar10", "load_cifar100", "load_cifar10_jpeg75", "load_dataset", "load_imagenet", "load_mnist",
    "load_smallnorb", "load_stl10", "make_loaders", "md5_of", "spec_of", "split_validation", "subset", "synthetic",
]

_MEMO: dict[tuple[str, str, str], ImageData | StreamData] = {}


def load_dataset(name: str, root: str | Path = "datasets", **kw: Any) -> ImageData | StreamData:
    """Load a registered dataset by name; memoised per process on (name, resolved root, kwargs).

    The same object is returned on repeat calls: treat its tensors as read-only.
    """
    spec = spec_of(name)  # unknown: ValueError naming the known datasets
    key = (name, str(Path(root).resolve()), repr(sorted(kw.items())))
    if key not in _MEMO:
        _MEMO[key] = spec.loader(Path(root), **kw)
    return _MEMO[key]


def clear_memo() -> None:
    """Forget the in-process memo of `load_dataset` (the on-disk caches stay)."""
    _MEMO.clear()


def __getattr__(name: str) -> Any:
    """Tables of the registered datasets, built on access so that plug-in datasets appear too.

    `DATASET_INFO`: name -> one-line description; `KNOWN_MD5`: file name -> accepted md5s;
    `DOWNLOAD_URLS`: name -> {file: url}. Read-only views: change a `DatasetSpec` instead.
    """
    specs = DATASETS.all()
    if name == "DATASET_INFO":
        return {n: s.info for n, s in specs.items()}
    if name == "KNOWN_MD5":
        return {f: md5 for s in specs.values() for f, md5 in s.files.items()}
    if name == "DOWNLOAD_URLS":
        return {n: dict(s.urls) for n, s in specs.items() if s.urls}
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
