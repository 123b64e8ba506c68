"""The one place that moves work off the GUI thread.

* :class:`Lane` is a single worker thread with a FIFO of jobs. The *model lane* owns every
  torch object (experts, explainer), so models are built, used and freed on one thread and
  never raced; an *io lane* reads images ahead and writes blobs. Each job carries a
  :class:`RequestToken` (channel, image id, counter): submitting a new job on a channel
  cancels the older one there and a result that arrives for an outdated token is dropped,
  so a quick J-J-J never paints the heatmap of an image the inspector already left.
* Training rounds run as a child process started by ``services.rounds``; the GUI gives
  that blocking call a lane of its own (see ``models_panel.py``), so the model lane stays
  free for inference.

Results, progress and errors are delivered on the GUI thread through queued signals.
"""

from __future__ import annotations

import itertools
import logging
import queue
import threading
import traceback
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, TypeVar

from PySide6.QtCore import QObject, QThread, Signal

from workstation.core.errors import CancelledError, UserError
from workstation.model_cache import ModelCache, release_memory

log = logging.getLogger(__name__)

ProgressFn = Callable[[int, int, str], None]
"""``progress(done, total, message)`` called from the worker thread."""
T = TypeVar("T")


class CancelToken:
    """Cooperative cancel flag handed to long work; checking it is cheap."""

    def __init__(self) -> None:
        self._event = threading.Event()

    def cancel(self) -> None:
        self._event.set()

    @property
    def cancelled(self) -> bool:
        return self._event.is_set()

    @property
    def event(self) -> threading.Event:
        """The underlying event, for services that take a ``threading.Event``."""
        return self._event

    def raise_if_cancelled(self) -> None:
        if self._event.is_set():
            raise CancelledError()


def exclusive_model_job(
    models: ModelCache, fn: Callable[[ProgressFn, CancelToken], T]
) -> Callable[[ProgressFn, CancelToken], T]:
    """Wrap a model-lane job that loads models of its own (fitting, inspecting).

    The cached models are unloaded first, so the job has the GPU to itself, and its own
    models are freed when it ends, also when it fails: the exception that travels to the
    GUI thread would otherwise keep the job's frames, and the models in them, alive.
    """

    def job(progress: ProgressFn, cancel: CancelToken) -> T:
        models.clear()
        try:
            return fn(progress, cancel)
        except BaseException as exc:
            traceback.clear_frames(exc.__traceback__)
            raise
        finally:
            release_memory()

    return job


def unload_models(lane: Lane, models: ModelCache) -> None:
    """Free the cached models now, on the model lane that owns them (after a product or
    settings switch), rather than only when the next model loads."""
    lane.submit(lambda _p, _c: models.clear(), channel="unload")


@dataclass(frozen=True)
class RequestToken:
    """Identifies one request; results for anything but a channel's latest token are stale."""

    channel: str | None
    image_id: int | None
    counter: int


@dataclass
class Job:
    token: RequestToken
    fn: Callable[[ProgressFn, CancelToken], Any]
    on_result: Callable[[Any], None] | None = None
    on_error: Callable[[BaseException], None] | None = None
    on_progress: Callable[[int, int, str], None] | None = None
    essential: bool = False
    """Runs even while the lane shuts down (store writes); anything else queued is dropped."""
    cancel: CancelToken = field(default_factory=CancelToken)


class _LaneThread(QThread):
    def __init__(self, lane: Lane, name: str) -> None:
        super().__init__()
        self._lane = lane
        self.setObjectName(name)

    def run(self) -> None:
        self._lane._serve()


class Lane(QObject):
    """A single worker thread running jobs in order; see the module docstring."""

    _done = Signal(object, object)
    _failed = Signal(object, object)
    _progressed = Signal(object, int, int, str)
    busy_changed = Signal(bool)

    def __init__(self, name: str, parent: QObject | None = None) -> None:
        super().__init__(parent)
        self.name = name
        self._queue: queue.Queue[Job | None] = queue.Queue()
        self._counter = itertools.count(1)
        self._latest: dict[str, int] = {}
        self._pending: dict[str, Job] = {}
        self._active = 0
        self._lock = threading.Lock()
        self._closing = threading.Event()
        self._done.connect(self._deliver_result)
        self._failed.connect(self._deliver_error)
        self._progressed.connect(self._deliver_progress)
        self._thread = _LaneThread(self, f"{name}-lane")
        self._thread.start()

    # -- submitting (GUI thread) ----------------------------------------------------------
    def submit(
        self,
        fn: Callable[[ProgressFn, CancelToken], Any],
        *,
        channel: str | None = None,
        image_id: int | None = None,
        on_result: Callable[[Any], None] | None = None,
        on_error: Callable[[BaseException], None] | None = None,
        on_progress: Callable[[int, int, str], None] | None = None,
        essential: bool = False,
    ) -> Job:
        """Queue ``fn(progress, cancel)``; a job on a named channel supersedes the older one.

        ``essential`` jobs (store writes) still run when the lane shuts down; the rest of the
        queue (read-ahead, inference) is dropped then, so quitting never waits for it.
        """
        token = RequestToken(channel, image_id, next(self._counter))
        job = Job(token, fn, on_result, on_error, on_progress, essential)
        if channel is not None:
            older = self._pending.get(channel)
            if older is not None:
                older.cancel.cancel()
            self._latest[channel] = token.counter
            self._pending[channel] = job
        with self._lock:
            self._active += 1
            if self._active == 1:
                self.busy_changed.emit(True)
        self._queue.put(job)
        return job

    def cancel(self, channel: str) -> None:
        job = self._pending.get(channel)
        if job is not None:
            job.cancel.cancel()

    def is_current(self, token: RequestToken) -> bool:
        return token.channel is None or self._latest.get(token.channel) == token.counter

    @property
    def busy(self) -> bool:
        return self._active > 0

    def stop(self) -> None:
        """Ask the thread to stop without waiting: the running job is cancelled, queued
        jobs are dropped except essential ones, which run first."""
        if self._closing.is_set():
            return
        self._closing.set()
        for job in self._pending.values():
            job.cancel.cancel()
        self._queue.put(None)

    def wait(self, timeout_ms: int | None = None) -> bool:
        """Wait for the thread to end (after :meth:`stop`); True when it has."""
        return self._thread.wait() if timeout_ms is None else self._thread.wait(timeout_ms)

    def shutdown(self, timeout_ms: int = 10000) -> bool:
        """:meth:`stop`, then wait up to ``timeout_ms``; True when the thread stopped."""
        self.stop()
        return self.wait(timeout_ms)

    def is_running(self) -> bool:
        return self._thread.isRunning()

    # -- worker thread ----------------------------------------------------------------------
    def _serve(self) -> None:
        while True:
            job = self._queue.get()
            if job is None:
                return
            if job.cancel.cancelled or (self._closing.is_set() and not job.essential):
                self._failed.emit(job, CancelledError())
                continue

            def progress(done: int, total: int, message: str = "", job: Job = job) -> None:
                job.cancel.raise_if_cancelled()
                self._progressed.emit(job, int(done), int(total), message)

            try:
                result = job.fn(progress, job.cancel)
            except BaseException as exc:
                if not isinstance(exc, UserError | CancelledError):
                    log.exception("unexpected failure on the %s lane", self.name)
                self._failed.emit(job, exc)
            else:
                self._done.emit(job, result)

    # -- delivery (GUI thread) --------------------------------------------------------------
    def _finish(self, job: Job) -> bool:
        """Book-keeping for a finished job; True when it is still its channel's latest.

        A job superseded on its channel is stale and says nothing more; one cancelled by
        :meth:`cancel` is still current, so its caller hears the CancelledError.
        """
        with self._lock:
            self._active -= 1
            if self._active == 0:
                self.busy_changed.emit(False)
        channel = job.token.channel
        if channel is not None and self._pending.get(channel) is job:
            del self._pending[channel]
        return self.is_current(job.token)

    def _deliver_result(self, job: Job, result: Any) -> None:
        if self._finish(job) and job.on_result is not None:
            job.on_result(result)

    def _deliver_error(self, job: Job, exc: BaseException) -> None:
        current = self._finish(job)
        if job.on_error is not None and (current or not isinstance(exc, CancelledError)):
            job.on_error(exc)

    def _deliver_progress(self, job: Job, done: int, total: int, message: str) -> None:
        if job.on_progress is not None and self.is_current(job.token):
            job.on_progress(done, total, message)
