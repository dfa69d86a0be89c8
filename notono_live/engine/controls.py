"""The engine's MIDI control surface (`ControlSink`): what a controller has dialled in, and the actions
it triggers on the current sound. `Engine` inherits it; the methods use the engine's operations."""
from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any, Callable

import numpy as np

from ..codemaps import LAYERS, layer_shape
from ..constants import FAMILIES, PITCH_MAX, PITCH_MIN

log = logging.getLogger("notono_live.engine")
Progress = Callable[[float, str], None]


def _no_progress(fraction: float, stage: str) -> None:
    pass


@dataclass
class ControlState:
    """What a MIDI controller has dialled in: region, layer, sampling and conditioning.

    Args:
        region_x: first column of the region.
        region_y: lowest row of the region.
        region_width: columns.
        region_height: rows.
        layer: 'top' or 'bottom'.
        temperature: sampling temperature (paper: 1.0).
        pitch: MIDI pitch for generate, -1 to keep the sound's own for edits.
        family: family name for generate; '' keeps the sound's own for edits.
    """

    region_x: int = 0
    region_y: int = 0
    region_width: int = 1
    region_height: int = 1
    layer: str = "top"
    temperature: float = 1.0
    pitch: int = 60
    family: str = "keyboard"


CONTROL_NAMES = ("region_x", "region_y", "region_width", "region_height", "layer", "temperature",
                 "pitch", "family")
ACTIONS = ("generate", "inpaint", "new_bottom", "undo", "redo")


class ControlSurface:
    """Mixed into `Engine`: `controls`, `current_sound`, `on_trigger` and `on_control_changed` are set by
    its constructor, and the operations (generate, inpaint_region, ...) are its own."""

    # --- MIDI control surface (ControlSink) --------------------------------------------------

    def set_control(self, name: str, value: Any) -> None:
        """Set one control from a MIDI controller; raises ValueError for an unknown name or bad value."""
        if name not in CONTROL_NAMES:
            raise ValueError(f"unknown control {name!r}; expected one of {', '.join(CONTROL_NAMES)}")
        c = self.controls
        if name == "layer":
            value = LAYERS[int(value) % 2] if isinstance(value, (int, float)) else self.check_layer(value)
        elif name == "family":
            value = FAMILIES[int(value) % len(FAMILIES)] if isinstance(value, (int, float)) \
                else self.check_family(value)
        elif name == "pitch":
            value = int(np.clip(int(value), PITCH_MIN, PITCH_MAX))
        elif name == "temperature":
            value = float(np.clip(float(value), 0.05, 10.0))
        else:
            rows, cols = layer_shape(c.layer)
            limit = {"region_x": cols - 1, "region_y": rows - 1, "region_width": cols, "region_height": rows}[name]
            low = 1 if name in ("region_width", "region_height") else 0
            value = int(np.clip(int(value), low, limit))
        setattr(c, name, value)

    def control_values(self) -> list[tuple[str, Any]]:
        """Every control's current value, layer first (the region's range depends on it)."""
        names = ("layer",) + tuple(n for n in CONTROL_NAMES if n != "layer")
        return [(name, getattr(self.controls, name)) for name in names]

    def apply_controls(self, **values: Any) -> None:
        """Set controls from an OSC request (the device's last choice is what a MIDI pad repeats) and
        tell `on_control_changed`, so MIDI pick-up and region clamping see the real values."""
        names = sorted(values, key=lambda n: n != "layer")   # layer first: it sets the region's range
        for name in names:
            self.set_control(name, values[name])
        if self.on_control_changed is not None:
            for name in names:
                try:
                    self.on_control_changed(name, getattr(self.controls, name))
                except Exception:   # MIDI bookkeeping must never fail a request
                    log.exception("could not tell MIDI that %s changed", name)

    def trigger(self, action: str) -> None:
        """Run an action on the current sound with the dialled-in controls (through the daemon's
        worker when one is attached, so the result reaches the device like any render)."""
        if action not in ACTIONS:
            raise ValueError(f"unknown action {action!r}; expected one of {', '.join(ACTIONS)}")
        if self.on_trigger is not None:
            self.on_trigger(action)
        else:
            self.run_action(action)

    def run_action(self, action: str, progress: Progress = _no_progress) -> list:
        c = self.controls
        if action == "generate":
            return self.generate(c.pitch, c.family, temperature=c.temperature, progress=progress)
        if self.current_sound is None:
            raise LookupError(f"no current sound for {action}: generate or select one first")
        sound = self.current_sound
        if action == "inpaint":
            rows, cols = layer_shape(c.layer)
            row, col = min(c.region_y, rows - 1), min(c.region_x, cols - 1)
            height, width = min(c.region_height, rows - row), min(c.region_width, cols - col)
            return [self.inpaint_region(sound, c.layer, row, col, height, width, temperature=c.temperature,
                                        progress=progress)]
        if action == "new_bottom":
            return [self.regenerate_bottom(sound, temperature=c.temperature, progress=progress)]
        if action == "undo":
            return [self.undo(sound)]
        return [self.redo(sound)]

