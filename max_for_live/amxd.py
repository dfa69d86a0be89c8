"""The `.amxd` container: how a Max for Live device wraps its patcher.

An unfrozen device is a flat run of chunks, each a 4-byte ASCII tag, a little-endian uint32 length
and that many bytes of data (no padding): ``ampf`` holds the device type (``aaaa`` audio effect,
``mmmm`` MIDI effect, ``iiii`` instrument), ``meta`` holds 4 bytes (little-endian 1 in devices
saved by Max), and ``ptch`` holds the patcher JSON followed by one NUL byte. A frozen device's
``ptch`` starts with ``mx@c`` instead and embeds its dependencies; this project keeps its device
unfrozen so that the JavaScript next to it stays the single source.
"""
from __future__ import annotations

import json
import struct
from dataclasses import dataclass

DEVICE_TYPES = {"aaaa": "audio effect", "mmmm": "MIDI effect", "iiii": "instrument"}
META_VALUE = 1
_HEADER = struct.Struct("<4sI")


@dataclass(frozen=True)
class Chunk:
    """One chunk of an `.amxd` file.

    Args:
        tag: the 4-character ASCII tag (``ampf``, ``meta``, ``ptch``).
        data: the chunk's payload, without tag or length.
    """

    tag: str
    data: bytes

    def to_bytes(self) -> bytes:
        tag = self.tag.encode("ascii")
        if len(tag) != 4:
            raise ValueError(f"chunk tag must be 4 ASCII characters, got {self.tag!r}")
        return _HEADER.pack(tag, len(self.data)) + self.data


@dataclass(frozen=True)
class Device:
    """An unpacked, unfrozen device: its type and its patcher document.

    Args:
        device_type: ``aaaa``, ``mmmm`` or ``iiii``.
        patcher: the parsed patcher JSON (``{"patcher": {...}}``).
        meta: the 4 bytes of the ``meta`` chunk.
    """

    device_type: str
    patcher: dict
    meta: bytes = struct.pack("<I", META_VALUE)


def patcher_bytes(patcher: dict) -> bytes:
    """The patcher as Max writes it: tab-indented JSON, UTF-8, then one NUL."""
    text = json.dumps(patcher, indent="\t", ensure_ascii=False, sort_keys=False)
    return text.encode("utf-8") + b"\0"


def pack(device_type: str, patcher: dict) -> bytes:
    """Bytes of an unfrozen `.amxd` holding `patcher` as a device of `device_type`."""
    if device_type not in DEVICE_TYPES:
        raise ValueError(f"unknown device type {device_type!r}; expected one of {', '.join(DEVICE_TYPES)}")
    chunks = [
        Chunk("ampf", device_type.encode("ascii")),
        Chunk("meta", struct.pack("<I", META_VALUE)),
        Chunk("ptch", patcher_bytes(patcher)),
    ]
    return b"".join(chunk.to_bytes() for chunk in chunks)


def read_chunks(data: bytes, source: str = "<bytes>") -> list[Chunk]:
    """Split `.amxd` bytes into chunks; raises ValueError naming `source` on a truncated file."""
    chunks, offset = [], 0
    while offset < len(data):
        if offset + _HEADER.size > len(data):
            raise ValueError(f"{source}: truncated chunk header at byte {offset}")
        raw_tag, size = _HEADER.unpack_from(data, offset)
        offset += _HEADER.size
        if offset + size > len(data):
            raise ValueError(f"{source}: chunk {raw_tag!r} at byte {offset - 8} claims {size} bytes, "
                             f"only {len(data) - offset} remain")
        try:
            tag = raw_tag.decode("ascii")
        except UnicodeDecodeError:
            raise ValueError(f"{source}: chunk tag {raw_tag!r} at byte {offset - 8} is not ASCII") from None
        chunks.append(Chunk(tag, data[offset:offset + size]))
        offset += size
    return chunks


def unpack(data: bytes, source: str = "<bytes>") -> Device:
    """Parse an unfrozen `.amxd`; raises ValueError naming what is missing or wrong."""
    chunks = {chunk.tag: chunk.data for chunk in read_chunks(data, source)}
    for tag in ("ampf", "meta", "ptch"):
        if tag not in chunks:
            raise ValueError(f"{source}: no {tag!r} chunk (found {', '.join(chunks) or 'none'})")
    device_type = chunks["ampf"].decode("ascii", errors="replace")
    if device_type not in DEVICE_TYPES:
        raise ValueError(f"{source}: unknown device type {device_type!r} in the 'ampf' chunk")
    if len(chunks["meta"]) != 4:
        raise ValueError(f"{source}: 'meta' chunk holds {len(chunks['meta'])} bytes, expected 4")
    body = chunks["ptch"]
    if body[:4] == b"mx@c":
        raise ValueError(f"{source}: the device is frozen; this reader only handles unfrozen devices")
    if not body.endswith(b"\0"):
        raise ValueError(f"{source}: the 'ptch' chunk does not end with a NUL byte")
    try:
        patcher = json.loads(body[:-1].decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as error:
        raise ValueError(f"{source}: the 'ptch' chunk is not patcher JSON ({error})") from None
    return Device(device_type, patcher, chunks["meta"])
