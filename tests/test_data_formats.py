"""Tests for the formats added with the harness/data package (CIFAR-100, STL-10, smallNORB, ImageNet),
the stream loader, and `effitrain data check` on each; all on tiny files the tests write in the official
format, since none of these datasets is available offline."""

from __future__ import annotations

import gzip
import hashlib
import io
import pickle
import struct
import tarfile
from pathlib import Path

import numpy as np
import pytest
import scipy.io
import torch
from PIL import Image

from harness import cli
from harness import data as D
from harness.data.formats import imagenet as inet
from harness.data.formats.smallnorb import SMALLNORB_FILES


@pytest.fixture(autouse=True)
def _fresh_memo():
    D.clear_memo()
    yield
    D.clear_memo()


def _add_bytes(tar: tarfile.TarFile, name: str, payload: bytes) -> None:
    info = tarfile.TarInfo(name)
    info.size = len(payload)
    tar.addfile(info, io.BytesIO(payload))


def _md5(path: Path) -> str:
    return hashlib.md5(path.read_bytes()).hexdigest()


def _trust_written_files(monkeypatch, name: str, folder: Path) -> None:
    """Make the registry accept the test-written files (the CLI has no expected_md5 option)."""
    files = D.spec_of(name).files
    for path in folder.iterdir():
        if path.is_file():
            monkeypatch.setitem(files, path.name, (_md5(path),))


def _jpeg(colour: tuple[int, int, int], size: tuple[int, int] = (40, 30)) -> bytes:
    buf = io.BytesIO()
    Image.new("RGB", size, colour).save(buf, "JPEG", quality=90)
    return buf.getvalue()


# ---------- CIFAR-100: cifar-100-python/{train,test,meta}, pickled dicts ----------

FINE = [f"class{i:03d}" for i in range(100)]


def _make_cifar100(root: Path, n_train: int = 6, n_test: int = 3) -> np.ndarray:
    rng = np.random.default_rng(2)
    rows = rng.integers(0, 256, (n_train + n_test, 3072), dtype=np.uint8)
    path = root / "cifar100" / D.CIFAR100_TARBALL
    path.parent.mkdir(parents=True)
    with tarfile.open(path, "w:gz") as tar:
        for name, part in (("train", rows[:n_train]), ("test", rows[n_train:])):
            fine = [(7 * i + 99) % 100 for i in range(len(part))]
            batch = {b"data": part, b"fine_labels": fine, b"coarse_labels": [f // 5 for f in fine],
                     b"batch_label": name.encode(), b"filenames": [b"x.png"] * len(part)}
            _add_bytes(tar, f"cifar-100-python/{name}", pickle.dumps(batch, protocol=2))
        meta = {b"fine_label_names": [c.encode() for c in FINE], b"coarse_label_names": [b"c"] * 20}
        _add_bytes(tar, "cifar-100-python/meta", pickle.dumps(meta, protocol=2))
    return rows


def test_cifar100_reads_fine_labels(tmp_path: Path) -> None:
    rows = _make_cifar100(tmp_path)
    d = D.load_dataset("cifar100", tmp_path, expected_md5={})
    assert d.train_x.shape == (6, 3, 32, 32) and d.test_x.shape == (3, 3, 32, 32)
    assert d.num_classes == 100 and d.classes == FINE
    assert d.train_y.tolist() == [99, 6, 13, 20, 27, 34] and d.test_y.dtype == torch.int64
    assert torch.equal(d.train_x[2, 2].flatten(), torch.from_numpy(rows[2, 2048:]))  # R, G, B planes
    assert set(d.md5) == {D.CIFAR100_TARBALL}


def test_cifar100_checksum_and_missing(tmp_path: Path) -> None:
    with pytest.raises(D.DatasetMissingError, match="dataset 'cifar100' not found.*download cifar100"):
        D.load_cifar100(tmp_path)
    _make_cifar100(tmp_path)
    with pytest.raises(D.ChecksumError, match="cifar-100-python.tar.gz: expected md5 eb9058c3"):
        D.load_cifar100(tmp_path)  # the official md5, not that of the test's file


# ---------- STL-10: stl10_binary/{train,test}_{X,y}.bin, column-major images, labels 1..10 ----------

def _make_stl10(root: Path, n_train: int = 4, n_test: int = 2, labels_on_disk: list[int] | None = None
                ) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(3)
    x = rng.integers(0, 256, (n_train + n_test, 3, 96, 96), dtype=np.uint8)  # [N, C, row, column]
    y = np.array(labels_on_disk or [10, 1, 5, 2, 3, 10], dtype=np.uint8)
    path = root / "stl10" / D.STL10_TARBALL
    path.parent.mkdir(parents=True)
    with tarfile.open(path, "w:gz") as tar:
        for split, part in (("train", slice(0, n_train)), ("test", slice(n_train, None))):
            _add_bytes(tar, f"stl10_binary/{split}_X.bin", x[part].transpose(0, 1, 3, 2).tobytes())  # column-major
            _add_bytes(tar, f"stl10_binary/{split}_y.bin", y[part].tobytes())
        _add_bytes(tar, "stl10_binary/unlabeled_X.bin", b"\0" * 3 * 96 * 96)
        _add_bytes(tar, "stl10_binary/class_names.txt", "\n".join(f"name{i}" for i in range(10)).encode())
    return x, y


def test_stl10_reads_column_major_images_and_1_based_labels(tmp_path: Path) -> None:
    x, y = _make_stl10(tmp_path)
    d = D.load_dataset("stl10", tmp_path, expected_md5={})
    assert d.train_x.shape == (4, 3, 96, 96) and d.test_x.shape == (2, 3, 96, 96)
    assert torch.equal(d.train_x, torch.from_numpy(x[:4])) and torch.equal(d.test_x, torch.from_numpy(x[4:]))
    assert d.train_y.tolist() == [9, 0, 4, 1] and d.test_y.tolist() == [2, 9]
    assert d.classes == [f"name{i}" for i in range(10)] and d.input_shape == (3, 96, 96)
    assert (tmp_path / ".cache" / f"stl10-{_md5(tmp_path / 'stl10' / D.STL10_TARBALL)}.pt").is_file()


def test_stl10_rejects_bad_labels_and_truncated_images(tmp_path: Path) -> None:
    _make_stl10(tmp_path, labels_on_disk=[0, 1, 2, 3, 4, 5])
    with pytest.raises(ValueError, match="labels span 0..3, expected 1..10"):
        D.load_stl10(tmp_path, expected_md5={}, use_cache=False)
    path = tmp_path / "stl10" / D.STL10_TARBALL
    path.unlink()
    with tarfile.open(path, "w:gz") as tar:
        _add_bytes(tar, "stl10_binary/train_X.bin", b"\1" * 100)
        for name in ("train_y.bin", "test_X.bin", "test_y.bin"):
            _add_bytes(tar, f"stl10_binary/{name}", b"\1")
    with pytest.raises(ValueError, match="train_X.bin has 100 bytes"):
        D.load_stl10(tmp_path, expected_md5={}, use_cache=False)


# ---------- smallNORB: NYU binary-matrix files, gzipped or not ----------

def _matrix(array: np.ndarray, magic: int) -> bytes:
    """Binary matrix: little-endian int32 magic and ndim, max(3, ndim) int32 sizes (padding 1), data."""
    dims = list(array.shape) + [1] * max(0, 3 - array.ndim)
    return struct.pack(f"<iI{len(dims)}i", magic, array.ndim, *dims) + array.tobytes()


def _make_smallnorb(root: Path, n: int = 5) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(4)
    folder = root / "smallnorb"
    folder.mkdir(parents=True)
    made = {}
    for split, gz in (("train", True), ("test", False)):  # the loader takes either form
        made[split] = rng.integers(0, 256, (n, 2, 96, 96), dtype=np.uint8)
        parts = {"dat": _matrix(made[split], 0x1E3D4C55),
                 "cat": _matrix(np.arange(n, dtype="<i4") % 5, 0x1E3D4C54),
                 "info": _matrix(rng.integers(0, 9, (n, 4)).astype("<i4"), 0x1E3D4C54)}
        for part, raw in parts.items():
            name = SMALLNORB_FILES[split][part]
            if gz:
                (folder / f"{name}.gz").write_bytes(gzip.compress(raw))
            else:
                (folder / name).write_bytes(raw)
    return made


def test_smallnorb_reads_stereo_pairs_as_two_channels(tmp_path: Path) -> None:
    made = _make_smallnorb(tmp_path)
    d = D.load_dataset("smallnorb", tmp_path, expected_md5={})
    assert d.train_x.shape == (5, 2, 96, 96) and d.input_shape == (2, 96, 96) and d.num_classes == 5
    assert torch.equal(d.train_x, torch.from_numpy(made["train"])) and torch.equal(d.test_x,
                                                                                  torch.from_numpy(made["test"]))
    assert d.train_y.tolist() == [0, 1, 2, 3, 4] and d.classes[0] == "animal"
    assert sorted(d.md5) == sorted([f"{f}.gz" for f in SMALLNORB_FILES["train"].values()]
                                   + list(SMALLNORB_FILES["test"].values()))


def test_smallnorb_bad_magic_and_missing_file(tmp_path: Path) -> None:
    _make_smallnorb(tmp_path)
    dat = tmp_path / "smallnorb" / SMALLNORB_FILES["test"]["dat"]
    dat.write_bytes(b"\x00\x00\x00\x00" + dat.read_bytes()[4:])
    with pytest.raises(ValueError, match="magic 0x0 and 4 dimensions; expected a magic in 0x1e3d4c55"):
        D.load_smallnorb(tmp_path, expected_md5={})
    dat.unlink()
    with pytest.raises(D.DatasetMissingError, match="testing-dat.mat.gz is missing") as err:
        D.load_smallnorb(tmp_path, expected_md5={})
    assert "\n" not in str(err.value) and "download smallnorb" in str(err.value)


def test_binary_matrix_header_pads_to_three_dimensions() -> None:
    labels = np.array([4, 0, 2], dtype="<i4")
    raw = _matrix(labels, 0x1E3D4C54)
    assert len(raw) == 4 + 4 + 3 * 4 + 3 * 4  # magic, ndim, three sizes although ndim is 1, data
    from harness.data.formats.smallnorb import read_binary_matrix
    assert read_binary_matrix(raw, "cat").tolist() == [4, 0, 2]
    with pytest.raises(ValueError, match="data bytes"):
        read_binary_matrix(raw[:-1], "cat")


# ---------- ImageNet: official tars + devkit, or class folders ----------

WNIDS = ["n01440764", "n01443537", "n01484850"]  # the first three ILSVRC2012_IDs
COLOURS = [(220, 30, 30), (30, 200, 30), (30, 30, 220)]
VAL_TRUTH = [2, 3, 1, 1]  # ILSVRC2012_ID of val images 1..4


def _meta_mat() -> bytes:
    fields = ["ILSVRC2012_ID", "WNID", "words", "gloss", "num_children", "children", "wordnet_height",
              "num_train_images"]
    rows = [(k + 1, w, f"word{k}", "gloss", 0, np.zeros((1, 0)), 0, 2) for k, w in enumerate(WNIDS)]
    rows.append((1001, "n00001740", "entity", "gloss", 3, np.array([1, 2, 3]), 4, 0))  # not a leaf: no class
    buf = io.BytesIO()
    scipy.io.savemat(buf, {"synsets": np.array(rows, dtype=[(f, "O") for f in fields]).reshape(-1, 1)})
    return buf.getvalue()


def _make_imagenet_tars(root: Path, per_class: int = 2) -> Path:
    folder = root / "imagenet"
    folder.mkdir(parents=True)
    with tarfile.open(folder / inet.TRAIN_TAR, "w") as outer:
        for k, wnid in reversed(list(enumerate(WNIDS))):  # out of order: labels come from the wnid
            inner = io.BytesIO()
            with tarfile.open(fileobj=inner, mode="w") as tar:
                for i in range(per_class):
                    _add_bytes(tar, f"{wnid}_{i}.JPEG", _jpeg(COLOURS[k], (40 + 8 * i, 30)))
            _add_bytes(outer, f"{wnid}.tar", inner.getvalue())
    with tarfile.open(folder / inet.VAL_TAR, "w") as tar:
        for number in reversed(range(1, len(VAL_TRUTH) + 1)):
            _add_bytes(tar, f"ILSVRC2012_val_{number:08d}.JPEG", _jpeg(COLOURS[VAL_TRUTH[number - 1] - 1]))
    with tarfile.open(folder / inet.DEVKIT, "w:gz") as tar:
        _add_bytes(tar, "ILSVRC2012_devkit_t12/data/meta.mat", _meta_mat())
        truth = "".join(f"{t}\n" for t in VAL_TRUTH).encode()
        _add_bytes(tar, "ILSVRC2012_devkit_t12/data/ILSVRC2012_validation_ground_truth.txt", truth)
    return folder


def _make_imagenet_folders(root: Path) -> Path:
    folder = root / "imagenet"
    for k, wnid in enumerate(WNIDS):
        for split, n in (("train", 2), ("val", 1)):
            (folder / split / wnid).mkdir(parents=True)
            for i in range(n):
                (folder / split / wnid / f"{wnid}_{i}.JPEG").write_bytes(_jpeg(COLOURS[k]))
    return folder


def _colour_class(x: torch.Tensor) -> int:
    """Which of COLOURS a decoded (solid) uint8 [3, H, W] image shows."""
    return int(x.float().mean(dim=(1, 2)).argmax())


def test_imagenet_tars_index_byte_ranges_with_devkit_labels(tmp_path: Path) -> None:
    _make_imagenet_tars(tmp_path)
    d = D.load_dataset("imagenet", tmp_path, expected_md5={}, image_size=16)
    assert isinstance(d, D.StreamData) and d.classes == ["word0", "word1", "word2"]
    assert d.train_y.tolist() == [2, 2, 1, 1, 0, 0] and d.test_y.tolist() == [1, 2, 0, 0]
    assert d.input_shape == (3, 16, 16) and set(d.md5) == {inet.TRAIN_TAR, inet.VAL_TAR, inet.DEVKIT}
    with Image.open(io.BytesIO(d.train.read(0))) as im:  # a byte range inside the inner tar is a whole JPEG
        assert im.size == (40, 30)
    loader = D.StreamLoader(d.test, 4, mean=d.mean, std=d.std, shuffle=False, seed=0, image_size=16)
    raw = D.StreamLoader(d.test, 4, mean=(0.0,) * 3, std=(1 / 255,) * 3, shuffle=False, seed=0, image_size=16)
    (x, y), (xr, _) = next(iter(loader)), next(iter(raw))
    assert x.shape == (4, 3, 16, 16) and x.dtype == torch.float32 and y.tolist() == [1, 2, 0, 0]
    assert [_colour_class(img) for img in xr] == y.tolist()  # each image decoded under its own label
    assert any((tmp_path / ".cache").glob("imagenet-index-*.pt"))
    D.clear_memo()
    again = D.load_imagenet(tmp_path, expected_md5={}, image_size=16)  # from the cached index
    assert torch.equal(again.train_y, d.train_y) and np.array_equal(again.train.offset, d.train.offset)


def test_imagenet_folders_match_the_tar_layout(tmp_path: Path) -> None:
    folder = _make_imagenet_folders(tmp_path)
    d = D.load_imagenet(tmp_path, image_size=8)
    assert d.classes == WNIDS and d.train_y.tolist() == [0, 0, 1, 1, 2, 2] and d.test_y.tolist() == [0, 1, 2]
    assert d.md5 == {}  # no archives read, nothing to check
    (folder / "val" / "n99999999").mkdir()
    D.clear_memo()
    with pytest.raises(ValueError, match="n99999999 is not one of the 3 training classes"):
        D.load_imagenet(tmp_path)


def test_imagenet_missing_and_corrupt_archives(tmp_path: Path) -> None:
    with pytest.raises(D.DatasetMissingError, match="ILSVRC2012_img_train.tar is missing.*image-net.org") as err:
        D.load_dataset("imagenet", tmp_path)
    assert "\n" not in str(err.value)
    folder = _make_imagenet_tars(tmp_path)
    with pytest.raises(D.ChecksumError, match="ILSVRC2012_img_train.tar: expected md5 1d675b47"):
        D.load_imagenet(tmp_path, use_cache=False)
    (folder / inet.VAL_TAR).unlink()
    with tarfile.open(folder / inet.VAL_TAR, "w") as tar:
        _add_bytes(tar, "ILSVRC2012_val_00000001.JPEG", b"not a jpeg")
    d = D.load_imagenet(tmp_path, expected_md5={}, use_cache=False)
    with pytest.raises(ValueError, match=r"example 0 \(.*ILSVRC2012_img_val.tar at byte \d+\) cannot be decoded"):
        D.describe(d)


# ---------- the stream loader: shards, resume, workers ----------

def _stream(d: D.StreamData, **kw) -> D.StreamLoader:
    args = {"mean": d.mean, "std": d.std, "shuffle": True, "seed": 5, "augment": True, "flip": True,
            "image_size": 12} | kw
    return D.StreamLoader(d.train, 2, **args)


def test_stream_loader_ranks_cover_the_epoch_once(tmp_path: Path) -> None:
    _make_imagenet_tars(tmp_path, per_class=4)  # 12 examples
    d = D.load_imagenet(tmp_path, expected_md5={})
    d.train.labels = torch.arange(12)  # tag each example to see who got it
    shares = [torch.cat([y for _, y in _stream(d, rank=r, world_size=2)]) for r in (0, 1)]
    assert len(shares[0]) == len(shares[1]) == 6 and sorted(torch.cat(shares).tolist()) == list(range(12))
    whole = torch.cat([y for _, y in _stream(d)])
    assert torch.equal(whole, torch.randperm(12, generator=torch.Generator().manual_seed(5 * 1_000_003)))
    assert torch.equal(shares[1], whole[1::2])


def test_stream_loader_resumes_and_workers_do_not_change_pixels(tmp_path: Path) -> None:
    _make_imagenet_tars(tmp_path, per_class=3)  # 9 examples, 4 batches of 2 (drop_last)
    d = D.load_imagenet(tmp_path, expected_md5={})
    reference = _stream(d, drop_last=True)
    expected = list(reference) + list(reference)
    with_workers = _stream(d, drop_last=True, num_workers=2)
    for (xa, ya), (xb, yb) in zip(list(with_workers), expected[:4], strict=True):
        assert torch.equal(xa, xb) and torch.equal(ya, yb)
    first = _stream(d, drop_last=True)
    it = iter(first)
    for _ in range(3):
        next(it)
    assert first.state_dict() == {"epoch": 0, "batch": 3}
    resumed = _stream(d, drop_last=True)
    resumed.load_state_dict(first.state_dict())
    got = list(resumed) + list(resumed)
    assert len(got) == 5
    for (xa, ya), (xb, yb) in zip(got, expected[3:], strict=True):
        assert torch.equal(xa, xb) and torch.equal(ya, yb)
    assert not torch.equal(expected[0][0], expected[4][0])  # a new epoch draws new crops and order


def test_make_loaders_for_a_stream_dataset(tmp_path: Path) -> None:
    _make_imagenet_tars(tmp_path, per_class=4)
    d = D.load_imagenet(tmp_path, expected_md5={}, image_size=8)
    train, val, test = D.make_loaders(d, batch_size=3, seed=0, n_val=3, split_seed=0, n_train=6, flip=True)
    assert (train.num_samples, val.num_samples, test.num_samples) == (6, 3, 4)
    assert torch.bincount(torch.cat([y for _, y in train]), minlength=3).tolist() == [2, 2, 2]  # stratified
    x, _ = next(iter(val))
    assert x.shape == (3, 3, 8, 8)
    with pytest.raises(ValueError, match="crop_pad=4 is for memory datasets"):
        D.make_loaders(d, batch_size=3, seed=0, n_val=3, split_seed=0, crop_pad=4)


# ---------- the command line ----------

_MAKERS = {"cifar100": _make_cifar100, "stl10": _make_stl10, "smallnorb": _make_smallnorb,
           "imagenet": _make_imagenet_tars}


@pytest.mark.parametrize("name", sorted(_MAKERS))
def test_cli_data_check_on_written_files(name: str, tmp_path: Path, monkeypatch, capsys) -> None:
    _MAKERS[name](tmp_path)
    _trust_written_files(monkeypatch, name, tmp_path / name)
    summary = tmp_path / "summary.json"
    assert cli.main(["--data-root", str(tmp_path), "data", "check", name, "--summary", str(summary)]) == 0
    out = capsys.readouterr().out
    assert out.startswith(f"{name}: train (") and "md5 ok" in out
    assert summary.is_file() and f'"name": "{name}"' in summary.read_text()


@pytest.mark.parametrize("name", sorted(_MAKERS))
def test_cli_data_check_corrupt_file_is_one_line(name: str, tmp_path: Path, capsys) -> None:
    _MAKERS[name](tmp_path)  # the registry's official md5s do not match the test's files
    assert cli.main(["--data-root", str(tmp_path), "data", "check", name]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "checksum mismatch" in err
