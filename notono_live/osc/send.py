"""`notono-live send OP …`: a command-line client for every request of the protocol.

The sub-commands are built from the protocol table, so every address has one: `/notono/inpaint/region`
becomes `send inpaint-region --sound 1 --layer top --row 0 --col 0 --height 8 --width 2`. Repeated
groups (cells) are given as `--cells R,C [R,C ...]` or `--cells R,C,CODE ...`. Each reply is printed as
one line, ``address arg arg …`` (or JSON with --json); the exit code is 0 on success, 1 on an
`/notono/error`, 2 when the daemon does not answer. Paths are resolved against the caller's working
folder before they are sent. Only the protocol table, the client and python-osc are imported, so a
call costs what a Python start does, not a torch import.
"""
from __future__ import annotations

import argparse
import json
import os
import sys
from typing import Any

from ..constants import DEFAULT_OSC_PORT
from . import protocol as p


PATH_ARGS = ("path", "set_path")   # arguments that name a file or folder on the caller's machine


def op_name(address: str) -> str:
    return address[len(p.PREFIX) + 1:].replace("/", "-")


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "send", help="send one OSC request to a running daemon and print the replies",
        description="Send one request to `notono-live serve` and print every reply (docs/osc.md).")
    parser.add_argument("--host", default="127.0.0.1", help="daemon address (default 127.0.0.1)")
    parser.add_argument("--port", type=int, default=DEFAULT_OSC_PORT, help=f"daemon port (default {DEFAULT_OSC_PORT})")
    parser.add_argument("--reply-port", type=int, default=0, help="port to receive replies on (default: any free)")
    parser.add_argument("--timeout", type=float, default=120.0, help="seconds to wait for the final reply")
    parser.add_argument("--json", action="store_true", help="print each reply as a JSON line")
    parser.add_argument("--sample-rate", type=int, default=0, help="sample rate to announce with hello (0 keeps)")
    ops = parser.add_subparsers(dest="op", metavar="OP", required=True)
    for address, spec in p.REQUESTS.items():
        if address == "/notono/hello":
            continue   # sent automatically before every request
        op = ops.add_parser(op_name(address), help=spec.doc, description=f"{address}: {spec.doc}")
        for arg in spec.args:
            kwargs: dict[str, Any] = {"type": arg.type, "help": arg.doc, "dest": arg.name}
            if arg.required:
                kwargs["required"] = True
            else:
                kwargs["default"] = arg.default
            op.add_argument("--" + arg.name.replace("_", "-"), **kwargs)
        if spec.repeated:
            names = ",".join(a.name for a in spec.repeated)
            op.add_argument("--cells", nargs="+", required=True, metavar=names.upper(),
                            help=f"one or more groups {names}, e.g. " + " ".join(
                                ",".join(str(i) for i in range(len(spec.repeated))) for _ in range(2)))
        op.set_defaults(address=address)
    parser.set_defaults(func=run)


def _groups(spec: p.Message, texts: list[str]) -> list[int]:
    values: list[int] = []
    for text in texts:
        parts = text.split(",")
        if len(parts) != len(spec.repeated):
            raise SystemExit(f"--cells {text!r}: expected {len(spec.repeated)} comma-separated numbers "
                             f"({','.join(a.name for a in spec.repeated)})")
        try:
            values += [int(v) for v in parts]
        except ValueError:
            raise SystemExit(f"--cells {text!r}: not whole numbers") from None
    return values


def caller_path(text: str) -> str:
    """A path argument as the caller means it: `~` expanded and a relative path made absolute against
    the caller's working folder (the daemon has its own, and refuses relative paths). '' stays ''
    (for `/notono/output/folder` it restores the default folder)."""
    if not text:
        return text
    return os.path.abspath(os.path.expanduser(text))


def run(args: argparse.Namespace) -> int:
    from .client import NotonoClient

    spec = p.REQUESTS[args.address]
    values = [caller_path(getattr(args, a.name)) if a.name in PATH_ARGS else getattr(args, a.name)
              for a in spec.args]
    if spec.repeated:
        values += _groups(spec, args.cells)
    with NotonoClient(args.host, args.port, args.reply_port, timeout=args.timeout) as client:
        try:
            client.hello(args.sample_rate, client="notono-live send", timeout=min(5.0, args.timeout))
        except TimeoutError:
            print(f"no daemon answered on {args.host}:{args.port} (is `notono-live serve` running?)",
                  file=sys.stderr)
            return 2
        except RuntimeError as error:
            print(error, file=sys.stderr)
            return 1
        request_id = client.send(spec.address, *values)
        try:
            reply = client.wait(request_id, args.timeout)
        except TimeoutError as error:
            print(error, file=sys.stderr)
            return 2
    for address, reply_args in reply.messages:
        if args.json:
            print(json.dumps({"address": address, "args": reply_args}))
        else:
            print(address, *[json.dumps(a) if isinstance(a, str) else a for a in reply_args])
    return 0 if reply.ok else 1
