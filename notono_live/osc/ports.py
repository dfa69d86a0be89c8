"""Who holds a UDP port on loopback: free, a NOTONO daemon (it answers /notono/hello and
/notono/ping, then gets /notono/bye), or, on Linux, which process (from /proc/net/udp and the
processes' open sockets). `notono-live doctor` reports it."""
from __future__ import annotations

import os
import re
import socket
from dataclasses import dataclass
from pathlib import Path
from typing import Any

PROBE_TIMEOUT_S = 1.0          # how long a port's holder has to answer /notono/hello


def bind_error(port: int, host: str = "127.0.0.1") -> OSError | None:
    """Why a UDP socket cannot bind host:port, or None when it can (the port is free)."""
    probe = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    try:
        probe.bind((host, port))
    except OSError as error:
        return error
    finally:
        probe.close()
    return None


def ask_notono(port: int, timeout: float = PROBE_TIMEOUT_S) -> dict[str, Any] | None:
    """What a NOTONO daemon on 127.0.0.1:port says to hello + ping (then bye); None when nothing
    there answers in OSC like one."""
    from .client import NotonoClient

    with NotonoClient("127.0.0.1", port, timeout=timeout) as client:
        try:
            hello = client.request("/notono/hello", client.reply_port, 0, "notono-live doctor", timeout=timeout)
        except TimeoutError:
            return None
        if not hello.ok:   # it answered in NOTONO's protocol, but refused this client
            return {"refused": f"{hello.error[0]}: {hello.error[1]}" if hello.error else "refused"}
        # /notono/hello: request id, version, model, device, queue length, output folder, rate, protocol
        args = hello.final[1]
        found: dict[str, Any] = {"version": args[1], "model": args[2], "device": args[3]}
        try:
            pong = client.request("/notono/ping", timeout=timeout)
            if pong.ok:
                found["queue"], found["busy"] = pong.final[1][1], pong.final[1][2]
        except TimeoutError:
            found["no_pong"] = True
        try:
            client.request("/notono/bye", timeout=timeout)
        except TimeoutError:
            pass
        return found


@dataclass
class PortOwner:
    """A process holding a UDP port (Linux, from /proc)."""

    pid: int
    name: str
    command: str

    @property
    def is_notono_daemon(self) -> bool:
        return bool(re.search(r"notono[-_]live", self.command)) and " serve" in f" {self.command} "

    def describe(self) -> str:
        command = " ".join(self.command.split())
        command = command if len(command) <= 90 else command[:87] + "..."
        return f"{self.name} (pid {self.pid}: {command})" if command else f"{self.name} (pid {self.pid})"


def udp_port_owners(port: int, proc: Path = Path("/proc")) -> tuple[list[PortOwner], set[int]] | None:
    """(processes holding UDP `port`, uids of its sockets) from /proc/net/udp{,6} and /proc/*/fd;
    None where there is no such /proc (macOS, Windows). A process whose fds this user cannot read
    is left out, so the list may be empty while the uids say whose socket it is."""
    inodes: set[str] = set()
    uids: set[int] = set()
    tables = 0
    for table in ("udp", "udp6"):
        try:
            lines = (proc / "net" / table).read_text().splitlines()[1:]
        except OSError:
            continue
        tables += 1
        for line in lines:
            fields = line.split()
            if len(fields) < 10 or ":" not in fields[1]:
                continue
            if int(fields[1].rsplit(":", 1)[1], 16) == port and fields[9] != "0":
                inodes.add(fields[9])
                uids.add(int(fields[7]))
    if not tables:
        return None
    targets = {f"socket:[{inode}]" for inode in inodes}
    owners: list[PortOwner] = []
    if not targets:
        return owners, uids
    for entry in proc.iterdir():
        if not entry.name.isdigit():
            continue
        try:
            fds = os.listdir(entry / "fd")
        except OSError:
            continue
        for fd in fds:
            try:
                link = os.readlink(entry / "fd" / fd)
            except OSError:
                continue
            if link in targets:
                try:
                    name = (entry / "comm").read_text().strip()
                    command = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace").strip()
                except OSError:
                    name, command = "?", ""
                owners.append(PortOwner(int(entry.name), name, command))
                break
    return owners, uids


def user_names(uids: set[int]) -> str:
    names = []
    for uid in sorted(uids):
        try:
            import pwd
            names.append(pwd.getpwuid(uid).pw_name)
        except (ImportError, KeyError):
            names.append(f"uid {uid}")
    return ", ".join(names)


def free_port_near(port: int, avoid: set[int]) -> int | None:
    for candidate in range(port + 1, min(port + 50, 65536)):
        if candidate not in avoid and bind_error(candidate) is None:
            return candidate
    return None


def daemon_text(found: dict[str, Any]) -> str:
    if "refused" in found:
        return f"a NOTONO daemon answers there but refused this client's hello ({found['refused']})"
    state = ""
    if "busy" in found:
        state = ", rendering" if found["busy"] else ", idle"
        if found.get("queue"):
            state += f", {found['queue']} waiting"
    elif found.get("no_pong"):
        state = ", but it did not answer /notono/ping"
    return (f"a NOTONO daemon answers there (notono-live {found['version']}, model {found['model']} "
            f"on {found['device']}{state})")
