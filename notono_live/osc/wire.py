"""OSC datagrams in and out, with nothing heavier than python-osc and the standard library.

The daemon and every client share these. `notono-live send` imports only this, the protocol table and
the client, so a call from the shell starts in a few tens of milliseconds (no torch, numpy or
librosa).
"""
from __future__ import annotations

import struct
from typing import Any, Iterable

from pythonosc.osc_message import OscMessage
from pythonosc.osc_message_builder import OscMessageBuilder

from . import protocol as p

__all__ = ["encode_message", "decode_message", "shortest_float32"]


def encode_message(address: str, args: Iterable[Any]) -> bytes:
    """One OSC message; ints go as 'i', floats as 'f', everything else as 's'."""
    builder = OscMessageBuilder(address=address)
    for value in args:
        value = p.to_osc_value(value)
        builder.add_arg(value, "i" if isinstance(value, int) else "f" if isinstance(value, float) else "s")
    return builder.build().dgram


def shortest_float32(value: float) -> float:
    """The shortest decimal that is the same 32-bit float as `value`: an OSC 'f' of 0.1 arrives as
    0.10000000149011612 in Python, and this gives back 0.1. Non-finite values pass unchanged."""
    if value != value or value in (float("inf"), float("-inf")):
        return value
    packed = struct.pack(">f", value)
    for digits in range(1, 10):
        candidate = float(f"{value:.{digits}g}")
        if struct.pack(">f", candidate) == packed:
            return candidate
    return value


def decode_message(data: bytes) -> tuple[str, list[Any]]:
    """(address, args) of one OSC message datagram, floats given as their shortest decimal."""
    message = OscMessage(data)
    return message.address, [shortest_float32(a) if isinstance(a, float) else a for a in message.params]
