"""MIDI controllers for NOTONO Live: hardware knobs and pads drive the daemon's current sound.

A mapping file (TOML, see `docs/midi.md`) binds MIDI messages to *targets*: the controls of the
inpainting region and of the sampler (`CONTROL_TARGETS`) and the operations (`ACTIONS`). The
`Controller` turns each incoming `mido.Message` into calls on a `ControlSink`, which the daemon
implements on its current sound. `open_midi_input` opens the port (a virtual "NOTONO Live" port, or
a named one) and wires its callback to the controller; it returns None, after one warning, where the
machine has no MIDI system, so the daemon keeps running without MIDI.

Threading: the port calls `MidiHandle.receive` on python-rtmidi's own thread, so the sink's methods
are called on that thread. A daemon whose state is not thread-safe wraps its sink in `QueuedSink`
and drains the queue on its own thread.

Public API::

    open_midi_input(port_name, mapping_path, sink, virtual_name="NOTONO Live", on_learned=None)
        -> MidiHandle | None
    MidiHandle.receive(message)      # the port callback; tests feed real mido messages here
    MidiHandle.learn(target, mode="absolute", takeover="pickup", value=None)
    MidiHandle.cancel_learn() -> bool
    MidiHandle.mappings() -> list[dict]
    MidiHandle.sync(name, value)     # tell the controller a value changed elsewhere (OSC)
    MidiHandle.close()
"""
from __future__ import annotations

from .controller import ControlSink, Controller, QueuedSink
from .handle import MidiHandle, open_midi_input
from .learn import Learner, LearnResult
from .mapping import (
    ACTIONS,
    CONTROL_TARGETS,
    TARGETS,
    Binding,
    Mapping,
    MappingError,
    default_mapping,
    default_mapping_path,
    load_mapping,
    load_mapping_or_default,
    save_mapping,
)
from .ports import MidiUnavailable, list_input_ports, midi_system_problem, normalise_port_name

__all__ = [
    "ACTIONS", "CONTROL_TARGETS", "TARGETS", "Binding", "ControlSink", "Controller", "Learner",
    "LearnResult", "Mapping", "MappingError", "MidiHandle", "MidiUnavailable", "QueuedSink",
    "default_mapping", "default_mapping_path", "list_input_ports", "load_mapping",
    "load_mapping_or_default", "midi_system_problem", "normalise_port_name", "open_midi_input",
    "save_mapping",
]
