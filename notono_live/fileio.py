"""Atomic file writes: the one implementation every module that writes a file goes through.

A file is written to a hidden temporary file in the destination folder (same file system, so the
final step is a rename, not a copy), flushed to disk, then put in place in one step: `os.replace`
when an existing file may be replaced, `os.link` when it must not be (the link fails if the name is
taken, with no window between a check and the write). Readers therefore see the old file or the
whole new one, never a truncated one, and a failed write leaves no temporary file behind.
"""
from __future__ import annotations

import os
import tempfile
from pathlib import Path

__all__ = ["atomic_write_bytes"]


def _process_umask() -> int:
    # read once, at import, before the daemon starts threads (os.umask can only be read by setting it)
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


# mkstemp creates files readable by their owner only; a finished file gets the mode open() would give
# it (0666 less the umask), so Live, a sampler or another user's session can read a rendered WAV
FILE_MODE = 0o666 & ~_process_umask()


def atomic_write_bytes(path: str | os.PathLike, data: bytes, *, overwrite: bool = True,
                       fsync: bool = True) -> Path:
    """Write ``data`` to ``path`` atomically and return the path; creates the parent folder.

    Args:
        path: destination file.
        data: the complete file contents.
        overwrite: replace an existing file (default); False raises FileExistsError naming the file
            if it exists, and never replaces it, even when another writer races this one.
        fsync: flush the data to the disk before it takes the final name (guards against power loss;
            about 10 ms a file). Only caches that can be rebuilt should turn it off.

    Raises:
        FileExistsError: ``overwrite`` is False and ``path`` already exists.
        OSError: the folder cannot be written.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, temporary = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as handle:
            if hasattr(os, "fchmod"):   # POSIX; on Windows the file already has the default access
                os.fchmod(handle.fileno(), FILE_MODE)
            handle.write(data)
            if fsync:
                handle.flush()
                os.fsync(handle.fileno())
        if overwrite:
            os.replace(temporary, path)
        else:
            try:
                os.link(temporary, path)     # fails if the name exists: an existing file is never replaced
            except FileExistsError:
                raise FileExistsError(f"refusing to overwrite {path}") from None
            os.unlink(temporary)
    except BaseException:
        try:
            os.unlink(temporary)
        except FileNotFoundError:
            pass
        raise
    return path
