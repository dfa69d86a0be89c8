"""`notono-live data render|roundtrip`: build a SoundFont corpus; measure the representation's round trip."""
from __future__ import annotations

import argparse
import sys

from ..constants import FAMILIES, MEL_BREAK_FREQUENCY_HZ, PITCH_MAX, PITCH_MIN


def parse_int_list(text: str, what: str, low: int, high: int) -> tuple[int, ...]:
    """'24-84', '36,48,60' or a mix ('24-30,60') -> sorted unique ints, each in [low, high]."""
    values: set[int] = set()
    for part in text.split(","):
        part = part.strip()
        if not part:
            continue
        try:
            if "-" in part:
                first, last = part.split("-", 1)
                a, b = int(first), int(last)
                if a > b:
                    raise ValueError
                values.update(range(a, b + 1))
            else:
                values.add(int(part))
        except ValueError:
            raise argparse.ArgumentTypeError(f"{what} {text!r}: expected numbers or ranges like 24-84 or 36,48") from None
    if not values:
        raise argparse.ArgumentTypeError(f"{what} {text!r} names no value")
    bad = sorted(v for v in values if not low <= v <= high)
    if bad:
        raise argparse.ArgumentTypeError(f"{what} {bad} outside {low}-{high}")
    return tuple(sorted(values))


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser("data", help="render a SoundFont corpus; check the representation's round trip",
                                   description="Training data: render an NSynth-layout corpus from General MIDI "
                                               "SoundFonts, or measure the Mel-IF round trip on a corpus.")
    commands = parser.add_subparsers(dest="data_command", metavar="{render,roundtrip}")

    render = commands.add_parser(
        "render", help="render an NSynth-layout corpus from GM SoundFonts",
        description="Render every GM program of the 11 NSynth families from each SoundFont, at each pitch and "
                    "velocity (held 3 s, 4 s in all, 16 kHz mono 16-bit), into examples.json + audio/*.wav.")
    render.add_argument("--soundfont", nargs="+", metavar="PATH", default=None,
                        help="SoundFont files (.sf2/.sf3), in order; default: TimGM6mb.sf2 shipped with pretty_midi")
    render.add_argument("--out", required=True, metavar="DIR",
                        help="corpus folder (new, empty, or an earlier run with the same settings to resume)")
    render.add_argument("--pitches", default=f"{PITCH_MIN}-{PITCH_MAX}",
                        type=lambda s: parse_int_list(s, "--pitches", 0, 127),
                        help=f"MIDI pitches, e.g. 24-84 or 36,48,60 (default {PITCH_MIN}-{PITCH_MAX})")
    render.add_argument("--velocities", nargs="+", default=["100"], metavar="V",
                        help="MIDI velocities 1-127 (default 100)")
    render.add_argument("--families", nargs="+", choices=FAMILIES, default=list(FAMILIES), metavar="FAMILY",
                        help="families to render (default all 11)")
    render.add_argument("--programs-per-family", type=int, default=None, metavar="N",
                        help="only the first N GM programs of each family (quick corpora)")
    render.add_argument("--no-progress", action="store_true", help="no progress bar")
    render.set_defaults(func=_render)

    roundtrip = commands.add_parser(
        "roundtrip", help="send corpus notes through the representation and back, print the figures",
        description="Linear-IF SNR, Mel-IF spectral convergence and log-spectral distance, and pitch kept "
                    "(pYIN median f0 within 50 cents) over N notes spread across the families.")
    roundtrip.add_argument("--corpus", required=True, metavar="DIR", help="NSynth-layout folder")
    roundtrip.add_argument("-n", "--notes", type=int, default=100, help="number of notes (default 100)")
    roundtrip.add_argument("--seed", type=int, default=0, help="which notes are picked (default 0)")
    roundtrip.add_argument("--break-frequency", type=float, default=MEL_BREAK_FREQUENCY_HZ, metavar="HZ",
                           help="mel break frequency (240 NOTONO, 700 GANSynth)")
    roundtrip.add_argument("--no-threshold", action="store_true", help="disable phase thresholding")
    roundtrip.add_argument("--no-pitch", action="store_true", help="skip the pYIN pitch check")
    roundtrip.add_argument("--no-progress", action="store_true", help="no progress bar")
    roundtrip.set_defaults(func=_roundtrip)

    parser.set_defaults(func=lambda args: (parser.print_help(), 2)[1])


def _render(args: argparse.Namespace) -> int:
    from .render import RenderSettings, render_corpus

    try:
        velocities = parse_int_list(",".join(args.velocities), "--velocities", 1, 127)
        settings = RenderSettings(pitches=args.pitches, velocities=velocities, families=tuple(args.families),
                                  programs_per_family=args.programs_per_family)
        result = render_corpus(args.soundfont, args.out, settings, progress=not args.no_progress)
    except (OSError, ValueError, argparse.ArgumentTypeError) as error:
        print(f"notono-live data render: error: {error}", file=sys.stderr)
        return 1
    print(result.summary())
    return 0


def _roundtrip(args: argparse.Namespace) -> int:
    from .roundtrip import run_roundtrip

    try:
        result = run_roundtrip(args.corpus, n=args.notes, seed=args.seed, break_frequency_hz=args.break_frequency,
                               phase_threshold=None if args.no_threshold else _default_threshold(),
                               check_pitch=not args.no_pitch, progress=not args.no_progress)
    except (OSError, ValueError) as error:
        print(f"notono-live data roundtrip: error: {error}", file=sys.stderr)
        return 1
    print(result.summary())
    return 0


def _default_threshold() -> float:
    from ..constants import PHASE_THRESHOLD_LOG_POWER

    return PHASE_THRESHOLD_LOG_POWER
