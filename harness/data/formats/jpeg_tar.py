"""cifar10-jpeg75: CIFAR-10 re-encoded as JPEG quality 75, `split/class/NNNN.jpg` in a tarball.

The copy in the project's DVC remote (shared/data/README.md); lossy, so report it under this name,
never as `cifar10`. The first load reads the tarball and decodes its 60,000 JPEGs with PIL: about
15 s on the project's 2-core machine (up to 28 s while other jobs share the cores). The tensors are
then cached in `cache_dir()/cifar10-jpeg75-<md5>.pt` (185 MB); later loads take about 0.8 s
(tarball md5, torch.load, channel statistics).
"""

from __future__ import annotations

import io
import tarfile
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from harness.data.integrity import cached_decode, check_file
from harness.data.memory import ImageData, make_image_data
from harness.data.registry import DatasetSpec, Md5Table, register

__all__ = ["JPEG75_TARBALL", "decode_jpeg_tar", "load_cifar10_jpeg75"]

JPEG75_TARBALL = "cifar10-jpeg75.tar.gz"


def _read_members(path: Path) -> dict[tuple[str, str, str], bytes]:
    """(split, class, file) -> JPEG bytes of every `.../{train,test}/<class>/<file>` member."""
    files: dict[tuple[str, str, str], bytes] = {}
    with tarfile.open(path, "r:gz") as tar:  # streaming read; any leading folder is ignored
        for member in tar:
            parts = member.name.split("/")
            if member.isfile() and len(parts) >= 3 and parts[-3] in ("train", "test"):
                files[(parts[-3], parts[-2], parts[-1])] = tar.extractfile(member).read()
    return files


def _decode_split(path: Path, files: dict[tuple[str, str, str], bytes], keys: list[tuple[str, str, str]]) -> Tensor:
    """Decode the JPEGs of `keys` in order into one uint8 [N, 3, H, W] tensor (all must share a size)."""
    from PIL import Image

    pixels, size = bytearray(), None  # all images' HWC bytes, one tensor at the end
    for key in keys:
        with Image.open(io.BytesIO(files[key])) as im:
            rgb = im if im.mode == "RGB" else im.convert("RGB")
            if size not in (None, rgb.size):
                raise ValueError(f"{path}: {'/'.join(key)} is {rgb.size}, others {size}")
            size = rgb.size
            pixels += rgb.tobytes()
    x = torch.frombuffer(pixels, dtype=torch.uint8).reshape(len(keys), size[1], size[0], 3)
    return x.permute(0, 3, 1, 2).contiguous()


def decode_jpeg_tar(path: Path) -> tuple[dict[str, tuple[Tensor, Tensor]], list[str]]:
    """Stream `split/class/NNNN.jpg` members, then decode with PIL in sorted path order."""
    files = _read_members(path)
    classes = sorted({cls for _, cls, _ in files})
    out = {}
    for split in ("train", "test"):
        keys = sorted(k for k in files if k[0] == split)
        if not keys:
            raise ValueError(f"{path}: no {split}/<class>/*.jpg members")
        labels = torch.tensor([classes.index(k[1]) for k in keys], dtype=torch.int64)
        out[split] = (_decode_split(path, files, keys), labels)
    return out, classes


def _build(path: Path) -> dict[str, Any]:
    splits, classes = decode_jpeg_tar(path)
    return {"classes": classes, "train_x": splits["train"][0], "train_y": splits["train"][1],
            "test_x": splits["test"][0], "test_y": splits["test"][1]}


def load_cifar10_jpeg75(root: str | Path = "datasets", *, expected_md5: Md5Table | None = None,
                        use_cache: bool = True) -> ImageData:
    """CIFAR-10 as JPEG q75 files in a tarball, decoded once per machine and cached by md5."""
    path = Path(root) / "cifar10-jpeg75" / JPEG75_TARBALL
    digest = check_file(SPEC, path, expected_md5)
    blob = cached_decode("cifar10-jpeg75", digest, lambda: _build(path), use_cache)
    return make_image_data("cifar10-jpeg75", (blob["train_x"], blob["train_y"]), (blob["test_x"], blob["test_y"]),
                           list(blob["classes"]), {path.name: digest})


SPEC = register(DatasetSpec(
    name="cifar10-jpeg75", info="CIFAR-10 re-encoded as JPEG q75 (lossy), 50k/10k RGB 32x32 (dvc pull only)",
    input_shape=(3, 32, 32), num_classes=10, loader=load_cifar10_jpeg75, source="`dvc pull`",
    files={JPEG75_TARBALL: ("7c16a23c319774b7fd22c2e5a2c01c1c",)}))  # shared/data/README.md
