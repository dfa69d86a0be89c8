"""`serve`'s compiled sampling step, built without holding up requests.

The first time a machine compiles the step (`NotonoModel.compile_steps`: eight graphs, two priors by
four batch kinds) Inductor generates and builds C++ for each graph: 10–25 s a graph, about 150 s in
all on the 2-core development CPU. Built on the daemon's inference thread, one graph per job, a
request that came meanwhile waited for the graph in progress, up to 25 s. From Inductor's cache the
same eight graphs take 1–2.5 s each.

So on a start whose cache is not known to be warm, the graphs are first built in a separate,
lower-priority process (``python -m notono_live.daemon.compiling``) that loads the same model with
the same settings and fills the same cache; requests meanwhile sample with the eager step on the
daemon's thread and wait for no graph. Once that process is done, the daemon builds its own graphs
from the cache, one job at a time as before, and writes a marker named after everything the graphs
depend on (`cache_key`), so the next start skips the separate process. If that process fails, the
daemon compiles in its own process as before, and a compiler that is missing or fails is reported
there (`COMPILE_FAILED`) while the eager step stays in use.
"""
from __future__ import annotations

import hashlib
import json
import logging
import os
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

log = logging.getLogger("notono_live.daemon")

# what `serve --compile-step` prints once it knows (`bench --compile-step` waits for one of them)
COMPILE_STARTED = "compiling the sampling step in the background"
COMPILE_READY = "compiled sampling step ready"
COMPILE_FAILED = "no compiled sampling step"
COMPILE_SEPARATE = "built the sampling step's graphs in a separate process"

# the settings the graphs depend on, passed to the separate process
_CHILD_SETTINGS = ("models", "untrained", "reference_sampler", "step_precision", "sampling_threads", "threads")
# the modules whose code the graphs are traced from
_TRACED = ("models/compiled_step.py", "models/priors.py", "models/transformer.py", "models/sampling.py")


def cache_key(model: Any, settings: dict[str, Any]) -> str:
    """A digest of everything the compiled graphs may depend on: the torch and Python versions, the
    traced modules' source, the priors' configurations, weights and step precision, the thread
    counts and the device. A digest that changes for nothing costs only a separate process that
    finds its graphs in the cache (seconds, in the background)."""
    import torch

    package = Path(__file__).resolve().parents[1]
    digest = hashlib.sha256()
    for name in _TRACED:
        digest.update((package / name).read_bytes())
    for prior in (model.top_prior, model.bottom_prior):
        for name, tensor in sorted(prior.state_dict().items()):
            digest.update(name.encode())
            digest.update(tensor.detach().cpu().contiguous().view(-1).view(torch.uint8).numpy().tobytes())
    priors = {name: {"config": repr(prior.config), "precision": str(prior.step_precision)}
              for name, prior in (("top", model.top_prior), ("bottom", model.bottom_prior))}
    described = {"torch": torch.__version__, "python": sys.version.split()[0], "device": str(model.device),
                 "priors": priors, "sampling_threads": settings.get("sampling_threads"),
                 "threads": settings.get("threads") or torch.get_num_threads()}
    digest.update(json.dumps(described, sort_keys=True).encode())
    return digest.hexdigest()[:20]


def marker_path(cache_dir: Path, key: str) -> Path:
    """The file whose presence says the cache in `cache_dir` holds the graphs of `key`."""
    return Path(cache_dir) / f"notono-sampling-step-{key}.done"


class Compilation:
    """The compilation `compile_step_on` started: `stop()` ends its separate process, if running."""

    def __init__(self) -> None:
        self.child: subprocess.Popen | None = None
        self.stopping = threading.Event()
        self._lock = threading.Lock()

    def stop(self, timeout: float = 5.0) -> None:
        self.stopping.set()
        with self._lock:
            child = self.child
        if child is not None and child.poll() is None:
            child.terminate()
            try:
                child.wait(timeout)
            except subprocess.TimeoutExpired:
                child.kill()
                child.wait()

    def _spawn(self, settings: dict[str, Any], device: str, cache_dir: Path) -> subprocess.Popen | None:
        chosen = {name: settings.get(name) for name in _CHILD_SETTINGS}
        env = {**os.environ, "TORCHINDUCTOR_CACHE_DIR": str(cache_dir)}
        with self._lock:
            if self.stopping.is_set():
                return None
            self.child = subprocess.Popen(
                [sys.executable, "-m", "notono_live.daemon.compiling", json.dumps(chosen), device],
                env=env, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                text=True)
            return self.child


def compile_step_on(worker: Any, model: Any, settings: dict[str, Any], device: str,
                    cache_dir: Path) -> Compilation:
    """`serve --compile-step`, once the daemon is ready: build the graphs in a separate process
    unless the cache is known to hold them (module docstring), then compile the sampling step one
    graph at a time, each graph a job of the inference worker (`NotonoModel.compile_steps`), so the
    graphs are built under the sampling thread count and a request waits for one graph at most.
    Requests meanwhile sample with the eager step. Says on stdout when it is done or why it failed;
    a failure changes nothing else. Returns the `Compilation`, for the daemon to stop."""
    from .worker import Busy, Job

    compilation = Compilation()
    started = time.perf_counter()
    marker = marker_path(cache_dir, cache_key(model, settings))

    def in_process() -> None:
        steps = model.compile_steps()

        def submit() -> None:
            if compilation.stopping.is_set():
                return
            try:
                worker.submit(Job(run=step, label="compile the sampling step"))
            except Busy as error:
                if "shutting down" not in str(error):   # a full queue: try again once it has room
                    threading.Timer(1.0, submit).start()

        def step() -> None:
            try:
                built = next(steps)
            except StopIteration:
                try:
                    marker.parent.mkdir(parents=True, exist_ok=True)
                    marker.write_text(f"{time.time():.0f}\n")
                except OSError as error:   # the next start compiles in a separate process again
                    log.warning("could not mark the compile cache as warm: %s", error)
                print(f"notono-live: {COMPILE_READY} in {time.perf_counter() - started:.1f} s; "
                      f"sampling uses it from now on", flush=True)
                return
            except Exception as error:   # noqa: BLE001 (RuntimeError names it; anything else must not stop the worker)
                print(f"notono-live: {COMPILE_FAILED} ({error}); sampling goes on with the eager step", flush=True)
                return
            log.info("compiled the sampling step's graph for the %s", built)
            submit()

        submit()

    def separately() -> None:
        try:
            child = compilation._spawn(settings, device, cache_dir)
        except OSError as error:
            log.warning("could not start the compile process (%s); compiling in the daemon", error)
            child = None
        if compilation.stopping.is_set():
            return
        if child is not None:
            _, errors = child.communicate()
            if compilation.stopping.is_set():
                return
            if child.returncode == 0:
                print(f"notono-live: {COMPILE_SEPARATE} in {time.perf_counter() - started:.1f} s; "
                      f"loading them", flush=True)
            else:
                last = (errors or "").strip().splitlines()[-1:] or ["no message"]
                log.warning("the compile process failed (exit %s: %s); compiling in the daemon",
                            child.returncode, last[0])
        in_process()

    if marker.exists():
        in_process()
    else:
        threading.Thread(target=separately, name="notono-compile", daemon=True).start()
    return compilation


def main(argv: list[str]) -> int:
    """The separate process: load the model as the daemon did and build every graph into the cache."""
    if len(argv) != 2:
        print("usage: python -m notono_live.daemon.compiling SETTINGS_JSON DEVICE", file=sys.stderr)
        return 2
    settings, device = json.loads(argv[0]), argv[1]
    if hasattr(os, "nice"):
        os.nice(10)   # below the daemon it builds for: requests come first
    import torch

    from .cli import load_model

    if settings.get("threads"):
        torch.set_num_threads(int(settings["threads"]))
    model = load_model(settings, device)
    try:
        for _ in model.compile_steps():
            pass
    except RuntimeError as error:
        print(str(error), file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
