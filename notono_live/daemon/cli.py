"""`notono-live serve`: load the model once, warm it up, and answer OSC until Ctrl-C or SIGTERM.

Settings come from, in increasing priority: built-in defaults, a TOML file (`--config`, keys named
like the long options with underscores, e.g. ``port = 7400``, ``allow_dirs = ["~/Music"]``), and
the command line.
"""
from __future__ import annotations

import argparse
import logging
import os
import signal
import sys
import threading
import time
from pathlib import Path
from typing import Any

from ..constants import (
    DEFAULT_OSC_HOST,
    DEFAULT_OSC_PORT,
    DEFAULT_OUTPUT_SAMPLE_RATE,
    STEP_PRECISIONS,
)
from .compiling import COMPILE_FAILED, COMPILE_READY, COMPILE_STARTED, compile_step_on  # noqa: F401 (bench and tests read them here)

log = logging.getLogger("notono_live.daemon")

APP_NAME = "notono-live"
DEFAULTS: dict[str, Any] = {
    "models": None, "device": "auto", "host": DEFAULT_OSC_HOST, "port": DEFAULT_OSC_PORT, "allow": [],
    "data_dir": None, "output": None, "allow_dirs": [], "sample_rate": DEFAULT_OUTPUT_SAMPLE_RATE,
    "queue_size": 16, "midi_port": None, "midi_mapping": None, "no_midi": False,
    "reference_sampler": False, "untrained": None, "log_level": "info", "threads": 0, "fsync": False,
    "step_precision": "auto", "guidance": None, "candidates": None, "exit_when_unused": 0.0,
    "sampling_threads": 1, "compile_step": None, "pick_on": None,
}


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "serve", help="run the daemon that Ableton Live's device talks to over OSC",
        description="Load the NOTONO model, keep it warm, and serve the OSC protocol (docs/osc.md).")
    parser.add_argument("--config", type=Path, help="TOML file with any of the options below")
    parser.add_argument("--models", help="model folder (default: $NOTONO_MODELS or the shipped models/)")
    parser.add_argument("--untrained", choices=["lite", "small"], help=argparse.SUPPRESS)  # development without weights
    parser.add_argument("--device", help="auto (CUDA, then MPS, then CPU), cpu, cuda, cuda:N or mps")
    parser.add_argument("--host", help=f"interface to listen on (default {DEFAULT_OSC_HOST}); another "
                                       f"interface needs --allow")
    parser.add_argument("--port", type=int, help=f"UDP port (default {DEFAULT_OSC_PORT}; 0 picks a free one)")
    parser.add_argument("--allow", action="append", metavar="IP",
                        help="client address allowed besides loopback (repeatable)")
    parser.add_argument("--data-dir", dest="data_dir", help="session folder root (default: the user data dir)")
    parser.add_argument("--output", help="default folder for rendered files (default: <data dir>/samples)")
    parser.add_argument("--allow-dir", dest="allow_dirs", action="append", metavar="DIR",
                        help="folder a client may choose as output folder, e.g. your Live projects (repeatable)")
    parser.add_argument("--sample-rate", dest="sample_rate", type=int,
                        help=f"sample rate of rendered WAVs (default {DEFAULT_OUTPUT_SAMPLE_RATE})")
    parser.add_argument("--queue-size", dest="queue_size", type=int, help="renders that may wait (default 16)")
    parser.add_argument("--midi-in", "--midi-port", dest="midi_port", metavar="NAME",
                        help="MIDI input to open (default: a virtual port called 'NOTONO Live')")
    parser.add_argument("--midi-mapping", dest="midi_mapping", help="MIDI mapping file")
    parser.add_argument("--no-midi", dest="no_midi", action="store_true", default=None, help="do not open MIDI")
    parser.add_argument("--reference-sampler", dest="reference_sampler", action="store_true", default=None,
                        help="sample like the reference code (no KV cache; slow, for bench)")
    parser.add_argument("--step-precision", dest="step_precision", choices=STEP_PRECISIONS,
                        help="weights of the one-token sampling step: auto (on a CPU float16 for batches of up "
                             "to 4 rows, float32 above; the model's float32 elsewhere), float16, float32, or "
                             "bfloat16 (pre-packed, any batch: a new sound 1.3-1.6x faster on an AVX512_BF16 "
                             "CPU, but it changes the draws; docs/performance.md)")
    parser.add_argument("--guidance", type=float,
                        help="classifier-free guidance scale of every request that leaves it at -1: the device, "
                             "MIDI, sample packs (default: the model's, for the shipped one 2 to generate and 1 "
                             "to edit; 1 samples the paper's way, about twice as fast as 2)")
    parser.add_argument("--candidates", type=int,
                        help="draws per generated sound and per new bottom (not sample packs or inpainting), "
                             "of which the one whose spectrum sits best on the asked pitch is kept (default: the "
                             "model's, 4, and one per new bottom for a model that picks on previews; 1 keeps the "
                             "priors' first draw and is 2-3.5x faster on a 2-core CPU)")
    parser.add_argument("--pick-on", dest="pick_on", choices=("full", "previews"),
                        help="how a generated sound's candidates are compared: full (each drawn and decoded "
                             "whole) or previews (only their top maps, decoded alone; the kept one then gets a "
                             "bottom map). Default: the model's, previews for a VQ-VAE trained with bottom "
                             "dropout (docs/performance.md)")
    parser.add_argument("--fsync", action="store_true", default=None,
                        help="flush every rendered file to disk before it appears (survives power loss; "
                             "adds ~10 ms per file)")
    parser.add_argument("--threads", type=int, help="torch CPU threads (default: torch's choice)")
    parser.add_argument("--sampling-threads", dest="sampling_threads", type=int,
                        help="torch CPU threads while sampling (default 1: with Live busy on a core, 2 threads "
                             "made a new sound 2.3x slower on a 2-core CPU; on an idle one, 1.3-1.5x faster)")
    parser.add_argument("--compile-step", dest="compile_step", action="store_true", default=None,
                        help="once ready, compile the priors' one-token sampling step with torch.compile (needs "
                             "a C++ compiler; the first time, a separate lower-priority process builds the graphs "
                             "for about 3 minutes while requests use the eager step; then each graph loads from "
                             "the cache in a few seconds between requests), and sample with it when done; with "
                             "--step-precision auto "
                             "it multiplies in float32. Default: on a CPU for priors as narrow as the small size "
                             "(d_model 128), where it measured faster, off for wider ones (docs/performance.md); "
                             "NOTONO_COMPILE_STEP=0 or 1 in the environment sets that default")
    parser.add_argument("--no-compile-step", dest="compile_step", action="store_false", default=None,
                        help="sample with the eager step only")
    parser.add_argument("--exit-when-unused", dest="exit_when_unused", type=float, metavar="SECONDS",
                        help="stop once a client has come and none has been heard from for SECONDS (each said "
                             "bye or stopped pinging); the device asks for this when it starts the daemon itself")
    parser.add_argument("--log-level", dest="log_level", choices=["debug", "info", "warning", "error"])
    parser.set_defaults(func=run)


COMPILE_STEP_ENV = "NOTONO_COMPILE_STEP"   # "0" or "1": the compile_step default before the TOML file


def load_settings(args: argparse.Namespace) -> dict[str, Any]:
    """Defaults (with `NOTONO_COMPILE_STEP`), then the TOML file, then command-line options that were given."""
    settings = dict(DEFAULTS)
    compile_env = os.environ.get(COMPILE_STEP_ENV, "").strip()
    if compile_env:
        if compile_env not in ("0", "1"):
            raise SystemExit(f"{COMPILE_STEP_ENV}={compile_env!r} must be 0 or 1 (or unset: on for small priors "
                             f"on a CPU)")
        settings["compile_step"] = compile_env == "1"
    if args.config is not None:
        try:
            import tomllib
        except ModuleNotFoundError:   # Python 3.10
            import tomli as tomllib  # type: ignore[no-redef]
        try:
            doc = tomllib.loads(Path(args.config).expanduser().read_text(encoding="utf-8"))
        except OSError as error:
            raise SystemExit(f"cannot read config file {args.config}: {error}")
        except tomllib.TOMLDecodeError as error:
            raise SystemExit(f"config file {args.config} is not valid TOML: {error}")
        unknown = sorted(set(doc) - set(DEFAULTS))
        if unknown:
            raise SystemExit(f"config file {args.config}: unknown key {unknown[0]!r}; "
                             f"expected some of {', '.join(sorted(DEFAULTS))}")
        settings.update(doc)
        if settings["step_precision"] not in STEP_PRECISIONS:
            raise SystemExit(f"config file {args.config}: step_precision {settings['step_precision']!r} is not "
                             f"one of {', '.join(STEP_PRECISIONS)}")
    for key in DEFAULTS:
        value = getattr(args, key, None)
        if value is not None:
            settings[key] = value
    if settings["compile_step"] is not None and not isinstance(settings["compile_step"], bool):
        raise SystemExit(f"compile_step {settings['compile_step']!r} must be true or false (or absent: "
                         f"on for small priors on a CPU)")
    threads = settings["sampling_threads"]
    if isinstance(threads, bool) or not isinstance(threads, int) or threads < 1:
        raise SystemExit(f"sampling_threads {threads!r} must be a whole number of threads, 1 or more")
    return settings


def pick_device(requested: str) -> str:
    import torch

    if requested and requested != "auto":
        if requested.startswith("cuda") and not torch.cuda.is_available():
            raise SystemExit(f"--device {requested}: CUDA is not available on this machine")
        if requested == "mps" and not (getattr(torch.backends, "mps", None) and torch.backends.mps.is_available()):
            raise SystemExit("--device mps: Apple MPS is not available on this machine")
        return requested
    if torch.cuda.is_available():
        return "cuda"
    if getattr(torch.backends, "mps", None) and torch.backends.mps.is_available():
        return "mps"
    return "cpu"


def default_data_dir() -> Path:
    from platformdirs import user_data_dir
    return Path(user_data_dir(APP_NAME, appauthor=False))


def load_model(settings: dict[str, Any], device: str):
    from ..models.bundle import NotonoModel

    if settings["untrained"]:
        model = NotonoModel.untrained(size=settings["untrained"], device=device)
    else:
        model = NotonoModel.load(settings["models"], device=device)
    if settings["reference_sampler"]:
        model.use_cache = False
    model.set_step_precision(settings["step_precision"])
    model.sampling_threads = settings["sampling_threads"]
    if settings.get("pick_on") is not None:
        from ..models.picking import check_pick_on

        model.pick_on = check_pick_on(settings["pick_on"])
    return model


def warm_up(model: Any, engine: Any) -> None:
    """Run every code path of the models once so the first request is as fast as later ones. Call it
    on the inference worker's thread: torch's CPU thread pools belong to the thread that runs the
    ops, so warming the main thread would leave the worker cold (and, on a busy CPU, take seconds
    longer). What a render does after the models (levelling, the pitch checks) warms on a thread of
    its own once the daemon is ready (`warm_render_tools`)."""
    import numpy as np

    from ..engine import render

    # transform, VQ-VAE, both samplers, at the scales requests get by default
    model.warm_up((engine.resolve_guidance(-1), engine.resolve_guidance(-1, generating=True)),
                  pitch_scores=False)
    audio = np.zeros(64_000, dtype=np.float32)
    render.spectrogram_png(audio)
    render.attenuate_region(audio, (32, 4), 0, 0, 1, 1, 6.0)


def warm_render_tools(sample_rate: int | None = None) -> threading.Thread:
    """Warm what a render needs after the models, on a thread of its own, once the daemon is ready.

    First, with `sample_rate`, the levelling every render ends with (`engine.levels`: scipy.signal,
    pyloudnorm, soxr and soundfile, about 0.7 s of imports on the 2-core development CPU, most of it
    scipy.signal's). Then the pitch checks: librosa's import (about a second), the harmonic score
    that picks among candidates, and pYIN, whose numba kernels compile on first use
    (`engine.pitching.pitch_miss` checks every generated sound). A request that comes at once
    overlaps this while it samples, and a render that gets to its levelling first waits for those
    imports: with the eager step such a request took 2.8–3.0 s, against 2.0–2.1 s when the
    levelling warmed before ready and 0.8–1.0 s for the requests after it, so from spawn to that
    first sound it is about as long as before (`python benchmarks/first_sound.py`,
    docs/performance.md). Started before the model loads, the imports only slowed the load down
    (they are Python, under the GIL). A failure here is only logged: the first render then pays
    for the import itself."""
    def work() -> None:
        import numpy as np

        try:
            if sample_rate is not None:
                from .. import audio_io  # noqa: F401  (soundfile, soxr)
                from ..engine import levels, render

                # pyloudnorm, scipy's filters and the limiter (a loud tone has to be limited)
                tone = (np.sin(np.arange(64_000, dtype=np.float32) * 0.1)
                        * np.linspace(2.0, 0.0, 64_000, dtype=np.float32))
                levels.normalise(render.resample_for_output(tone, sample_rate, clip=False), sample_rate)
            from ..engine import pitching
            from ..models.pitch_selection import best_on_pitch

            tone = np.sin(2 * np.pi * 220.0 * np.arange(64_000) / 16_000).astype(np.float32)
            best_on_pitch(tone[None], 57)
            pitching.pitch_miss(tone, 57)
        except Exception as error:   # noqa: BLE001 (a warm-up; the render reports real failures)
            log.warning("could not warm the render tools: %s", error)

    thread = threading.Thread(target=work, name="notono-warm-render", daemon=True)
    thread.start()
    return thread


def warm_up_on(worker: Any, model: Any, engine: Any) -> None:
    """Run `warm_up` as the worker's first job and wait for it; re-raise what it raised."""
    from .worker import Job

    done = threading.Event()
    failed: list[BaseException] = []

    def run() -> None:
        try:
            warm_up(model, engine)
        except BaseException as error:   # re-raised on the calling thread
            failed.append(error)
        finally:
            done.set()

    worker.submit(Job(run=run, label="warm-up"))
    done.wait()
    if failed:
        raise failed[0]


TRAINED_COMPONENTS = ("vqvae", "top_prior", "bottom_prior")


def model_label(info: dict) -> str:
    """Short model name for hello, from the model's metadata: 'notono-lite' when all three components
    carry a training summary, '-partly-trained' when only some do, '-untrained' when none does."""
    label = f"notono-{info.get('size') or 'custom'}"
    training = info.get("training") or {}
    trained = sum(1 for name in TRAINED_COMPONENTS if training.get(name))
    if trained == len(TRAINED_COMPONENTS):
        return label
    return label + ("-partly-trained" if trained else "-untrained")


def run(args: argparse.Namespace) -> int:
    settings = load_settings(args)
    logging.basicConfig(level=getattr(logging, str(settings["log_level"]).upper()), stream=sys.stderr,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    started = time.perf_counter()
    host = str(settings["host"])
    from ipaddress import ip_address
    try:
        loopback = ip_address(host).is_loopback
    except ValueError:
        raise SystemExit(f"--host {host!r} is not an IP address")
    if not loopback and not settings["allow"]:
        raise SystemExit(f"--host {host} listens beyond this machine: name the clients allowed with --allow IP")
    for address in settings["allow"]:
        try:
            ip_address(address)
        except ValueError:
            raise SystemExit(f"--allow {address!r} is not an IP address")

    import torch

    if settings["threads"]:
        torch.set_num_threads(int(settings["threads"]))
    device = pick_device(str(settings["device"]))
    data_dir = Path(settings["data_dir"]).expanduser() if settings["data_dir"] else default_data_dir()
    output = Path(settings["output"]).expanduser() if settings["output"] else data_dir / "samples"

    from ..daemon.worker import InferenceWorker
    from ..engine.engine import Engine
    from ..engine.store import SoundStore
    from ..osc.server import OscServer

    try:
        store = SoundStore(data_dir / "session", durable=bool(settings["fsync"]))
    except (OSError, ValueError) as error:
        raise SystemExit(f"cannot open the session in {data_dir}: {error}")
    for problem in store.skipped:
        log.warning("skipped an unreadable version file: %s", problem)
    try:
        model = load_model(settings, device)
    except (OSError, ValueError) as error:
        raise SystemExit(f"cannot load the model: {error}")
    try:
        engine = Engine(model, store, output, allowed_folders=[data_dir, *settings["allow_dirs"]],
                        sample_rate=int(settings["sample_rate"]), default_guidance=settings["guidance"],
                        candidates=settings["candidates"])
    except (TypeError, ValueError) as error:
        raise SystemExit(f"--guidance / --candidates: {error}")
    worker = InferenceWorker(int(settings["queue_size"]))
    warm_up_on(worker, model, engine)
    info = model.info()
    try:
        server = OscServer(engine, worker, host, int(settings["port"]), settings["allow"],
                           model_name=model_label(info), device=str(device))
    except OSError as error:
        raise SystemExit(f"cannot listen on {host}:{settings['port']}: {error}")

    midi = None
    if settings["no_midi"]:
        server.midi_problem = "MIDI input is off (the daemon was started with --no-midi)"
    else:
        midi = open_midi(settings, engine, server)
        if midi is None:
            server.midi_problem = ("MIDI input could not be opened on the daemon's machine "
                                   "(no MIDI system or no such port; the daemon's log says which)")
    server.midi = midi
    engine.on_trigger = server.submit_action
    if midi is not None:
        attach_midi(engine, midi)

    stop = threading.Event()

    def on_signal(signum: int, frame: Any) -> None:
        log.info("signal %d: shutting down", signum)
        stop.set()
        server.stop()

    signal.signal(signal.SIGINT, on_signal)
    signal.signal(signal.SIGTERM, on_signal)
    thread = threading.Thread(target=server.serve_forever, name="notono-osc", daemon=True)
    thread.start()
    sampler = (f"KV-cached sampler, {info.get('step_precision')} step weights" if info.get("kv_cache")
               else "reference sampler (no KV cache)") + (f", guidance {engine.resolve_guidance(-1, generating=True):g} to generate and "
                  f"{engine.resolve_guidance(-1):g} to edit unless a request names one; each generated sound is "
                  f"picked on pitch from {engine.candidates or model.candidates} draw(s) (the first on pitch)"
                  + (", picked on previews of their top maps" if model.pick_on == "previews" else "")
                  + f"; each new bottom picked from {engine.candidates or model.bottom_candidates} draw(s)")
    log.info("sampling with the %s", sampler)
    compiling = model.compile_pays if settings["compile_step"] is None else settings["compile_step"]
    print(f"notono-live ready in {time.perf_counter() - started:.1f} s: OSC on udp {server.host}:{server.port}; "
          f"model {model_label(info)} ({info.get('name')}) on {device}; {len(store.sound_ids())} sound(s) restored; "
          f"samples go to {engine.output_folder}" + (f"; {COMPILE_STARTED}" if compiling else ""), flush=True)
    warming = warm_render_tools(engine.sample_rate)
    compilation = None
    if compiling:
        # Inductor's generated code and its cache: inside the daemon's own folder, not the system's temp
        os.environ.setdefault("TORCHINDUCTOR_CACHE_DIR", str(data_dir / "compile-cache"))
        compilation = compile_step_on(worker, model, settings, device, Path(os.environ["TORCHINDUCTOR_CACHE_DIR"]))
    unused_limit = float(settings["exit_when_unused"] or 0)
    try:
        while not stop.wait(0.5):
            unused = server.unused_seconds()
            if unused_limit > 0 and unused is not None and unused >= unused_limit:
                print(f"notono-live: no client for {unused:.0f} s, stopping (--exit-when-unused)", flush=True)
                break
    finally:
        server.stop()
        thread.join(2.0)
        if compilation is not None:
            compilation.stop()
        worker.stop()
        if midi is not None:
            midi.close()
        server.close()
        # a daemon stopped the moment it is ready: let the warming thread leave its imports and native
        # code first (interpreter shutdown under it aborted the process)
        warming.join(30.0)
        print("notono-live stopped", flush=True)
    return 0


def attach_midi(engine: Any, midi: Any) -> None:
    """Tell MIDI the controls' starting values (layer first), then every change made over OSC, so
    pick-up knobs wait for the real values and the region is clamped to the right layer."""
    for name, value in engine.control_values():
        midi.sync(name, value)
    engine.on_control_changed = midi.sync


def open_midi(settings: dict[str, Any], engine: Any, server: Any) -> Any:
    """Open MIDI input through notono_live.midi; None (after its one warning) when there is none."""
    try:
        from ..midi import open_midi_input
    except ImportError as error:
        log.warning("MIDI support is not available (%s); running without MIDI", error)
        return None

    def on_learned(result: Any) -> None:
        binding = result.binding.to_dict()
        number = binding.get("number")
        server.send(None, "/notono/midi/mapping", -1, binding["target"], binding.get("port") or "",
                    int(binding.get("channel") or 0), binding["type"], -1 if number is None else int(number))

    return open_midi_input(settings["midi_port"], settings["midi_mapping"], engine, on_learned=on_learned)
