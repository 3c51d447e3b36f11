"""The one atomic writer: every generated file (results tables, the site, the PDF, caches,
checkpoints) is written to a temporary file in its own folder and renamed into place, so a
reader, or a crash halfway, never sees half a file and the previous version survives a failure.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import BinaryIO

__all__ = ["atomic_write"]

Content = bytes | str | Callable[[BinaryIO], None]


def atomic_write(path: str | Path, content: Content, *, mode: int = 0o644) -> Path:
    """Write `content` (bytes, text as UTF-8, or a function that writes to a binary file) to `path`.

    The folder is created if needed. On any error the temporary file is removed and the old
    `path`, if there was one, is left untouched. `mode` defaults to world-readable (mkstemp
    makes 0600), since caches and reports serve every user of the machine.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as fh:
            if callable(content):
                content(fh)
            else:
                fh.write(content.encode() if isinstance(content, str) else content)
            fh.flush()
            os.fsync(fh.fileno())
        os.chmod(tmp, mode)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path
