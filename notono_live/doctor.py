"""`notono-live doctor`: check this machine for everything NOTONO Live needs, one line per check.

Checks, in order: Python (3.10 or newer), torch and the device the daemon would pick (CUDA, then
MPS, then CPU, as `serve --device auto` does), the model files (present; each JSON parses; each
safetensors header parses; the SHA-256, tensor names and shapes match what the JSON records; the
config builds a model with those shapes), the daemon's and the device's OSC ports on 127.0.0.1
(free, or who holds them: a NOTONO daemon that answers `/notono/ping`, or on Linux the owning
process found through /proc), MIDI input, audio output for previews, and the Max for Live device
in Live's User Library (found, and the same bytes as the shipped one).

Each line reads `ok`, `warn`, `FAIL` or `skip`, the check's name, what was found, and for a problem
`-> fix: ...`. The exit code is 1 when something blocks the daemon (Python too old, no torch, a
missing or corrupt model, the daemon port held by something that is not a NOTONO daemon), else 0:
no MIDI, no audio output or no device in Live are warnings, since the daemon runs without them.

Asking a daemon for `/notono/ping` means saying `/notono/hello` first (a daemon answers only
clients that did), then `/notono/bye`. A daemon started by the device with `--exit-when-unused`
that has had no client yet counts that visit, so it stops that many seconds later if the device
never connects.
"""
from __future__ import annotations

import argparse
import errno
import hashlib
import json
import os
import re
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

from . import shipped
from .osc.ports import daemon_text, free_port_near, user_names, ask_notono, bind_error, udp_port_owners
from .constants import DEFAULT_OSC_PORT, DEFAULT_REPLY_PORT

MIN_PYTHON = (3, 10)
STATUSES = ("ok", "warn", "FAIL", "skip")
_DTYPE_NAMES = {"float16": "fp16", "float32": "fp32", "bfloat16": "bf16"}
_LFS_POINTER = b"version https://git-lfs"


@dataclass
class Check:
    """One line of the report.

    Args:
        status: "ok", "warn" (the daemon runs, something is missing), "FAIL" (blocks the daemon) or
            "skip" (cannot be checked here).
        name: the check, e.g. "model".
        detail: what was found.
        fix: what to do about it (problems only).
    """

    status: str
    name: str
    detail: str
    fix: str = ""

    def line(self) -> str:
        text = f"{self.status:<5} {self.name:<10} {self.detail}"
        return f"{text} -> fix: {self.fix}" if self.fix else text


def _show(path: Path) -> str:
    """A folder as the user would type it: relative to the current folder when inside it."""
    try:
        shown = str(path.resolve().relative_to(Path.cwd().resolve()))
    except (ValueError, OSError):
        shown = str(path)
    return shown + os.sep if shown != "." else "." + os.sep


# --- Python and torch --------------------------------------------------------------------------

def check_python(version: tuple[int, ...] | None = None, executable: str | None = None) -> Check:
    """Python `version` (default: this one) against MIN_PYTHON."""
    version = tuple(sys.version_info[:3]) if version is None else tuple(version)
    executable = sys.executable if executable is None else executable
    text = ".".join(str(v) for v in version)
    if version[:2] < MIN_PYTHON:
        need = ".".join(map(str, MIN_PYTHON))
        return Check("FAIL", "python", f"{text} ({executable}) is too old; NOTONO Live needs {need} or newer",
                     f"install Python {need} or newer (python.org, or your package manager) and reinstall "
                     f"notono-live with it")
    return Check("ok", "python", f"{text} ({executable})")


def check_torch() -> Check:
    """The torch build, and the device `serve --device auto` would pick."""
    try:
        import torch
    except Exception as error:   # ImportError, or OSError from a broken install's libraries
        return Check("FAIL", "torch", f"torch cannot be imported ({type(error).__name__}: {error})",
                     "install torch first, as the README's install table says for this machine "
                     "(e.g. `pip install torch==2.13.0`, with `--index-url https://download.pytorch.org/whl/cpu` "
                     "on Linux without an NVIDIA GPU)")
    from .daemon.cli import pick_device

    device = pick_device("auto")
    cuda_build = getattr(torch.version, "cuda", None)
    mps = getattr(torch.backends, "mps", None)
    notes = []
    if device == "cuda":
        try:
            name = torch.cuda.get_device_name(0)
        except Exception:   # the name is only decoration
            name = "GPU 0"
        notes.append(f"CUDA {cuda_build} on {name}")
    else:
        if cuda_build:
            notes.append(f"CUDA {cuda_build} build but no usable GPU")
        else:
            notes.append("no CUDA in this build")
        if device != "mps":
            built = bool(mps and mps.is_built())
            notes.append("MPS not available" if built else "no MPS")
    return Check("ok", "torch", f"{torch.__version__}: the daemon would use {device} ({'; '.join(notes)})")


# --- model files -------------------------------------------------------------------------------

def _component_names() -> list[str]:
    names: list[str] = []
    for file in shipped.MODEL_FILES:
        stem = file.rsplit(".", 1)[0]
        if stem not in names:
            names.append(stem)
    return names


def _model_fix(folder: Path, explicit: bool) -> str:
    if explicit:
        return (f"copy or export the model folder again (`notono-live train export`), or leave out --models "
                f"and unset ${shipped.MODELS_ENV} to use the shipped model")
    if (folder.parent / ".git").exists():
        return f"restore the shipped model from git (`git restore {folder.name}/`) or reinstall notono-live"
    return "reinstall notono-live (`pip install --force-reinstall --no-deps notono-live`, or the wheel you installed)"


def _read_json(path: Path) -> tuple[dict | None, str | None]:
    try:
        document = json.loads(path.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as error:
        return None, f"not valid JSON ({error})"
    except OSError as error:
        return None, f"cannot be read ({error.strerror or error})"
    if not isinstance(document, dict):
        return None, f"not a NOTONO checkpoint description (a JSON {type(document).__name__}, not an object)"
    try:   # the daemon's own rules (format, version, keys); they need torch's module to be importable
        from .models.checkpoint import read_checkpoint_json
    except Exception:
        return document, None
    problem = _problem(path, lambda: read_checkpoint_json(path))
    return (None, problem) if problem else (document, None)


def _problem(path: Path, check) -> str | None:
    """What the daemon's own check `check` (which raises CheckpointError naming `path`) finds wrong,
    without the path prefix; None when it passes."""
    from .models.checkpoint import CheckpointError

    try:
        check()
    except CheckpointError as error:
        message = str(error)
        return message[len(f"{path}: "):] if message.startswith(f"{path}: ") else message
    return None


def _read_safetensors(path: Path) -> tuple[dict[str, tuple[list[int], str]] | None, str | None]:
    """{tensor: (shape, dtype)} from the safetensors library's reading of the header."""
    try:
        with path.open("rb") as handle:
            start = handle.read(len(_LFS_POINTER))
    except OSError as error:
        return None, f"cannot be read ({error.strerror or error})"
    if start == _LFS_POINTER:
        return None, "a Git LFS pointer, not the weights (run `git lfs pull`)"
    try:
        from safetensors import safe_open
    except ImportError as error:
        return None, f"the safetensors library is not installed ({error})"
    try:
        with safe_open(str(path), framework="numpy") as weights:
            tensors = {}
            for key in weights.keys():
                piece = weights.get_slice(key)
                tensors[key] = (list(piece.get_shape()), str(piece.get_dtype()))
    except Exception as error:   # SafetensorError, or OSError from the memory map
        return None, f"not a readable safetensors file ({error})"
    return tensors, None


def _shape_problem(path: Path, found: dict[str, list[int]], expected: dict[str, list[int]],
                   against: str) -> str | None:
    """The daemon's own shape check (`checkpoint.compare_shapes`), as a message; None when it passes
    or cannot run (no torch: the torch check reports that)."""
    try:
        from .models.checkpoint import compare_shapes
    except Exception:
        return None

    return _problem(path, lambda: compare_shapes(path, found, expected, against))


def _config_shapes(document: dict) -> dict[str, list[int]] | None:
    """The tensor shapes of the model that the JSON's config builds (on the CPU, random weights:
    about 0.1 s for the shipped model); None when torch or the model classes cannot be imported."""
    try:
        import torch  # noqa: F401
        from .models.checkpoint import component_classes
    except Exception:
        return None
    model_cls, config_cls = component_classes(document["component"])
    model = model_cls(config_cls.from_dict(document["config"]))
    return {key: list(value.shape) for key, value in model.state_dict().items()}


def _labels_problem(path: Path, metadata: dict) -> str | None:
    """The daemon's own label check (`bundle.check_labels`), as a message; None when it passes or
    cannot run (no torch)."""
    try:
        from .models.bundle import check_labels
    except Exception:
        return None

    return _problem(path, lambda: check_labels(path, metadata))


def _check_component(folder: Path, name: str) -> tuple[list[str], int, str | None]:
    """(problems as "file: what", bytes on disk, dtype) of one component."""
    json_path, weights_path = folder / f"{name}.json", folder / f"{name}.safetensors"
    problems: list[str] = []
    document, error = _read_json(json_path)
    if error:
        problems.append(f"{json_path.name}: {error}")
    tensors, error = _read_safetensors(weights_path)
    if error:
        problems.append(f"{weights_path.name}: {error}")
    size = sum(p.stat().st_size for p in (json_path, weights_path) if p.is_file())
    if document is None or tensors is None:
        return problems, size, None
    if document.get("component") not in (None, name):
        problems.append(f"{json_path.name}: describes a {document.get('component')!r} component, not {name!r}")
        return problems, size, None
    digest = document.get("weights_sha256")
    if digest:
        sha = hashlib.sha256()
        with weights_path.open("rb") as handle:
            for block in iter(lambda: handle.read(1 << 20), b""):
                sha.update(block)
        if sha.hexdigest() != digest:
            problems.append(f"{weights_path.name}: contents do not match the SHA-256 in {json_path.name} "
                            f"(truncated, corrupt or replaced file)")
            return problems, size, None
    found = {key: shape for key, (shape, _) in tensors.items()}
    listed = document.get("tensors")
    if isinstance(listed, dict):
        problem = _shape_problem(weights_path, found, listed, f"the tensor list in {json_path.name}")
        if problem:
            problems.append(f"{weights_path.name}: {problem}")
            return problems, size, None
    if isinstance(document.get("config"), dict) and "component" in document:
        try:
            built = _config_shapes(document)
        except Exception as error:   # a config the model classes refuse
            problems.append(f"{json_path.name}: its config does not build a {name} model ({error})")
            return problems, size, None
        if built is not None:
            problem = _shape_problem(weights_path, found, built, f"the config in {json_path.name}")
            if problem:
                problems.append(f"{weights_path.name}: {problem}")
    problem = _labels_problem(json_path, document.get("metadata") or {})
    if problem:
        problems.append(f"{json_path.name}: {problem}")
    if name == "vqvae" and "normalization_stats" not in (document.get("metadata") or {}):
        problems.append(f"{json_path.name}: has no normalisation statistics in its metadata")
    return problems, size, document.get("dtype")


def check_models(folder: Path | None = None) -> list[Check]:
    """The model folder `folder` (default: the one `serve` loads)."""
    explicit = folder is not None or bool(os.environ.get(shipped.MODELS_ENV))
    folder = (shipped.models_folder() if folder is None else folder).expanduser()
    fix = _model_fix(folder, explicit)
    if not folder.is_dir():
        what = "is not a folder" if folder.exists() else "does not exist"
        return [Check("FAIL", "model", f"model folder {folder} {what}", fix)]
    missing = [name for name in shipped.MODEL_FILES if not (folder / name).is_file()]
    checks = [Check("FAIL", "model", f"{name}: missing from {_show(folder)}", fix) for name in missing]
    components = _component_names()
    sizes, dtypes = 0, []
    for name in components:
        if f"{name}.json" in missing or f"{name}.safetensors" in missing:
            continue
        problems, size, dtype = _check_component(folder, name)
        checks += [Check("FAIL", "model", problem, fix) for problem in problems]
        sizes += size
        if dtype:
            dtypes.append(_DTYPE_NAMES.get(dtype, dtype))
    if checks:
        return checks
    kinds = "/".join(sorted(set(dtypes))) or "dtype not recorded"
    return [Check("ok", "model", f"{_show(folder)} ({len(components)} components, {sizes / 1e6:.1f} MB, {kinds}; "
                                 f"checksums and tensor shapes match)")]


# --- OSC ports ---------------------------------------------------------------------------------

def check_port(port: int, role: str, other_port: int) -> Check:
    """Port `port` on 127.0.0.1 for `role`: "daemon" (serve binds it) or "reply" (the device does)."""
    name = "osc port" if role == "daemon" else "reply port"
    label = f"{port}/udp"
    error = bind_error(port)
    if error is None:
        if role == "daemon":
            return Check("ok", name, f"{label} is free on 127.0.0.1 for `notono-live serve`")
        return Check("ok", name, f"{label} is free on 127.0.0.1 (the device listens for replies here while Live "
                                 f"runs it)")
    if error.errno not in (errno.EADDRINUSE, getattr(errno, "WSAEADDRINUSE", -1)):
        status = "FAIL" if role == "daemon" else "warn"
        return Check(status, name, f"{label} cannot be bound on 127.0.0.1 ({error.strerror or error})",
                     "choose a port in 1024-65535" + (" with --port, and set the device's Daemon port to it"
                                                     if role == "daemon" else " as the device's Reply port"))
    found = ask_notono(port)
    if found is not None:
        if role == "daemon":
            return Check("ok", name, f"{label}: {daemon_text(found)}; a second `notono-live serve` would need "
                                     f"another --port")
        return Check("warn", name, f"{label}: {daemon_text(found)}, on the port the device listens on",
                     f"restart that daemon on its own port (`notono-live serve --port {other_port}`)")
    owners = udp_port_owners(port)
    if owners is None:
        holder = "another program"
    elif owners[0]:
        holder = ", ".join(owner.describe() for owner in owners[0])
    elif owners[1]:
        holder = f"another program (a socket of {user_names(owners[1])}; its process is not visible to this user)"
    else:
        holder = "another program"
    suggestion = free_port_near(port, {other_port})
    pick = f" (e.g. {suggestion}, free now)" if suggestion else ""
    if role == "daemon":
        hung = [owner for owner in (owners[0] if owners else []) if owner.is_notono_daemon]
        if hung:
            pids = " ".join(str(owner.pid) for owner in hung)
            return Check("FAIL", name, f"{label} is held by {holder}, a NOTONO daemon that does not answer "
                                       f"/notono/ping", f"stop it (`kill {pids}`) and start `notono-live serve` again")
        return Check("FAIL", name, f"{label} is taken by {holder}, not a NOTONO daemon",
                     f"stop that program, or run `notono-live serve --port P` with a free port P{pick} and set "
                     f"the device's Daemon port to P")
    live = [owner for owner in (owners[0] if owners else []) if re.search(r"\b(Live|Max)\b", owner.name)]
    if live:
        return Check("ok", name, f"{label} is in use by {holder}: the device listening for replies")
    hint = ": fine if it is Live running the NOTONO device, else" if holder.startswith("another program") else ":"
    return Check("warn", name, f"{label} is taken by {holder}{hint} the device cannot receive replies here",
                 f"stop that program, or set the device's Reply port to a free port{pick}")


# --- MIDI and audio ----------------------------------------------------------------------------

def check_midi() -> Check:
    """Whether the daemon's MIDI input would open: the mapping file's port, else a virtual input."""
    from .midi.handle import VIRTUAL_PORT_NAME
    from .midi.mapping import load_mapping_or_default
    from .midi.ports import (ALSA_SEQUENCER_DEVICE, MidiUnavailable, list_input_ports, midi_system_problem,
                             normalise_port_name, open_input_port, virtual_ports_supported)

    runs_without = "the daemon runs without MIDI (drive it over OSC, or use --no-midi to silence the warning)"
    problem = midi_system_problem()
    if problem:
        if sys.platform.startswith("linux") and not os.path.exists(ALSA_SEQUENCER_DEVICE):
            fix = (f"load the ALSA sequencer (`sudo modprobe snd-seq`; in a container, pass "
                   f"`--device /dev/snd`); {runs_without}")
        else:
            fix = f"`pip install python-rtmidi`; {runs_without}"
        return Check("warn", "midi", f"no MIDI: {problem}", fix)
    try:
        names = [normalise_port_name(n) for n in list_input_ports()]
    except MidiUnavailable as error:
        return Check("warn", "midi", f"no MIDI: {error}", runs_without)
    listed = f"{len(names)} input(s){': ' + ', '.join(names) if names else ''}"
    mapping, mapping_problem = load_mapping_or_default(None)
    requested = mapping.port
    if requested is None and not virtual_ports_supported():
        if names:
            return Check("ok", "midi", f"{listed}; no virtual ports on Windows: name one with "
                                       f"`serve --midi-in NAME`")
        return Check("warn", "midi", "no MIDI inputs, and Windows has no virtual ports",
                     f"create a loopMIDI port and name it with `serve --midi-in NAME`; {runs_without}")
    try:
        port, opened = open_input_port(requested, f"{VIRTUAL_PORT_NAME} doctor", callback=None)
    except (MidiUnavailable, ValueError) as error:
        what = f"the mapping file's port {requested!r}" if requested else "a virtual input"
        return Check("warn", "midi", f"{what} cannot be opened: {error}", runs_without)
    port.close()
    what = f"input {opened!r} (the mapping file's port)" if requested else "a virtual input"
    note = f"; mapping file: {mapping_problem}" if mapping_problem else ""
    return Check("ok", "midi", f"{what} opens; {listed}{note}")


def check_audio() -> Check:
    """Whether `/notono/preview` can play: PortAudio and a default output device (preview.py's test)."""
    from . import preview

    playable, text = preview.available()
    if playable:
        return Check("ok", "audio", f"default output: {text}")
    text = text.replace("audio preview is unavailable: ", "")
    fix = "connect or enable an audio output"
    if preview.PORTAUDIO_HINT in text:
        text = text.replace(f"; {preview.PORTAUDIO_HINT}", "")
        fix = preview.PORTAUDIO_HINT
    return Check("warn", "audio", f"no audio output: {text}",
                 f"{fix}; only previews need it (renders and Live are not affected)")


# --- the device in Live ------------------------------------------------------------------------

def check_device(user_library: Path | None = None) -> Check:
    """Whether Live's User Library holds the shipped device, byte for byte."""
    from .install_device import InstallError, default_user_library, device_folder, read_device

    try:
        _, shipped_bytes = read_device()
    except InstallError as error:
        return Check("warn", "device", str(error), "`notono-live install-device` needs it")
    library = default_user_library() if user_library is None else user_library.expanduser()
    if library is None:
        return Check("skip", "device", "Ableton Live does not run on this system; pass --user-library DIR to check "
                                       "a copy (`notono-live install-device --to FOLDER` makes one)")
    if not library.is_dir():
        return Check("warn", "device", f"no User Library at {library} (Live not installed or never started, or "
                                       f"the library was moved)",
                     "pass --user-library DIR (Live's Settings > Library shows where it is)")
    candidates = [device_folder(library) / shipped.DEVICE_NAME, library / shipped.DEVICE_NAME]
    found = next((path for path in candidates if path.is_file()), None)
    if found is None:
        return Check("warn", "device", f"{shipped.DEVICE_NAME} is not in {device_folder(library)}",
                     "`notono-live install-device`" + (f" --to '{device_folder(library)}'" if user_library else ""))
    try:
        same = found.read_bytes() == shipped_bytes
    except OSError as error:
        return Check("warn", "device", f"{found} cannot be read ({error.strerror or error})",
                     "check its permissions")
    if same:
        return Check("ok", "device", f"installed: {found} (same bytes as the shipped device)")
    force = "`notono-live install-device --force" + (f" --to '{found.parent}'" if user_library else "") + "`"
    return Check("warn", "device", f"{found} differs from the device of this notono-live (an older version, or "
                                   f"edited in Max)",
                 f"{force} (the old file is kept as 'NOTONO Live (previous).amxd')")


# --- the command -------------------------------------------------------------------------------

def _port(text: str) -> int:
    value = int(text)
    if not 1 <= value <= 65535:
        raise argparse.ArgumentTypeError(f"port {value} is not in 1..65535")
    return value


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser("doctor", help="check Python, torch, the model, ports, MIDI, audio and the device",
                                   description=__doc__.split("\n\n")[0])
    parser.add_argument("--models", type=Path, metavar="DIR", help="model folder to check (default: the one "
                                                                    "`serve` loads: $NOTONO_MODELS or the shipped one)")
    parser.add_argument("--port", type=_port, default=DEFAULT_OSC_PORT,
                        help=f"the daemon's OSC port (default {DEFAULT_OSC_PORT})")
    parser.add_argument("--reply-port", dest="reply_port", type=_port, default=DEFAULT_REPLY_PORT, metavar="PORT",
                        help=f"the port the device listens on for replies (default {DEFAULT_REPLY_PORT})")
    parser.add_argument("--user-library", dest="user_library", type=Path, metavar="DIR",
                        help="Live's User Library, or the folder holding NOTONO Live.amxd (default: where Live "
                             "keeps it on macOS and Windows)")
    parser.set_defaults(func=run)


def check_compiler() -> Check:
    """Whether `serve --compile-step` can compile the sampling step here (a C++ compiler on PATH)."""
    from .models.compiled_step import COMPILER_FIX, NO_COMPILER, find_compiler

    found = find_compiler()
    if found is None:
        return Check("warn", "compile", f"`serve --compile-step` cannot run: {NO_COMPILER}",
                     f"{COMPILER_FIX}; the daemon samples without it")
    return Check("ok", "compile", f"`serve --compile-step` can compile the sampling step ({found})")


def run_checks(args: argparse.Namespace) -> Iterator[Check]:
    """Every check, in the order printed; each is run when its turn comes."""
    yield check_python()
    torch_check = check_torch()
    yield torch_check
    if torch_check.status == "ok":
        yield check_compiler()
    yield from check_models(args.models)
    yield check_port(args.port, "daemon", args.reply_port)
    yield check_port(args.reply_port, "reply", args.port)
    yield check_midi()
    yield check_audio()
    yield check_device(args.user_library)


def run(args: argparse.Namespace) -> int:
    if args.port == args.reply_port:
        print(f"doctor: --port and --reply-port are both {args.port}; the daemon and the device need two ports",
              file=sys.stderr)
        return 2
    checks = []
    for check in run_checks(args):
        print(check.line(), flush=True)
        checks.append(check)
    failures = [c for c in checks if c.status == "FAIL"]
    warnings = [c for c in checks if c.status == "warn"]
    print()
    if failures:
        print(f"{len(failures)} problem(s) stop NOTONO Live from running here"
              f"{f'; {len(warnings)} warning(s)' if warnings else ''}.")
        return 1
    print("NOTONO Live can run here" + (f"; {len(warnings)} warning(s) above: features that will be missing."
                                         if warnings else "."))
    return 0


if __name__ == "__main__":   # `python -m notono_live.doctor`, same options as `notono-live doctor`
    _parser = argparse.ArgumentParser(prog="python -m notono_live.doctor")
    register(_parser.add_subparsers(dest="command", required=True))
    sys.exit(run(_parser.parse_args(["doctor", *sys.argv[1:]])))
