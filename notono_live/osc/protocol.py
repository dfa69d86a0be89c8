"""The OSC protocol of `notono-live serve`: one table of every address, its arguments and its replies.

Everything else is checked against this table: the server parses and validates incoming messages
with `parse_request`, `notono-live send` builds its sub-commands from it, and `docs/osc.md` is
generated from it (`python -m notono_live.osc.protocol --write docs/osc.md`; a test asserts they agree).

Rules that hold for every request:

- The first argument is a request id: an int the client chooses (>= 0). Every reply echoes it.
  Messages the daemon sends on its own (a render triggered from a MIDI controller) carry id -1.
- Replies go to the reply port announced with `/notono/hello` from the same sending socket
  (host and source port), never to the source port itself: a Max device receives on a separate
  `udpreceive`. A request from a sender that never said hello is logged and gets no reply.
- Every request ends with exactly one *final* message: the address listed as final for it
  (`/notono/done` for most), or `/notono/error request_id code message`. Other replies come before it.
- Only int (i), float (f) and string (s) arguments travel; audio always moves as file paths.
  A float argument also accepts an int. Trailing arguments that have a default may be left out.
- Some addresses end with a repeated group (a list of cells): any number of whole groups.
"""
from __future__ import annotations

import sys
from dataclasses import dataclass, field
from typing import Any

PROTOCOL_VERSION = 1
PREFIX = "/notono"
INT32_MIN, INT32_MAX = -2 ** 31, 2 ** 31 - 1   # OSC's 'i': every int the daemon sends or accepts
DAEMON_REQUEST_ID = -1      # id of messages the daemon sends on its own (MIDI-triggered renders)
MAX_DATAGRAM_BYTES = 16_384  # larger datagrams are refused with error `oversized`

_REQUIRED = object()
_TYPE_TAGS = {int: "i", float: "f", str: "s"}


@dataclass(frozen=True)
class Arg:
    """One OSC argument.

    Args:
        name: argument name used in docs, in `send` and in the parsed request.
        type: int, float or str.
        doc: what it means, in the user's words.
        default: value used when a trailing argument is left out; absent means required.
    """

    name: str
    type: type
    doc: str
    default: Any = _REQUIRED

    @property
    def required(self) -> bool:
        return self.default is _REQUIRED

    @property
    def tag(self) -> str:
        return _TYPE_TAGS[self.type]


@dataclass(frozen=True)
class Message:
    """One address of the protocol, a request (client to daemon) or a reply (daemon to client).

    Args:
        address: the OSC address.
        args: fixed arguments after the request id, in order.
        doc: one sentence on what it does.
        repeated: a group of arguments that may follow the fixed ones any number of times.
        replies: for requests, the reply addresses it may produce before its final message.
        final: for requests, the address of its final message on success.
        queued: for requests, whether it runs on the inference worker (may get `busy`).
        coalesced: for queued requests, whether a newer resampling request for the same sound replaces
            this one while it waits (error `superseded`).
    """

    address: str
    args: tuple[Arg, ...]
    doc: str
    repeated: tuple[Arg, ...] = ()
    replies: tuple[str, ...] = ()
    final: str = PREFIX + "/done"
    queued: bool = False
    coalesced: bool = False

    @property
    def signature(self) -> str:
        parts = ["request_id:i"] + [_arg_text(a) for a in self.args]
        if self.repeated:
            parts.append("[" + " ".join(_arg_text(a) for a in self.repeated) + "]...")
        return " ".join(parts)


def _arg_text(arg: Arg) -> str:
    text = f"{arg.name}:{arg.tag}"
    return text if arg.required else f"{text}={arg.default!r}"


# --- Shared argument definitions -------------------------------------------------------------

SOUND = Arg("sound", int, "sound id (from a /notono/sound reply)")
VERSION_OR_CURRENT = Arg("version", int, "version number; 0 means the sound's current version", 0)
LAYER = Arg("layer", str, "codemap: 'top' (32 rows x 4 columns, 1 s each) or 'bottom' (64 x 8, 0.5 s each)")
ROW = Arg("row", int, "lowest row of the region (row 0 = lowest frequency)")
COL = Arg("col", int, "first column of the region (column 0 = start of the sound)")
HEIGHT = Arg("height", int, "number of rows")
WIDTH = Arg("width", int, "number of columns")
PITCH_KEEP = Arg("pitch", int, "MIDI pitch 24-84 to condition on; -1 keeps the sound's pitch", -1)
FAMILY_KEEP = Arg("family", str, "instrument family to condition on; '' keeps the sound's family", "")
TEMPERATURE = Arg("temperature", float, "sampling temperature (> 0; the paper uses 1.0)", 1.0)
TOP_P = Arg("top_p", float, "nucleus sampling mass in (0, 1] (the paper uses 0.8)", 0.8)
SEED = Arg("seed", int, "random seed; -1 draws a fresh one", -1)
GUIDANCE = Arg("guidance", float, "classifier-free guidance scale 0-10: above 1 holds the sound closer to the "
                                  "pitch and family, 1 samples the conditioned prior alone (the paper); -1 uses "
                                  "the daemon's default (serve --guidance, else the model's)", -1.0)
CELL = (Arg("cell_row", int, "row of one cell"), Arg("cell_col", int, "column of one cell"))

SOUND_REPLY_ARGS = (
    Arg("sound", int, "sound id"),
    Arg("version", int, "version number, from 1"),
    Arg("wav", str, "absolute path of the version's WAV (24-bit, at the reply's sample_rate)"),
    Arg("png", str, "absolute path of its spectrogram with the codemap grid"),
    Arg("pitch", int, "MIDI pitch"),
    Arg("family", str, "instrument family"),
    Arg("label", str, "clip name, e.g. 'organ C3 #2 v4' (C3 = MIDI 60, as in Live)"),
    Arg("parent", int, "version it was made from; 0 for a new sound"),
    Arg("operation", str, "what made it: generate, encode, inpaint, bottom, set, erase, randomize, pack"),
    Arg("sample_rate", int, "sample rate of the WAV in Hz"),
)

# what a render may send before its final message: progress, each version, and what to know about it
RENDER_REPLIES = (PREFIX + "/progress", PREFIX + "/sound", PREFIX + "/notice")

# --- Requests --------------------------------------------------------------------------------

REQUESTS: dict[str, Message] = {m.address: m for m in [
    Message(PREFIX + "/hello", (
        Arg("reply_port", int, "UDP port on the sender's host where the client receives replies"),
        Arg("sample_rate", int, "sample rate of this client's rendered WAVs (8000-192000); also the rate of "
                                "MIDI-triggered renders; 0 keeps the daemon's current one", 0),
        Arg("client", str, "free-form client name for the log", ""),
    ), "Announce the reply port (required before anything else); answers with the daemon's state.",
        final=PREFIX + "/hello"),
    Message(PREFIX + "/bye", (), "Forget this client's reply port."),
    Message(PREFIX + "/ping", (), "Liveness check; answered even while a render runs.",
            final=PREFIX + "/pong"),
    Message(PREFIX + "/generate", (
        Arg("pitch", int, "MIDI pitch 24-84"),
        Arg("family", str, "instrument family: bass, brass, flute, guitar, keyboard, mallet, organ, "
                           "reed, string, synth_lead, vocal"),
        TEMPERATURE, TOP_P,
        Arg("variations", int, "number of new sounds to make (1-16)", 1),
        SEED,
        Arg("top_k", int, "keep only the k most likely codes; 0 disables", 0),
        GUIDANCE,
    ), "Generate new sounds from scratch: one /notono/sound per variation, each a new sound, the best on "
       "pitch of the daemon's `serve --candidates` draws (default 4).",
        replies=RENDER_REPLIES, queued=True),
    Message(PREFIX + "/encode", (
        Arg("path", str, "absolute path of a WAV, AIFF, FLAC or MP3 file (any rate or channel count; "
                         "trimmed or padded to 4 s, which a /notono/notice says); `notono-live send` makes a "
                         "relative path absolute against the caller's folder"),
        Arg("pitch", int, "MIDI pitch 24-84 to record for later edits; -1 estimates it from the file (pYIN), "
                          "which a /notono/notice says", -1),
        Arg("family", str, "instrument family to record for later edits", "keyboard"),
    ), "Encode an audio file into codemaps: a new sound whose version 1 is the reconstruction.",
        replies=RENDER_REPLIES, queued=True),
    Message(PREFIX + "/inpaint/region", (
        SOUND, LAYER, ROW, COL, HEIGHT, WIDTH, PITCH_KEEP, FAMILY_KEEP, TEMPERATURE, TOP_P, SEED, GUIDANCE,
    ), "Resample a rectangle of one codemap (a top region also resamples the bottom cells under it); "
       "a new version of the sound.",
        replies=RENDER_REPLIES, queued=True, coalesced=True),
    Message(PREFIX + "/inpaint/cells", (
        SOUND, LAYER,
        Arg("pitch", int, "MIDI pitch 24-84; -1 keeps the sound's pitch"),
        Arg("family", str, "instrument family; '' keeps the sound's family"),
        Arg("temperature", float, "sampling temperature (> 0)"),
        Arg("top_p", float, "nucleus sampling mass in (0, 1]"),
        Arg("seed", int, "random seed; -1 draws a fresh one"),
    ), "Resample a free-form set of cells of one codemap; a new version.",
        repeated=CELL, replies=RENDER_REPLIES, queued=True, coalesced=True),
    Message(PREFIX + "/bottom/regenerate", (
        SOUND, PITCH_KEEP, FAMILY_KEEP, TEMPERATURE, TOP_P, SEED, GUIDANCE,
    ), "Keep the top map and resample the whole bottom map: same envelope, new timbre; a new version, "
       "picked on pitch from the daemon's `serve --candidates` draws (default 4; one for a model that "
       "picks on previews, whose top map carries the pitch).",
        replies=RENDER_REPLIES, queued=True, coalesced=True),
    Message(PREFIX + "/codemap/set", (SOUND, LAYER),
            "Set codemap cells to given codes and render; a new version.",
            repeated=(Arg("cell_row", int, "row"), Arg("cell_col", int, "column"),
                      Arg("code", int, "code 0-511 (below the model's codebook size)")),
            replies=RENDER_REPLIES, queued=True),
    Message(PREFIX + "/codemap/get", (SOUND, VERSION_OR_CURRENT),
            "Read a version's codemaps: one /notono/codemap/row per row, top rows first, "
            "then /notono/done with the number of rows (96).",
            replies=(PREFIX + "/codemap/row",)),
    Message(PREFIX + "/region/erase", (
        SOUND, LAYER, ROW, COL, HEIGHT, WIDTH,
        Arg("amount_db", float, "how much to lower the level in the region, in dB (0-120)", 24.0),
    ), "Lower the level inside a region, then re-encode it (cells outside the region are kept); a new "
       "version. The codes only approximate a quieter region, so the daemon re-encodes up to 3 times to get "
       "the decoded region within 3 dB of the amount; a /notono/notice gives the drop reached.",
        replies=RENDER_REPLIES, queued=True),
    Message(PREFIX + "/region/randomize", (SOUND, LAYER, ROW, COL, HEIGHT, WIDTH, SEED),
            "Fill a region with uniformly random codes; a new version.",
            replies=RENDER_REPLIES, queued=True),
    Message(PREFIX + "/sound/undo", (SOUND,),
            "Step back to the parent of the current version; replies with that version's /notono/sound.",
            replies=(PREFIX + "/sound",)),
    Message(PREFIX + "/sound/redo", (SOUND,),
            "Step forward again after undo; replies with that version's /notono/sound.",
            replies=(PREFIX + "/sound",)),
    Message(PREFIX + "/sound/checkout", (SOUND, Arg("version", int, "version number to make current")),
            "Make an earlier version current (further edits branch from it).",
            replies=(PREFIX + "/sound",)),
    Message(PREFIX + "/sound/get", (SOUND, VERSION_OR_CURRENT),
            "Describe one version (its files, pitch, family, label).", replies=(PREFIX + "/sound",)),
    Message(PREFIX + "/sound/select", (SOUND,),
            "Make this the current sound that MIDI-triggered actions edit."),
    Message(PREFIX + "/sound/find", (
        Arg("path", str, "absolute path of an audio file: a render of this daemon, or a copy of one"),
    ), "Find the version a file is (by its path, else by its content, so a copy made by Live's Collect All "
       "and Save is found too), make it current and its sound this client's; not_found for any other file.",
        replies=(PREFIX + "/sound",)),
    Message(PREFIX + "/sound/list", (),
            "List every sound: one /notono/sound/item each, then /notono/done with the count.",
            replies=(PREFIX + "/sound/item",)),
    Message(PREFIX + "/sound/versions", (SOUND,),
            "List a sound's versions: one /notono/version/item each, then /notono/done.",
            replies=(PREFIX + "/version/item",)),
    Message(PREFIX + "/pack", (
        SOUND,
        Arg("pitch_low", int, "lowest MIDI pitch (24-84)"),
        Arg("pitch_high", int, "highest MIDI pitch (24-84, >= pitch_low)"),
        Arg("step", int, "semitones between pitches (1-24)", 1),
        SEED,
    ), "Sample pack: the sound transposed to each pitch of a range, one new sound per pitch. The top map "
       "carries the pitch, so for each pitch it is re-encoded from the sound shifted there and the bottom "
       "is redrawn under it at the new pitch; the best on pitch of the draws is kept, and a /notono/notice "
       "says when even that one misses the pitch.",
        replies=RENDER_REPLIES, queued=True),
    Message(PREFIX + "/output/folder", (
        Arg("path", str, "folder for rendered files (e.g. the Live project's Samples folder); must lie "
                         "inside an allowed folder; '' restores the default"),
    ), "Choose where new WAVs and PNGs are written.", replies=(PREFIX + "/output/folder",)),
    Message(PREFIX + "/output/project", (
        Arg("set_path", str, "absolute path of the saved Live set (.als) the client is in; '' returns the "
                             "client to the daemon's output folder"),
    ), "Write this client's renders into its Live project: Samples/NOTONO in the folder of the set file, "
       "which must exist (Collect All and Save then has nothing to copy, and moving the project keeps them). "
       "Other clients are not affected.", replies=(PREFIX + "/output/folder",)),
    Message(PREFIX + "/preview", (SOUND, VERSION_OR_CURRENT),
            "Play a version on the daemon machine's audio output."),
    Message(PREFIX + "/midi/learn", (
        Arg("target", str, "control to bind the next CC or note to: region_x, region_y, region_width, "
                           "region_height, layer, temperature, pitch, family, or an action: generate, "
                           "inpaint, new_bottom, undo, redo"),
    ), "Arm MIDI learn; the next CC or note received binds to the target."),
    Message(PREFIX + "/midi/cancel", (), "Disarm MIDI learn."),
    Message(PREFIX + "/midi/mappings", (),
            "List MIDI mappings: one /notono/midi/mapping each, then /notono/done.",
            replies=(PREFIX + "/midi/mapping",)),
]}

# --- Replies ---------------------------------------------------------------------------------

REPLIES: dict[str, Message] = {m.address: m for m in [
    Message(PREFIX + "/hello", (
        Arg("version", str, "notono-live version"),
        Arg("model", str, "model name"),
        Arg("device", str, "torch device the model runs on"),
        Arg("queue_length", int, "requests waiting for the inference worker"),
        Arg("output_folder", str, "absolute path where new files go"),
        Arg("sample_rate", int, "sample rate of this client's rendered WAVs"),
        Arg("protocol", int, "protocol version"),
    ), "Answer to hello."),
    Message(PREFIX + "/pong", (
        Arg("queue_length", int, "requests waiting for the inference worker"),
        Arg("busy", int, "1 while a render runs, or the pitch check that follows a generated sound's reply"),
    ), "Answer to ping."),
    Message(PREFIX + "/progress", (
        Arg("fraction", float, "0.0-1.0"),
        Arg("stage", str, "'queued', or what it waits for: 'queued (1 running ahead)', 'queued (1 running and "
                          "N waiting ahead)'; then reading, encoding, transposing, sampling, decoding, writing; "
                          "prefixed with 'pitch N: ' during a pack"),
    ), "Progress of a queued request."),
    Message(PREFIX + "/sound", SOUND_REPLY_ARGS, "A rendered version, ready for a clip slot."),
    Message(PREFIX + "/notice", (
        Arg("sound", int, "sound id"), Arg("version", int, "version number"),
        Arg("kind", str, "what it is about: pitch_estimated, pitch_missed, transposed, trimmed, padded, "
                         "erased, silent"),
        Arg("message", str, "what happened, for a person"),
    ), "Something to know about the version of the /notono/sound just before it: an estimated pitch, a "
       "pitch change that missed, a file trimmed or padded, the drop an erase reached, a render too quiet "
       "to level. One exception: the pitch check of a generated sound or of a new bottom at the same "
       "pitch runs after the reply, so its pitch_missed notice comes after the request's /notono/done "
       "(with the request's id), about 0.1 s later."),
    Message(PREFIX + "/codemap/row", (
        Arg("sound", int, "sound id"), Arg("version", int, "version number"),
        Arg("layer", str, "top or bottom"), Arg("row", int, "row number (0 = lowest frequency)"),
    ), "One row of a codemap: the codes of its columns follow (4 for top, 8 for bottom).",
        repeated=(Arg("code", int, "code 0-511 (below the model's codebook size)"),)),
    Message(PREFIX + "/sound/item", (
        Arg("sound", int, "sound id"), Arg("current", int, "current version"),
        Arg("versions", int, "number of versions"), Arg("pitch", int, "MIDI pitch of the current version"),
        Arg("family", str, "family of the current version"), Arg("label", str, "clip name of the current version"),
        Arg("wav", str, "WAV path of the current version"),
    ), "One sound in a list."),
    Message(PREFIX + "/version/item", (
        Arg("sound", int, "sound id"), Arg("version", int, "version number"),
        Arg("parent", int, "parent version; 0 for none"), Arg("operation", str, "what made it"),
        Arg("pitch", int, "MIDI pitch"), Arg("family", str, "family"), Arg("label", str, "clip name"),
        Arg("wav", str, "WAV path"), Arg("png", str, "PNG path"), Arg("current", int, "1 if current"),
    ), "One version in a list."),
    Message(PREFIX + "/output/folder", (Arg("path", str, "absolute output folder now in use"),),
            "Answer to /notono/output/folder and /notono/output/project."),
    Message(PREFIX + "/midi/mapping", (
        Arg("target", str, "control or action"), Arg("port", str, "MIDI port name"),
        Arg("channel", int, "MIDI channel 1-16; 0 for any"), Arg("kind", str, "cc, note or program"),
        Arg("number", int, "CC or note number; -1 for any"),
    ), "One MIDI mapping; also sent with request id -1 to every client when a learn completes."),
    Message(PREFIX + "/done", (Arg("count", int, "number of data replies sent before it"),),
            "Final message of a successful request."),
    Message(PREFIX + "/error", (
        Arg("code", str, "one of the error codes below"), Arg("message", str, "what was wrong, for a person"),
    ), "Final message of a failed request (request id -1 when it could not be read)."),
]}

ERROR_CODES: dict[str, str] = {
    "bad_request": "the message could not be read as a request: missing, extra or wrongly typed arguments",
    "unknown_address": "no such address",
    "bad_value": "an argument is out of range (pitch, family, region, temperature, ...)",
    "not_found": "unknown sound or version, or nothing to undo/redo",
    "bad_file": "the audio file is missing or not audio",
    "forbidden_path": "the folder is outside the allowed folders",
    "busy": "the inference queue is full; try again",
    "superseded": "a newer inpaint or bottom regeneration of the same sound (or a newer press of the same MIDI "
                  "action) replaced this one while it waited",
    "oversized": "the datagram is larger than MAX_DATAGRAM_BYTES",
    "malformed": "the datagram is not OSC",
    "write_failed": "a file could not be written (disk full, output folder removed...); nothing half-written is left",
    "preview_unavailable": "no audio output on the daemon machine",
    "midi_unavailable": "no MIDI system or port on the daemon machine",
    "internal": "a bug in the daemon; the message says what failed (the daemon keeps running)",
}


# --- Parsing ---------------------------------------------------------------------------------

class ProtocolError(Exception):
    """A request that cannot be served; becomes `/notono/error request_id code message`."""

    def __init__(self, code: str, message: str, request_id: int = DAEMON_REQUEST_ID) -> None:
        if code not in ERROR_CODES:
            raise AssertionError(f"undocumented error code {code}")
        super().__init__(message)
        self.code = code
        self.message = message
        self.request_id = request_id


@dataclass
class Request:
    """A parsed, type-checked request.

    Args:
        spec: its entry in `REQUESTS`.
        request_id: the client's id.
        values: fixed arguments by name, defaults filled in.
        groups: the repeated groups, each a tuple.
    """

    spec: Message
    request_id: int
    values: dict[str, Any] = field(default_factory=dict)
    groups: list[tuple] = field(default_factory=list)


def _coerce(arg: Arg, value: Any, position: int, address: str, request_id: int) -> Any:
    # Max sends ints for float boxes that hold whole numbers, so a float accepts an int; nothing
    # else is converted (bool is an OSC T/F tag, not an int).
    if arg.type is float and isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    if isinstance(value, arg.type) and not isinstance(value, bool):
        if arg.type is int and not INT32_MIN <= value <= INT32_MAX:
            # an OSC 'h' (int64) arrives as a Python int; replies and Max only carry 32-bit ints
            raise ProtocolError("bad_value", f"{address}: argument {position} ({arg.name}) = {value} does not "
                                f"fit a 32-bit int", request_id)
        if arg.type is float and value != value:  # NaN
            raise ProtocolError("bad_value", f"{address}: argument {position} ({arg.name}) is NaN", request_id)
        return value
    raise ProtocolError(
        "bad_request",
        f"{address}: argument {position} ({arg.name}) must be {arg.type.__name__}, "
        f"got {type(value).__name__} {value!r:.40}", request_id)


def parse_request(address: str, args: list[Any]) -> Request:
    """Check an incoming message against the table; raises ProtocolError naming what is wrong."""
    request_id = DAEMON_REQUEST_ID
    if args and isinstance(args[0], int) and not isinstance(args[0], bool) and INT32_MIN <= args[0] <= INT32_MAX:
        request_id = args[0]
    spec = REQUESTS.get(address)
    if spec is None:
        raise ProtocolError("unknown_address", f"unknown address {address!r:.80}", request_id)
    if not args:
        raise ProtocolError("bad_request", f"{address}: missing request_id (an int) as first argument")
    if not (isinstance(args[0], int) and not isinstance(args[0], bool)):
        raise ProtocolError("bad_request", f"{address}: request_id must be an int, got {args[0]!r:.40}")
    if args[0] > INT32_MAX:
        # it could not be echoed: every reply carries it as an OSC int32
        raise ProtocolError("bad_request", f"{address}: request_id {args[0]} does not fit a 32-bit int "
                                           f"(at most {INT32_MAX})")
    if args[0] < 0:
        raise ProtocolError("bad_request", f"{address}: request_id must be >= 0, got {args[0]}")
    rest = list(args[1:])
    values: dict[str, Any] = {}
    for i, arg in enumerate(spec.args):
        if i < len(rest):
            values[arg.name] = _coerce(arg, rest[i], i + 1, address, request_id)
        elif arg.required:
            raise ProtocolError("bad_request", f"{address}: missing argument {i + 1} ({arg.name}); "
                                               f"expected {spec.signature}", request_id)
        else:
            values[arg.name] = arg.default
    extra = rest[len(spec.args):]
    groups: list[tuple] = []
    if spec.repeated:
        size = len(spec.repeated)
        if len(extra) % size:
            raise ProtocolError("bad_request", f"{address}: the list after the fixed arguments must hold "
                                               f"whole groups of {size} "
                                               f"({' '.join(a.name for a in spec.repeated)}), got "
                                               f"{len(extra)} values", request_id)
        for start in range(0, len(extra), size):
            groups.append(tuple(
                _coerce(a, extra[start + j], len(spec.args) + start + j + 1, address, request_id)
                for j, a in enumerate(spec.repeated)))
    elif extra:
        raise ProtocolError("bad_request", f"{address}: {len(extra)} extra argument(s) {extra!r:.60}; "
                                           f"expected {spec.signature}", request_id)
    return Request(spec, request_id, values, groups)


def to_osc_value(value: Any) -> int | float | str:
    """Cast numpy scalars and paths to the three OSC types the protocol uses."""
    if isinstance(value, bool):
        return int(value)
    if isinstance(value, (int, float, str)):
        return value
    if hasattr(value, "item"):  # numpy scalar
        return to_osc_value(value.item())
    return str(value)


# --- Documentation ---------------------------------------------------------------------------

def _message_markdown(msg: Message, request: bool) -> list[str]:
    lines = [f"### `{msg.address}`", "", msg.doc, ""]
    args = ((Arg("request_id", int, "client-chosen id, echoed by every reply"),) + msg.args)
    lines += ["| # | argument | type | default | meaning |", "|---|---|---|---|---|"]
    for i, arg in enumerate(args):
        default = "" if arg.required else f"`{arg.default!r}`"
        lines.append(f"| {i} | `{arg.name}` | {arg.tag} | {default} | {arg.doc} |")
    for arg in msg.repeated:
        lines.append(f"| … | `{arg.name}` | {arg.tag} | repeated | {arg.doc} |")
    lines.append("")
    if request:
        replies = ", ".join(f"`{r}`" for r in msg.replies) or "none"
        lines.append(f"Replies before the final one: {replies}. Final: `{msg.final}`."
                     + (" Runs on the inference worker (may get `busy`)." if msg.queued else "")
                     + (" A newer inpaint or bottom regeneration of the same sound replaces it while it waits "
                        "(`superseded`)." if msg.coalesced else ""))
        lines.append("")
    return lines


def render_markdown() -> str:
    """The generated part of docs/osc.md."""
    lines = [
        "<!-- generated by `python -m notono_live.osc.protocol`; edit notono_live/osc/protocol.py -->",
        f"Protocol version {PROTOCOL_VERSION}. Datagrams larger than {MAX_DATAGRAM_BYTES} bytes are refused.",
        "",
        "## Requests (client to daemon)",
        "",
    ]
    for msg in REQUESTS.values():
        lines += _message_markdown(msg, True)
    lines += ["## Replies (daemon to client)", ""]
    for msg in REPLIES.values():
        lines += _message_markdown(msg, False)
    lines += ["## Error codes", "", "| code | meaning |", "|---|---|"]
    lines += [f"| `{code}` | {meaning} |" for code, meaning in ERROR_CODES.items()]
    return "\n".join(lines) + "\n"


GENERATED_BEGIN = "<!-- BEGIN GENERATED PROTOCOL TABLE -->"
GENERATED_END = "<!-- END GENERATED PROTOCOL TABLE -->"


def generated_section(doc_text: str) -> str:
    """The text between the generated-table markers of docs/osc.md."""
    start = doc_text.index(GENERATED_BEGIN) + len(GENERATED_BEGIN)
    end = doc_text.index(GENERATED_END)
    return doc_text[start:end].strip("\n") + "\n"


def update_docs(path: str) -> None:
    """Replace the generated section of a docs file (docs/osc.md) with the current table."""
    with open(path, encoding="utf-8") as handle:
        text = handle.read()
    start = text.index(GENERATED_BEGIN) + len(GENERATED_BEGIN)
    end = text.index(GENERATED_END)
    with open(path, "w", encoding="utf-8") as handle:
        handle.write(text[:start] + "\n" + render_markdown() + text[end:])


if __name__ == "__main__":
    # `python -m notono_live.osc.protocol` prints the table; `... --write docs/osc.md` updates the file
    if len(sys.argv) == 3 and sys.argv[1] == "--write":
        update_docs(sys.argv[2])
    else:
        sys.stdout.write(render_markdown())
