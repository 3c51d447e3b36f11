"""STL-10 in its official binary tarball (cs.stanford.edu/~acoates/stl10): `stl10_binary.tar.gz`.

Inside `stl10_binary/`: `train_X.bin` / `test_X.bin` hold uint8 images of 3x96x96, each channel
stored column-major (column by column); `train_y.bin` / `test_y.bin` hold one uint8 label per
image, 1..10 on disk; `class_names.txt` names the classes. The unlabeled split (`unlabeled_X.bin`,
100k images) is not loaded. Reading the 2.6 GB tarball takes a while, so the decoded 5k/8k labeled
images are cached by the tarball's md5, as the JPEG copy of CIFAR-10 is.
"""

from __future__ import annotations

import tarfile
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from harness.data.integrity import cached_decode, check_file
from harness.data.memory import ImageData, make_image_data
from harness.data.registry import DatasetSpec, Md5Table, register

__all__ = ["STL10_CLASSES", "STL10_TARBALL", "load_stl10"]

STL10_TARBALL = "stl10_binary.tar.gz"
STL10_CLASSES = ["airplane", "bird", "car", "cat", "deer", "dog", "horse", "monkey", "ship", "truck"]
_SIDE = 96  # pixels
_MEMBERS = ("train_X.bin", "train_y.bin", "test_X.bin", "test_y.bin", "class_names.txt")


def _read_members(path: Path) -> dict[str, bytes]:
    """The labeled members' bytes by base name; other members (the unlabeled split) are skipped."""
    found: dict[str, bytes] = {}
    with tarfile.open(path, "r:gz") as tar:
        for member in tar:
            base = member.name.rsplit("/", 1)[-1]
            if member.isfile() and base in _MEMBERS:
                found[base] = tar.extractfile(member).read()
    missing = [m for m in _MEMBERS[:4] if m not in found]
    if missing:
        raise ValueError(f"{path}: missing {missing} in the tarball")
    return found


def _split(path: Path, images: bytes, labels: bytes, split: str) -> tuple[Tensor, Tensor]:
    """uint8 [N, 3, 96, 96] row-major images and int64 labels 0..9 from one split's two files."""
    per_image = 3 * _SIDE * _SIDE
    if len(images) % per_image or len(images) // per_image != len(labels):
        raise ValueError(f"{path}: {split}_X.bin has {len(images)} bytes and {split}_y.bin {len(labels)} labels; "
                         f"expected {per_image} bytes per label")
    x = torch.frombuffer(bytearray(images), dtype=torch.uint8).reshape(-1, 3, _SIDE, _SIDE)
    y = torch.frombuffer(bytearray(labels), dtype=torch.uint8).long()
    if len(y) and not (1 <= int(y.min()) and int(y.max()) <= 10):
        raise ValueError(f"{path}: {split}_y.bin labels span {int(y.min())}..{int(y.max())}, expected 1..10")
    return x.transpose(2, 3).contiguous(), y - 1  # stored column-major: swap to (row, column)


def _build(path: Path) -> dict[str, Any]:
    found = _read_members(path)
    names = found.get("class_names.txt", b"").decode().split()
    train_x, train_y = _split(path, found["train_X.bin"], found["train_y.bin"], "train")
    test_x, test_y = _split(path, found["test_X.bin"], found["test_y.bin"], "test")
    return {"classes": names if len(names) == 10 else STL10_CLASSES, "train_x": train_x, "train_y": train_y,
            "test_x": test_x, "test_y": test_y}


def load_stl10(root: str | Path = "datasets", *, expected_md5: Md5Table | None = None,
               use_cache: bool = True) -> ImageData:
    """STL-10's labeled 5k train / 8k test images from `root/stl10/stl10_binary.tar.gz`."""
    path = Path(root) / "stl10" / STL10_TARBALL
    digest = check_file(SPEC, path, expected_md5)
    blob = cached_decode("stl10", digest, lambda: _build(path), use_cache)
    return make_image_data("stl10", (blob["train_x"], blob["train_y"]), (blob["test_x"], blob["test_y"]),
                           list(blob["classes"]), {path.name: digest})


# md5 and url: torchvision datasets/stl10.py (`tgz_md5`, `url`); home page cs.stanford.edu/~acoates/stl10.
SPEC = register(DatasetSpec(
    name="stl10", info="STL-10, 5k/8k labeled RGB 96x96, official binary tarball (download when online)",
    input_shape=(3, _SIDE, _SIDE), num_classes=10, loader=load_stl10,
    files={STL10_TARBALL: ("91f7769df0f17e558f3565bffb0c7dfb",)},
    urls={STL10_TARBALL: "http://ai.stanford.edu/~acoates/stl10/stl10_binary.tar.gz"}))
