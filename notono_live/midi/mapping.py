"""The MIDI mapping: which controller message drives which control or operation, and its file.

A mapping is a list of `Binding`s. Each binds one kind of message (a control change, a note-on or a
program change, optionally restricted to a port and channel) to a *target*: a control of the daemon's
current sound (`CONTROL_TARGETS`) or an operation (`ACTIONS`). The file is TOML, versioned, read with
the standard library's `tomllib`; it is written by `save_mapping` (a small writer for this one
schema, since the standard library has no TOML writer), atomically, so a crash never leaves half a
file. Every error names the file, the binding and the key.
"""
from __future__ import annotations

import math
import os
import sys
from dataclasses import dataclass, field, fields, replace
from importlib import resources
from pathlib import Path
from typing import Any

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - Python 3.10 (pyproject pulls tomli there)
    import tomli as tomllib

from ..codemaps import LAYERS
from ..constants import FAMILIES, PITCH_MAX, PITCH_MIN
from ..fileio import atomic_write_bytes

MAPPING_FORMAT = "notono-midi-mapping"
MAPPING_VERSION = 1
MAPPING_FILENAME = "midi_mapping.toml"
MAPPING_ENV = "NOTONO_MIDI_MAPPING"     # overrides the mapping file's location
DEFAULT_MAPPING_RESOURCE = "default_mapping.toml"

CONTROL_TARGETS = ("region_x", "region_y", "region_width", "region_height",
                   "layer", "temperature", "pitch", "family")
ACTIONS = ("generate", "inpaint", "new_bottom", "undo", "redo")
TARGETS = CONTROL_TARGETS + ACTIONS
REGION_TARGETS = CONTROL_TARGETS[:4]
CHOICES: dict[str, tuple[str, ...]] = {"layer": LAYERS, "family": FAMILIES}

MESSAGE_TYPES = ("cc", "note", "program")
CC_MODES = ("absolute", "relative_twos_complement", "relative_binary_offset", "relative_sign_magnitude")
TAKEOVERS = ("pickup", "jump")

# Sampling temperature range a knob spans by default; the priors' useful range.
TEMPERATURE_RANGE = (0.1, 2.0)
# Amount one tick of an endless encoder moves each control, in the control's own unit.
DEFAULT_STEPS = {"region_x": 1, "region_y": 1, "region_width": 1, "region_height": 1, "layer": 1,
                 "temperature": 0.05, "pitch": 1, "family": 1}


class MappingError(ValueError):
    """A mapping file or binding is invalid; the message names the file, binding and key."""


@dataclass(frozen=True)
class Binding:
    """One controller message bound to one target.

    Args:
        target: a name from `CONTROL_TARGETS` or `ACTIONS`.
        type: "cc" (control change), "note" (note-on) or "program" (program change).
        number: CC or note number 0-127; None on a note binding means any note (keys to pitch).
            Program bindings have none.
        channel: MIDI channel 1-16 as controllers print it; None for any channel.
        port: input port name without ALSA's client:port numbers; None for any port.
        mode: for CCs: "absolute" (a knob or fader) or an endless encoder's relative encoding,
            "relative_twos_complement", "relative_binary_offset" or "relative_sign_magnitude".
        takeover: for absolute CCs: "pickup" (soft takeover: the knob acts only once it has passed the
            control's current value) or "jump" (acts at once).
        min: value at the low end of the knob (cells for region controls, an index for layer and
            family); None for the control's full range. min > max inverts the knob.
        max: value at the high end of the knob; None for the full range.
        step: amount one encoder tick moves the control (relative CCs); None for `DEFAULT_STEPS`.
        value: on a press (note-on, CC >= 64), set the control to this value instead of taking it
            from the message; None sets pitch from the note number and steps layer or family on.
        trigger: an action fired after a note or program change has set its control
            (note-on -> pitch, then "generate").
    """

    target: str
    type: str
    number: int | None = None
    channel: int | None = None
    port: str | None = None
    mode: str = "absolute"
    takeover: str = "pickup"
    min: float | None = None
    max: float | None = None
    step: float | None = None
    value: Any = None
    trigger: str | None = None

    @property
    def is_action(self) -> bool:
        return self.target in ACTIONS

    @property
    def is_relative(self) -> bool:
        return self.type == "cc" and self.mode != "absolute"

    @property
    def is_button(self) -> bool:
        """Acts on a press rather than on a position: actions, fixed values, notes and programs."""
        return self.type != "cc" or self.is_action or self.value is not None

    def source(self) -> tuple:
        """What identifies the message this binding listens to (used to replace on learn)."""
        return (self.port, self.channel, self.type, self.number)

    def to_dict(self) -> dict[str, Any]:
        """Plain dict for the file and for OSC replies; keys left at their defaults are dropped."""
        out: dict[str, Any] = {"target": self.target, "type": self.type}
        for f in fields(self):
            if f.name in out:
                continue
            value = getattr(self, f.name)
            if value is None:
                continue
            if f.name in ("mode", "takeover") and (self.type != "cc" or self.is_button):
                continue  # meaningless for buttons, notes and programs
            if f.name == "takeover" and self.is_relative:
                continue
            out[f.name] = value
        return out

    @classmethod
    def from_dict(cls, data: dict[str, Any], where: str = "binding") -> "Binding":
        """Validate a dict from the file (or from OSC learn options); raise MappingError naming the key."""
        if not isinstance(data, dict):
            raise MappingError(f"{where}: expected a table of keys, got {data!r}")
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise MappingError(f"{where}: unknown key {unknown[0]!r}; expected some of {', '.join(sorted(known))}")
        for key in ("target", "type"):
            if key not in data:
                raise MappingError(f"{where}: missing key {key!r}")
        binding = cls(**data)
        binding.validate(where)
        return binding._normalised()

    def validate(self, where: str = "binding") -> None:
        def fail(key: str, problem: str) -> None:
            raise MappingError(f"{where}: key {key!r}: {problem}")

        if self.target not in TARGETS:
            fail("target", f"{self.target!r} is not a target; expected one of {', '.join(TARGETS)}")
        if self.type not in MESSAGE_TYPES:
            fail("type", f"{self.type!r} is not a message type; expected one of {', '.join(MESSAGE_TYPES)}")
        if self.number is not None and (not _is_int(self.number) or not 0 <= self.number <= 127):
            fail("number", f"{self.number!r} is not a MIDI number 0-127")
        if self.type == "cc" and self.number is None:
            fail("number", "a cc binding needs the controller number 0-127")
        if self.type == "program" and self.number is not None:
            fail("number", "a program binding takes any program change; leave number out")
        if self.channel is not None and (not _is_int(self.channel) or not 1 <= self.channel <= 16):
            fail("channel", f"{self.channel!r} is not a MIDI channel 1-16")
        if self.port is not None and (not isinstance(self.port, str) or not self.port.strip()):
            fail("port", f"{self.port!r} is not a port name")
        if self.mode not in CC_MODES:
            fail("mode", f"{self.mode!r} is not a CC mode; expected one of {', '.join(CC_MODES)}")
        if self.mode != "absolute" and (self.type != "cc" or self.is_action):
            fail("mode", "relative modes apply to cc bindings of controls only")
        if self.takeover not in TAKEOVERS:
            fail("takeover", f"{self.takeover!r} is not a takeover; expected one of {', '.join(TAKEOVERS)}")
        if self.trigger is not None:
            if self.trigger not in ACTIONS:
                fail("trigger", f"{self.trigger!r} is not an action; expected one of {', '.join(ACTIONS)}")
            if self.is_action or self.type == "cc":
                fail("trigger", "only note and program bindings of a control can trigger an action")
        if self.is_action:
            for key in ("min", "max", "step", "value"):
                if getattr(self, key) is not None:
                    fail(key, f"action {self.target!r} takes no {key}")
            if self.type == "program":
                fail("type", "program changes drive the family (or another control), not actions")
            return
        for key in ("min", "max", "value"):
            raw = getattr(self, key)
            if raw is not None:
                try:
                    control_value(self.target, raw)
                except ValueError as error:
                    fail(key, str(error))
        if self.step is not None and (not _is_number(self.step) or not self.step > 0):
            fail("step", f"{self.step!r} is not a positive number")
        if self.type in ("note", "program") and self.value is None:
            from_message = self.target in CHOICES or (self.target == "pitch" and self.type == "note")
            if not from_message:
                fail("value", f"a {self.type} binding of {self.target!r} needs the value to set")

    def _normalised(self) -> "Binding":
        """Choices given by name become indices for min/max; values keep their canonical type."""
        changes: dict[str, Any] = {}
        for key in ("min", "max", "value"):
            raw = getattr(self, key)
            if raw is None:
                continue
            converted = control_value(self.target, raw)
            if key != "value" and self.target in CHOICES:
                converted = CHOICES[self.target].index(converted)
            changes[key] = converted
        if self.port is not None:
            from .ports import normalise_port_name
            changes["port"] = normalise_port_name(self.port)
        return replace(self, **changes) if changes else self


def control_value(target: str, raw: Any) -> Any:
    """Check and canonicalise a control's value: int cells, float temperature, int pitch, names."""
    if target in CHOICES:
        options = CHOICES[target]
        if isinstance(raw, str):
            if raw not in options:
                raise ValueError(f"{raw!r} is not a {target}; expected one of {', '.join(options)}")
            return raw
        if _is_int(raw) and 0 <= raw < len(options):
            return options[raw]
        raise ValueError(f"{raw!r} is not a {target} name or index 0-{len(options) - 1}")
    if not _is_number(raw):
        raise ValueError(f"{raw!r} is not a number")
    if target == "temperature":
        low, high = TEMPERATURE_RANGE
        if not low <= raw <= high:
            raise ValueError(f"temperature {raw} is outside {low}-{high}")
        return float(raw)
    if not _is_int(raw):
        raise ValueError(f"{target} takes a whole number, got {raw!r}")
    if target == "pitch":
        if not PITCH_MIN <= raw <= PITCH_MAX:
            raise ValueError(f"pitch {raw} is outside the model's range {PITCH_MIN}-{PITCH_MAX}")
        return int(raw)
    # Region cells: checked against the layer's map when used; here only the bottom map's bounds.
    low = 1 if target in ("region_width", "region_height") else 0
    if not low <= raw <= 64:
        raise ValueError(f"{target} {raw} is outside {low}-64 cells")
    return int(raw)


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _is_number(value: Any) -> bool:
    return (isinstance(value, (int, float)) and not isinstance(value, bool)
            and math.isfinite(value))


@dataclass
class Mapping:
    """All bindings of one controller setup.

    Args:
        bindings: the bindings, in file order; the most specific one wins when several match.
        port: input port to open when the daemon is given none (None: the virtual "NOTONO Live").
    """

    bindings: list[Binding] = field(default_factory=list)
    port: str | None = None

    def to_dicts(self) -> list[dict[str, Any]]:
        return [b.to_dict() for b in self.bindings]

    @classmethod
    def from_document(cls, doc: dict[str, Any], where: str = "mapping") -> "Mapping":
        allowed = {"format", "version", "port", "binding"}
        unknown = sorted(set(doc) - allowed)
        if unknown:
            raise MappingError(f"{where}: unknown key {unknown[0]!r}; expected some of {', '.join(sorted(allowed))}")
        if doc.get("format") != MAPPING_FORMAT:
            raise MappingError(f"{where}: key 'format': expected {MAPPING_FORMAT!r}, got {doc.get('format')!r}")
        if doc.get("version") != MAPPING_VERSION:
            raise MappingError(f"{where}: key 'version': {doc.get('version')!r} is not supported "
                               f"(expected {MAPPING_VERSION})")
        port = doc.get("port")
        if port is not None and (not isinstance(port, str) or not port.strip()):
            raise MappingError(f"{where}: key 'port': {port!r} is not a port name")
        raw = doc.get("binding", [])
        if not isinstance(raw, list):
            raise MappingError(f"{where}: key 'binding': expected [[binding]] tables")
        bindings = [Binding.from_dict(item, f"{where}: binding {i + 1}"
                                      + (f" ({item.get('target')})" if isinstance(item, dict) else ""))
                    for i, item in enumerate(raw)]
        return cls(bindings, port)

    def to_toml(self) -> str:
        lines = ["# NOTONO Live MIDI mapping; see docs/midi.md. Written by notono-live (MIDI learn",
                 "# rewrites this file, so comments are not kept).",
                 f'format = "{MAPPING_FORMAT}"', f"version = {MAPPING_VERSION}"]
        if self.port is not None:
            lines.append(f"port = {_toml_value(self.port)}")
        for binding in self.bindings:
            lines += ["", "[[binding]]"]
            lines += [f"{key} = {_toml_value(value)}" for key, value in binding.to_dict().items()]
        return "\n".join(lines) + "\n"


def _toml_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        return repr(value)
    if isinstance(value, str):
        # TOML basic string: escape backslash, quote and every control character.
        out = []
        for ch in value:
            if ch in '"\\':
                out.append("\\" + ch)
            elif ord(ch) < 0x20 or ord(ch) == 0x7F:
                out.append(f"\\u{ord(ch):04x}")
            else:
                out.append(ch)
        return '"' + "".join(out) + '"'
    raise TypeError(f"cannot write {value!r} to a mapping file")


def default_mapping_path() -> Path:
    """Where the mapping lives: $NOTONO_MIDI_MAPPING, else the user config dir (platformdirs)."""
    override = os.environ.get(MAPPING_ENV)
    if override:
        return Path(override).expanduser()
    import platformdirs
    return Path(platformdirs.user_config_dir("notono-live")) / MAPPING_FILENAME


def default_mapping_text() -> str:
    # resources/ is package data of notono_live (pyproject), not a package of its own.
    return resources.files("notono_live").joinpath("resources", DEFAULT_MAPPING_RESOURCE).read_text("utf-8")


def default_mapping() -> Mapping:
    """The shipped mapping for a generic 8-knob, 8-pad controller (docs/midi.md)."""
    return parse_mapping(default_mapping_text(), "default mapping")


def parse_mapping(text: str, where: str) -> Mapping:
    try:
        doc = tomllib.loads(text)
    except tomllib.TOMLDecodeError as error:
        raise MappingError(f"{where}: not valid TOML: {error}") from None
    return Mapping.from_document(doc, where)


def load_mapping(path: str | Path) -> Mapping:
    """Read and validate a mapping file; FileNotFoundError or MappingError naming the file and key."""
    path = Path(path)
    try:
        text = path.read_text("utf-8")
    except FileNotFoundError:
        raise FileNotFoundError(f"MIDI mapping file {path} does not exist") from None
    except UnicodeDecodeError as error:
        raise MappingError(f"{path}: not UTF-8 text ({error})") from None
    return parse_mapping(text, str(path))


def load_mapping_or_default(path: str | Path | None) -> tuple[Mapping, str | None]:
    """The mapping at `path` (None: `default_mapping_path()`), or the shipped default.

    Returns (mapping, problem): problem is None when the file was read or does not exist yet, and
    the error message when the file is invalid and the defaults were kept instead.
    """
    path = default_mapping_path() if path is None else Path(path)
    if not path.exists():
        return default_mapping(), None
    try:
        return load_mapping(path), None
    except (MappingError, OSError) as error:
        return default_mapping(), f"{error}; using the default mapping"


def save_mapping(mapping: Mapping, path: str | Path) -> Path:
    """Write the mapping atomically (temporary file, then rename) and return the path."""
    path = Path(path)
    text = mapping.to_toml()
    parse_mapping(text, "mapping about to be written")  # never write what we could not read back
    return atomic_write_bytes(path, text.encode("utf-8"))
