"""smallNORB in the NYU binary-matrix files (cs.nyu.edu/~ylclab/data/norb-v1.0-small), gzipped or not.

Per split three files: `-dat` (uint8 [N, 2, 96, 96], the left and right stereo images, which
become the 2 input channels), `-cat` (int32 [N], the category 0..4) and `-info` (int32 [N, 4]:
instance, elevation, azimuth, lighting; read only to check its length). Binary-matrix format, as the
home page describes it: little-endian int32 magic (0x1E3D4C55 byte, 0x1E3D4C54 int32,
0x1E3D4C56 int16, 0x1E3D4C51 float32, 0x1E3D4C53 float64 matrix), int32 number of dimensions,
then max(3, ndim) int32 sizes (unused ones are 1), then the data in C order.
"""

from __future__ import annotations

import gzip
import struct
from pathlib import Path

import numpy as np
import torch
from torch import Tensor

from harness.data.integrity import DatasetMissingError, check_file
from harness.data.memory import ImageData, make_image_data
from harness.data.registry import DatasetSpec, Md5Table, register

__all__ = ["SMALLNORB_CLASSES", "SMALLNORB_FILES", "load_smallnorb", "read_binary_matrix"]

SMALLNORB_CLASSES = ["animal", "human", "airplane", "truck", "car"]  # category 0..4, home page order
_PREFIX = {"train": "smallnorb-5x46789x9x18x6x2x96x96-training",  # training instances 4, 6, 7, 8, 9
           "test": "smallnorb-5x01235x9x18x6x2x96x96-testing"}  # testing instances 0, 1, 2, 3, 5
SMALLNORB_FILES = {split: {part: f"{prefix}-{part}.mat" for part in ("dat", "cat", "info")}
                   for split, prefix in _PREFIX.items()}
_DTYPES = {0x1E3D4C55: np.dtype("u1"), 0x1E3D4C54: np.dtype("<i4"), 0x1E3D4C56: np.dtype("<i2"),
           0x1E3D4C51: np.dtype("<f4"), 0x1E3D4C53: np.dtype("<f8")}


def read_binary_matrix(raw: bytes, what: str) -> np.ndarray:
    """Parse one NYU binary-matrix file (uncompressed bytes) into an array of its declared type and shape."""
    if len(raw) < 8:
        raise ValueError(f"{what}: {len(raw)} bytes, too short for a binary-matrix header")
    magic, ndim = struct.unpack("<II", raw[:8])
    dtype = _DTYPES.get(magic)
    if dtype is None or not 1 <= ndim <= 16:
        raise ValueError(f"{what}: magic {magic:#x} and {ndim} dimensions; expected a magic in "
                         f"{', '.join(f'{m:#x}' for m in _DTYPES)} and 1..16 dimensions")
    stored = max(3, ndim)
    dims = struct.unpack(f"<{stored}i", raw[8:8 + 4 * stored])[:ndim]
    body = raw[8 + 4 * stored:]
    if min(dims) < 0 or len(body) != int(np.prod(dims)) * dtype.itemsize:
        raise ValueError(f"{what}: {len(body)} data bytes, header says {dims} of {dtype}")
    return np.frombuffer(body, dtype=dtype).reshape(dims)


def _read(spec: DatasetSpec, folder: Path, name: str, expected_md5: Md5Table | None,
          md5: dict[str, str]) -> np.ndarray:
    """One file, from `name.gz` if present, else `name`; its md5 goes into `md5`."""
    for path in (folder / f"{name}.gz", folder / name):
        if path.is_file():
            md5[path.name] = check_file(spec, path, expected_md5)
            raw = path.read_bytes()
            return read_binary_matrix(gzip.decompress(raw) if path.suffix == ".gz" else raw, path.name)
    raise DatasetMissingError(spec.name, folder / f"{name}.gz", spec.how_to_get())


def _split(folder: Path, split: str, expected_md5: Md5Table | None, md5: dict[str, str]) -> tuple[Tensor, Tensor]:
    names = SMALLNORB_FILES[split]
    images = _read(SPEC, folder, names["dat"], expected_md5, md5)
    labels = _read(SPEC, folder, names["cat"], expected_md5, md5)
    info = _read(SPEC, folder, names["info"], expected_md5, md5)
    n = len(images)
    if images.dtype != np.uint8 or images.shape[1:] != (2, 96, 96):
        raise ValueError(f"{names['dat']}: {images.dtype} {list(images.shape)}, expected uint8 [N, 2, 96, 96]")
    if labels.shape != (n,) or info.shape != (n, 4):
        raise ValueError(f"smallnorb {split}: {n} images, {list(labels.shape)} categories and {list(info.shape)} "
                         f"info rows; expected [{n}] and [{n}, 4]")
    if n and not (0 <= labels.min() and labels.max() <= 4):
        raise ValueError(f"{names['cat']}: categories span {labels.min()}..{labels.max()}, expected 0..4")
    return torch.from_numpy(images.copy()), torch.from_numpy(labels.astype(np.int64))


def load_smallnorb(root: str | Path = "datasets", *, expected_md5: Md5Table | None = None) -> ImageData:
    """smallNORB's 24,300 training and 24,300 test stereo pairs as 2-channel 96x96 images."""
    folder, md5 = Path(root) / "smallnorb", {}
    train = _split(folder, "train", expected_md5, md5)
    test = _split(folder, "test", expected_md5, md5)
    return make_image_data("smallnorb", train, test, list(SMALLNORB_CLASSES), md5)


# md5s of the uncompressed and the gzipped files: torchvision's smallNORB dataset proposal
# (torchvision/datasets/smallnorb.py, `data_files`); urls: the home page plus ".gz".
_MD5 = {"train": {"dat": ("8138a0902307b32dfa0025a36dfa45ec", "66054832f9accfe74a0f4c36a75bc0a2"),
                  "cat": ("fd5120d3f770ad57ebe620eb61a0b633", "23c8b86101fbf0904a000b43d3ed2fd9"),
                  "info": ("19faee774120001fc7e17980d6960451", "51dee1210a742582ff607dfd94e332e3")},
        "test": {"dat": ("e9920b7f7b2869a8f1a12e945b2c166c", "e4ad715691ed5a3a5f138751a4ceb071"),
                 "cat": ("fd5120d3f770ad57ebe620eb61a0b633", "5aa791cd7e6016cf957ce9bdb93b8603"),
                 "info": ("7c5b871cc69dcadec1bf6a18141f5edc", "a9454f3864d7fd4bb3ea7fc3eb84924e")}}
_FILES = {name: md5 for split, parts in _MD5.items() for part, (raw_md5, gz_md5) in parts.items()
          for name, md5 in ((SMALLNORB_FILES[split][part], (raw_md5,)),
                            (SMALLNORB_FILES[split][part] + ".gz", (gz_md5,)))}
SPEC = register(DatasetSpec(
    name="smallnorb", info="smallNORB, 24,300/24,300 stereo pairs as 2-channel 96x96, 5 classes, NYU "
                           "binary-matrix files (download when online)",
    input_shape=(2, 96, 96), num_classes=5, loader=load_smallnorb, files=_FILES,
    urls={f"{name}.gz": f"https://cs.nyu.edu/~ylclab/data/norb-v1.0-small/{name}.gz"
          for parts in SMALLNORB_FILES.values() for name in parts.values()}))
