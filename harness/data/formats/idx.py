"""MNIST in its official IDX format (yann.lecun.com/exdb/mnist): four gzipped files.

IDX: a big-endian uint32 magic 0x08NN (0x08 = unsigned byte, NN = number of dimensions), one
big-endian uint32 per dimension, then the bytes in C order.
"""

from __future__ import annotations

import gzip
import struct
from pathlib import Path

import torch
from torch import Tensor

from harness.data.integrity import check_file
from harness.data.memory import ImageData, make_image_data
from harness.data.registry import DatasetSpec, Md5Table, register

__all__ = ["MNIST_FILES", "load_mnist", "read_idx"]

MNIST_FILES = {  # split -> (images, labels)
    "train": ("train-images-idx3-ubyte.gz", "train-labels-idx1-ubyte.gz"),
    "test": ("t10k-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte.gz"),
}


def read_idx(raw: bytes, ndim: int, what: str) -> Tensor:
    """Parse an uncompressed IDX ubyte array with `ndim` dimensions."""
    magic = struct.unpack(">I", raw[:4])[0]
    if magic != 0x0800 + ndim:
        raise ValueError(f"{what}: IDX magic {magic:#x}, expected {0x0800 + ndim:#x}")
    dims = struct.unpack(f">{ndim}I", raw[4:4 + 4 * ndim])
    body = raw[4 + 4 * ndim:]
    if len(body) != torch.Size(dims).numel():
        raise ValueError(f"{what}: {len(body)} data bytes, header says {dims}")
    return torch.frombuffer(bytearray(body), dtype=torch.uint8).reshape(dims)


def load_mnist(root: str | Path = "datasets", *, expected_md5: Md5Table | None = None) -> ImageData:
    """MNIST from the four official IDX gz files in `root/mnist`."""
    folder, md5, splits = Path(root) / "mnist", {}, {}
    for split, (img_file, lbl_file) in MNIST_FILES.items():
        for f in (img_file, lbl_file):
            md5[f] = check_file(SPEC, folder / f, expected_md5)
        images = read_idx(gzip.decompress((folder / img_file).read_bytes()), 3, img_file)
        labels = read_idx(gzip.decompress((folder / lbl_file).read_bytes()), 1, lbl_file)
        if len(images) != len(labels):
            raise ValueError(f"mnist {split}: {len(images)} images but {len(labels)} labels")
        splits[split] = (images.unsqueeze(1).contiguous(), labels.long())
    return make_image_data("mnist", splits["train"], splits["test"], [str(i) for i in range(10)], md5)


SPEC = register(DatasetSpec(
    name="mnist", info="MNIST digits, 60k/10k grayscale 28x28, official IDX files (dvc pull)",
    input_shape=(1, 28, 28), num_classes=10, loader=load_mnist, source="`dvc pull`",
    # The first train-images md5 is the lossless rebuild in the project's DVC remote
    # (shared/data/README.md), the second the official gzip; the others are the official files
    # (torchvision datasets/mnist.py `resources`).
    files={"train-images-idx3-ubyte.gz": ("56f11203c65dcbeead45b51e76a4d637", "f68b3c2dcbeaaa9fbdd348bbdeb94873"),
           "train-labels-idx1-ubyte.gz": ("d53e105ee54ea40749a09fcbcd1e9432",),
           "t10k-images-idx3-ubyte.gz": ("9fb629c4189551a2d022fa330f9573f3",),
           "t10k-labels-idx1-ubyte.gz": ("ec29112dd5afa0611ce80d1b7f02629c",)},
    urls={f: f"https://ossci-datasets.s3.amazonaws.com/mnist/{f}" for pair in MNIST_FILES.values() for f in pair}))
