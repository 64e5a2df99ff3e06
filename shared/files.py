"""Writing files so that a crash, an error or Ctrl-C never leaves a partial file behind."""

from __future__ import annotations

import os
import signal
import stat
import tempfile
import threading
from contextlib import contextmanager
from pathlib import Path


def current_umask() -> int:
    """The process's umask, read without changing it where Linux shows it (/proc/self/status)."""
    try:
        with open("/proc/self/status", encoding="ascii") as f:
            for line in f:
                if line.startswith("Umask:"):
                    return int(line.split()[1], 8)
    except (OSError, ValueError):
        pass
    mask = os.umask(0o022)  # elsewhere: the only way to read it is to set it and put it back
    os.umask(mask)
    return mask


def _plain_open_mode(path: Path) -> int:
    """The permissions ``open(path, "w")`` would leave: an existing file's own, else 0o666 less the umask."""
    try:
        return stat.S_IMODE(path.stat().st_mode)
    except OSError:
        return 0o666 & ~current_umask()


@contextmanager
def sigint_deferred():
    """Within the block, Ctrl-C (SIGINT) is held back: when the block ends, a Ctrl-C pressed meanwhile is
    delivered to the handler that was in place (by default a KeyboardInterrupt at that point). In threads
    other than the main one, where Python cannot set handlers, the block runs unchanged."""
    if threading.current_thread() is not threading.main_thread() or signal.getsignal(signal.SIGINT) is None:
        yield  # (None: a handler set outside Python, which Python cannot put back)
        return
    received = []
    previous = signal.signal(signal.SIGINT, lambda signum, frame: received.append(signum))
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous)
        if received:
            signal.raise_signal(signal.SIGINT)


@contextmanager
def atomic_write(path, mode: str = "wb", encoding: str | None = None):
    """Write ``path`` all at once: ``with atomic_write(path) as f: f.write(...)``.

    The data go to a temporary file in the same folder. Only when the block ends without an error is that
    file flushed to disk and renamed over ``path`` (``os.replace`` is atomic on one file system), so
    readers see the old file or the new one, never half of one. On an error the temporary file is removed
    and ``path`` is left as it was. Ctrl-C during the write takes effect once the file is in place.

    The file gets the permissions a plain ``open()`` gives (those of the file it replaces, or 0o666 less
    the umask), not the private 0o600 of a temporary file: other users and jobs can read it as usual.
    """
    path = Path(path)
    with sigint_deferred():
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
        try:
            if hasattr(os, "fchmod"):  # POSIX
                os.fchmod(fd, _plain_open_mode(path))
            with os.fdopen(fd, mode, encoding=encoding) as f:
                yield f
                f.flush()
                os.fsync(f.fileno())
            os.replace(tmp, path)
        finally:
            Path(tmp).unlink(missing_ok=True)
