"""The stream kind: datasets too large for memory (ImageNet), decoded per sample by DataLoader workers.

A `SampleIndex` says where each example's encoded bytes lie (a file, or a byte range inside an
uncompressed tar) and its label; workers read, decode, crop and resize one example each and
return uint8 tensors, which the main process stacks and normalises (so uint8, not float, crosses
the process boundary). Augmentation draws from a generator seeded by (seed, epoch, example), so a
batch's pixels depend neither on which worker made it nor on where the run was resumed.
"""

from __future__ import annotations

import io
import math
from collections.abc import Iterator
from dataclasses import dataclass, field

import numpy as np
import torch
from torch import Tensor
from torch.utils.data import DataLoader, Dataset

from harness.data.memory import normaliser
from harness.data.order import EpochCursor, check_rank, epoch_generator, shard_order

__all__ = ["IMAGENET_MEAN", "IMAGENET_STD", "SampleIndex", "StreamData", "StreamLoader", "decode_example"]

# Per-channel mean and std of ImageNet's training images on the 0..1 scale, the values every
# torchvision classification reference uses (pytorch/vision references/classification/presets.py).
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
_RESIZE_RATIO = 256 / 224  # evaluation: shorter side to 256, centre crop 224 (He et al. 2016, Sec. 3.4)


@dataclass
class SampleIndex:
    """Where each example's encoded image lies: `files[file_id[i]]`, bytes [offset, offset + size).

    `size[i] == -1` means the whole file. Paths are a numpy bytes array rather than a list of str, so
    forked workers share it without touching a million reference counts.
    """

    files: np.ndarray  # dtype S: file paths, utf-8
    file_id: np.ndarray  # int32 [N]
    offset: np.ndarray  # int64 [N]
    size: np.ndarray  # int64 [N], -1: to the end of the file
    labels: Tensor  # int64 [N]

    def __post_init__(self) -> None:
        n = len(self.labels)
        if not len(self.file_id) == len(self.offset) == len(self.size) == n:
            raise ValueError(f"sample index: {len(self.file_id)} file ids, {len(self.offset)} offsets, "
                             f"{len(self.size)} sizes and {n} labels; expected equal lengths")

    def __len__(self) -> int:
        return len(self.labels)

    def read(self, i: int) -> bytes:
        """The encoded bytes of example `i`."""
        with open(self.files[self.file_id[i]].decode(), "rb") as f:
            f.seek(int(self.offset[i]))
            return f.read() if self.size[i] < 0 else f.read(int(self.size[i]))

    def take(self, idx: Tensor) -> SampleIndex:
        """The examples at `idx`, in that order."""
        i = idx.numpy()
        return SampleIndex(self.files, self.file_id[i], self.offset[i], self.size[i], self.labels[idx])

    @staticmethod
    def of_files(paths: list[str], labels: list[int]) -> SampleIndex:
        """One example per whole file."""
        n = len(paths)
        return SampleIndex(np.array([p.encode() for p in paths], dtype=bytes), np.arange(n, dtype=np.int32),
                           np.zeros(n, dtype=np.int64), np.full(n, -1, dtype=np.int64),
                           torch.tensor(labels, dtype=torch.int64))


@dataclass
class StreamData:
    """A dataset read from disk example by example; the stream counterpart of `ImageData`."""

    name: str
    train: SampleIndex = field(repr=False)
    test: SampleIndex = field(repr=False)
    classes: list[str]
    image_size: int = 224  # pixels, square crops as the model sees them
    mean: tuple[float, ...] = IMAGENET_MEAN
    std: tuple[float, ...] = IMAGENET_STD
    md5: dict[str, str] = field(default_factory=dict)

    @property
    def num_classes(self) -> int:
        return len(self.classes)

    @property
    def input_shape(self) -> tuple[int, int, int]:
        return (3, self.image_size, self.image_size)

    @property
    def train_y(self) -> Tensor:
        return self.train.labels

    @property
    def test_y(self) -> Tensor:
        return self.test.labels


def _inception_box(width: int, height: int, rng: np.random.Generator) -> tuple[int, int, int, int]:
    """A random crop box (left, top, right, bottom): 8-100% of the area, aspect ratio 3/4..4/3.

    The "Inception" crop (Szegedy et al. 2015, Sec. 6); ten tries, then the central square.
    """
    area = width * height
    for _ in range(10):
        target = area * rng.uniform(0.08, 1.0)
        ratio = math.exp(rng.uniform(math.log(3 / 4), math.log(4 / 3)))
        w, h = round(math.sqrt(target * ratio)), round(math.sqrt(target / ratio))
        if 0 < w <= width and 0 < h <= height:
            left, top = int(rng.integers(0, width - w + 1)), int(rng.integers(0, height - h + 1))
            return left, top, left + w, top + h
    side = min(width, height)
    left, top = (width - side) // 2, (height - side) // 2
    return left, top, left + side, top + side


def _centre_box(width: int, height: int) -> tuple[float, float, float, float]:
    """The box that resizing the shorter side to 256/224 of the output and centre-cropping keeps."""
    side = min(width, height) / _RESIZE_RATIO
    left, top = (width - side) / 2, (height - side) / 2
    return left, top, left + side, top + side


def decode_example(raw: bytes, image_size: int, rng: np.random.Generator | None, flip: bool) -> Tensor:
    """Encoded image -> uint8 [3, S, S]: a random crop (and mirror) when `rng` is given, else the centre."""
    from PIL import Image

    with Image.open(io.BytesIO(raw)) as im:
        rgb = im.convert("RGB")  # ImageNet holds some greyscale and CMYK JPEGs
    box = _inception_box(*rgb.size, rng) if rng is not None else _centre_box(*rgb.size)
    out = rgb.resize((image_size, image_size), Image.Resampling.BILINEAR, box=box)
    if rng is not None and flip and rng.random() < 0.5:
        out = out.transpose(Image.Transpose.FLIP_LEFT_RIGHT)
    x = torch.frombuffer(bytearray(out.tobytes()), dtype=torch.uint8).view(image_size, image_size, 3)
    return x.permute(2, 0, 1).contiguous()


class _Decoded(Dataset):
    """Map-style dataset over (example, epoch) keys, so each worker can seed its example's augmentation."""

    def __init__(self, index: SampleIndex, image_size: int, augment: bool, flip: bool, seed: int) -> None:
        self.index, self.image_size, self.augment, self.flip, self.seed = index, image_size, augment, flip, seed

    def __len__(self) -> int:
        return len(self.index)

    def __getitem__(self, key: tuple[int, int]) -> tuple[Tensor, Tensor]:
        i, epoch = key
        rng = np.random.default_rng([self.seed, epoch, i]) if self.augment else None
        try:
            x = decode_example(self.index.read(i), self.image_size, rng, self.flip)
        except (OSError, ValueError) as exc:  # PIL's UnidentifiedImageError is an OSError
            path = self.index.files[self.index.file_id[i]].decode()
            raise ValueError(f"example {i} ({path} at byte {int(self.index.offset[i])}) cannot be decoded: "
                             f"{exc}") from None
        return x, self.index.labels[i]


class StreamLoader(EpochCursor):
    """Batches of a `SampleIndex`, decoded by `num_workers` DataLoader worker processes (0: in process).

    Same epoch order, rank sharding and resume contract as `BatchLoader` (see `harness.data.order`);
    `augment=True` takes a random Inception crop of each image (and mirrors half when `flip`),
    `augment=False` the centre crop used for evaluation.
    """

    def __init__(self, index: SampleIndex, batch_size: int, *, mean: tuple[float, ...], std: tuple[float, ...],
                 shuffle: bool, seed: int, augment: bool = False, flip: bool = False, image_size: int = 224,
                 drop_last: bool = False, flatten: bool = False, num_workers: int = 0, rank: int = 0,
                 world_size: int = 1) -> None:
        super().__init__()
        if batch_size < 1 or image_size < 1 or num_workers < 0:
            raise ValueError(f"batch_size {batch_size}, image_size {image_size} and num_workers {num_workers}: "
                             f"expected >= 1, >= 1 and >= 0")
        check_rank(rank, world_size)
        self._scale, self._shift = normaliser(mean, std, 3)
        self.index, self.batch_size, self.num_samples = index, batch_size, len(index) // world_size
        self.shuffle, self.seed, self.drop_last, self.flatten = shuffle, seed, drop_last, flatten
        self.num_workers, self.rank, self.world_size = num_workers, rank, world_size
        self._dataset = _Decoded(index, image_size, augment, flip, seed)

    def __len__(self) -> int:
        full, rest = divmod(self.num_samples, self.batch_size)
        return full + (rest > 0 and not self.drop_last)

    def __iter__(self) -> Iterator[tuple[Tensor, Tensor]]:
        epoch, start = self._begin()
        order = shard_order(len(self.index), self.shuffle, epoch_generator(self.seed, epoch), self.rank,
                            self.world_size).tolist()
        keys = [[(i, epoch) for i in order[b * self.batch_size:(b + 1) * self.batch_size]]
                for b in range(start, len(self))]
        loader = DataLoader(self._dataset, batch_sampler=keys, num_workers=self.num_workers)
        return self._batches(loader, start, self._active)

    def _batches(self, loader: DataLoader, start: int, active: list[int]) -> Iterator[tuple[Tensor, Tensor]]:
        for done, (x, y) in enumerate(loader, start + 1):
            x = x.float().mul_(self._scale).add_(self._shift)
            self._yielded(active, done)
            yield (x.flatten(1) if self.flatten else x), y
