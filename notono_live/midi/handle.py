"""An open MIDI input wired to a Controller, with learn and the mapping file: what the daemon holds.

`open_midi_input` reads the mapping (keeping the shipped default, with one logged error naming the
key, when the file is invalid), opens the port with `MidiHandle.receive` as its callback, and returns
the handle, or logs one warning and returns None where MIDI cannot work, so the daemon runs on
without it.
"""
from __future__ import annotations

import logging
from pathlib import Path
from typing import Any, Callable

from .controller import ControlSink, Controller
from .learn import Learner, LearnResult
from .mapping import Binding, Mapping, MappingError, default_mapping_path, load_mapping_or_default, save_mapping
from .ports import MidiUnavailable, normalise_port_name, open_input_port

log = logging.getLogger("notono_live.midi")

VIRTUAL_PORT_NAME = "NOTONO Live"


class MidiHandle:
    """The daemon's handle on MIDI: the mapping, the controller, learn, and the open port.

    Args:
        mapping: the bindings in use.
        sink: receives controls and operations; called on the MIDI thread (see `ControlSink`).
        mapping_path: where learn saves the mapping; None for `default_mapping_path()`.
        port_name: the input's normalised name, matched against bindings' `port`.
        on_learned: called with a `LearnResult` after each learn (on the MIDI thread), so the daemon
            can reply over OSC.
        mapping_problem: why the mapping file could not be used, if it could not; the first save
            then keeps the invalid file beside the new one as "<name>.invalid".
    """

    def __init__(self, mapping: Mapping, sink: ControlSink, mapping_path: str | Path | None = None,
                 port_name: str | None = None,
                 on_learned: Callable[[LearnResult], None] | None = None,
                 mapping_problem: str | None = None) -> None:
        self.mapping_path = Path(mapping_path) if mapping_path is not None else default_mapping_path()
        self.port_name = normalise_port_name(port_name) if port_name else None
        self.on_learned = on_learned
        self.mapping_problem = mapping_problem
        self.learner = Learner()
        self.controller = Controller(mapping, sink, self.learner, on_learned=self._learned)
        self._port: Any = None

    # The port's callback: every message from the hardware goes through here, on rtmidi's thread.
    def receive(self, message: Any) -> None:
        try:
            self.controller.handle_message(message, port=self.port_name)
        except Exception:  # never let one message take the MIDI thread down
            log.exception("MIDI message %s could not be handled", message)

    def learn(self, target: str, mode: str = "absolute", takeover: str = "pickup", value: Any = None,
              trigger: str | None = None) -> None:
        """Arm `target`: the next fitting CC, note or program change binds to it and is saved at once.
        ValueError naming a bad target or option."""
        self.learner.arm(target, mode=mode, takeover=takeover, value=value, trigger=trigger)
        log.info("MIDI learn armed for %s: move a control or press a pad", target)

    def cancel_learn(self) -> bool:
        """Disarm learn; True if a target was armed."""
        return self.learner.cancel()

    @property
    def learning(self) -> str | None:
        """The armed target, or None."""
        return self.learner.armed

    def mappings(self) -> list[dict[str, Any]]:
        """The bindings in use, as plain dicts (the file's keys)."""
        return self.controller.mapping.to_dicts()

    def unbind(self, target: str) -> int:
        """Remove every binding of `target`, save, and return how many were removed."""
        with self.controller._lock:
            mapping = self.controller.mapping
            kept = [b for b in mapping.bindings if b.target != target]
            removed = len(mapping.bindings) - len(kept)
            self.controller.set_mapping(Mapping(kept, mapping.port))
        if removed:
            self._save()
        return removed

    def sync(self, name: str, value: Any) -> None:
        """Tell the controller that a control changed elsewhere (OSC), for pick-up and the region.
        Call it once per control after opening, with the sink's starting values, so that pick-up
        knobs wait for them (until then a knob's first move simply sets the value)."""
        self.controller.sync(name, value)

    def close(self) -> None:
        """Close the port (idempotent); no callback runs afterwards."""
        port, self._port = self._port, None
        if port is not None:
            port.close()

    def __enter__(self) -> "MidiHandle":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _learned(self, binding: Binding, replaced: list[Binding]) -> None:
        result = LearnResult(binding, replaced)
        result.saved_to, result.error = self._save()
        if self.on_learned is not None:
            try:
                self.on_learned(result)
            except Exception:
                log.exception("on_learned callback failed")

    def _save(self) -> tuple[Path | None, str | None]:
        path = self.mapping_path
        try:
            if self.mapping_problem is not None and path.exists():
                kept = path.with_name(path.name + ".invalid")
                path.replace(kept)
                log.warning("kept the invalid MIDI mapping file as %s", kept)
                self.mapping_problem = None
            save_mapping(self.controller.mapping, path)
        except (OSError, MappingError) as error:
            message = f"could not save the MIDI mapping to {path}: {error}"
            log.error("%s", message)
            return None, message
        return path, None


def open_midi_input(port_name: str | None, mapping_path: str | Path | None, sink: ControlSink,
                    virtual_name: str = VIRTUAL_PORT_NAME,
                    on_learned: Callable[[LearnResult], None] | None = None) -> MidiHandle | None:
    """Open MIDI input for the daemon, or return None after one warning when it cannot.

    Args:
        port_name: an input to open (matched without ALSA's client:port numbers, ignoring case, or
            by a unique part of its name); None opens the mapping file's `port`, or else a virtual
            input called `virtual_name` (macOS, Linux).
        mapping_path: the mapping file; None for `default_mapping_path()`. A missing file means the
            shipped default; an invalid one logs an error naming the key and keeps the default.
        sink: receives controls and operations, on the MIDI thread.
        virtual_name: the virtual port's name.
        on_learned: called with a `LearnResult` after each learn.
    """
    path = Path(mapping_path) if mapping_path is not None else default_mapping_path()
    mapping, problem = load_mapping_or_default(path)
    if problem:
        log.error("MIDI mapping: %s", problem)
    requested = port_name if port_name is not None else mapping.port
    handle = MidiHandle(mapping, sink, path, port_name=None, on_learned=on_learned, mapping_problem=problem)
    try:
        port, name = open_input_port(requested, virtual_name, callback=None)
    except (MidiUnavailable, ValueError) as error:
        log.warning("MIDI input disabled: %s. Running without MIDI.", error)
        return None
    # Bindings match on the port's name, so it is set before the first message is handled.
    handle.port_name = name
    handle._port = port
    port.callback = handle.receive
    log.info("MIDI input %r open; mapping %s", name, path if path.exists() else "default (built in)")
    return handle
