"""The OSC server: moves datagrams, checks them against the protocol table, hands typed requests to
the engine, and sends replies to each client's announced reply port.

It reads the socket itself (not python-osc's socketserver classes, which drop datagrams over 8 KiB
without a word) so that an oversized or malformed datagram is answered with `/notono/error` when the
sender is known and logged otherwise. Quick requests (ping, lists, undo, codemap reads) are answered
on the receiving thread; renders go to the `InferenceWorker`, so a ping is answered during a render.
"""
from __future__ import annotations

import logging
import socket
import threading
import time
from collections import OrderedDict
from concurrent.futures import ThreadPoolExecutor
from ipaddress import ip_address
from pathlib import Path
from typing import Any, Callable, Iterable

from pythonosc.osc_bundle import OscBundle
from pythonosc.osc_message import OscMessage

from .. import __version__
from ..codemaps import rectangle_mask
from ..constants import check_pitch
from ..daemon.worker import Busy, InferenceWorker, Job
from ..engine.engine import AudioFileError, Engine
from ..engine.store import VersionRecord
from . import protocol as p
from .wire import encode_message

log = logging.getLogger("notono_live.osc")

Address = tuple[str, int]
MAX_CLIENTS = 64


def error_code_for(error: BaseException) -> tuple[str, str]:
    """Map an engine exception to a protocol error code and a message for a person."""
    if isinstance(error, p.ProtocolError):
        return error.code, error.message
    if isinstance(error, AudioFileError):
        return "bad_file", str(error)
    if isinstance(error, (PermissionError, NotADirectoryError)):
        return "forbidden_path", str(error)
    if isinstance(error, (FileNotFoundError, IsADirectoryError)):
        return "bad_file", str(error)
    if isinstance(error, KeyError):
        return "not_found", str(error.args[0]) if error.args else "not found"
    if isinstance(error, LookupError):
        return "not_found", str(error)
    if isinstance(error, ValueError):
        return "bad_value", str(error)
    if isinstance(error, OSError):
        return "write_failed", f"{error.strerror or error}: {error.filename or ''}".strip(": ")
    return "internal", f"{type(error).__name__}: {error}"


def sound_reply_args(record: VersionRecord) -> list[Any]:
    return [record.sound, record.version, record.wav, record.png, record.pitch, record.family, record.label,
            record.parent, record.operation, record.sample_rate]


MAX_BUNDLE_DEPTH = 8   # bundles inside bundles; deeper ones are refused as malformed
_BUNDLE_HEADER = 16    # "#bundle\0" and the 8-byte timetag


def check_bundle_layout(data: bytes, depth: int = 1) -> None:
    """Raise ValueError unless `data` is a bundle whose elements are all whole OSC messages or
    bundles (nested at most MAX_BUNDLE_DEPTH deep), each with a size that fits the datagram."""
    if depth > MAX_BUNDLE_DEPTH:
        raise ValueError(f"bundles nested more than {MAX_BUNDLE_DEPTH} deep")
    if len(data) < _BUNDLE_HEADER or not data.startswith(b"#bundle\x00"):
        raise ValueError("truncated bundle header")
    offset = _BUNDLE_HEADER
    while offset < len(data):
        if offset + 4 > len(data):
            raise ValueError(f"truncated bundle element size at byte {offset}")
        size = int.from_bytes(data[offset:offset + 4], "big", signed=True)
        start, offset = offset + 4, offset + 4 + size
        if size <= 0 or size % 4 or offset > len(data):
            raise ValueError(f"bundle element at byte {start - 4} has a bad size ({size})")
        element = data[start:offset]
        if element.startswith(b"#bundle"):
            check_bundle_layout(element, depth + 1)
        elif not element.startswith(b"/"):
            raise ValueError(f"bundle element at byte {start - 4} is neither a message nor a bundle")


def _first_hello_port(address: str, args: list[Any], sender: Address) -> Address | None:
    """Where to answer a refused hello from a client with no reply port yet: the port it names, if usable."""
    port = args[1] if address == "/notono/hello" and len(args) > 1 else None
    if isinstance(port, int) and not isinstance(port, bool) and 1 <= port <= 65535:
        return (sender[0], port)
    return None


def _bundle_messages(bundle: OscBundle):
    # timetags are ignored on purpose: python-osc's dispatcher would sleep until them
    for content in bundle:
        if isinstance(content, OscBundle):
            yield from _bundle_messages(content)
        else:
            yield content.address, list(content.params)


class OscServer:
    """Serves the protocol on one UDP socket.

    Args:
        engine: does the work.
        worker: runs renders one at a time.
        host: interface to listen on (127.0.0.1 by default).
        port: UDP port; 0 picks a free one (see `port` after construction).
        allow: client addresses allowed besides loopback; only meaningful with a non-loopback host.
        model_name: reported by hello.
        device: reported by hello.
        midi: a `notono_live.midi.MidiHandle`, or None when MIDI is unavailable.
    """

    def __init__(self, engine: Engine, worker: InferenceWorker, host: str = "127.0.0.1", port: int = 7400,
                 allow: Iterable[str] = (), model_name: str = "", device: str = "cpu", midi: Any = None) -> None:
        self.engine = engine
        self.worker = worker
        self.model_name = model_name
        self.device = device
        self.midi = midi
        self.midi_problem = "MIDI is not available on this machine (see the daemon's log)"
        self.allowed = {str(ip_address(a)) for a in allow}
        self.clients: OrderedDict[Address, Address] = OrderedDict()   # sender -> reply address
        self.client_rates: dict[Address, int] = {}   # sender -> sample rate its hello asked for
        self.client_folders: dict[Address, Path] = {}   # sender -> its Live project's Samples/NOTONO
        # sound -> the client that last rendered, edited or selected it: the device whose sound it is,
        # which alone gets the MIDI-triggered renders of that sound (one clip, not one per device)
        self.owners: dict[int, Address] = {}
        self.last_heard: dict[Address, float] = {}   # sender -> when its last message came (monotonic)
        self._last_left: float | None = None          # when the last client said bye
        self._clients_lock = threading.Lock()
        family = socket.AF_INET6 if ":" in host else socket.AF_INET
        self.sock = socket.socket(family, socket.SOCK_DGRAM)
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 1 << 20)
        self.sock.bind((host, port))
        self.sock.settimeout(0.25)
        self.host, self.port = self.sock.getsockname()[:2]
        self._stop = threading.Event()
        # the pitch checks owed by generated sounds and new bottoms, run after their replies went out
        # (Engine.check_pitch), one at a time beside the inference worker
        self._checks = ThreadPoolExecutor(max_workers=1, thread_name_prefix="notono-pitch-check")
        self._checks_owed = 0   # jobs of checks submitted and not yet finished (for ping's busy)
        self._checks_lock = threading.Lock()
        self._drop_counts: dict[str, int] = {}
        self.handlers: dict[str, Callable[[p.Request, Address], None]] = {
            "/notono/hello": self._hello, "/notono/bye": self._bye, "/notono/ping": self._ping,
            "/notono/generate": self._generate, "/notono/encode": self._encode,
            "/notono/inpaint/region": self._inpaint_region, "/notono/inpaint/cells": self._inpaint_cells,
            "/notono/bottom/regenerate": self._bottom, "/notono/codemap/set": self._codemap_set,
            "/notono/codemap/get": self._codemap_get, "/notono/region/erase": self._erase,
            "/notono/region/randomize": self._randomize, "/notono/sound/undo": self._undo,
            "/notono/sound/redo": self._redo, "/notono/sound/checkout": self._checkout,
            "/notono/sound/get": self._sound_get, "/notono/sound/select": self._select,
            "/notono/sound/find": self._find, "/notono/sound/list": self._sound_list,
            "/notono/sound/versions": self._versions,
            "/notono/pack": self._pack, "/notono/output/folder": self._output_folder,
            "/notono/output/project": self._output_project,
            "/notono/preview": self._preview, "/notono/midi/learn": self._midi_learn,
            "/notono/midi/cancel": self._midi_cancel, "/notono/midi/mappings": self._midi_mappings,
        }
        missing = set(p.REQUESTS) ^ set(self.handlers)
        if missing:
            raise AssertionError(f"handlers and protocol table disagree on {sorted(missing)}")

    # --- socket loop ------------------------------------------------------------------------

    def serve_forever(self) -> None:
        while not self._stop.is_set():
            try:
                data, sender = self.sock.recvfrom(65536)
            except socket.timeout:
                continue
            except OSError as error:
                if self._stop.is_set():
                    break
                log.warning("receive failed: %s", error)   # e.g. ICMP port unreachable echoes on some OSes
                continue
            try:
                self.handle_datagram(data, (sender[0], sender[1]))
            except Exception:   # the loop must outlive any bug in a handler
                log.exception("unexpected failure handling a datagram from %s:%s", *sender[:2])

    def stop(self) -> None:
        self._stop.set()

    def close(self) -> None:
        self._stop.set()
        self._checks.shutdown(wait=False, cancel_futures=True)
        self.sock.close()

    def _sender_allowed(self, host: str) -> bool:
        try:
            address = ip_address(host)
        except ValueError:
            return False
        if address.is_loopback or getattr(address, "ipv4_mapped", None) and address.ipv4_mapped.is_loopback:
            return True
        return str(address) in self.allowed or (getattr(address, "ipv4_mapped", None) is not None
                                                and str(address.ipv4_mapped) in self.allowed)

    def _log_drop(self, key: str, text: str) -> None:
        # a flood of junk must not flood the log: log the 1st, 2nd, 4th, 8th... of each kind
        n = self._drop_counts.get(key, 0) + 1
        self._drop_counts[key] = n
        if len(self._drop_counts) > 1024:
            self._drop_counts.clear()
        if n & (n - 1) == 0 or n % 1000 == 0:
            log.warning("%s (seen %d times)", text, n)

    def handle_datagram(self, data: bytes, sender: Address) -> None:
        if not self._sender_allowed(sender[0]):
            self._log_drop(f"deny:{sender[0]}", f"dropped a datagram from {sender[0]}: not in the allow-list")
            return
        if len(data) > p.MAX_DATAGRAM_BYTES:
            self._reply_error(sender, p.DAEMON_REQUEST_ID, "oversized",
                              f"datagram of {len(data)} bytes is larger than {p.MAX_DATAGRAM_BYTES}")
            return
        try:
            messages = list(self._messages(data))
        except Exception as error:   # python-osc raises several types on junk
            self._reply_error(sender, p.DAEMON_REQUEST_ID, "malformed", f"not an OSC packet: {error}")
            return
        for address, args in messages:
            self.handle_message(address, args, sender)

    def _messages(self, data: bytes):
        if OscBundle.dgram_is_bundle(data):
            # python-osc parses nested bundles recursively on its own and only logs (without our rate
            # limit) an element it cannot identify, so the layout is checked on the raw bytes first
            check_bundle_layout(data)
            yield from _bundle_messages(OscBundle(data))
        elif OscMessage.dgram_is_message(data):
            message = OscMessage(data)
            yield message.address, list(message.params)
        else:
            raise ValueError("neither an OSC message nor a bundle")

    def handle_message(self, address: str, args: list[Any], sender: Address) -> None:
        # a client's first hello that is refused is answered on the reply port it names
        fallback = _first_hello_port(address, args, sender)
        try:
            request = p.parse_request(address, args)
        except p.ProtocolError as error:
            self._reply_error(sender, error.request_id, error.code, error.message, fallback)
            return
        with self._clients_lock:
            if sender in self.clients or address == "/notono/hello":
                self.last_heard[sender] = time.monotonic()
        if address != "/notono/hello" and self._reply_address(sender) is None:
            self._log_drop(f"nohello:{sender}", f"request {address} from {sender[0]}:{sender[1]}, which has not "
                                                f"said /notono/hello; no reply port known")
            return
        try:
            self.handlers[address](request, sender)
        except Exception as error:
            code, message = error_code_for(error)
            if code == "internal":
                log.exception("%s failed", address)
            self._reply_error(sender, request.request_id, code, message, fallback)

    # --- replies ----------------------------------------------------------------------------

    def _reply_address(self, sender: Address) -> Address | None:
        with self._clients_lock:
            return self.clients.get(sender)

    def send(self, sender: Address | None, address: str, *args: Any) -> None:
        """Send a reply to a client (by its sending address), or to every client when sender is None."""
        try:
            data = encode_message(address, args)
        except Exception:
            log.exception("could not encode reply %s", address)
            return
        with self._clients_lock:
            targets = list(self.clients.values()) if sender is None else [self.clients.get(sender)]
        for target in targets:
            if target is not None:
                self._send_bytes(data, target, address)

    def _send_to(self, target: Address, address: str, *args: Any) -> None:
        """Send one message to an explicit address (a client not yet registered)."""
        try:
            data = encode_message(address, args)
        except Exception:
            log.exception("could not encode reply %s", address)
            return
        self._send_bytes(data, target, address)

    def _send_bytes(self, data: bytes, target: Address, address: str) -> None:
        try:
            self.sock.sendto(data, target)
        except OSError as error:
            log.warning("could not send %s to %s:%s: %s", address, target[0], target[1], error)

    def _reply_error(self, sender: Address, request_id: int, code: str, message: str,
                     fallback: Address | None = None) -> None:
        """/notono/error to the sender's reply port; to `fallback` while it has none; else only logged."""
        registered = self._reply_address(sender) is not None
        if not registered and fallback is None:
            self._log_drop(f"err:{code}:{sender[0]}", f"{code} from {sender[0]}:{sender[1]} (no reply port): {message}")
            return
        log.info("error %s for request %s: %s", code, request_id, message)
        if registered:
            self.send(sender, "/notono/error", request_id, code, message)
        else:
            self._send_to(fallback, "/notono/error", request_id, code, message)

    def _done(self, sender: Address | None, request_id: int, count: int) -> None:
        self.send(sender, "/notono/done", request_id, count)

    # --- quick requests ---------------------------------------------------------------------

    def _hello(self, req: p.Request, sender: Address) -> None:
        port = req.values["reply_port"]
        if not (1 <= port <= 65535):
            raise ValueError(f"reply_port {port} must be in 1..65535")
        rate = req.values["sample_rate"]
        if rate:
            # the client's renders use its rate; renders with no client (MIDI) use the last hello's
            self.engine.set_sample_rate(rate)
        with self._clients_lock:
            self.clients[sender] = (sender[0], port)
            self.clients.move_to_end(sender)
            if rate:
                self.client_rates[sender] = rate
            while len(self.clients) > MAX_CLIENTS:
                gone, _ = self.clients.popitem(last=False)
                self.client_rates.pop(gone, None)
                self.client_folders.pop(gone, None)
                self.last_heard.pop(gone, None)
        log.info("hello from %s:%s (%s); replies go to port %d", sender[0], sender[1],
                 req.values["client"] or "unnamed client", port)
        self.send(sender, "/notono/hello", req.request_id, __version__, self.model_name, self.device,
                  self.worker.queue_length, str(self.engine.output_folder), self._client_rate(sender),
                  p.PROTOCOL_VERSION)

    def _client_rate(self, sender: Address | None) -> int:
        """The sample rate of the client's renders: its hello's, else the daemon's current one."""
        with self._clients_lock:
            rate = self.client_rates.get(sender) if sender is not None else None
        return rate or self.engine.sample_rate

    def unused_seconds(self) -> float | None:
        """Seconds since any client still registered was last heard from (or since the last one
        said bye); None while no client has ever come."""
        with self._clients_lock:
            heard = [self.last_heard[c] for c in self.clients if c in self.last_heard]
            if not heard and self._last_left is None:
                return None
            latest = max(heard) if heard else self._last_left
        return time.monotonic() - latest

    def _bye(self, req: p.Request, sender: Address) -> None:
        # forgotten before the reply goes out: once the client has its /notono/done, nothing more
        # (a MIDI-triggered render, say) is sent to it
        with self._clients_lock:
            reply_to = self.clients.pop(sender, None)
            self.client_rates.pop(sender, None)
            self.client_folders.pop(sender, None)
            self.last_heard.pop(sender, None)
            self._last_left = time.monotonic()
        if reply_to is not None:
            self._send_to(reply_to, "/notono/done", req.request_id, 0)

    def _ping(self, req: p.Request, sender: Address) -> None:
        busy = self.worker.busy or self._checks_owed > 0
        self.send(sender, "/notono/pong", req.request_id, self.worker.queue_length, int(busy))

    def _send_sounds(self, sender: Address | None, request_id: int, records: list[VersionRecord],
                     notices: bool = False) -> None:
        """A /notono/sound per record (with its /notono/notice replies for a fresh render), then done."""
        for record in records:
            self._own(sender, record.sound)
            self.send(sender, "/notono/sound", request_id, *sound_reply_args(record))
            if notices:
                self._send_notices(sender, request_id, record)
        self._done(sender, request_id, len(records))

    def _send_notices(self, sender: Address | None, request_id: int, record: VersionRecord) -> None:
        for kind, message in record.params.get("notices", []):
            self.send(sender, "/notono/notice", request_id, record.sound, record.version, kind, message)

    def _undo(self, req: p.Request, sender: Address) -> None:
        self._send_sounds(sender, req.request_id, [self.engine.undo(req.values["sound"])])

    def _redo(self, req: p.Request, sender: Address) -> None:
        self._send_sounds(sender, req.request_id, [self.engine.redo(req.values["sound"])])

    def _checkout(self, req: p.Request, sender: Address) -> None:
        self._send_sounds(sender, req.request_id,
                          [self.engine.checkout(req.values["sound"], req.values["version"])])

    def _sound_get(self, req: p.Request, sender: Address) -> None:
        self._send_sounds(sender, req.request_id, [self.engine.get(req.values["sound"], req.values["version"])])

    def _own(self, sender: Address | None, sound: int) -> None:
        if sender is not None:
            with self._clients_lock:
                self.owners[sound] = sender

    def action_target(self) -> Address | None:
        """The client a MIDI-triggered action answers: the owner of the current sound, else the newest."""
        current = self.engine.current_sound
        with self._clients_lock:
            owner = self.owners.get(current) if current is not None else None
            if owner in self.clients:
                return owner
            return next(reversed(self.clients), None)

    def _select(self, req: p.Request, sender: Address) -> None:
        self.engine.select(req.values["sound"])
        self._own(sender, req.values["sound"])
        self._done(sender, req.request_id, 0)

    def _find(self, req: p.Request, sender: Address) -> None:
        # hashing a file (and, once, the versions written before digests were kept) must not hold up
        # the receiving thread: pings and other requests are answered meanwhile
        def find() -> None:
            try:
                record = self.engine.find_file(req.values["path"])
            except Exception as error:
                self._reply_error(sender, req.request_id, *error_code_for(error))
                return
            self._send_sounds(sender, req.request_id, [record])

        threading.Thread(target=find, name="notono-find", daemon=True).start()

    def _sound_list(self, req: p.Request, sender: Address) -> None:
        items = self.engine.sounds()
        for head, count in items:
            self.send(sender, "/notono/sound/item", req.request_id, head.sound, head.version, count, head.pitch,
                      head.family, head.label, head.wav)
        self._done(sender, req.request_id, len(items))

    def _versions(self, req: p.Request, sender: Address) -> None:
        items = self.engine.versions(req.values["sound"])
        for record, current in items:
            self.send(sender, "/notono/version/item", req.request_id, record.sound, record.version, record.parent,
                      record.operation, record.pitch, record.family, record.label, record.wav, record.png,
                      int(current))
        self._done(sender, req.request_id, len(items))

    def _codemap_get(self, req: p.Request, sender: Address) -> None:
        record, maps = self.engine.codemaps(req.values["sound"], req.values["version"])
        count = 0
        for layer in ("top", "bottom"):
            for row, codes in enumerate(maps.layer(layer)):
                self.send(sender, "/notono/codemap/row", req.request_id, record.sound, record.version, layer, row,
                          *[int(c) for c in codes])
                count += 1
        self._done(sender, req.request_id, count)

    def _output_folder(self, req: p.Request, sender: Address) -> None:
        folder = self.engine.set_output_folder(req.values["path"])
        log.info("output folder is now %s", folder)
        self.send(sender, "/notono/output/folder", req.request_id, str(folder))
        self._done(sender, req.request_id, 1)

    def _output_project(self, req: p.Request, sender: Address) -> None:
        set_path = req.values["set_path"]
        with self._clients_lock:
            # forgotten first: a set saved where renders cannot go must not leave them in the last one
            self.client_folders.pop(sender, None)
        folder = self.engine.project_folder(set_path) if set_path else None
        if folder is not None:
            with self._clients_lock:
                self.client_folders[sender] = folder
        log.info("renders for %s:%s go to %s", sender[0], sender[1], folder or self.engine.output_folder)
        self.send(sender, "/notono/output/folder", req.request_id, str(folder or self.engine.output_folder))
        self._done(sender, req.request_id, 1)

    def _client_folder(self, sender: Address | None) -> Path | None:
        with self._clients_lock:
            return self.client_folders.get(sender) if sender is not None else None

    def _preview(self, req: p.Request, sender: Address) -> None:
        record = self.engine.get(req.values["sound"], req.values["version"])

        def play() -> None:
            try:
                from .. import preview
            except ImportError as error:
                self._reply_error(sender, req.request_id, "preview_unavailable", f"preview is not installed: {error}")
                return
            try:
                preview.play_file(record.wav)
            except preview.PreviewUnavailable as error:
                self._reply_error(sender, req.request_id, "preview_unavailable", str(error))
                return
            except Exception as error:
                self._reply_error(sender, req.request_id, *error_code_for(error))
                return
            self._done(sender, req.request_id, 0)

        # opening the audio device can take a while; the receiving thread must not wait for it
        threading.Thread(target=play, name="notono-preview", daemon=True).start()

    def _midi_handle(self, request_id: int) -> Any:
        if self.midi is None:
            raise p.ProtocolError("midi_unavailable", self.midi_problem, request_id)
        return self.midi

    def _midi_learn(self, req: p.Request, sender: Address) -> None:
        self._midi_handle(req.request_id).learn(req.values["target"])
        self._done(sender, req.request_id, 0)

    def _midi_cancel(self, req: p.Request, sender: Address) -> None:
        self._midi_handle(req.request_id).cancel_learn()
        self._done(sender, req.request_id, 0)

    def _midi_mappings(self, req: p.Request, sender: Address) -> None:
        mappings = self._midi_handle(req.request_id).mappings()
        for m in mappings:
            number = m.get("number")
            self.send(sender, "/notono/midi/mapping", req.request_id, m["target"], m.get("port") or "",
                      int(m.get("channel") or 0), m["type"], -1 if number is None else int(number))
        self._done(sender, req.request_id, len(mappings))

    # --- queued requests --------------------------------------------------------------------

    def _submit(self, req: p.Request, sender: Address | None, work: Callable[[Callable[[float, str], None]], list],
                coalesce: Any = None) -> None:
        request_id = req.request_id if req is not None else p.DAEMON_REQUEST_ID
        label = req.spec.address if req is not None else "midi"
        if req is not None and req.spec.coalesced:
            # resampling requests (inpaint, new bottom) are rolls of the dice: a newer one for the same
            # sound makes a waiting one stale, as when a producer drags a region or twists a knob;
            # deliberate edits (cells, erase and randomize strokes) are never dropped
            coalesce = (req.values["sound"], "resample")

        def progress(fraction: float, stage: str) -> None:
            self.send(sender, "/notono/progress", request_id, float(fraction), stage)

        rate = self._client_rate(sender) if sender is not None else None
        folder = self._client_folder(sender)

        def run() -> None:
            try:
                with self.engine.output_rate(rate), self.engine.output_to(folder):
                    records = work(progress)
            except Exception as error:
                self.worker.release()
                code, message = error_code_for(error)
                if code == "internal":
                    log.exception("%s failed", label)
                if req is None:   # MIDI-triggered: the daemon's log says so too
                    log.warning("%s failed: %s", label, message)
                self._reply_error_any(sender, request_id, code, message)
                return
            self.worker.release()   # only replies are left: a request they prompt waits for nothing
            if isinstance(records, _AlreadySent):
                self._done(sender, request_id, len(records))
            else:
                self._send_sounds(sender, request_id, records, notices=True)
                self._submit_pitch_check(sender, request_id, records)

        def superseded(newer: Job) -> None:
            self._reply_error_any(sender, request_id, "superseded",
                                  f"replaced by a newer {label} request for the same sound")

        def dropped() -> None:
            self._reply_error_any(sender, request_id, "busy", "the daemon is shutting down")

        def queued(stage: str) -> None:
            progress(0.0, stage)

        job = Job(run=run, coalesce_key=coalesce, on_superseded=superseded, on_dropped=dropped,
                  on_queued=queued, label=label)
        try:
            self.worker.submit(job)
        except Busy as error:
            raise p.ProtocolError("busy", str(error), request_id) from None

    def _submit_pitch_check(self, sender: Address | None, request_id: int, records: list[VersionRecord]) -> None:
        with self._checks_lock:
            self._checks_owed += 1
        try:
            self._checks.submit(self._check_pitch, sender, request_id, records)
        except RuntimeError:   # closing: the notice goes with the daemon
            with self._checks_lock:
                self._checks_owed -= 1

    def _check_pitch(self, sender: Address | None, request_id: int, records: list[VersionRecord]) -> None:
        """After the reply: a `pitch_missed` notice for each sound the pYIN check finds off its
        label's pitch, with the request's id, so it follows that request's /notono/done."""
        try:
            for record in self.engine.check_pitch(records):
                kind, message = record.params["notices"][-1]
                self.send(sender, "/notono/notice", request_id, record.sound, record.version, kind, message)
        except Exception:   # a failed check loses only its notice; the sound is rendered and kept
            log.exception("pitch check of %s failed", [(r.sound, r.version) for r in records])
        finally:
            with self._checks_lock:
                self._checks_owed -= 1

    def _reply_error_any(self, sender: Address | None, request_id: int, code: str, message: str) -> None:
        if sender is None:
            self.send(None, "/notono/error", request_id, code, message)
        else:
            self._reply_error(sender, request_id, code, message)

    def _generate(self, req: p.Request, sender: Address) -> None:
        v = req.values
        # cheap checks before queueing, so a bad request is answered at once rather than after a wait
        check_pitch(v["pitch"])
        self.engine.check_family(v["family"])
        self.engine.check_sampling(v["temperature"], v["top_p"], v["top_k"])
        self.engine.resolve_guidance(v["guidance"])
        self.engine.apply_controls(pitch=v["pitch"], family=v["family"], temperature=v["temperature"])
        self._submit(req, sender, lambda progress: self.engine.generate(
            v["pitch"], v["family"], v["temperature"], v["top_p"], v["variations"], v["seed"], v["top_k"],
            v["guidance"], progress=progress))

    def _encode(self, req: p.Request, sender: Address) -> None:
        v = req.values
        if v["pitch"] != -1:
            check_pitch(v["pitch"])
        self.engine.check_family(v["family"])
        self._submit(req, sender, lambda progress: [self.engine.encode_file(v["path"], v["pitch"], v["family"],
                                                                           progress=progress)])

    def _inpaint_region(self, req: p.Request, sender: Address) -> None:
        v = req.values
        self._check_sound(v["sound"])
        self.engine.check_sampling(v["temperature"], v["top_p"])
        self.engine.resolve_guidance(v["guidance"])
        rectangle_mask(self.engine.check_layer(v["layer"]), v["row"], v["col"], v["height"], v["width"])
        # the device's selection becomes the region a MIDI pad inpaints (and MIDI pick-up starts from)
        controls = dict(layer=v["layer"], region_x=v["col"], region_y=v["row"], region_width=v["width"],
                        region_height=v["height"], temperature=v["temperature"])
        if v["pitch"] != -1:
            controls["pitch"] = check_pitch(v["pitch"])
        if v["family"]:
            controls["family"] = self.engine.check_family(v["family"])
        self.engine.apply_controls(**controls)
        self._submit(req, sender, lambda progress: [self.engine.inpaint_region(
            v["sound"], v["layer"], v["row"], v["col"], v["height"], v["width"], v["pitch"], v["family"],
            v["temperature"], v["top_p"], v["seed"], v["guidance"], progress=progress)])

    def _inpaint_cells(self, req: p.Request, sender: Address) -> None:
        v = req.values
        self._check_sound(v["sound"])
        cells = list(req.groups)
        self._submit(req, sender, lambda progress: [self.engine.inpaint_cells(
            v["sound"], v["layer"], cells, v["pitch"], v["family"], v["temperature"], v["top_p"], v["seed"],
            progress=progress)])

    def _bottom(self, req: p.Request, sender: Address) -> None:
        v = req.values
        self._check_sound(v["sound"])
        self.engine.resolve_guidance(v["guidance"])
        self._submit(req, sender, lambda progress: [self.engine.regenerate_bottom(
            v["sound"], v["pitch"], v["family"], v["temperature"], v["top_p"], v["seed"], v["guidance"],
            progress=progress)])

    def _codemap_set(self, req: p.Request, sender: Address) -> None:
        v = req.values
        self._check_sound(v["sound"])
        cells = list(req.groups)
        self._submit(req, sender, lambda progress: [self.engine.set_cells(v["sound"], v["layer"], cells,
                                                                         progress=progress)])

    def _erase(self, req: p.Request, sender: Address) -> None:
        v = req.values
        self._check_sound(v["sound"])
        self._submit(req, sender, lambda progress: [self.engine.erase_region(
            v["sound"], v["layer"], v["row"], v["col"], v["height"], v["width"], v["amount_db"],
            progress=progress)])

    def _randomize(self, req: p.Request, sender: Address) -> None:
        v = req.values
        self._check_sound(v["sound"])
        self._submit(req, sender, lambda progress: [self.engine.randomize_region(
            v["sound"], v["layer"], v["row"], v["col"], v["height"], v["width"], v["seed"], progress=progress)])

    def _pack(self, req: p.Request, sender: Address) -> None:
        v = req.values
        self._check_sound(v["sound"])

        def work(progress):
            sent = _AlreadySent()

            def on_sound(record: VersionRecord) -> None:
                # each pitch goes out as soon as it is rendered, so the device can fill clip slots
                self._own(sender, record.sound)
                self.send(sender, "/notono/sound", req.request_id, *sound_reply_args(record))
                self._send_notices(sender, req.request_id, record)
                sent.append(record)
            self.engine.sample_pack(v["sound"], v["pitch_low"], v["pitch_high"], v["step"], v["seed"],
                                    progress=progress, on_sound=on_sound)
            return sent

        check_pitch(v["pitch_low"])
        check_pitch(v["pitch_high"])
        self._submit(req, sender, work)

    def _check_sound(self, sound: int) -> None:
        self.engine.get(sound)   # unknown sound: answered at once, not after waiting in the queue

    # --- MIDI-triggered actions -------------------------------------------------------------

    def submit_action(self, action: str) -> None:
        """Run a MIDI-triggered action on the worker; its results go, with id -1, to one client only:
        the device whose sound is current (`action_target`), so that one device places one clip."""
        target = self.action_target()
        if action in ("undo", "redo"):
            try:
                records = self.engine.run_action(action)
            except Exception as error:
                log.warning("MIDI %s: %s", action, error)
                return
            self._send_sounds(target, p.DAEMON_REQUEST_ID, records)
            return
        try:
            self._submit(None, target, lambda progress: self.engine.run_action(action, progress=progress),
                         coalesce=("midi", action))
        except p.ProtocolError as error:
            log.warning("MIDI %s: %s", action, error.message)


class _AlreadySent(list):
    """The records a job already sent as it made them: only /notono/done (with their count) is left."""
