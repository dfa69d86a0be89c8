"""A small OSC client for the daemon, used by `notono-live send`, `bench` and the tests.

It behaves like the Max device: it sends from one UDP socket and receives on another, announced
with `/notono/hello`. Replies are collected on a background thread and grouped by request id, so
many requests may be in flight at once (the flood test and bench rely on that).
"""
from __future__ import annotations

import itertools
import socket
import threading
import time
from dataclasses import dataclass, field
from typing import Any

from . import protocol as p
from .wire import decode_message, encode_message


@dataclass
class Reply:
    """Everything a request got back.

    Args:
        request_id: the id sent.
        messages: (address, args) of each reply, final one last.
        elapsed: seconds from send to the final message (None if it never came).
    """

    request_id: int
    messages: list[tuple[str, list[Any]]] = field(default_factory=list)
    elapsed: float | None = None

    @property
    def final(self) -> tuple[str, list[Any]] | None:
        return self.messages[-1] if self.elapsed is not None else None

    @property
    def ok(self) -> bool:
        return self.final is not None and self.final[0] != "/notono/error"

    @property
    def error(self) -> tuple[str, str] | None:
        """(code, message) when the request failed."""
        if self.final is not None and self.final[0] == "/notono/error":
            return self.final[1][1], self.final[1][2]
        return None

    def of(self, address: str) -> list[list[Any]]:
        """Arguments (without the request id) of every reply at `address`."""
        return [args[1:] for addr, args in self.messages if addr == address]

    @property
    def sounds(self) -> list[dict[str, Any]]:
        names = [a.name for a in p.REPLIES["/notono/sound"].args]
        return [dict(zip(names, args)) for args in self.of("/notono/sound")]


class NotonoClient:
    """Talks to a running daemon over UDP.

    Args:
        host: daemon address.
        port: daemon port.
        reply_port: where to receive replies; 0 picks a free port.
        timeout: default seconds to wait for a final reply.
    """

    def __init__(self, host: str = "127.0.0.1", port: int = 7400, reply_port: int = 0,
                 timeout: float = 60.0) -> None:
        self.target = (host, port)
        self.timeout = timeout
        self.sender = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sender.bind(("127.0.0.1" if host in ("127.0.0.1", "localhost") else "0.0.0.0", 0))
        self.receiver = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.receiver.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4 << 20)
        self.receiver.bind(("127.0.0.1" if host in ("127.0.0.1", "localhost") else "0.0.0.0", reply_port))
        self.receiver.settimeout(0.2)
        self.reply_port = self.receiver.getsockname()[1]
        self._ids = itertools.count(1)
        self._cond = threading.Condition()
        self._replies: dict[int, Reply] = {}
        self._sent_at: dict[int, float] = {}
        self._finals: dict[int, str] = {}
        self.unsolicited: list[tuple[str, list[Any]]] = []
        self._closed = False
        self._thread = threading.Thread(target=self._receive, name="notono-client", daemon=True)
        self._thread.start()

    def __enter__(self) -> "NotonoClient":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        self._closed = True
        try:   # wake the receiving thread now rather than at its next 0.2 s timeout
            self.sender.sendto(b"", ("127.0.0.1", self.reply_port))
        except OSError:
            pass
        self._thread.join(1.0)
        self.sender.close()
        self.receiver.close()

    # --- receiving --------------------------------------------------------------------------

    def _receive(self) -> None:
        while not self._closed:
            try:
                data, _ = self.receiver.recvfrom(65536)
            except (socket.timeout, OSError):
                continue
            try:
                address, args = decode_message(data)
            except Exception:
                continue
            now = time.perf_counter()
            with self._cond:
                rid = args[0] if args and isinstance(args[0], int) else p.DAEMON_REQUEST_ID
                reply = self._replies.get(rid)
                if reply is None or reply.elapsed is not None:
                    self.unsolicited.append((address, args))
                    continue
                reply.messages.append((address, args))
                if address in (self._finals.get(rid), "/notono/error"):
                    reply.elapsed = now - self._sent_at.get(rid, now)
                self._cond.notify_all()

    # --- sending ----------------------------------------------------------------------------

    def send_raw(self, data: bytes) -> None:
        self.sender.sendto(data, self.target)

    def send(self, address: str, *args: Any, request_id: int | None = None) -> int:
        """Send a request without waiting; returns its request id."""
        rid = next(self._ids) if request_id is None else request_id
        spec = p.REQUESTS.get(address)
        with self._cond:
            self._replies[rid] = Reply(rid)
            self._finals[rid] = spec.final if spec else "/notono/done"
            self._sent_at[rid] = time.perf_counter()
        self.sender.sendto(encode_message(address, [rid, *args]), self.target)
        return rid

    def wait(self, request_id: int, timeout: float | None = None) -> Reply:
        """Wait for a request's final message; raises TimeoutError if it does not come."""
        deadline = time.monotonic() + (self.timeout if timeout is None else timeout)
        with self._cond:
            while self._replies[request_id].elapsed is None:
                left = deadline - time.monotonic()
                if left <= 0:
                    raise TimeoutError(f"no final reply to request {request_id} within "
                                       f"{self.timeout if timeout is None else timeout} s")
                self._cond.wait(left)
            return self._replies.pop(request_id)

    def request(self, address: str, *args: Any, timeout: float | None = None) -> Reply:
        """Send a request and wait for its final reply."""
        return self.wait(self.send(address, *args), timeout)

    def hello(self, sample_rate: int = 0, client: str = "notono-live client", timeout: float = 10.0) -> Reply:
        reply = self.request("/notono/hello", self.reply_port, sample_rate, client, timeout=timeout)
        if not reply.ok:
            raise RuntimeError(f"hello failed: {reply.error}")
        return reply

    def connect(self, wait: float = 30.0, sample_rate: int = 0) -> Reply:
        """Say hello until the daemon answers (it may still be starting)."""
        deadline = time.monotonic() + wait
        while True:
            try:
                return self.hello(sample_rate, timeout=min(1.0, max(0.05, deadline - time.monotonic())))
            except TimeoutError:
                if time.monotonic() >= deadline:
                    raise TimeoutError(f"no daemon answered on {self.target[0]}:{self.target[1]} "
                                       f"within {wait} s") from None
