"""Turning controller messages into controls and operations on the daemon's current sound.

`Controller.handle_message` is the one code path every MIDI message takes: the open port's callback
calls it, and so do the tests. It finds the most specific bindings for the message, converts the
message into a value of each bound control (scaled to the current layer's map for the region), and
calls the `ControlSink`: `set_control(name, value)` for controls, `trigger(action)` for operations.

It keeps the controls' current values so that region cells stay inside the current layer's map,
endless encoders know where to step from, and pick-up (soft takeover) knows when a knob has reached
the value: a knob in pick-up mode acts only once it passes the control's current value, so a knob
left elsewhere does not make the value jump. The daemon tells it about changes made over OSC with
`sync`.
"""
from __future__ import annotations

import logging
import queue
import threading
from typing import Any, Callable, Protocol, runtime_checkable

from ..codemaps import LAYERS, layer_shape
from ..constants import PITCH_MAX, PITCH_MIN
from .learn import Learner, merge_learned
from .mapping import (
    CHOICES, CONTROL_TARGETS, DEFAULT_STEPS, REGION_TARGETS, TEMPERATURE_RANGE, Binding, Mapping,
    control_value,
)

log = logging.getLogger(__name__)

# Where an endless encoder starts when the daemon has not said what the value is.
START_VALUES: dict[str, Any] = {"region_x": 0, "region_y": 0, "region_width": 1, "region_height": 1,
                                "layer": 0, "temperature": 1.0, "pitch": 60, "family": 0}
PRESS_THRESHOLD = 64     # a CC button is pressed at 64 and above (127 on press, 0 on release)


@runtime_checkable
class ControlSink(Protocol):
    """What MIDI drives: the daemon implements it on its current sound.

    Its methods are called on the MIDI input's thread (python-rtmidi's), so they must be thread-safe;
    otherwise wrap the sink in `QueuedSink` and drain it on the daemon's thread.
    """

    def set_control(self, name: str, value: Any) -> None:
        """name in CONTROL_TARGETS; value: int cells for the region, "top"/"bottom" for layer,
        float for temperature, int MIDI pitch, family name."""

    def trigger(self, action: str) -> None:
        """action in ACTIONS: "generate", "inpaint", "new_bottom", "undo", "redo"."""


class QueuedSink:
    """A ControlSink that queues calls for another thread, for daemons whose state is single-threaded.

    The MIDI thread only enqueues; the daemon calls `drain(sink)` on its own thread, which makes the
    calls on `sink` in the order they arrived.
    """

    def __init__(self) -> None:
        self._queue: queue.SimpleQueue[tuple] = queue.SimpleQueue()

    def set_control(self, name: str, value: Any) -> None:
        self._queue.put(("set_control", name, value))

    def trigger(self, action: str) -> None:
        self._queue.put(("trigger", action))

    def drain(self, sink: ControlSink, timeout: float | None = 0.0) -> int:
        """Deliver every queued call to `sink`; wait up to `timeout` s for the first (None: forever).
        Returns how many calls were delivered."""
        delivered = 0
        try:
            item = self._queue.get_nowait() if timeout == 0 else self._queue.get(timeout=timeout)
            while True:
                getattr(sink, item[0])(*item[1:])
                delivered += 1
                item = self._queue.get_nowait()
        except queue.Empty:
            return delivered


def relative_ticks(mode: str, value: int) -> int:
    """Signed encoder ticks from an endless encoder's CC value."""
    if mode == "relative_twos_complement":      # 1..63 up, 127..65 down (-1..-63), 64 = -64
        return value if value < 64 else value - 128
    if mode == "relative_binary_offset":        # 64 is rest: 65 = +1, 63 = -1
        return value - 64
    if mode == "relative_sign_magnitude":       # bit 6 set = down, low 6 bits = amount
        return -(value & 0x3F) if value & 0x40 else value & 0x3F
    raise ValueError(f"{mode!r} is not a relative CC mode")


def fold_pitch(note: int) -> int:
    """A MIDI note moved by octaves into the model's pitch range, keeping its pitch class."""
    while note < PITCH_MIN:
        note += 12
    while note > PITCH_MAX:
        note -= 12
    return note


class Controller:
    """Applies a mapping to incoming MIDI messages and drives a ControlSink.

    Args:
        mapping: the bindings to apply.
        sink: the receiver of controls and operations (the daemon's current sound).
        learner: when given and armed, the next learnable message binds its target instead of acting.
        on_learned: called with (new binding, replaced bindings) after a learn changed `mapping`;
            outside the controller's lock, on the MIDI thread.
    """

    def __init__(self, mapping: Mapping, sink: ControlSink, learner: Learner | None = None,
                 on_learned: Callable[[Binding, list[Binding]], None] | None = None) -> None:
        self.mapping = mapping
        self.sink = sink
        self.learner = learner
        self.on_learned = on_learned
        self._lock = threading.RLock()
        self._values: dict[str, Any] = {name: None for name in CONTROL_TARGETS}   # as the sink has them
        self._requested: dict[str, int | None] = {"region_width": None, "region_height": None}
        self._reset_knobs()
        self._pending: list[tuple] = []

    # --- public -------------------------------------------------------------------------------

    def handle_message(self, message: Any, port: str | None = None) -> None:
        """Act on one mido message from `port` (a normalised port name, None when unknown)."""
        kind, number, data = _classify(message)
        if kind is None:
            return
        channel = message.channel + 1
        learned = None
        with self._lock:
            if self.learner is not None and self.learner.armed:
                binding = self.learner.offer(message, port)
                if binding is not None:
                    self.mapping, replaced = merge_learned(self.mapping, binding)
                    self._reset_knobs()
                    learned = (binding, replaced)
            if learned is None:
                for index in self._match(kind, number, channel, port):
                    self._apply(index, self.mapping.bindings[index], kind, number, data)
            calls, self._pending = self._pending, []
        if learned is not None:
            log.info("MIDI learn: %s", learned[0].to_dict())
            if self.on_learned is not None:
                self.on_learned(*learned)
            return
        self._deliver(calls)

    def sync(self, name: str, value: Any) -> None:
        """Record that `name` changed outside MIDI (over OSC); nothing is sent to the sink.

        Pick-up then waits for knobs to reach the new value. Numbers are clamped into the control's
        range (region cells when used, since the layer may be synced later); None marks the value
        unknown; a layer or family must be a valid name or index (ValueError otherwise)."""
        if name not in CONTROL_TARGETS:
            raise ValueError(f"{name!r} is not a control; expected one of {', '.join(CONTROL_TARGETS)}")
        with self._lock:
            if value is None:
                stored = None
            elif name in CHOICES:
                stored = control_value(name, value)
            elif name in REGION_TARGETS:  # clamped to the layer when used: the layer may be synced later
                stored = max(int(value), 1 if name in self._requested else 0)
            else:
                low, high = self._full_range(name)
                number = float(value) if name == "temperature" else int(value)
                stored = min(max(number, low), high)
            self._values[name] = stored
            if name in self._requested:
                self._requested[name] = stored
            self._disengage(name)

    def values(self) -> dict[str, Any]:
        """The controls as the controller believes the sink has them (None: not known yet)."""
        with self._lock:
            return dict(self._values)

    def set_mapping(self, mapping: Mapping) -> None:
        with self._lock:
            self.mapping = mapping
            self._reset_knobs()

    # --- matching -----------------------------------------------------------------------------

    def _match(self, kind: str, number: int, channel: int, port: str | None) -> list[int]:
        """Indices of the most specific bindings for the message (number, then channel, then port)."""
        best: list[int] = []
        best_score = None
        folded_port = port.casefold() if port else None
        for index, b in enumerate(self.mapping.bindings):
            if b.type != kind:
                continue
            if b.number is not None and b.number != number:
                continue
            if b.channel is not None and b.channel != channel:
                continue
            if b.port is not None and b.port.casefold() != folded_port:
                continue
            score = (b.number is not None, b.channel is not None, b.port is not None)
            if best_score is None or score > best_score:
                best, best_score = [index], score
            elif score == best_score:
                best.append(index)
        return best

    # --- acting -------------------------------------------------------------------------------

    def _apply(self, index: int, b: Binding, kind: str, number: int, data: int | None) -> None:
        if b.is_button:
            if kind == "cc" and data < PRESS_THRESHOLD:
                return  # a CC button's release
            self._press(index, b, kind, number)
        elif b.is_relative:
            self._step(index, b, relative_ticks(b.mode, data))
        else:
            self._absolute(index, b, data)

    def _press(self, index: int, b: Binding, kind: str, number: int) -> None:
        if b.is_action:
            self._pending.append(("trigger", b.target))
            return
        if b.value is not None:
            value = self._domain(b.target, b.value)
        elif b.target == "pitch":
            value = fold_pitch(number)
        elif kind == "program":
            options = CHOICES[b.target]
            if number >= len(options):
                log.info("program change %d has no %s (programs 0-%d select one)", number, b.target,
                         len(options) - 1)
                return
            value = number
        else:  # a pad with no value steps a choice on, wrapping round
            current = self._current(b.target)
            value = 0 if current is None else (current + 1) % len(CHOICES[b.target])
        # A press always reaches the sink, even when the value looks unchanged: it is deliberate.
        self._set(b.target, value, index, force=True)
        if b.trigger:
            self._pending.append(("trigger", b.trigger))

    def _absolute(self, index: int, b: Binding, raw: int) -> None:
        low, high = self._range(b)
        if b.target == "temperature":
            value: Any = round(low + (high - low) * raw / 127, 3)
            tolerance = abs(high - low) / 127
        else:  # equal zones of the knob's travel for each whole value
            count = abs(high - low) + 1
            zone = min(raw * count // 128, count - 1)
            value = low + zone if high >= low else low - zone
            tolerance = 0
        if b.takeover == "pickup" and index not in self._engaged:
            current = self._current(b.target)
            previous = self._last_position.get(index)
            self._last_position[index] = value
            reachable = current is not None and min(low, high) <= current <= max(low, high)
            if reachable:
                crossed = previous is not None and (previous - current) * (value - current) < 0
                if not (abs(value - current) <= tolerance + 1e-9 or crossed):
                    log.debug("%s: knob at %s waits to pick up %s", b.target, value, current)
                    return
        self._last_position[index] = value
        self._engaged.add(index)
        self._set(b.target, value, index)

    def _step(self, index: int, b: Binding, ticks: int) -> None:
        if ticks == 0:
            return
        low, high = sorted(self._range(b))
        current = self._current(b.target)
        if current is None:
            current = self._domain(b.target, START_VALUES[b.target])
        step = b.step if b.step is not None else DEFAULT_STEPS[b.target]
        if b.target == "temperature":
            value: Any = round(current + ticks * step, 3)
        else:  # whole-valued controls accumulate fractional steps until they make a whole one
            total = self._accumulated.get(index, 0.0) + ticks * step
            move = int(total)
            self._accumulated[index] = total - move
            value = current + move
        value = min(max(value, low), high)
        if value != current:
            self._set(b.target, value, index)

    # --- values -------------------------------------------------------------------------------

    def _layer(self) -> str:
        return self._values["layer"] or LAYERS[0]

    def _full_range(self, target: str) -> tuple[float, float]:
        if target in REGION_TARGETS:
            rows, cols = layer_shape(self._layer())
            return {"region_x": (0, cols - 1), "region_y": (0, rows - 1),
                    "region_width": (1, cols), "region_height": (1, rows)}[target]
        if target in CHOICES:
            return 0, len(CHOICES[target]) - 1
        if target == "temperature":
            return TEMPERATURE_RANGE
        return PITCH_MIN, PITCH_MAX

    def _range(self, b: Binding) -> tuple[Any, Any]:
        """The binding's (low, high) in the control's units, inside the current full range."""
        full_low, full_high = self._full_range(b.target)
        low = full_low if b.min is None else min(max(b.min, full_low), full_high)
        high = full_high if b.max is None else min(max(b.max, full_low), full_high)
        return low, high

    def _domain(self, target: str, value: Any) -> Any:
        """A control value in the units the controller computes in: choice names become indices."""
        if target in CHOICES:
            return CHOICES[target].index(control_value(target, value))
        low, high = self._full_range(target)
        return min(max(value, low), high)

    def _current(self, target: str) -> Any:
        value = self._values[target]
        if value is None:
            return None
        return CHOICES[target].index(value) if target in CHOICES else value

    def _set(self, target: str, value: Any, source: int | None, force: bool = False) -> None:
        """Set a control from a computed value (indices for choices) and queue what the sink needs."""
        if target in REGION_TARGETS:
            if target in self._requested:
                self._requested[target] = value
            self._update_region({target: value}, source, force)
        elif target == "layer":
            self._change_layer(LAYERS[value], source, force)
        else:
            self._emit(target, CHOICES[target][value] if target in CHOICES else value, source, force)

    def _update_region(self, changes: dict[str, int], source: int | None, force: bool = False) -> None:
        """Apply region changes and keep the region inside the layer's map: the width a knob asks for
        is kept, and the width sent is what fits right of x (the same for height above y)."""
        rows, cols = layer_shape(self._layer())
        x = changes.get("region_x", self._values["region_x"])
        y = changes.get("region_y", self._values["region_y"])
        x = None if x is None else min(max(x, 0), cols - 1)
        y = None if y is None else min(max(y, 0), rows - 1)
        width, height = self._requested["region_width"], self._requested["region_height"]
        width = None if width is None else min(max(width, 1), cols - (x or 0))
        height = None if height is None else min(max(height, 1), rows - (y or 0))
        for name, value in (("region_x", x), ("region_y", y), ("region_width", width),
                            ("region_height", height)):
            if value is not None:
                self._emit(name, value, source if name in changes else None, force and name in changes)

    def _change_layer(self, layer: str, source: int | None, force: bool) -> None:
        """Switch layer; the region keeps covering the same part of the spectrogram, in new cells."""
        old = self._layer()
        self._emit("layer", layer, source, force)
        if layer == old:
            return
        converted: dict[str, int] = {}
        for start_name, length_name in (("region_x", "region_width"), ("region_y", "region_height")):
            start = self._values[start_name]
            if start is not None:
                converted[start_name] = start * 2 if layer == "bottom" else start // 2
            length = self._requested[length_name]
            if length is not None:
                base = start or 0
                # one top cell is a 2x2 patch of bottom cells; going up, take the top cells covering the span
                self._requested[length_name] = (length * 2 if layer == "bottom"
                                                else -(-(base + length) // 2) - base // 2)
        self._update_region(converted, None)

    def _emit(self, name: str, value: Any, source: int | None, force: bool = False) -> None:
        if self._values[name] == value and not force:
            return
        changed = self._values[name] != value
        self._values[name] = value
        if changed:
            self._disengage(name, keep=source)
        self._pending.append(("set_control", name, value))

    def _disengage(self, target: str, keep: int | None = None) -> None:
        """The control moved without these knobs: pick-up knobs must reach it again."""
        for index, b in enumerate(self.mapping.bindings):
            if b.target == target and index != keep:
                self._engaged.discard(index)
                self._last_position.pop(index, None)

    def _reset_knobs(self) -> None:
        self._engaged: set[int] = set()
        self._last_position: dict[int, Any] = {}
        self._accumulated: dict[int, float] = {}

    def _deliver(self, calls: list[tuple]) -> None:
        for call in calls:
            try:
                getattr(self.sink, call[0])(*call[1:])
            except Exception as error:  # a failed operation must not kill the MIDI thread
                log.warning("MIDI %s%r failed: %s", call[0], call[1:], error)


def _classify(message: Any) -> tuple[str | None, int, int | None]:
    """(binding type, number, data) of a message, or (None, ...) for messages no binding takes."""
    kind = getattr(message, "type", None)
    if kind == "control_change":
        return "cc", message.control, message.value
    if kind == "note_on" and message.velocity > 0:   # velocity 0 is a note-off
        return "note", message.note, message.velocity
    if kind == "program_change":
        return "program", message.program, None
    return None, 0, None
