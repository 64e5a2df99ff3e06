"""Writing files so that a crash or an error never leaves a partial file behind."""

from __future__ import annotations

import os
import tempfile
from contextlib import contextmanager
from pathlib import Path


@contextmanager
def atomic_write(path, mode: str = "wb", encoding: str | None = None):
    """Write ``path`` all at once: ``with atomic_write(path) as f: f.write(...)``.

    The data go to a temporary file in the same folder. Only when the block ends without an error is that
    file flushed to disk and renamed over ``path`` (``os.replace`` is atomic on one file system), so
    readers see the old file or the new one, never half of one. On an error the temporary file is removed
    and ``path`` is left as it was.
    """
    path = Path(path)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, mode, encoding=encoding) as f:
            yield f
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    finally:
        Path(tmp).unlink(missing_ok=True)
