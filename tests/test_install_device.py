"""`notono-live install-device`, run as a user runs it, into real folders."""
from __future__ import annotations

import contextlib
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from notono_live import shipped
from notono_live.install_device import default_user_library

ROOT = Path(__file__).resolve().parents[1]
SHIPPED = shipped.device_file().read_bytes()


def install(*args: str, **env: str) -> subprocess.CompletedProcess:
    environment = {k: v for k, v in os.environ.items() if k != shipped.DEVICE_ENV}
    environment.update(env)
    return subprocess.run([sys.executable, "-m", "notono_live", "install-device", *args], capture_output=True,
                          text=True, timeout=60, cwd=ROOT, env=environment)


@contextlib.contextmanager
def unwritable(folder: Path):
    """`folder` made unwritable for this process: read-only for a user, immutable (chattr +i) for root."""
    if os.name != "posix":
        pytest.skip("needs POSIX permissions")
    if os.geteuid() != 0:
        folder.chmod(0o500)
        undo = lambda: folder.chmod(0o700)   # noqa: E731
    elif shutil.which("chattr") and subprocess.run(["chattr", "+i", str(folder)], capture_output=True).returncode == 0:
        undo = lambda: subprocess.run(["chattr", "-i", str(folder)], check=True)   # noqa: E731
    else:
        pytest.skip("running as root where chattr +i is not available: no folder is unwritable")
    try:
        yield
    finally:
        undo()


def test_installs_into_a_new_folder_then_says_already_installed(tmp_path):
    folder = tmp_path / "User Library" / "Presets" / "Audio Effects" / "Max Audio Effect"
    first = install("--to", str(folder))
    assert first.returncode == 0, first.stderr
    target = folder / shipped.DEVICE_NAME
    assert first.stdout.splitlines() == [f"installed {target}"]
    assert target.read_bytes() == SHIPPED
    assert sorted(p.name for p in folder.iterdir()) == [shipped.DEVICE_NAME]   # no temporary file left
    inode = target.stat().st_ino

    again = install("--to", str(folder))
    assert again.returncode == 0, again.stderr
    assert again.stdout.splitlines() == [f"already installed: {target} (same bytes as the shipped device)"]
    assert target.stat().st_ino == inode                                     # not rewritten
    assert sorted(p.name for p in folder.iterdir()) == [shipped.DEVICE_NAME]


def test_a_different_file_is_refused_then_kept_aside_with_force(tmp_path):
    target = tmp_path / shipped.DEVICE_NAME
    old = b"ampf\x04\x00\x00\x00aaaa an older NOTONO Live"
    target.write_bytes(old)

    refused = install("--to", str(tmp_path))
    assert refused.returncode == 1
    assert f"install-device: {target} already exists and differs from the device of this notono-live" in refused.stderr
    assert "Nothing was changed. Pass --force to install this one; the one there is then kept as " \
           "'NOTONO Live (previous).amxd'." in refused.stderr
    assert target.read_bytes() == old
    assert sorted(p.name for p in tmp_path.iterdir()) == [shipped.DEVICE_NAME]

    forced = install("--to", str(tmp_path), "--force")
    assert forced.returncode == 0, forced.stderr
    previous = tmp_path / "NOTONO Live (previous).amxd"
    assert forced.stdout.splitlines() == [f"kept the previous device as {previous}", f"replaced {target}"]
    assert target.read_bytes() == SHIPPED
    assert previous.read_bytes() == old

    edited = b"ampf edited in Max"
    target.write_bytes(edited)
    second = install("--to", str(tmp_path), "--force")
    assert second.returncode == 0, second.stderr
    assert previous.read_bytes() == old                                       # the first copy is never replaced
    assert (tmp_path / "NOTONO Live (previous 2).amxd").read_bytes() == edited
    assert target.read_bytes() == SHIPPED
    assert len(list(tmp_path.iterdir())) == 3


def test_a_missing_or_wrong_device_file_is_a_clear_error(tmp_path):
    nowhere = tmp_path / "nowhere" / "NOTONO Live.amxd"
    missing = install("--to", str(tmp_path / "out"), NOTONO_DEVICE=str(nowhere))
    assert missing.returncode == 1
    assert missing.stderr.strip() == (f"install-device: the device file {nowhere} does not exist ($NOTONO_DEVICE "
                                      f"points there); unset $NOTONO_DEVICE or point it at a NOTONO Live.amxd")
    assert not (tmp_path / "out").exists()

    not_a_device = tmp_path / "notes.txt"
    not_a_device.write_text("hello")
    wrong = install("--to", str(tmp_path / "out"), NOTONO_DEVICE=str(not_a_device))
    assert wrong.returncode == 1
    assert f"the device file {not_a_device} is not a Max for Live device" in wrong.stderr


def test_a_folder_that_cannot_be_created_or_written(tmp_path):
    blocker = tmp_path / "a file"
    blocker.write_text("not a folder")
    blocked = install("--to", str(blocker / "sub"))
    assert blocked.returncode == 1
    assert blocked.stderr.startswith(f"install-device: cannot create the folder {blocker / 'sub'} (")
    assert "choose another with --to FOLDER" in blocked.stderr

    locked = tmp_path / "locked"
    locked.mkdir()
    with unwritable(locked):
        denied = install("--to", str(locked))
        assert list(locked.iterdir()) == []
    assert denied.returncode == 1
    assert denied.stderr.startswith(f"install-device: cannot write into {locked} (")
    assert "check its permissions or choose another folder with --to FOLDER" in denied.stderr

@pytest.mark.skipif(default_user_library() is not None, reason="Live's User Library exists on this OS")
def test_without_live_it_asks_for_a_folder(tmp_path):
    done = install()
    assert done.returncode == 2
    assert "there is no User Library to find; pass --to FOLDER" in done.stderr
