"""MIDI input ports through mido's python-rtmidi backend, and names that survive a restart.

ALSA names a port "client:port client_number:port_number" (e.g. "nanoKONTROL2:nanoKONTROL2 _ CTRL
20:0") and the numbers change between runs, so names are stored and compared without them
(`normalise_port_name`). Where no MIDI system exists (Linux without the ALSA sequencer device, as in
containers and WSL2) every entry point raises `MidiUnavailable` with the reason, found before
touching rtmidi so ALSA prints nothing of its own.
"""
from __future__ import annotations

import os
import re
import sys
from typing import Any, Callable

ALSA_SEQUENCER_DEVICE = "/dev/snd/seq"
_ALSA_NUMBERS = re.compile(r"\s+\d+:\d+$")


class MidiUnavailable(RuntimeError):
    """No MIDI input can be opened here; the message says why and what to do."""


def normalise_port_name(name: str) -> str:
    """A port name without ALSA's trailing client:port numbers and surrounding spaces."""
    return _ALSA_NUMBERS.sub("", name.strip()).strip()


def _backend() -> Any:
    import mido
    return mido.backend


def midi_system_problem() -> str | None:
    """Why MIDI cannot work on this machine, or None when it may (the port open decides then)."""
    try:
        backend = _backend()
        backend.module  # loads it: imports rtmidi
    except ImportError as error:
        return f"the MIDI backend could not be loaded ({error}); install python-rtmidi"
    uses_alsa = (backend.name == "mido.backends.rtmidi" and backend.api in (None, "LINUX_ALSA"))
    if sys.platform.startswith("linux") and uses_alsa and not os.path.exists(ALSA_SEQUENCER_DEVICE):
        return (f"this machine has no ALSA sequencer ({ALSA_SEQUENCER_DEVICE} is missing: a container, "
                "WSL2, or the snd-seq kernel module is not loaded)")
    return None


def _wrap(action: str, error: BaseException) -> MidiUnavailable:
    return MidiUnavailable(f"{action} failed: {error}")


def list_input_ports() -> list[str]:
    """Names of the MIDI inputs as the system reports them; MidiUnavailable when there is no MIDI."""
    problem = midi_system_problem()
    if problem:
        raise MidiUnavailable(problem)
    try:
        return list(_backend().get_input_names())
    except Exception as error:  # rtmidi raises its own SystemError/RuntimeError types
        raise _wrap("listing MIDI inputs", error) from error


def virtual_ports_supported() -> bool:
    return not sys.platform.startswith("win")


def resolve_input_name(requested: str, available: list[str]) -> str:
    """The one available port that `requested` names: exactly, without ALSA numbers, ignoring case,
    or as a unique part of the name. ValueError listing the ports otherwise."""
    wanted = normalise_port_name(requested)
    for test in (lambda n: n == requested,
                 lambda n: normalise_port_name(n) == wanted,
                 lambda n: normalise_port_name(n).casefold() == wanted.casefold()):
        hits = [name for name in available if test(name)]
        if hits:
            return hits[0]
    hits = [name for name in available if wanted.casefold() in normalise_port_name(name).casefold()]
    if len(hits) == 1:
        return hits[0]
    listed = ", ".join(repr(normalise_port_name(n)) for n in available) or "none"
    if hits:
        raise ValueError(f"MIDI input {requested!r} is ambiguous; it matches {len(hits)} ports: {listed}")
    raise ValueError(f"no MIDI input named {requested!r}; available inputs: {listed}")


def open_input_port(requested: str | None, virtual_name: str,
                    callback: Callable[[Any], None] | None) -> tuple[Any, str]:
    """Open the named input, or a virtual one called `virtual_name` when `requested` is None.

    The port calls `callback(message)` on python-rtmidi's thread for every message. Returns the mido
    port and its normalised name. Raises MidiUnavailable (no MIDI system, no virtual ports on this OS,
    the open failed) or ValueError (no such port).
    """
    problem = midi_system_problem()
    if problem:
        raise MidiUnavailable(problem)
    import mido
    if requested is None:
        if not virtual_ports_supported():
            raise MidiUnavailable("virtual MIDI ports are not supported on Windows; create a loopMIDI port "
                                  "and name it with --midi-in NAME (or `port` in the mapping file)")
        try:
            # client_name makes the virtual port appear as "NOTONO Live" rather than "RtMidiIn Client".
            port = mido.open_input(virtual_name, virtual=True, client_name=virtual_name, callback=callback)
        except Exception as error:
            raise _wrap(f"opening the virtual MIDI input {virtual_name!r}", error) from error
        return port, normalise_port_name(virtual_name)
    real = resolve_input_name(requested, list_input_ports())
    try:
        port = mido.open_input(real, callback=callback)
    except Exception as error:
        hint = (" (on Windows, a port that Live already uses cannot be opened by another program; "
                "route it through a loopMIDI port)" if sys.platform.startswith("win") else "")
        raise MidiUnavailable(f"opening MIDI input {real!r} failed: {error}{hint}") from error
    return port, normalise_port_name(real)
