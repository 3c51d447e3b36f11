"""ImageNet (ILSVRC-2012 classification, image-net.org) in either of its two usual layouts, streamed.

1. The official archives in `root/imagenet/`: `ILSVRC2012_img_train.tar` (one tar per class,
   `<wnid>.tar`, of JPEGs), `ILSVRC2012_img_val.tar` (50,000 `ILSVRC2012_val_%08d.JPEG`) and the devkit
   `ILSVRC2012_devkit_t12.tar.gz`, whose `data/meta.mat` lists the synsets (the 1000 leaves have
   `num_children == 0` and `ILSVRC2012_ID` 1..1000) and whose
   `data/ILSVRC2012_validation_ground_truth.txt` gives the ILSVRC2012_ID of each validation image,
   in file-number order. The tars are uncompressed, so each JPEG is a byte range inside the train
   or val tar: the loader reads only headers to index them (once per tar, then cached, md5 checked
   at that time) and the workers read the ranges directly, extracting nothing.
2. The extracted class-folder layout `root/imagenet/train/<wnid>/*.JPEG` and `val/<wnid>/*.JPEG`
   (what torchvision's ImageNet or the usual `valprep.sh` leave).

Class k is the synset with ILSVRC2012_ID k + 1, which is also the k-th wnid in sorted order, so the
two layouts agree; with a devkit, class names are its `words`, else the wnids.
"""

from __future__ import annotations

import hashlib
import io
import re
import tarfile
from pathlib import Path
from typing import Any

import numpy as np
import torch

from harness.data.integrity import DatasetMissingError, cache_dir, check_file, read_cache, write_cache
from harness.data.registry import DatasetSpec, Md5Table, register
from harness.data.stream import SampleIndex, StreamData

__all__ = ["DEVKIT", "TRAIN_TAR", "VAL_TAR", "load_imagenet", "read_devkit"]

TRAIN_TAR, VAL_TAR, DEVKIT = "ILSVRC2012_img_train.tar", "ILSVRC2012_img_val.tar", "ILSVRC2012_devkit_t12.tar.gz"
_IMAGE_SUFFIXES = (".jpeg", ".jpg", ".png")
_VAL_NAME = re.compile(r"ILSVRC2012_val_(\d+)\.JPEG$")
_DEVKIT_MEMBERS = ("data/meta.mat", "data/ILSVRC2012_validation_ground_truth.txt")


def read_devkit(path: Path) -> tuple[list[str], list[str], list[int]]:
    """(wnids, names, validation labels) from the devkit: classes in ILSVRC2012_ID order, labels 0-based."""
    import scipy.io

    found: dict[str, bytes] = {}
    with tarfile.open(path, "r:gz") as tar:
        for member in tar:
            if member.isfile() and member.name.endswith(_DEVKIT_MEMBERS):
                found[member.name.rsplit("/", 1)[-1]] = tar.extractfile(member).read()
    if len(found) != 2:
        raise ValueError(f"{path}: expected data/meta.mat and data/ILSVRC2012_validation_ground_truth.txt, "
                         f"found {sorted(found)}")
    synsets = scipy.io.loadmat(io.BytesIO(found["meta.mat"]), squeeze_me=True)["synsets"]
    leaves = sorted((int(s["ILSVRC2012_ID"]), str(s["WNID"]), str(s["words"]))
                    for s in np.atleast_1d(synsets) if int(s["num_children"]) == 0)
    ids, wnids, names = (list(t) for t in zip(*leaves)) if leaves else ([], [], [])
    if ids != list(range(1, len(ids) + 1)) or wnids != sorted(wnids) or len(ids) < 2:
        raise ValueError(f"{path}: leaf synsets must have ILSVRC2012_ID 1..K (K >= 2) in wnid order, got "
                         f"{len(ids)} with ids {ids[:5]}...")
    truth = [int(line) - 1 for line in found["ILSVRC2012_validation_ground_truth.txt"].split()]
    if truth and not (0 <= min(truth) and max(truth) < len(ids)):
        raise ValueError(f"{path}: ground truth ids span {min(truth) + 1}..{max(truth) + 1}, expected 1..{len(ids)}")
    return wnids, names, truth


def _index_train_tar(path: Path, wnids: list[str]) -> dict[str, list[int]]:
    """Offsets, sizes and labels of every JPEG inside the per-class tars inside the train tar."""
    where = {w: k for k, w in enumerate(wnids)}
    out: dict[str, list[int]] = {"offset": [], "size": [], "label": []}
    with tarfile.open(path, "r:") as outer:
        for member in outer:
            wnid = member.name.rsplit("/", 1)[-1].removesuffix(".tar")
            if not (member.isfile() and member.name.endswith(".tar")):
                continue
            if wnid not in where:
                raise ValueError(f"{path}: member {member.name} names no class of the devkit")
            with tarfile.open(fileobj=outer.extractfile(member), mode="r:") as inner:
                for image in inner:
                    if image.isfile():
                        out["offset"].append(member.offset_data + image.offset_data)
                        out["size"].append(image.size)
                        out["label"].append(where[wnid])
    return out


def _index_val_tar(path: Path, truth: list[int]) -> dict[str, list[int]]:
    """Offsets, sizes and labels of the validation JPEGs, in file-number order."""
    rows = []
    with tarfile.open(path, "r:") as tar:
        for member in tar:
            match = _VAL_NAME.search(member.name)
            if member.isfile() and match:
                number = int(match.group(1))
                if not 1 <= number <= len(truth):
                    raise ValueError(f"{path}: {member.name} has no ground-truth line (the devkit lists {len(truth)})")
                rows.append((number, member.offset_data, member.size, truth[number - 1]))
    rows.sort()
    return {"offset": [r[1] for r in rows], "size": [r[2] for r in rows], "label": [r[3] for r in rows]}


def _as_index(path: Path, rows: dict[str, list[int]]) -> SampleIndex:
    if not rows["label"]:
        raise ValueError(f"{path}: no images found")
    n = len(rows["label"])
    return SampleIndex(np.array([str(path).encode()], dtype=bytes), np.zeros(n, dtype=np.int32),
                       np.array(rows["offset"], dtype=np.int64), np.array(rows["size"], dtype=np.int64),
                       torch.tensor(rows["label"], dtype=torch.int64))


def _archive_key(paths: list[Path], expected_md5: Md5Table | None) -> str:
    """Identifies the archives without reading 150 GB: names, sizes, mtimes and the md5 table in force."""
    stats = [(p.name, p.stat().st_size, p.stat().st_mtime_ns) for p in paths]
    return repr((stats, None if expected_md5 is None else sorted(expected_md5.items())))


def _load_tars(folder: Path, expected_md5: Md5Table | None, use_cache: bool) -> dict[str, Any]:
    """The index of the three archives, from the cache when the archives are unchanged."""
    paths = [folder / TRAIN_TAR, folder / VAL_TAR, folder / DEVKIT]
    for p in paths:
        if not p.is_file():
            raise DatasetMissingError("imagenet", p, SPEC.how_to_get())
    key = _archive_key(paths, expected_md5)
    cache = cache_dir() / f"imagenet-index-{hashlib.md5(key.encode()).hexdigest()[:12]}.pt"  # the key is checked too
    blob = read_cache(cache, key) if use_cache else None
    if blob is None:
        md5 = {p.name: check_file(SPEC, p, expected_md5) for p in paths}
        wnids, names, truth = read_devkit(folder / DEVKIT)
        blob = {"md5": key, "file_md5": md5, "wnids": wnids, "names": names,
                "train": _index_train_tar(folder / TRAIN_TAR, wnids), "test": _index_val_tar(folder / VAL_TAR, truth)}
        if use_cache:
            write_cache(blob, cache)
    return blob


def _list_folder(split_dir: Path, classes: list[str]) -> SampleIndex:
    """Every image file under `split_dir/<wnid>/`, sorted, labelled by the wnid's position in `classes`."""
    where = {w: k for k, w in enumerate(classes)}
    paths, labels = [], []
    for sub in sorted(p for p in split_dir.iterdir() if p.is_dir()):
        if sub.name not in where:
            raise ValueError(f"{sub}: {sub.name} is not one of the {len(classes)} training classes")
        files = sorted(str(f) for f in sub.iterdir() if f.suffix.lower() in _IMAGE_SUFFIXES)
        paths += files
        labels += [where[sub.name]] * len(files)
    if not paths:
        raise ValueError(f"{split_dir}: no <wnid>/*.JPEG images found")
    return SampleIndex.of_files(paths, labels)


def _load_folders(folder: Path, expected_md5: Md5Table | None) -> StreamData:
    for split in ("train", "val"):
        if not (folder / split).is_dir():
            raise DatasetMissingError("imagenet", folder / split, SPEC.how_to_get())
    wnids = sorted(p.name for p in (folder / "train").iterdir() if p.is_dir())
    names, md5 = list(wnids), {}
    if (folder / DEVKIT).is_file():
        md5[DEVKIT] = check_file(SPEC, folder / DEVKIT, expected_md5)
        kit_wnids, kit_names, _ = read_devkit(folder / DEVKIT)
        if kit_wnids != wnids:
            raise ValueError(f"{folder / 'train'}: {len(wnids)} class folders differ from the devkit's "
                             f"{len(kit_wnids)} wnids")
        names = kit_names
    train = _list_folder(folder / "train", wnids)
    return StreamData("imagenet", train, _list_folder(folder / "val", wnids), names, md5=md5)


def load_imagenet(root: str | Path = "datasets", *, expected_md5: Md5Table | None = None, use_cache: bool = True,
                  image_size: int = 224) -> StreamData:
    """ImageNet from `root/imagenet`: class folders `train/` and `val/` if present, else the official archives."""
    folder = Path(root) / "imagenet"
    if (folder / "train").is_dir():
        data = _load_folders(folder, expected_md5)
    else:
        blob = _load_tars(folder, expected_md5, use_cache)
        data = StreamData("imagenet", _as_index(folder / TRAIN_TAR, blob["train"]),
                          _as_index(folder / VAL_TAR, blob["test"]), list(blob["names"]), md5=dict(blob["file_md5"]))
    data.image_size = image_size
    return data


# md5s: torchvision datasets/imagenet.py (`ARCHIVE_META`). No download: image-net.org requires an account.
SPEC = register(DatasetSpec(
    name="imagenet", info="ImageNet ILSVRC-2012, 1.28M/50k RGB, 1000 classes, 224x224 crops, streamed "
                          "(official tars + devkit, or train/ and val/ class folders)",
    input_shape=(3, 224, 224), num_classes=1000, loader=load_imagenet, kind="stream",
    source=("a manual download from image-net.org (an account is needed) of ILSVRC2012_img_train.tar, "
            "ILSVRC2012_img_val.tar and ILSVRC2012_devkit_t12.tar.gz into <data-root>/imagenet/ (or the "
            "extracted train/<wnid>/ and val/<wnid>/ folders there)"),
    files={TRAIN_TAR: ("1d675b47d978889d74fa0da5fadfb00e",), VAL_TAR: ("29b22e2961454d5413ddabcf34fc5622",),
           DEVKIT: ("fa75699e90414af021442c21a62c3abf",)}))
