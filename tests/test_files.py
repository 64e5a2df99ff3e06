"""Atomic writes: the target holds the old content or the new, never part of either; the mode a plain
open() gives; Ctrl-C waits for the file to be in place."""

import os
import signal
import stat
import time

import pytest

from shared import files
from shared.files import atomic_write


def test_the_new_content_replaces_the_old(tmp_path):
    path = tmp_path / "f.txt"
    path.write_text("old")
    with atomic_write(path, "w", encoding="utf-8") as f:
        f.write("new")
        assert path.read_text() == "old"  # nothing visible until the block ends
    assert path.read_text() == "new"
    assert [p.name for p in tmp_path.iterdir()] == ["f.txt"]


def test_an_error_in_the_block_leaves_the_old_file_and_no_temporary(tmp_path):
    path = tmp_path / "f.bin"
    path.write_bytes(b"old")
    with pytest.raises(RuntimeError, match="interrupted"):
        with atomic_write(path) as f:
            f.write(b"half of the new")
            raise RuntimeError("interrupted")
    assert path.read_bytes() == b"old"
    assert [p.name for p in tmp_path.iterdir()] == ["f.bin"]


def test_a_failed_rename_leaves_no_temporary(tmp_path, monkeypatch):
    def crash(src, dst):
        raise OSError("disk full")

    monkeypatch.setattr(os, "replace", crash)
    with pytest.raises(OSError, match="disk full"):
        with atomic_write(tmp_path / "new.bin") as f:
            f.write(b"data")
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("umask, expected", [(0o022, 0o644), (0o077, 0o600), (0o002, 0o664)])
def test_a_new_file_gets_the_mode_a_plain_open_gives(tmp_path, umask, expected):
    old = os.umask(umask)
    try:
        with atomic_write(tmp_path / "new.bin") as f:
            f.write(b"data")
        with open(tmp_path / "plain.bin", "wb") as f:
            f.write(b"data")
    finally:
        os.umask(old)
    assert stat.S_IMODE((tmp_path / "new.bin").stat().st_mode) == expected
    assert stat.S_IMODE((tmp_path / "plain.bin").stat().st_mode) == expected
    assert files.current_umask() == old  # read, not changed


def test_a_replaced_file_keeps_its_mode(tmp_path):
    path = tmp_path / "f.txt"
    path.write_text("old")
    path.chmod(0o640)
    with atomic_write(path, "w", encoding="utf-8") as f:
        f.write("new")
    assert stat.S_IMODE(path.stat().st_mode) == 0o640 and path.read_text() == "new"


@pytest.fixture
def sigint_handler(request):
    """Ctrl-C (SIGINT) handled by ``request.param`` during the test, then put back. A terminal gives Python
    its own handler (KeyboardInterrupt); a process started in the background (``cmd &`` in a script,
    ``nohup``) inherits SIGINT ignored, and Python then installs none: each test sets the one it means."""
    previous = signal.signal(signal.SIGINT, request.param)
    yield request.param
    signal.signal(signal.SIGINT, previous)


@pytest.mark.parametrize("sigint_handler", [signal.default_int_handler], indirect=True, ids=["terminal"])
def test_ctrl_c_during_a_write_takes_effect_once_the_file_is_in_place(tmp_path, sigint_handler):
    path = tmp_path / "f.bin"
    path.write_bytes(b"old")
    with pytest.raises(KeyboardInterrupt):
        with atomic_write(path) as f:
            f.write(b"first half, ")
            os.kill(os.getpid(), signal.SIGINT)  # Ctrl-C in the middle of the write
            time.sleep(0.01)  # Python runs signal handlers between bytecodes: give it the chance
            f.write(b"second half")
    assert path.read_bytes() == b"first half, second half"
    assert [p.name for p in tmp_path.iterdir()] == ["f.bin"]
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler  # put back


@pytest.mark.parametrize("sigint_handler", [signal.SIG_IGN], indirect=True, ids=["background"])
def test_an_ignored_ctrl_c_stays_ignored_during_a_write(tmp_path, sigint_handler):
    path = tmp_path / "f.bin"
    with atomic_write(path) as f:
        f.write(b"first half, ")
        os.kill(os.getpid(), signal.SIGINT)  # a background job's Ctrl-C: ignored before, ignored after
        time.sleep(0.01)
        f.write(b"second half")
    assert path.read_bytes() == b"first half, second half"
    assert signal.getsignal(signal.SIGINT) is signal.SIG_IGN  # put back
