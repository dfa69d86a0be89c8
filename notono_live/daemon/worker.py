"""The single inference worker: a bounded queue, one thread, and coalescing of repeated edits.

One thread runs every model call, so torch never competes with itself for the CPU and the OSC thread
stays free to answer pings. The queue is bounded: a request that does not fit is refused at once
(`Busy`), never silently dropped. A job may carry a coalescing key (sound, operation): when a newer
job with the same key arrives while an older one still waits, the older one is dropped and told so,
which is what a producer twisting a knob wants.
"""
from __future__ import annotations

import logging
import threading
from collections import deque
from dataclasses import dataclass, field
from typing import Callable, Hashable

log = logging.getLogger("notono_live.worker")


class Busy(Exception):
    """The queue is full."""


def queue_stage(waiting: int, running: bool) -> str:
    """What a newly queued job waits for, in words: 'queued', 'queued (1 running ahead)',
    'queued (1 running and 2 waiting ahead)' or 'queued (2 waiting ahead)'."""
    ahead = (["1 running"] if running else []) + ([f"{waiting} waiting"] if waiting else [])
    return f"queued ({' and '.join(ahead)} ahead)" if ahead else "queued"


@dataclass
class Job:
    """One unit of work for the worker.

    Args:
        run: does the work and sends its own replies; must not raise (errors are its to report).
        coalesce_key: jobs with equal keys replace each other while waiting; None never coalesces.
        on_superseded: called (on the submitting thread) when a newer job replaced this one.
        on_dropped: called when the worker stops before running it.
        on_queued: called with `queue_stage(waiting, running)` once it is queued, before it can start:
            the jobs waiting before it and whether one is running.
        label: for the log.
    """

    run: Callable[[], None]
    coalesce_key: Hashable | None = None
    on_superseded: Callable[["Job"], None] = lambda newer: None
    on_dropped: Callable[[], None] = lambda: None
    on_queued: Callable[[str], None] = lambda stage: None
    label: str = ""
    superseded_by: "Job | None" = field(default=None, repr=False)


class InferenceWorker:
    """A bounded queue served by one thread.

    Args:
        max_queue: jobs that may wait (not counting the one running).
    """

    def __init__(self, max_queue: int = 16) -> None:
        if max_queue < 1:
            raise ValueError(f"queue size {max_queue} must be at least 1")
        self.max_queue = max_queue
        self._pending: deque[Job] = deque()
        self._cond = threading.Condition()
        self._running: Job | None = None
        self._stopping = False
        self._thread = threading.Thread(target=self._loop, name="notono-inference", daemon=True)
        self._thread.start()

    @property
    def queue_length(self) -> int:
        with self._cond:
            return len(self._pending)

    @property
    def busy(self) -> bool:
        with self._cond:
            return self._running is not None

    def release(self) -> None:
        """Called by the running job once its work is done and only its replies are left to send: it no
        longer counts as running, so a request that its final reply prompts is told 'queued', not
        that a render runs ahead of it."""
        with self._cond:
            self._running = None

    def submit(self, job: Job) -> int:
        """Queue a job; returns how many jobs are ahead of it (waiting, plus the running one). Raises
        Busy when the queue is full."""
        replaced: Job | None = None
        with self._cond:
            if self._stopping:
                raise Busy("the daemon is shutting down")
            if job.coalesce_key is not None:
                for i, waiting in enumerate(self._pending):
                    if waiting.coalesce_key == job.coalesce_key:
                        replaced = waiting
                        self._pending[i] = job   # keep the older job's place in the line
                        position = i
                        break
            if replaced is None:
                if len(self._pending) >= self.max_queue:
                    raise Busy(f"the inference queue is full ({self.max_queue} waiting); try again shortly")
                self._pending.append(job)
                position = len(self._pending) - 1
            running = self._running is not None
            # reported under the lock so that "queued" always reaches the client before any progress
            try:
                job.on_queued(queue_stage(position, running))
            except Exception:
                log.exception("on_queued failed for %s", job.label)
            self._cond.notify()
        if replaced is not None:
            replaced.on_superseded(job)
        return position + int(running)

    def _loop(self) -> None:
        while True:
            with self._cond:
                while not self._pending and not self._stopping:
                    self._cond.wait()
                if self._stopping:
                    return
                job = self._pending.popleft()
                self._running = job
            try:
                job.run()
            except Exception:   # a job reports its own errors; this is a last guard for the thread
                log.exception("job %s failed", job.label)
            finally:
                with self._cond:
                    self._running = None

    def stop(self, timeout: float = 30.0) -> None:
        """Finish the running job, drop the waiting ones (telling their clients), and end the thread."""
        with self._cond:
            self._stopping = True
            dropped = list(self._pending)
            self._pending.clear()
            self._cond.notify_all()
        for job in dropped:
            try:
                job.on_dropped()
            except Exception:
                log.exception("could not report dropped job %s", job.label)
        self._thread.join(timeout)
