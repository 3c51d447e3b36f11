"""File integrity, the decoded-data cache, and downloads of official files.

Every load checks the md5 of the files it reads against its `DatasetSpec.files` unless the caller
passes `expected_md5` (tests pass `{}` or their own sums for the small files they write).
"""

from __future__ import annotations

import hashlib
import os
import pickle
import urllib.request
from pathlib import Path
from typing import Any, BinaryIO

import torch

from harness.data.registry import DatasetSpec, Md5Table, spec_of
from harness.results.atomic import atomic_write

__all__ = ["ChecksumError", "DatasetMissingError", "cache_dir", "cached_decode", "check_file", "download", "md5_of",
           "read_cache", "write_cache"]


class DatasetMissingError(ValueError):
    """A dataset file is not on disk; the message says how to get it."""

    def __init__(self, name: str, path: Path, how: str | None = None) -> None:
        if how is None:
            how = spec_of(name).how_to_get()
        super().__init__(f"dataset {name!r} not found: {path} is missing; get it with {how}")


class ChecksumError(ValueError):
    """A file's md5 is not one of those expected (corrupt, truncated or a different version)."""

    def __init__(self, path: Path, expected: tuple[str, ...], actual: str) -> None:
        super().__init__(f"checksum mismatch for {path}: expected md5 {' or '.join(expected)}, "
                         f"got {actual}")


def md5_of(path: Path) -> str:
    """Hex md5 of a file, read in chunks (about 0.05 s for a 30 MB file)."""
    with open(path, "rb") as f:
        return hashlib.file_digest(f, "md5").hexdigest()


def check_file(spec: DatasetSpec, path: Path, expected_md5: Md5Table | None = None) -> str:
    """Fail if `path` is missing or its md5 is not expected; return the md5 actually read.

    `expected_md5=None` uses `spec.files`; a file absent from the table is not checked.
    """
    if not path.is_file():
        raise DatasetMissingError(spec.name, path, spec.how_to_get())
    actual = md5_of(path)
    table = spec.files if expected_md5 is None else expected_md5
    want = table.get(path.name)
    if want is not None:
        want = (want,) if isinstance(want, str) else tuple(want)
        if actual not in want:
            raise ChecksumError(path, want, actual)
    return actual


def cache_dir() -> Path:
    """Where decoded datasets and indexes are cached: $EFFITRAIN_CACHE, else ~/.cache/effitrain.

    Never inside the data root: `datasets/` is tracked by DVC, and a file added there would
    change its hash and rewrite `datasets.dvc`.
    """
    return Path(os.environ.get("EFFITRAIN_CACHE") or Path.home() / ".cache" / "effitrain")


def read_cache(path: Path, key: str) -> dict[str, Any] | None:
    """The cached blob if it exists, loads, and was made under `key` (e.g. the source's md5)."""
    try:
        blob = torch.load(path, weights_only=True)
    except (OSError, RuntimeError, pickle.UnpicklingError):  # absent or unreadable: rebuild
        return None
    return blob if isinstance(blob, dict) and blob.get("md5") == key else None


def write_cache(blob: dict[str, Any], path: Path) -> None:
    """torch.save through the project's atomic writer; readers never see a half-written cache.

    A cache folder that cannot be written only costs the next load a rebuild, so that is no error.
    """
    try:
        atomic_write(path, lambda fh: torch.save(blob, fh))
    except OSError:
        return


def _fetch(url: str, accepted: tuple[str, ...], timeout_s: float) -> Any:
    """A writer for `atomic_write` that streams `url` and refuses content with another md5."""
    def write(out: BinaryIO) -> None:
        digest = hashlib.md5()
        with urllib.request.urlopen(url, timeout=timeout_s) as response:
            while chunk := response.read(1 << 20):  # 1 MiB at a time
                digest.update(chunk)
                out.write(chunk)
        if accepted and digest.hexdigest() not in accepted:
            raise ChecksumError(Path(url), accepted, digest.hexdigest())
    return write


def download(name: str, root: str | Path = "datasets", *, timeout_s: float = 60.0) -> Path:
    """Fetch a dataset's official files into `root/<name>`; skip files whose md5 is good.

    Each file goes through `atomic_write`, renamed into place only once its md5 matches, so an
    interrupted or corrupt download never leaves a file that looks complete.
    """
    spec = spec_of(name)
    if not spec.urls:
        raise ValueError(f"dataset {name!r} cannot be downloaded: it only comes from {spec.how_to_get()}")
    folder = Path(root) / name
    for file, url in spec.urls.items():
        target, accepted = folder / file, spec.files.get(file, ())
        if target.is_file() and md5_of(target) in accepted:
            continue
        atomic_write(target, _fetch(url, accepted, timeout_s))
    return folder


def cached_decode(name: str, digest: str, build: Any, use_cache: bool = True) -> dict[str, Any]:
    """`build()`'s blob of tensors, cached as `cache_dir()/<name>-<digest>.pt` when `use_cache`.

    Used where decoding the official files takes seconds (JPEG tarballs, STL-10's 2.6 GB tarball);
    the cache is keyed by the md5 of the file it was decoded from, so a new file is decoded again.
    """
    path = cache_dir() / f"{name}-{digest}.pt"
    blob = read_cache(path, digest) if use_cache else None
    if blob is None:
        blob = {"md5": digest, **build()}
        if use_cache:
            write_cache(blob, path)
    return blob
