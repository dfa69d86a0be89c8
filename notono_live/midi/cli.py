"""`notono-live midi`: list inputs, show or write the mapping, learn a control, watch a controller.

- `midi list`: the MIDI inputs, or why there are none (exit 1 when the machine has no MIDI system).
- `midi mapping [--write-default [--force]]`: the active mapping file's path and contents.
- `midi learn TARGET`: open the input, bind the next CC or note to TARGET, save. (The daemon offers
  the same over OSC while it runs, on its own port.)
- `midi monitor`: print what each incoming message does under the mapping, until Ctrl-C.
"""
from __future__ import annotations

import argparse
import logging
import sys
import threading
from pathlib import Path
from typing import Any

from ..fileio import atomic_write_bytes
from .mapping import (
    CC_MODES, TAKEOVERS, TARGETS, ACTIONS, MAPPING_ENV, MappingError, default_mapping_path, default_mapping_text,
    load_mapping,
)


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser("midi", help="MIDI controllers: list inputs, mapping, learn, monitor",
                                   description="MIDI controllers for NOTONO Live (docs/midi.md).")
    commands = parser.add_subparsers(dest="midi_command", metavar="ACTION")
    parser.set_defaults(func=lambda args: (parser.print_help(), 2)[1])

    listing = commands.add_parser("list", help="list MIDI input ports, or say why there are none")
    listing.set_defaults(func=run_list)

    mapping = commands.add_parser("mapping", help="print the active mapping file's path and contents")
    mapping.add_argument("--path", type=Path, default=None,
                         help=f"mapping file (default: ${MAPPING_ENV} or the user config folder)")
    mapping.add_argument("--write-default", action="store_true",
                         help="write the shipped default mapping to the file, to edit it")
    mapping.add_argument("--force", action="store_true", help="with --write-default: replace an existing file")
    mapping.set_defaults(func=run_mapping)

    for name, helptext in (("learn", "bind the next CC or note from the input to TARGET and save"),
                           ("monitor", "print what each incoming message does, until Ctrl-C")):
        sub = commands.add_parser(name, help=helptext)
        if name == "learn":
            sub.add_argument("target", choices=TARGETS, metavar="TARGET", help=", ".join(TARGETS))
            sub.add_argument("--mode", choices=CC_MODES, default="absolute", help="for a knob: absolute or "
                             "an endless encoder's relative encoding (default absolute)")
            sub.add_argument("--takeover", choices=TAKEOVERS, default="pickup",
                             help="for an absolute knob: pickup (soft takeover) or jump")
            sub.add_argument("--value", default=None, help="a press sets this value (layer/family name, number)")
            sub.add_argument("--trigger", choices=ACTIONS, default=None,
                             help="for a note: the action fired after setting the control")
            sub.add_argument("--timeout", type=float, default=30.0, help="seconds to wait (default 30)")
        sub.add_argument("--port", default=None,
                         help="input port name (part of it is enough); default: a virtual 'NOTONO Live' port")
        sub.add_argument("--mapping", type=Path, default=None, help="mapping file (default: the active one)")
        sub.set_defaults(func=run_learn if name == "learn" else run_monitor)


def run_list(args: argparse.Namespace) -> int:
    from .ports import MidiUnavailable, list_input_ports, normalise_port_name
    try:
        names = list_input_ports()
    except MidiUnavailable as error:
        print(f"No MIDI inputs: {error}.")
        print("notono-live serve runs without MIDI here; control it over OSC instead.")
        return 1
    if not names:
        print("No MIDI inputs are connected. `notono-live serve` adds a virtual input 'NOTONO Live' "
              "(macOS, Linux) that other programs can send to.")
        return 0
    for name in names:
        short = normalise_port_name(name)
        print(short if short == name else f"{short}    (system name: {name})")
    return 0


def run_mapping(args: argparse.Namespace) -> int:
    path = args.path or default_mapping_path()
    if args.write_default:
        if path.exists() and not args.force:
            print(f"{path} already exists; add --force to replace it with the default mapping", file=sys.stderr)
            return 1
        _write_atomically(path, default_mapping_text())
        print(f"Wrote the default mapping to {path}")
        return 0
    if not path.exists():
        print(f"Mapping file: {path} (not created yet: the built-in default is in use; "
              "`notono-live midi mapping --write-default` copies it there to edit)\n")
        print(default_mapping_text(), end="")
        return 0
    print(f"Mapping file: {path}\n")
    try:
        load_mapping(path)
    except (MappingError, OSError) as error:
        print(f"error: {error}\nThe daemon uses the built-in default mapping until this is fixed.", file=sys.stderr)
        return 1
    print(path.read_text("utf-8"), end="")
    return 0


class PrintingSink:
    """A ControlSink that prints what it is asked to do (the CLI's consumer)."""

    def set_control(self, name: str, value: Any) -> None:
        print(f"  set {name} = {value}", flush=True)

    def trigger(self, action: str) -> None:
        print(f"  {action}", flush=True)


def _open(args: argparse.Namespace, on_learned=None):
    from .handle import open_midi_input
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    return open_midi_input(args.port, args.mapping, PrintingSink(), on_learned=on_learned)


def run_learn(args: argparse.Namespace) -> int:
    done = threading.Event()
    outcome: dict[str, Any] = {}

    def learned(result) -> None:
        outcome["result"] = result
        done.set()

    handle = _open(args, learned)
    if handle is None:
        return 1
    with handle:
        value: Any = args.value
        if value is not None and value.lstrip("-").replace(".", "", 1).isdigit():
            value = float(value) if "." in value else int(value)
        try:
            handle.learn(args.target, mode=args.mode, takeover=args.takeover, value=value, trigger=args.trigger)
        except ValueError as error:
            print(f"error: {error}", file=sys.stderr)
            return 2
        print(f"Move a knob or press a pad on {handle.port_name!r} to bind {args.target} "
              f"(waiting {args.timeout:g} s; Ctrl-C cancels)")
        try:
            if not done.wait(args.timeout):
                handle.cancel_learn()
                print("Nothing arrived; learn cancelled.")
                return 1
        except KeyboardInterrupt:
            handle.cancel_learn()
            print("Learn cancelled.")
            return 130
    result = outcome["result"]
    print(f"Bound {result.binding.to_dict()}")
    if result.error:
        print(f"error: {result.error}", file=sys.stderr)
        return 1
    print(f"Saved to {result.saved_to}")
    return 0


def run_monitor(args: argparse.Namespace) -> int:
    handle = _open(args)
    if handle is None:
        return 1
    print(f"Listening on {handle.port_name!r}; Ctrl-C stops.")
    with handle:
        try:
            threading.Event().wait()
        except KeyboardInterrupt:
            pass
    return 0


def _write_atomically(path: Path, text: str) -> None:
    atomic_write_bytes(path, text.encode("utf-8"))
