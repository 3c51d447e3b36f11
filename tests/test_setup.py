"""The README's two commands set up a fresh machine: missing Debian packages are installed as root,
or named in one line (exit 2) otherwise. The script is run for real, on a PATH without the tools."""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
from pathlib import Path

import pytest

SCRIPT = Path(__file__).resolve().parent.parent / ".ci" / "system-deps"


@pytest.fixture
def bare_path():
    """A PATH with only what the script itself runs (bash, id): chromium, g++ and ninja are all missing.

    The folder is world-readable (pytest's tmp_path is not), so another user can run from it too.
    """
    bin_dir = Path(tempfile.mkdtemp(prefix="effitrain-bare-path-"))
    bin_dir.chmod(0o755)
    for tool in ("bash", "id"):
        (bin_dir / tool).symlink_to(shutil.which(tool))
    yield str(bin_dir)
    shutil.rmtree(bin_dir)


def _run(args: list[str], path: str, **env: str) -> subprocess.CompletedProcess:
    return subprocess.run(["bash", str(SCRIPT), *args], capture_output=True, text=True, timeout=30,
                          env={"PATH": path, **env})


def test_as_root_it_installs_exactly_the_missing_packages(bare_path):
    if os.geteuid() != 0:
        pytest.skip("needs root")
    out = _run(["test"], bare_path, EFFITRAIN_APT_DRY_RUN="1")
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "apt-get install -y --no-install-recommends chromium g++ ninja-build"
    demo = _run(["demo"], bare_path, EFFITRAIN_APT_DRY_RUN="1")
    assert demo.stdout.strip() == "apt-get install -y --no-install-recommends g++ ninja-build"  # no browser


def test_not_root_it_names_the_packages_in_one_line_and_exits_2(bare_path):
    path = bare_path
    cmd = ["bash", str(SCRIPT), "test"]
    if os.geteuid() == 0:
        setpriv = shutil.which("setpriv")
        if setpriv is None:
            pytest.skip("root without setpriv cannot drop to another user")
        cmd = [setpriv, "--reuid=65534", "--regid=65534", "--clear-groups", *cmd]
    out = subprocess.run(cmd, capture_output=True, text=True, timeout=30, env={"PATH": path})
    assert out.returncode == 2
    lines = out.stderr.strip().splitlines()
    assert len(lines) == 1 and "chromium g++ ninja-build" in lines[0], out.stderr


def test_nothing_to_do_when_everything_is_there(bare_path):
    for tool in ("chromium", "g++", "ninja"):  # stand-ins: the script only asks whether they are on PATH
        stub = Path(bare_path) / tool
        stub.write_text("#!/bin/sh\n")
        stub.chmod(0o755)
    out = _run(["test"], bare_path, EFFITRAIN_APT_DRY_RUN="1")
    assert (out.returncode, out.stdout, out.stderr) == (0, "", "")


def test_an_unknown_target_is_refused(bare_path):
    out = _run(["everything"], bare_path)
    assert out.returncode == 2 and "unknown target" in out.stderr
