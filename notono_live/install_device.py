"""`notono-live install-device`: copy the frozen Max for Live device into Live's User Library.

The device (`notono_live.shipped.device_file()`, `$NOTONO_DEVICE` when set) goes to
`<User Library>/Presets/Audio Effects/Max Audio Effect/NOTONO Live.amxd`, where Live's browser
lists it under *User Library*. The User Library is looked for where Live puts it by default:
`~/Music/Ableton/User Library` on macOS, `%USERPROFILE%\\Documents\\Ableton\\User Library` on
Windows. Linux has no Live, so there `--to FOLDER` is required; `--to` also serves a User Library
that was moved (Live's Settings > Library shows where it is).

A file already in place is never replaced silently: the same bytes are "already installed"; other
bytes are refused unless `--force` is given, and even then the old file is kept beside the new one
as `NOTONO Live (previous).amxd` (or `NOTONO Live (previous 2).amxd`, ...). Every write goes
through `fileio.atomic_write_bytes`: a temporary file in the same folder, then `os.replace`.
"""
from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

from .shipped import DEVICE_ENV, DEVICE_NAME, device_file

# inside a User Library, where Live's browser looks for Max audio effects
DEVICE_SUBFOLDER = ("Presets", "Audio Effects", "Max Audio Effect")
AMXD_MAGIC = b"ampf"   # every .amxd starts with its 'ampf' chunk (max_for_live/amxd.py)
PREVIOUS_STEM = "NOTONO Live (previous)"


class InstallError(RuntimeError):
    """The device could not be installed; the message says why and what to do."""


def default_user_library(platform: str | None = None) -> Path | None:
    """Where Live keeps its User Library by default on this OS; None on Linux (no Live)."""
    platform = sys.platform if platform is None else platform
    if platform == "darwin":
        return Path.home() / "Music" / "Ableton" / "User Library"
    if platform.startswith("win"):
        profile = os.environ.get("USERPROFILE")
        return (Path(profile) if profile else Path.home()) / "Documents" / "Ableton" / "User Library"
    return None


def device_folder(user_library: Path) -> Path:
    """The folder of a User Library where the device goes."""
    return user_library.joinpath(*DEVICE_SUBFOLDER)


def read_device(path: Path | None = None) -> tuple[Path, bytes]:
    """(path, bytes) of the device to install; InstallError when it is missing or not an .amxd."""
    path = device_file() if path is None else path
    from_env = os.environ.get(DEVICE_ENV)
    where = f" (${DEVICE_ENV} points there)" if from_env else ""
    fix = f"unset ${DEVICE_ENV} or point it at a NOTONO Live.amxd" if from_env else "reinstall notono-live"
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        raise InstallError(f"the device file {path} does not exist{where}; {fix}") from None
    except IsADirectoryError:
        raise InstallError(f"the device file {path} is a folder{where}; {fix}") from None
    except OSError as error:
        raise InstallError(f"the device file {path} cannot be read ({error.strerror or error}){where}; "
                           f"{fix}") from None
    if not data.startswith(AMXD_MAGIC):
        raise InstallError(f"the device file {path} is not a Max for Live device (it does not start with an "
                           f"'ampf' chunk){where}; {fix}")
    return path, data


def previous_name(folder: Path, number: int) -> Path:
    """Where an older device is kept: 'NOTONO Live (previous).amxd', then '(previous 2)', ..."""
    stem = PREVIOUS_STEM if number == 1 else f"{PREVIOUS_STEM[:-1]} {number})"
    return folder / f"{stem}.amxd"


def _keep_previous(target: Path, old: bytes) -> Path:
    """Write the old device's bytes under the first free 'previous' name (never replacing one)."""
    from .fileio import atomic_write_bytes

    try:
        times = target.stat()
    except OSError:
        times = None
    for number in range(1, 1000):
        keep = previous_name(target.parent, number)
        if keep.exists():
            continue
        try:
            atomic_write_bytes(keep, old, overwrite=False)
        except FileExistsError:   # another writer took the name meanwhile: try the next
            continue
        if times is not None:
            os.utime(keep, (times.st_atime, times.st_mtime))   # it keeps the old file's date
        return keep
    raise InstallError(f"{target.parent} already holds 999 '{PREVIOUS_STEM}' copies; remove some")


def install(folder: Path, force: bool = False, source: Path | None = None) -> tuple[str, Path, Path | None]:
    """Install the device into `folder` (created if needed).

    Returns (outcome, installed path, where the old file was kept or None); outcome is "installed",
    "already installed" or "replaced". Raises InstallError for a missing device file, a folder that
    cannot be created or written, or a different file in place without `force`.
    """
    source, data = read_device(source)
    target = folder / DEVICE_NAME
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except FileExistsError:
        raise InstallError(f"cannot install into {folder}: it exists and is not a folder") from None
    except OSError as error:
        raise InstallError(f"cannot create the folder {folder} ({error.strerror or error}); "
                           f"choose another with --to FOLDER") from None
    if target.is_dir():
        raise InstallError(f"cannot install: {target} is a folder; move it away or choose another --to")
    try:
        old = target.read_bytes()
    except FileNotFoundError:
        old = None
    except OSError as error:
        raise InstallError(f"cannot read the file already at {target} ({error.strerror or error})") from None
    if old == data:
        return "already installed", target, None
    if old is not None and not force:
        raise InstallError(
            f"{target} already exists and differs from the device of this notono-live "
            f"({len(old):,} bytes there, {len(data):,} shipped: an older version, or a copy edited in Max). "
            f"Nothing was changed. Pass --force to install this one; the one there is then kept as "
            f"'{previous_name(folder, 1).name}'.")
    from .fileio import atomic_write_bytes

    try:
        kept = _keep_previous(target, old) if old is not None else None
        atomic_write_bytes(target, data)
    except OSError as error:
        raise InstallError(f"cannot write into {folder} ({error.strerror or error}); check its permissions "
                           f"or choose another folder with --to FOLDER") from None
    return ("replaced" if old is not None else "installed"), target, kept


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser("install-device", help="copy the Max for Live device into Live's User Library",
                                   description=__doc__.split("\n\n")[0])
    parser.add_argument("--to", type=Path, metavar="FOLDER",
                        help="install into this folder (default: Live's User Library, "
                             "Presets/Audio Effects/Max Audio Effect; required on Linux)")
    parser.add_argument("--force", action="store_true",
                        help="replace a different NOTONO Live.amxd there, keeping it as "
                             "'NOTONO Live (previous).amxd'")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    if args.to is not None:
        folder = args.to.expanduser()
    else:
        library = default_user_library()
        if library is None:
            print("install-device: Ableton Live does not run on this system, so there is no User Library to find; "
                  "pass --to FOLDER (the folder Live's browser should list, or a copy for another computer)",
                  file=sys.stderr)
            return 2
        if not library.is_dir():
            print(f"install-device: Live's User Library is not at {library} (Live not installed or never "
                  f"started, or the library was moved: Live's Settings > Library shows where); pass "
                  f"--to '<User Library>/{'/'.join(DEVICE_SUBFOLDER)}'", file=sys.stderr)
            return 1
        folder = device_folder(library)
    try:
        outcome, target, kept = install(folder, force=args.force)
    except InstallError as error:
        print(f"install-device: {error}", file=sys.stderr)
        return 1
    if outcome == "already installed":
        print(f"already installed: {target} (same bytes as the shipped device)")
        return 0
    if kept is not None:
        print(f"kept the previous device as {kept}")
    print(f"{outcome} {target}")
    if args.to is None:
        print("In Live: browser > User Library > Presets > Audio Effects > Max Audio Effect > NOTONO Live; "
              "drag it onto an audio track.")
    return 0


if __name__ == "__main__":   # `python -m notono_live.install_device`, same options
    _parser = argparse.ArgumentParser(prog="python -m notono_live.install_device")
    register(_parser.add_subparsers(dest="command", required=True))
    sys.exit(run(_parser.parse_args(["install-device", *sys.argv[1:]])))
