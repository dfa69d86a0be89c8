"""`atomic_write_bytes`: whole files or nothing, and never replacing a file it was told to keep."""
from __future__ import annotations

import os
import stat

import pytest

from notono_live.fileio import atomic_write_bytes


def test_writes_replaces_and_creates_the_folder(tmp_path):
    path = atomic_write_bytes(tmp_path / "sub" / "a.bin", b"first")
    assert path == tmp_path / "sub" / "a.bin" and path.read_bytes() == b"first"
    atomic_write_bytes(path, b"second", fsync=False)
    assert path.read_bytes() == b"second"
    assert [p.name for p in path.parent.iterdir()] == ["a.bin"]          # no temporary file left


def test_without_overwrite_an_existing_file_is_kept(tmp_path):
    path = atomic_write_bytes(tmp_path / "a.bin", b"new", overwrite=False)
    assert path.read_bytes() == b"new"
    with pytest.raises(FileExistsError, match="a.bin"):
        atomic_write_bytes(path, b"other", overwrite=False)
    assert path.read_bytes() == b"new"
    assert [p.name for p in tmp_path.iterdir()] == ["a.bin"]


def test_a_failed_write_leaves_nothing(tmp_path):
    with pytest.raises(TypeError):
        atomic_write_bytes(tmp_path / "a.bin", "text, not bytes")         # type: ignore[arg-type]
    assert list(tmp_path.iterdir()) == []
    (tmp_path / "b.bin").write_bytes(b"old")
    with pytest.raises(TypeError):
        atomic_write_bytes(tmp_path / "b.bin", 12)                        # type: ignore[arg-type]
    assert [p.name for p in tmp_path.iterdir()] == ["b.bin"] and (tmp_path / "b.bin").read_bytes() == b"old"


@pytest.mark.skipif(not hasattr(os, "fchmod"), reason="POSIX file modes")
def test_a_written_file_gets_the_mode_open_would_give_it(tmp_path):
    mask = os.umask(0o022)
    os.umask(mask)
    target = atomic_write_bytes(tmp_path / "take.wav", b"RIFF", overwrite=False)
    assert stat.S_IMODE(target.stat().st_mode) == 0o666 & ~mask
    with open(tmp_path / "plain", "wb"):
        pass
    assert stat.S_IMODE(target.stat().st_mode) == stat.S_IMODE((tmp_path / "plain").stat().st_mode)
