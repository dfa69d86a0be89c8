"""MIDI learn: arm a target, and the next control change or note binds to it.

The `Learner` holds at most one armed request. The `Controller` offers it every incoming message
first; a message that fits the target (a CC for any target, a note for operations, pitch, layer,
family or a fixed value, a program change for layer, family or a fixed value) becomes a `Binding`,
and `merge_learned` puts it into the mapping in place of the bindings it supersedes. The handle then
saves the mapping at once. Messages that do not fit (a note while a knob target is armed) go on to
act as usual, so the keys still play while learning.
"""
from __future__ import annotations

import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .mapping import ACTIONS, CC_MODES, CHOICES, TAKEOVERS, TARGETS, Binding, Mapping, MappingError, control_value


@dataclass(frozen=True)
class LearnRequest:
    """What to bind once a message arrives.

    Args:
        target: a name from `TARGETS`.
        mode: for a CC: "absolute" or one of the relative encoder modes.
        takeover: for an absolute CC: "pickup" or "jump".
        value: a fixed value a press sets (makes a CC a button).
        trigger: for a note or program change to a control: the action to fire after it.
    """

    target: str
    mode: str = "absolute"
    takeover: str = "pickup"
    value: Any = None
    trigger: str | None = None


@dataclass
class LearnResult:
    """The outcome of one learn, handed to the daemon's `on_learned` callback.

    Args:
        binding: the new binding.
        replaced: the bindings it superseded (same message, or same target, type and value).
        saved_to: the mapping file written, or None when saving failed.
        error: why saving failed, or None.
    """

    binding: Binding
    replaced: list[Binding] = field(default_factory=list)
    saved_to: Path | None = None
    error: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return {"binding": self.binding.to_dict(), "replaced": [b.to_dict() for b in self.replaced],
                "saved_to": None if self.saved_to is None else str(self.saved_to), "error": self.error}


class Learner:
    """Holds the armed learn request, if any; arm and cancel from any thread."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._request: LearnRequest | None = None

    @property
    def armed(self) -> str | None:
        """The armed target, or None."""
        request = self._request
        return None if request is None else request.target

    def arm(self, target: str, mode: str = "absolute", takeover: str = "pickup", value: Any = None,
            trigger: str | None = None) -> LearnRequest:
        """Arm `target` (replacing any armed one); ValueError naming a bad target or option."""
        if target not in TARGETS:
            raise ValueError(f"cannot learn {target!r}; targets are {', '.join(TARGETS)}")
        if mode not in CC_MODES:
            raise ValueError(f"learn mode {mode!r} is not one of {', '.join(CC_MODES)}")
        if takeover not in TAKEOVERS:
            raise ValueError(f"learn takeover {takeover!r} is not one of {', '.join(TAKEOVERS)}")
        if target in ACTIONS and (value is not None or trigger is not None or mode != "absolute"):
            raise ValueError(f"action {target!r} is learnt as a button: no value, trigger or relative mode")
        if value is not None:
            value = control_value(target, value)
        if trigger is not None and trigger not in ACTIONS:
            raise ValueError(f"trigger {trigger!r} is not an action; expected one of {', '.join(ACTIONS)}")
        request = LearnRequest(target, mode, takeover, value, trigger)
        with self._lock:
            self._request = request
        return request

    def cancel(self) -> bool:
        """Disarm; True if something was armed."""
        with self._lock:
            was_armed, self._request = self._request is not None, None
        return was_armed

    def offer(self, message: Any, port: str | None) -> Binding | None:
        """If the armed target can take `message`, disarm and return the new binding."""
        with self._lock:
            request = self._request
            if request is None:
                return None
            data = _binding_for(request, message, port)
            if data is None:
                return None
            self._request = None
        try:
            return Binding.from_dict(data, f"learnt binding of {request.target!r}")
        except MappingError:  # cannot happen for the messages above; keep the target armed if it does
            with self._lock:
                self._request = request
            raise


def _binding_for(request: LearnRequest, message: Any, port: str | None) -> dict[str, Any] | None:
    kind = getattr(message, "type", None)
    target, value = request.target, request.value
    common: dict[str, Any] = {"target": target, "channel": message.channel + 1 if hasattr(message, "channel") else None}
    if port:
        common["port"] = port
    if value is not None:
        common["value"] = value
    if kind == "control_change":
        if target in ACTIONS or value is not None:
            return {**common, "type": "cc", "number": message.control}
        return {**common, "type": "cc", "number": message.control, "mode": request.mode,
                "takeover": request.takeover}
    press_options = {} if target in ACTIONS or request.trigger is None else {"trigger": request.trigger}
    if kind == "note_on" and message.velocity > 0:
        if target == "pitch" and value is None:   # a key: the keyboard now plays pitch
            return {**common, **press_options, "type": "note"}
        if target in ACTIONS or target in CHOICES or value is not None:
            return {**common, **press_options, "type": "note", "number": message.note}
        return None
    if kind == "program_change" and target not in ACTIONS and (target in CHOICES or value is not None):
        return {**common, **press_options, "type": "program"}
    return None


def merge_learned(mapping: Mapping, new: Binding) -> tuple[Mapping, list[Binding]]:
    """The mapping with `new` added, minus the bindings it supersedes: those listening to the same
    message (a knob does one thing) and those with the same target, message type and value (a target
    has one knob). Returns (new mapping, removed bindings)."""
    def same_message(b: Binding) -> bool:
        return (b.type == new.type and b.number == new.number
                and (b.channel is None or new.channel is None or b.channel == new.channel)
                and (b.port is None or new.port is None or b.port.casefold() == new.port.casefold()))

    def same_role(b: Binding) -> bool:
        return b.target == new.target and b.type == new.type and b.value == new.value

    removed = [b for b in mapping.bindings if same_message(b) or same_role(b)]
    kept = [b for b in mapping.bindings if b not in removed]
    return Mapping(kept + [new], mapping.port), removed
