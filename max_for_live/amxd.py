"""The `.amxd` container: how a Max for Live device wraps its patcher.

An unfrozen device is a flat run of chunks, each a 4-byte ASCII tag, a little-endian uint32 length
and that many bytes of data (no padding): ``ampf`` holds the device type (``aaaa`` audio effect,
``mmmm`` MIDI effect, ``iiii`` instrument), ``meta`` holds 4 bytes (little-endian 1 in devices
saved by Max), and ``ptch`` holds the patcher JSON followed by one NUL byte.

A frozen device carries its dependencies inside ``ptch``, so that it loads wherever it is moved (Live's
Collect All and Save copies the `.amxd` alone). Its ``ptch`` payload is a container, all integers
big-endian:

    "mx@c", uint32 16 (header size), uint64 offset of the directory from the payload's start,
    the files one after another (the device's own patcher first, then each dependency),
    "dlst", uint32 size of the whole directory, then per file a "dire" record:
        "dire", uint32 record size, then fields, each tag + uint32 field size (header included) + data:
        "type" (4 characters: JSON, TEXT, ...), "fnam" (NUL-terminated, padded to 4 bytes),
        "sz32" size, "of32" offset, "vers" 0, "flag" (17 for the device itself, 0 otherwise),
        "mdat" modification time in seconds since 1904-01-01 (the HFS epoch).

That layout is what Max writes and what Ableton's `maxdiff` reader (github.com/Ableton/maxdevtools)
parses. This project writes the frozen device from its text sources, so the scripts in
`max_for_live/` stay the single source and the `.amxd` is a build product checked byte for byte.
"""
from __future__ import annotations

import json
import struct
from dataclasses import dataclass

DEVICE_TYPES = {"aaaa": "audio effect", "mmmm": "MIDI effect", "iiii": "instrument"}
META_VALUE = 1
FROZEN_META_VALUE = 7            # what Max writes in the 'meta' chunk of a frozen device
FROZEN_MAGIC = b"mx@c"
HFS_EPOCH_OFFSET = 2_082_844_800  # seconds from 1904-01-01 to 1970-01-01
DEVICE_FLAG = 17                 # the 'flag' field of the device's own patcher in the directory
_HEADER = struct.Struct("<4sI")
_BE32 = struct.Struct(">I")


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
    files: dict[str, bytes] | None = None   # a frozen device's embedded dependencies, by file name
    frozen: bool = False


@dataclass(frozen=True)
class Embedded:
    """One file inside a frozen device.

    Args:
        name: its file name, as the patch refers to it (``notono.js``).
        kind: the 4-character type Max records (``JSON`` for patchers, ``TEXT`` for scripts).
        data: its bytes.
    """

    name: str
    kind: str
    data: bytes


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


def _field(tag: str, data: bytes) -> bytes:
    return tag.encode("ascii") + _BE32.pack(8 + len(data)) + data


def _padded_name(name: str) -> bytes:
    raw = name.encode("utf-8") + b"\0"
    return raw + b"\0" * (-len(raw) % 4)


def frozen_payload(files: list[Embedded], modified: int) -> bytes:
    """The ``mx@c`` container holding `files` (the device's own patcher first), every file dated
    `modified` (Unix seconds), so that the same sources always give the same bytes."""
    header_size = 16
    body, records, offset = [], [], header_size
    for index, item in enumerate(files):
        kind = item.kind.encode("ascii")
        if len(kind) != 4:
            raise ValueError(f"{item.name}: file type must be 4 ASCII characters, got {item.kind!r}")
        fields = b"".join([
            _field("type", kind), _field("fnam", _padded_name(item.name)),
            _field("sz32", _BE32.pack(len(item.data))), _field("of32", _BE32.pack(offset)),
            _field("vers", _BE32.pack(0)), _field("flag", _BE32.pack(DEVICE_FLAG if index == 0 else 0)),
            _field("mdat", _BE32.pack(modified + HFS_EPOCH_OFFSET)),
        ])
        records.append(b"dire" + _BE32.pack(8 + len(fields)) + fields)
        body.append(item.data)
        offset += len(item.data)
    directory = b"".join(records)
    return (FROZEN_MAGIC + _BE32.pack(header_size) + struct.pack(">Q", offset) + b"".join(body)
            + b"dlst" + _BE32.pack(8 + len(directory)) + directory)


def pack_frozen(device_type: str, device_name: str, patcher: dict, dependencies: list[Embedded],
                modified: int) -> bytes:
    """Bytes of a frozen `.amxd` named `device_name`: `patcher` as the device, `dependencies` embedded."""
    if device_type not in DEVICE_TYPES:
        raise ValueError(f"unknown device type {device_type!r}; expected one of {', '.join(DEVICE_TYPES)}")
    device = Embedded(device_name, "JSON", patcher_bytes(patcher))
    chunks = [
        Chunk("ampf", device_type.encode("ascii")),
        Chunk("meta", struct.pack("<I", FROZEN_META_VALUE)),
        Chunk("ptch", frozen_payload([device, *dependencies], modified)),
    ]
    return b"".join(chunk.to_bytes() for chunk in chunks)


def read_frozen(payload: bytes, source: str = "<bytes>") -> list[tuple[str, str, bytes]]:
    """The files of a frozen ``ptch`` payload as (name, type, data), the device's patcher first."""
    def fail(what: str) -> ValueError:
        return ValueError(f"{source}: frozen device: {what}")

    if payload[:4] != FROZEN_MAGIC or len(payload) < 16:
        raise fail("no 'mx@c' header")
    directory_at = struct.unpack_from(">Q", payload, 8)[0]
    directory = payload[directory_at:]
    if directory[:4] != b"dlst" or _BE32.unpack_from(directory, 4)[0] != len(directory):
        raise fail(f"no 'dlst' directory of the recorded size at byte {directory_at}")
    files, at = [], 8
    while at < len(directory):
        if directory[at:at + 4] != b"dire":
            raise fail(f"expected a 'dire' record at directory byte {at}")
        size = _BE32.unpack_from(directory, at + 4)[0]
        record, fields, inner = directory[at + 8:at + size], {}, 0
        while inner + 8 <= len(record):
            tag = record[inner:inner + 4].decode("ascii", errors="replace")
            field_size = _BE32.unpack_from(record, inner + 4)[0]
            if field_size < 8:
                raise fail(f"field {tag!r} claims {field_size} bytes")
            fields[tag] = record[inner + 8:inner + field_size]
            inner += field_size
        missing = {"type", "fnam", "sz32", "of32"} - set(fields)
        if missing:
            raise fail(f"a 'dire' record lacks {', '.join(sorted(missing))}")
        offset, length = _BE32.unpack(fields["of32"])[0], _BE32.unpack(fields["sz32"])[0]
        name = fields["fnam"].rstrip(b"\0").decode("utf-8", errors="replace")
        if offset + length > directory_at:
            raise fail(f"{name!r} runs past the files into the directory")
        files.append((name, fields["type"].decode("ascii", errors="replace").strip(), payload[offset:offset + length]))
        at += size
    if not files:
        raise fail("the directory lists no files")
    return files


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
    """Parse an `.amxd`, frozen or not; raises ValueError naming what is missing or wrong."""
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
    files, frozen = None, body[:4] == FROZEN_MAGIC
    if frozen:
        embedded = read_frozen(body, source)
        body = embedded[0][2]
        files = {name: data for name, _kind, data in embedded[1:]}
    if not body.endswith(b"\0"):
        raise ValueError(f"{source}: the 'ptch' chunk does not end with a NUL byte")
    try:
        patcher = json.loads(body[:-1].decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as error:
        raise ValueError(f"{source}: the 'ptch' chunk is not patcher JSON ({error})") from None
    return Device(device_type, patcher, chunks["meta"], files, frozen)
