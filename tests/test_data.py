"""Tests for harness.data: each loader on small files the test writes in the official format."""

from __future__ import annotations

import gzip
import hashlib
import io
import pickle
import struct
import tarfile
import urllib.request
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from harness import data as D
from harness.data.formats import jpeg_tar

REAL_ROOT = Path(__file__).resolve().parents[1] / "datasets"


@pytest.fixture(autouse=True)
def _fresh_memo():
    D.clear_memo()
    yield
    D.clear_memo()


# ---------- writers for the official formats ----------

def _write_idx_gz(path: Path, array: torch.Tensor) -> None:
    """IDX: magic 0x0800+ndim, big-endian int32 sizes, then uint8 bytes; gzip-wrapped."""
    header = struct.pack(f">I{array.dim()}I", 0x0800 + array.dim(), *array.shape)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(gzip.compress(header + array.numpy().tobytes()))


def _make_mnist(root: Path, n_train: int = 6, n_test: int = 4) -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(1)
    t = {"train_x": torch.randint(0, 256, (n_train, 28, 28), generator=g, dtype=torch.uint8),
         "train_y": torch.arange(n_train, dtype=torch.uint8) % 10,
         "test_x": torch.randint(0, 256, (n_test, 28, 28), generator=g, dtype=torch.uint8),
         "test_y": torch.arange(n_test, dtype=torch.uint8) % 10}
    folder = root / "mnist"
    _write_idx_gz(folder / "train-images-idx3-ubyte.gz", t["train_x"])
    _write_idx_gz(folder / "train-labels-idx1-ubyte.gz", t["train_y"])
    _write_idx_gz(folder / "t10k-images-idx3-ubyte.gz", t["test_x"])
    _write_idx_gz(folder / "t10k-labels-idx1-ubyte.gz", t["test_y"])
    return t


def _add_bytes(tar: tarfile.TarFile, name: str, payload: bytes) -> None:
    info = tarfile.TarInfo(name)
    info.size = len(payload)
    tar.addfile(info, io.BytesIO(payload))


def _make_cifar_python(root: Path, per_batch: int = 2) -> np.ndarray:
    """cifar-10-batches-py/{data_batch_1..5,test_batch,batches.meta}, pickled dicts."""
    rng = np.random.default_rng(0)
    all_data = rng.integers(0, 256, (6 * per_batch, 3072), dtype=np.uint8)
    path = root / "cifar10" / D.CIFAR10_TARBALL
    path.parent.mkdir(parents=True)
    with tarfile.open(path, "w:gz") as tar:
        names = [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]
        for k, name in enumerate(names):
            rows = all_data[k * per_batch:(k + 1) * per_batch]
            batch = {b"batch_label": name.encode(), b"data": rows,
                     b"labels": [(k + j) % 10 for j in range(per_batch)]}
            _add_bytes(tar, f"cifar-10-batches-py/{name}", pickle.dumps(batch, protocol=2))
        meta = {b"label_names": [c.encode() for c in D.CIFAR10_CLASSES], b"num_vis": 3072}
        _add_bytes(tar, "cifar-10-batches-py/batches.meta", pickle.dumps(meta, protocol=2))
    return all_data


COLOURS = {"cat": (200, 40, 40), "dog": (30, 160, 220)}


def _make_jpeg_tar(root: Path, per_class: int = 3) -> Path:
    """cifar10-jpeg75/<split>/<class>/NNNN.jpg with solid colours (JPEG keeps them within a few)."""
    path = root / "cifar10-jpeg75" / D.JPEG75_TARBALL
    path.parent.mkdir(parents=True)
    with tarfile.open(path, "w:gz") as tar:
        for split, n in (("train", per_class), ("test", 1)):
            for cls in reversed(COLOURS):  # written out of order: the loader must sort
                for i in range(n):
                    buf = io.BytesIO()
                    mode = "L" if split == "test" else "RGB"  # grey files decode to RGB too
                    image = Image.new("RGB", (32, 32), COLOURS[cls]).convert(mode)
                    image.save(buf, "JPEG", quality=75)
                    _add_bytes(tar, f"cifar10-jpeg75/{split}/{cls}/{i:04d}.jpg", buf.getvalue())
    return path


# ---------- loaders ----------

def test_mnist_reads_idx_files(tmp_path: Path) -> None:
    t = _make_mnist(tmp_path)
    d = D.load_mnist(tmp_path, expected_md5={})
    assert d.train_x.shape == (6, 1, 28, 28) and d.test_x.shape == (4, 1, 28, 28)
    assert d.train_x.dtype == torch.uint8 and d.train_y.dtype == torch.int64
    assert torch.equal(d.train_x[:, 0], t["train_x"]) and torch.equal(d.test_y, t["test_y"].long())
    assert d.input_shape == (1, 28, 28) and d.num_classes == 10
    assert set(d.md5) == {f for pair in D.MNIST_FILES.values() for f in pair}
    x = t["train_x"].double() / 255
    assert d.mean[0] == pytest.approx(x.mean().item()) and d.std[0] == pytest.approx(x.std(
        unbiased=False).item())


def test_known_md5_table_rejects_other_files(tmp_path: Path) -> None:
    _make_mnist(tmp_path)
    with pytest.raises(D.ChecksumError, match="train-images-idx3-ubyte.gz"):
        D.load_mnist(tmp_path)  # expected_md5=None: the real table


def test_checksum_error_names_file_expected_and_actual(tmp_path: Path) -> None:
    _make_mnist(tmp_path)
    actual = hashlib.md5((tmp_path / "mnist/t10k-labels-idx1-ubyte.gz").read_bytes()).hexdigest()
    with pytest.raises(D.ChecksumError) as err:
        D.load_mnist(tmp_path, expected_md5={"t10k-labels-idx1-ubyte.gz": "0" * 32})
    msg = str(err.value)
    assert "t10k-labels-idx1-ubyte.gz" in msg and "0" * 32 in msg and actual in msg
    assert isinstance(err.value, ValueError) and "\n" not in msg
    ok = D.load_mnist(tmp_path, expected_md5={"t10k-labels-idx1-ubyte.gz": ("0" * 32, actual)})
    assert ok.md5["t10k-labels-idx1-ubyte.gz"] == actual


def test_missing_dataset_says_dvc_pull(tmp_path: Path) -> None:
    with pytest.raises(D.DatasetMissingError, match="dvc pull") as err:
        D.load_dataset("mnist", tmp_path)
    assert "dataset 'mnist' not found" in str(err.value) and "download mnist" in str(err.value)
    with pytest.raises(ValueError, match="dvc pull") as err:
        D.load_dataset("cifar10-jpeg75", tmp_path)
    assert "download" not in str(err.value)  # no official download exists for the JPEG copy


def test_cifar10_python_tarball(tmp_path: Path) -> None:
    raw = _make_cifar_python(tmp_path)
    d = D.load_dataset("cifar10", tmp_path, expected_md5={})
    assert d.train_x.shape == (10, 3, 32, 32) and d.test_x.shape == (2, 3, 32, 32)
    assert d.classes == D.CIFAR10_CLASSES and d.train_y.tolist()[:4] == [0, 1, 1, 2]
    # a row is 1024 red, then 1024 green, then 1024 blue values, each row-major 32x32
    assert torch.equal(d.train_x[3, 1].flatten(), torch.from_numpy(raw[3, 1024:2048]))
    assert torch.equal(d.test_x.reshape(2, -1), torch.from_numpy(raw[10:]))
    assert len(d.mean) == 3 and set(d.md5) == {D.CIFAR10_TARBALL}


def test_cifar10_refuses_pickles_that_are_not_arrays(tmp_path: Path) -> None:
    path = tmp_path / "cifar10" / D.CIFAR10_TARBALL
    path.parent.mkdir(parents=True)
    with tarfile.open(path, "w:gz") as tar:
        _add_bytes(tar, "cifar-10-batches-py/data_batch_1", pickle.dumps({b"data": Path("x")}))
    with pytest.raises(pickle.UnpicklingError, match="refusing"):
        D.load_cifar10(tmp_path, expected_md5={})


def test_jpeg_tarball_decodes_in_sorted_order_and_caches(tmp_path, monkeypatch) -> None:
    path = _make_jpeg_tar(tmp_path)
    d = D.load_cifar10_jpeg75(tmp_path, expected_md5={})
    assert d.train_x.shape == (6, 3, 32, 32) and d.test_x.shape == (2, 3, 32, 32)
    assert d.classes == ["cat", "dog"] and d.train_y.tolist() == [0, 0, 0, 1, 1, 1]
    assert d.test_y.tolist() == [0, 1]
    assert (d.test_x[1, 0].int() - d.test_x[1, 2].int()).abs().max() <= 1  # grey: R == B
    cat = torch.tensor(COLOURS["cat"], dtype=torch.float32)
    assert (d.train_x[0].float().mean(dim=(1, 2)) - cat).abs().max() < 4  # JPEG is lossy
    digest = hashlib.md5(path.read_bytes()).hexdigest()
    assert d.md5 == {D.JPEG75_TARBALL: digest}
    assert (tmp_path / ".cache" / f"cifar10-jpeg75-{digest}.pt").is_file()

    def no_decode(_path):
        raise AssertionError("decoded again although the cache matches")

    monkeypatch.setattr(jpeg_tar, "decode_jpeg_tar", no_decode)
    cached = D.load_cifar10_jpeg75(tmp_path, expected_md5={})
    assert torch.equal(cached.train_x, d.train_x) and cached.classes == d.classes
    assert cached.mean == pytest.approx(d.mean)


def test_jpeg_cache_with_wrong_key_is_ignored(tmp_path: Path) -> None:
    path = _make_jpeg_tar(tmp_path)
    digest = hashlib.md5(path.read_bytes()).hexdigest()
    cache = tmp_path / ".cache" / f"cifar10-jpeg75-{digest}.pt"
    cache.parent.mkdir()
    torch.save({"md5": "f" * 32, "classes": ["x"], "train_x": torch.zeros(1, 3, 32, 32,
               dtype=torch.uint8), "train_y": torch.zeros(1), "test_x": torch.zeros(1),
                "test_y": torch.zeros(1)}, cache)
    d = D.load_cifar10_jpeg75(tmp_path, expected_md5={})
    assert d.classes == ["cat", "dog"] and len(d.train_x) == 6
    cache.write_bytes(b"not a torch file")  # unreadable cache: decode again, don't crash
    assert D.load_cifar10_jpeg75(tmp_path, expected_md5={}).classes == ["cat", "dog"]


def test_load_dataset_memoises_and_rejects_unknown(tmp_path: Path) -> None:
    a = D.load_dataset("synthetic", tmp_path, n_train=32, n_test=8)
    assert D.load_dataset("synthetic", tmp_path, n_train=32, n_test=8) is a
    assert D.load_dataset("synthetic", tmp_path, n_train=32, n_test=8, seed=1) is not a
    with pytest.raises(ValueError, match="unknown dataset 'svhn'; expected one of: .*mnist"):
        D.load_dataset("svhn", tmp_path)
    for name in ("mnist", "cifar10", "cifar10-jpeg75", "cifar100", "stl10", "smallnorb", "imagenet", "synthetic"):
        assert D.spec_of(name).name == name and D.spec_of(name).kind == ("stream" if name == "imagenet" else "memory")
    assert set(D.DATASETS) == set(D.DATASET_INFO) >= {"mnist", "cifar10", "cifar10-jpeg75", "cifar100", "stl10",
                                                      "smallnorb", "imagenet", "synthetic"}  # with plug-ins


def test_synthetic_is_deterministic_and_learnable() -> None:
    a, b = D.synthetic(seed=3), D.synthetic(seed=3)
    assert torch.equal(a.train_x, b.train_x) and torch.equal(a.test_y, b.test_y)
    assert not torch.equal(a.train_x, D.synthetic(seed=4).train_x)
    assert a.train_x.shape == (512, 1, 28, 28) and a.md5 == {} and a.num_classes == 10
    torch.manual_seed(0)
    model = torch.nn.Linear(784, 10)
    loader = D.BatchLoader(a.train_x, a.train_y, 64, mean=a.mean, std=a.std, shuffle=True,
                           seed=0, flatten=True)
    losses = []
    for x, y in loader:
        loss = torch.nn.functional.cross_entropy(model(x), y)
        model.zero_grad()
        loss.backward()
        with torch.no_grad():  # plain SGD, lr 0.1 (torch.optim's import alone takes seconds)
            for p in model.parameters():
                p -= 0.1 * p.grad
        losses.append(loss.item())
    assert losses[-1] < 0.5 * losses[0]


# ---------- splits and subsets ----------

def test_split_validation_fixed_by_seed_and_disjoint() -> None:
    d = D.synthetic(n_train=100, n_test=10)
    d.train_x[:, 0, 0, 0] = torch.arange(100, dtype=torch.uint8)  # tag each example
    (tx, ty), (vx, vy) = D.split_validation(d, 20, seed=5)
    assert len(tx) == len(ty) == 80 and len(vx) == len(vy) == 20
    tags_t, tags_v = set(tx[:, 0, 0, 0].tolist()), set(vx[:, 0, 0, 0].tolist())
    assert not tags_t & tags_v and tags_t | tags_v == set(range(100))
    (_, _), (vx2, _) = D.split_validation(d, 20, seed=5)
    (_, _), (vx3, _) = D.split_validation(d, 20, seed=6)
    assert torch.equal(vx, vx2) and not torch.equal(vx, vx3)
    for bad in (0, 100, -1):
        with pytest.raises(ValueError, match=f"got {bad}"):
            D.split_validation(d, bad, seed=0)


def test_subset_stratified_and_fixed() -> None:
    y = torch.tensor([0] * 50 + [1] * 30 + [2] * 20)
    x = torch.arange(100)
    sx, sy = D.subset(x, y, 30, seed=1)
    assert torch.bincount(sy).tolist() == [10, 10, 10]
    assert torch.equal(sx, D.subset(x, y, 30, seed=1)[0])
    assert not torch.equal(sx, D.subset(x, y, 30, seed=2)[0])
    assert torch.equal(y[sx], sy) and len(set(sx.tolist())) == 30
    assert torch.bincount(D.subset(x, y, 70, seed=0)[1]).tolist() == [25, 25, 20]
    assert len(D.subset(x, y, 7, seed=0, stratified=False)[0]) == 7
    with pytest.raises(ValueError, match="n=101"):
        D.subset(x, y, 101, seed=0)


# ---------- augmentation ----------

@pytest.mark.parametrize("dtype", [torch.uint8, torch.float32])
def test_batch_crop_translates_with_zero_fill(dtype: torch.dtype) -> None:
    x = (torch.arange(8 * 2 * 6 * 5) % 250 + 1).reshape(8, 2, 6, 5).to(dtype)  # no zeros
    assert D.batch_crop(x, 0, torch.Generator()) is x
    pad = 2
    out = D.batch_crop(x, pad, torch.Generator().manual_seed(0))
    assert out.shape == x.shape and out.dtype == dtype
    padded = torch.nn.functional.pad(x, (pad,) * 4)
    shifts = {(dy, dx) for dy in range(2 * pad + 1) for dx in range(2 * pad + 1)}
    seen = set()
    for i in range(len(x)):
        match = [(dy, dx) for dy, dx in shifts
                 if torch.equal(out[i], padded[i, :, dy:dy + 6, dx:dx + 5])]
        assert len(match) == 1
        seen.add(match[0])
    assert len(seen) > 1
    with pytest.raises(ValueError, match="-1"):
        D.batch_crop(x, -1)


@pytest.mark.parametrize("dtype", [torch.uint8, torch.float32])
def test_batch_flip_mirrors_about_half(dtype: torch.dtype) -> None:
    x = torch.randint(0, 256, (1000, 3, 4, 4), generator=torch.Generator().manual_seed(0)).to(dtype)
    out = D.batch_flip(x, torch.Generator().manual_seed(1))
    assert out.shape == x.shape and out.dtype == dtype
    flipped = (out == x.flip(-1)).flatten(1).all(1)
    same = (out == x).flatten(1).all(1)
    assert bool((flipped | same).all())
    assert 400 < int((flipped & ~same).sum()) < 600


# ---------- BatchLoader ----------

def _loader(x: torch.Tensor, y: torch.Tensor, batch_size: int = 4, **kw) -> D.BatchLoader:
    args = {"mean": (0.5,), "std": (0.25,), "shuffle": True, "seed": 7} | kw
    return D.BatchLoader(x, y, batch_size, **args)


def _data(n: int = 10) -> tuple[torch.Tensor, torch.Tensor]:
    x = torch.randint(0, 256, (n, 1, 6, 6), generator=torch.Generator().manual_seed(0),
                      dtype=torch.uint8)
    return x, torch.arange(n)


def test_loader_same_seed_same_stream_new_order_each_epoch() -> None:
    x, y = _data(32)
    a = _loader(x, y, crop_pad=1, flip=True)
    b = _loader(x, y, crop_pad=1, flip=True)
    for _ in range(2):
        for (xa, ya), (xb, yb) in zip(a, b, strict=True):
            assert torch.equal(xa, xb) and torch.equal(ya, yb)
    epochs = [torch.cat([yb for _, yb in a]) for _ in range(2)]
    assert all(sorted(e.tolist()) == list(range(32)) for e in epochs)
    assert not torch.equal(epochs[0], epochs[1])
    c = _loader(x, y, seed=8)
    assert not torch.equal(torch.cat([yb for _, yb in c]), torch.cat([yb for _, yb in
                                                                      _loader(x, y)]))


def test_loader_len_and_drop_last() -> None:
    x, y = _data(10)
    assert len(_loader(x, y)) == 3 and [len(b) for _, b in _loader(x, y)] == [4, 4, 2]
    dl = _loader(x, y, drop_last=True)
    assert len(dl) == 2 and [len(b) for _, b in dl] == [4, 4]
    assert len(_loader(x, y, batch_size=5, drop_last=True)) == 2
    assert dl.batch_size == 4 and dl.num_samples == 10


def test_loader_normalises_and_flattens() -> None:
    x, y = _data(10)
    xb, yb = next(iter(_loader(x, y, shuffle=False)))
    assert xb.dtype == torch.float32 and torch.equal(yb, torch.arange(4))
    torch.testing.assert_close(xb, (x[:4].float() / 255 - 0.5) / 0.25)
    flat, _ = next(iter(_loader(x, y, shuffle=False, flatten=True)))
    assert flat.shape == (4, 36)
    x3 = torch.full((2, 3, 2, 2), 255, dtype=torch.uint8)
    rgb, _ = next(iter(D.BatchLoader(x3, torch.zeros(2), 2, mean=(0.0, 0.5, 1.0),
                                     std=(1.0, 0.5, 2.0), shuffle=False, seed=0)))
    assert rgb[0, :, 0, 0].tolist() == pytest.approx([1.0, 1.0, 0.0], abs=1e-6)


def test_loader_validates_arguments() -> None:
    x, y = _data(10)
    with pytest.raises(ValueError, match="batch_size must be >= 1, got 0"):
        _loader(x, y, batch_size=0)
    with pytest.raises(ValueError, match="10 != 9"):
        _loader(x, y[:9])
    with pytest.raises(ValueError, match="uint8"):
        _loader(x.float(), y)
    with pytest.raises(ValueError, match="std"):
        _loader(x, y, mean=(0.1, 0.2), std=(1.0, 1.0))


def _epoch(loader: D.BatchLoader) -> list[tuple[torch.Tensor, torch.Tensor]]:
    return list(loader)


def test_loader_ranks_share_one_permutation_disjointly() -> None:
    x, y = _data(21)
    one = _loader(x, y, crop_pad=1, flip=True)
    assert one.world_size == 1 and one.num_samples == 21  # world_size 1: the single-process stream
    ranks = [_loader(x, y, crop_pad=1, flip=True, rank=r, world_size=2) for r in (0, 1)]
    for _ in range(2):  # two epochs, each with its own permutation
        seen = [torch.cat([yb for _, yb in _epoch(loader)]) for loader in ranks]
        assert len(seen[0]) == len(seen[1]) == 10  # equal shares: 21 // 2
        assert not set(seen[0].tolist()) & set(seen[1].tolist())
        assert len(set(torch.cat(seen).tolist())) == 20  # together: the epoch once, one example sits out
    order = torch.randperm(21, generator=torch.Generator().manual_seed(7 * 1_000_003 + 0))[:20]
    first = torch.cat([yb for _, yb in _epoch(_loader(x, y, rank=1, world_size=2))])
    assert torch.equal(first, order[1::2])  # the same seeded permutation, every 2nd entry from position rank
    with pytest.raises(ValueError, match="rank 2 and world_size 2"):
        _loader(x, y, rank=2, world_size=2)


@pytest.mark.parametrize("stop_after", [0, 1, 3, 5])
def test_loader_resumes_with_the_same_batches(stop_after: int) -> None:
    x, y = _data(23)
    kw = {"crop_pad": 2, "flip": True, "batch_size": 4, "drop_last": True}
    reference = _loader(x, y, **kw)
    expected = _epoch(reference) + _epoch(reference)  # 2 epochs of 5 batches, uninterrupted
    first = _loader(x, y, **kw)
    it = iter(first)
    for _ in range(stop_after):
        next(it)
    state = first.state_dict()
    assert state == {"epoch": stop_after // 5, "batch": stop_after % 5}
    resumed = _loader(x, y, **kw)
    resumed.load_state_dict(state)
    assert resumed.state_dict() == state
    got = _epoch(resumed) + (_epoch(resumed) if stop_after < 5 else [])
    assert len(got) == len(expected) - stop_after
    for (xa, ya), (xb, yb) in zip(got, expected[stop_after:], strict=True):
        assert torch.equal(xa, xb) and torch.equal(ya, yb)  # same examples and same crops and flips


def test_loader_state_after_whole_epochs_and_bad_states() -> None:
    x, y = _data(10)
    loader = _loader(x, y)
    assert loader.state_dict() == {"epoch": 0, "batch": 0}
    _epoch(loader)
    assert loader.state_dict() == {"epoch": 1, "batch": 0}
    loader.load_state_dict({"epoch": 4, "batch": 3})  # a finished epoch 4 (3 batches) is epoch 5 at batch 0
    assert loader.state_dict() == {"epoch": 5, "batch": 0}
    for bad in ({"epoch": 0, "batch": 4}, {"epoch": -1, "batch": 0}, {"epoch": 0}):
        with pytest.raises(ValueError, match="loader state"):
            loader.load_state_dict(bad)


# ---------- download (no network: only the offline paths) ----------

def test_download_refuses_datasets_without_official_files(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="only comes from `dvc pull`"):
        D.download("cifar10-jpeg75", tmp_path)
    with pytest.raises(ValueError, match="cannot be downloaded"):
        D.download("synthetic", tmp_path)
    with pytest.raises(ValueError, match="unknown dataset"):
        D.download("svhn", tmp_path)


def _no_network(*args, **kwargs):
    raise AssertionError("download tried the network")


def test_download_skips_files_already_good(tmp_path: Path, monkeypatch) -> None:
    path = tmp_path / "cifar10" / D.CIFAR10_TARBALL
    path.parent.mkdir(parents=True)
    path.write_bytes(b"pretend tarball")
    monkeypatch.setitem(D.spec_of("cifar10").files, D.CIFAR10_TARBALL,
                        (hashlib.md5(b"pretend tarball").hexdigest(),))
    monkeypatch.setattr(urllib.request, "urlopen", _no_network)
    assert D.download("cifar10", tmp_path) == path.parent
    assert path.read_bytes() == b"pretend tarball"


def test_download_keeps_no_file_when_md5_is_wrong(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setattr(urllib.request, "urlopen", lambda url, timeout: io.BytesIO(b"junk"))
    with pytest.raises(D.ChecksumError, match=hashlib.md5(b"junk").hexdigest()):
        D.download("cifar10", tmp_path)
    assert list((tmp_path / "cifar10").iterdir()) == []  # neither the file nor a .part
    monkeypatch.setitem(D.spec_of("cifar10").files, D.CIFAR10_TARBALL, (hashlib.md5(b"junk").hexdigest(),))
    D.download("cifar10", tmp_path)
    assert [p.name for p in (tmp_path / "cifar10").iterdir()] == [D.CIFAR10_TARBALL]


# ---------- the real data, when `dvc pull` has run ----------

@pytest.mark.skipif(not (REAL_ROOT / "mnist" / "train-images-idx3-ubyte.gz").is_file(),
                    reason="real datasets absent: run `dvc pull`")
def test_real_mnist_matches_known_md5() -> None:
    d = D.load_dataset("mnist", REAL_ROOT)
    assert d.train_x.shape == (60000, 1, 28, 28) and d.test_x.shape == (10000, 1, 28, 28)
    assert d.train_y.shape == (60000,) and d.test_y.shape == (10000,)
    assert all(d.md5[f] in D.spec_of("mnist").files[f] for f in d.md5) and len(d.md5) == 4
    assert torch.bincount(d.train_y).tolist()[:2] == [5923, 6742]
    assert d.mean[0] == pytest.approx(0.1307, abs=1e-4) and d.std[0] == pytest.approx(0.3081,
                                                                                      abs=1e-4)
