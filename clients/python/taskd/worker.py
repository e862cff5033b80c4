"""A worker that pulls tasks of external kinds from taskd and runs them."""

from __future__ import annotations

import datetime
import json
import logging
import math
import os
import re
import signal
import socket
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Any, Callable, Dict, Iterable, List, Optional, Tuple

from taskd._duration import Duration, format_duration, parse_duration
from taskd._errors import TaskdConnectionError, TaskdError
from taskd.client import Client, _Cancel

__all__ = ["Permanent", "RetryAfter", "Task", "Worker"]

logger = logging.getLogger("taskd.worker")

#: A handler: called with the claimed task, returns its result (any JSON
#: value, or None).
Handler = Callable[["Task"], Any]

# Claim failures that are worth retrying back off from _BACKOFF_MIN,
# doubling, to _BACKOFF_MAX seconds.
_BACKOFF_MIN = 0.1
_BACKOFF_MAX = 5.0

# taskd's shortest lease, assumed when a claim's lease cannot be worked out.
_LEASE_FALLBACK = 5.0

# A claim asks for at most this many tasks (the API's limit).
_CLAIM_MAX = 100

# Longest error message sent with a failure; longer ones are cut (taskd
# takes up to 64 KiB, but an error is for reading).
_ERROR_MAX_CHARS = 4096

# Attempts at reporting an outcome through a transient error.
_REPORT_ATTEMPTS = 3

_SHUTDOWN_ERROR = "worker shutting down"


class Permanent(Exception):
    """Raise from a handler to fail the task for good: it is discarded
    without further attempts. The message becomes the attempt's error."""


class RetryAfter(Exception):
    """Raise from a handler to fail this attempt and have the task retried
    after ``seconds`` (a number of seconds or a duration string) instead of
    the usual backoff. ``msg`` becomes the attempt's error (default
    ``"retry after <seconds>"``). The retry counts as an attempt."""

    def __init__(self, seconds: Duration, msg: str = "") -> None:
        self.seconds = seconds
        self.msg = msg
        super().__init__(msg or f"retry after {format_duration(seconds)}")


class Task:
    """A claimed task, as a handler receives it.

    Attributes: ``id``, ``kind``, ``args`` (the task's arguments, decoded
    JSON), ``attempt`` (1 for the first), ``max_attempts``, ``queue``,
    ``batch_id`` (``None`` outside a batch), ``after_batch`` (the batch
    whose callback the task is, ``None`` for others), ``schedule`` (the
    schedule that enqueued it, ``None`` for a task submitted otherwise),
    ``lease`` (the lease token), ``lease_expires_at`` (an aware
    :class:`datetime.datetime`, updated by each heartbeat) and ``raw``, the
    claim's JSON object.
    """

    def __init__(self, client: Client, claimed: Dict[str, Any], lease_seconds: Optional[float] = None) -> None:
        self.raw = claimed
        self.id: int = claimed["id"]
        self.kind: str = claimed["kind"]
        self.args: Any = claimed.get("args")
        self.attempt: int = claimed.get("attempt", 0)
        self.max_attempts: int = claimed.get("max_attempts", 0)
        self.queue: str = claimed.get("queue", "")
        self.batch_id: Optional[int] = claimed.get("batch_id")
        self.after_batch: Optional[int] = claimed.get("after_batch")
        self.schedule: Optional[str] = claimed.get("schedule")
        self.lease: str = claimed["lease"]
        self.lease_expires_at: Optional[datetime.datetime] = _parse_time(claimed.get("lease_expires_at"))
        self._client = client
        self._cancel_requested = False
        self._report_lock = threading.Lock()
        self._reported = False
        # Heartbeats are due every third of the lease.
        if lease_seconds is None:
            lease_seconds = _LEASE_FALLBACK
            if self.lease_expires_at is not None:
                left = (self.lease_expires_at - datetime.datetime.now(datetime.timezone.utc)).total_seconds()
                if left > 0:
                    lease_seconds = left  # from the server's clock: a skew shortens or lengthens it
        self._beat_every = max(lease_seconds / 3, 0.05)
        self._next_beat = time.monotonic() + self._beat_every

    def __repr__(self) -> str:
        return f"<Task {self.id} {self.kind} attempt {self.attempt}/{self.max_attempts}>"

    @property
    def cancel_requested(self) -> bool:
        """True once the task was cancelled (as a heartbeat reported) or the
        worker gave up on it while shutting down. Cancellation is
        cooperative: a long handler should check this now and then and
        return (or raise) early when it is set."""
        return self._cancel_requested

    def heartbeat(self, extend: Optional[Duration] = None) -> Dict[str, Any]:
        """Extend the lease now and return taskd's answer,
        ``{"lease_expires_at", "cancel_requested"}``.

        The worker already heartbeats every task it runs at about a third of
        its lease; call this only to extend the lease by more (``extend``).
        Raises :class:`~taskd.TaskdError` with status 409 when the lease was
        lost (the task may then run elsewhere).
        """
        answer = self._client.heartbeat(self.id, self.lease, extend)
        expires = _parse_time(answer.get("lease_expires_at"))
        if expires is not None:
            self.lease_expires_at = expires
        if answer.get("cancel_requested"):
            self._cancel_requested = True
        self._next_beat = time.monotonic() + self._beat_every
        return answer

    def _take_report(self) -> bool:
        """Return True once: to whoever reports the task's outcome."""
        with self._report_lock:
            if self._reported:
                return False
            self._reported = True
            return True


class Worker:
    """Pulls tasks of external kinds (``run: external``) from taskd, runs
    each with the handler registered for its kind, and reports the outcome.

    ::

        worker = Worker(Client("http://127.0.0.1:8080"), concurrency=4)

        @worker.handler("resize")
        def resize(task):
            return {"url": make_thumbnail(task.args["url"])}

        worker.run()

    - ``kinds``: the kinds to claim; by default those with a handler. Every
      kind given needs a handler.
    - ``concurrency``: tasks run at once, each on a thread of a
      :class:`~concurrent.futures.ThreadPoolExecutor`; a claim asks for at
      most the free slots.
    - ``queues``: claim only from these queues (default: any).
    - ``name``: the worker's name in the tasks' attempts (default
      ``<hostname>-<pid>``).
    - ``lease``: the lease claims ask for and heartbeats extend to (default:
      taskd's, the kind's timeout or 60 s).
    - ``poll_wait``: how long one claim waits for tasks (at most 60 s).
    - ``grace``: seconds that running tasks get to finish once the worker
      stops.

    A handler returns the task's result (any JSON value, or ``None``) to
    complete it; raises :class:`Permanent` to discard it, :class:`RetryAfter`
    to have it retried after a given time, or any other exception to fail
    the attempt with error ``"ExceptionType: message"`` (retried with
    taskd's backoff while attempts are left).

    While a handler runs, a background thread heartbeats its task at about a
    third of the lease, so long work keeps its lease; when taskd answers that
    the task was cancelled, ``task.cancel_requested`` becomes true.
    Cancellation is cooperative: nothing interrupts the handler.

    A Worker runs once. See :meth:`run` and :meth:`stop` for shutting down.
    """

    def __init__(
        self,
        client: Client,
        kinds: Optional[Iterable[str]] = None,
        concurrency: int = 1,
        queues: Optional[Iterable[str]] = None,
        name: Optional[str] = None,
        lease: Optional[Duration] = None,
        poll_wait: Duration = "30s",
        grace: float = 30.0,
    ) -> None:
        if concurrency < 1:
            raise ValueError("concurrency must be at least 1")
        if grace < 0:
            raise ValueError("grace must not be negative")
        self.client = client
        self.kinds = _names(kinds)
        self.concurrency = concurrency
        self.queues = _names(queues)
        self.name = name or f"{socket.gethostname()}-{os.getpid()}"
        self.lease = lease
        self.poll_wait = poll_wait
        self.grace = float(grace)
        self._lease_seconds = parse_duration(lease) if lease is not None else None
        parse_duration(poll_wait)  # fail now, not in the claim loop

        self._handlers: Dict[str, Handler] = {}
        # One reentrant lock guards the state below: stop() may run in a
        # signal handler that interrupted the main thread while it held it.
        self._cond = threading.Condition(threading.RLock())
        self._inflight: Dict[str, Task] = {}  # by lease token
        self._started = False
        self._stopping = False
        self._force = False  # a second signal: fail back at once
        self._beater_done = False
        self._claim_cancel: Optional[_Cancel] = None

    def handler(self, kind: str) -> Callable[[Handler], Handler]:
        """Register the decorated function as the handler of ``kind``."""

        def register(fn: Handler) -> Handler:
            if kind in self._handlers:
                raise ValueError(f"kind {kind!r} already has a handler")
            self._handlers[kind] = fn
            return fn

        return register

    def run(self) -> None:
        """Claim and run tasks until :meth:`stop` is called or, when run on
        the main thread, SIGTERM or SIGINT arrives.

        Stopping is graceful: no more tasks are claimed (a claim waiting for
        tasks is abandoned), running tasks get ``grace`` seconds to finish
        and be reported, and those still running then are failed back with
        error ``"worker shutting down"`` and ``retry_after`` 0, so that they
        run again at once elsewhere; their ``cancel_requested`` is set. A
        second signal skips the rest of the grace. Abandoned handler threads
        are not killed: the interpreter waits for them at exit, so handlers
        should watch ``cancel_requested``.

        Connection and server (5xx) errors while claiming are logged and
        retried with a backoff of up to 5 s. Other errors (an unknown kind,
        a refused token) stop the worker as above and are raised.
        """
        kinds = self._kinds()
        with self._cond:
            if self._started:
                raise RuntimeError("a Worker runs once")
            self._started = True
        restore = self._install_signal_handlers()
        try:
            self._run(kinds)
        finally:
            restore()

    def stop(self) -> None:
        """Ask :meth:`run` to stop gracefully; returns at once. Safe to call
        from any thread or from a signal handler."""
        with self._cond:
            self._stopping = True
            cancel = self._claim_cancel
            self._cond.notify_all()
        if cancel is not None:
            cancel.cancel()

    # The claim loop.

    def _kinds(self) -> List[str]:
        kinds = self.kinds if self.kinds is not None else sorted(self._handlers)
        if not kinds:
            raise ValueError("no kinds to claim: register a handler with @worker.handler(kind)")
        missing = [k for k in kinds if k not in self._handlers]
        if missing:
            raise ValueError(f"no handler for kind {missing[0]!r}")
        return kinds

    def _run(self, kinds: List[str]) -> None:
        executor = ThreadPoolExecutor(max_workers=self.concurrency, thread_name_prefix="taskd-worker")
        beater = threading.Thread(target=self._heartbeat_loop, name="taskd-heartbeat", daemon=True)
        beater.start()
        logger.info("worker %s started: kinds %s, concurrency %d", self.name, ", ".join(kinds), self.concurrency)
        try:
            self._claim_loop(kinds, executor)
        finally:
            with self._cond:
                self._stopping = True
            self._drain()
            with self._cond:
                self._beater_done = True
                self._cond.notify_all()
            beater.join()
            executor.shutdown(wait=False)
            logger.info("worker %s stopped", self.name)

    def _claim_loop(self, kinds: List[str], executor: ThreadPoolExecutor) -> None:
        backoff = _BACKOFF_MIN
        while True:
            with self._cond:
                while not self._stopping and len(self._inflight) >= self.concurrency:
                    self._cond.wait(1.0)
                if self._stopping:
                    return
                free = self.concurrency - len(self._inflight)
                cancel = self._claim_cancel = _Cancel()
            try:
                claimed = self.client._claim(
                    kinds, self.queues, min(free, _CLAIM_MAX), self.poll_wait, self.lease, self.name, cancel
                )
            except TaskdError as exc:
                if self._is_stopping():
                    return
                if not _transient(exc):
                    raise
                logger.warning("claiming tasks failed (%s); retrying in %.1fs", exc, backoff)
                with self._cond:
                    self._cond.wait_for(lambda: self._stopping, backoff)
                backoff = min(backoff * 2, _BACKOFF_MAX)
                continue
            finally:
                with self._cond:
                    self._claim_cancel = None
            backoff = _BACKOFF_MIN

            for raw in claimed:
                task = Task(self.client, raw, self._lease_seconds)
                with self._cond:
                    stopping = self._stopping
                    if not stopping:
                        self._inflight[task.lease] = task
                        self._cond.notify_all()  # the heartbeater schedules it
                if stopping:
                    # Claimed as we were stopping: give it back at once.
                    self._fail_back(task)
                else:
                    executor.submit(self._execute, task)

    def _is_stopping(self) -> bool:
        with self._cond:
            return self._stopping

    # Running one task.

    def _execute(self, task: Task) -> None:
        try:
            outcome = self._handle(task)
            self._report(task, outcome)
        except Exception:  # a bug here must not lose the slot
            logger.exception("task %d: reporting its outcome failed", task.id)
        finally:
            with self._cond:
                self._inflight.pop(task.lease, None)
                self._cond.notify_all()

    def _handle(self, task: Task) -> Tuple[str, Dict[str, Any]]:
        """Run the task's handler and return how to report it: ("complete",
        kwargs) or ("fail", kwargs)."""
        handler = self._handlers.get(task.kind)
        if handler is None:
            return "fail", {"error": f"this worker has no handler for kind {task.kind!r}"}
        try:
            result = handler(task)
            json.dumps(result, allow_nan=False)
        except Permanent as exc:
            logger.warning("task %d (%s) failed permanently: %s", task.id, task.kind, exc)
            return "fail", {"error": _message(str(exc) or "permanent failure"), "permanent": True}
        except RetryAfter as exc:
            logger.info("task %d (%s) asked to be retried after %s", task.id, task.kind, format_duration(exc.seconds))
            return "fail", {"error": _message(str(exc)), "retry_after": exc.seconds}
        except Exception as exc:
            logger.warning("task %d (%s) failed", task.id, task.kind, exc_info=True)
            text = str(exc)
            return "fail", {"error": _message(f"{type(exc).__name__}: {text}" if text else type(exc).__name__)}
        return "complete", {"result": result}

    def _report(self, task: Task, outcome: Tuple[str, Dict[str, Any]]) -> None:
        if not task._take_report():
            return  # failed back by the shutdown while the handler ran
        what, kwargs = outcome
        call = self.client.complete if what == "complete" else self.client.fail
        for attempt in range(_REPORT_ATTEMPTS):
            try:
                call(task.id, task.lease, **kwargs)
                return
            except TaskdError as exc:
                if exc.status == 409:
                    logger.warning("task %d: lease lost, not recorded as %sd: %s", task.id, what, exc)
                    return
                if _transient(exc) and attempt + 1 < _REPORT_ATTEMPTS:
                    time.sleep(0.5 * 2**attempt)
                    continue
                logger.error(
                    "task %d: could not be recorded as %sd (it runs again once its lease expires): %s",
                    task.id, what, exc,
                )
                return

    def _fail_back(self, task: Task) -> None:
        if not task._take_report():
            return
        task._cancel_requested = True
        try:
            # Not counted as an attempt, as taskd does with its own running
            # tasks when it stops: a task on its last attempt is not lost.
            self.client.fail(task.id, task.lease, _SHUTDOWN_ERROR, interrupted=True)
        except TaskdError as exc:
            logger.warning("task %d: could not be failed back (it runs again once its lease expires): %s", task.id, exc)

    def _drain(self) -> None:
        """Wait up to the grace for running tasks, then fail back the rest."""
        deadline = time.monotonic() + self.grace
        with self._cond:
            if self._inflight:
                logger.info("stopping: waiting up to %gs for %d running tasks", self.grace, len(self._inflight))
            while self._inflight and not self._force:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    break
                self._cond.wait(min(remaining, 1.0))
            leftover = list(self._inflight.values())
            self._inflight.clear()
            self._cond.notify_all()
        if leftover:
            logger.warning("stopping: failing back %d tasks still running", len(leftover))
        for task in leftover:
            self._fail_back(task)

    # Heartbeats.

    def _heartbeat_loop(self) -> None:
        while True:
            with self._cond:
                if self._beater_done:
                    return
                now = time.monotonic()
                due = [t for t in self._inflight.values() if t._next_beat <= now]
                if not due:
                    upcoming = min((t._next_beat for t in self._inflight.values()), default=now + 1.0)
                    self._cond.wait(min(max(upcoming - now, 0.01), 1.0))
                    continue
            for task in due:
                self._beat(task)

    def _beat(self, task: Task) -> None:
        was_cancelled = task.cancel_requested
        try:
            task.heartbeat(self.lease)
        except TaskdError as exc:
            if exc.status == 409:
                task._next_beat = math.inf
                if not task._reported:  # else it just finished: no lease to keep
                    logger.warning("task %d: lease lost (%s); no longer heartbeating it", task.id, exc)
            else:
                logger.warning("task %d: heartbeat failed (%s); trying again", task.id, exc)
                task._next_beat = time.monotonic() + min(task._beat_every, 1.0)
            return
        except Exception:
            logger.exception("task %d: heartbeat failed", task.id)
            task._next_beat = time.monotonic() + min(task._beat_every, 1.0)
            return
        if task.cancel_requested and not was_cancelled:
            logger.info("task %d: cancellation requested", task.id)

    # Signals.

    def _install_signal_handlers(self) -> Callable[[], None]:
        if threading.current_thread() is not threading.main_thread():
            return lambda: None
        previous = {}
        for sig in (signal.SIGTERM, signal.SIGINT):
            previous[sig] = signal.signal(sig, self._on_signal)

        def restore() -> None:
            for sig, handler in previous.items():
                signal.signal(sig, handler if handler is not None else signal.SIG_DFL)

        return restore

    def _on_signal(self, signum: int, frame: Any) -> None:
        name = signal.Signals(signum).name
        with self._cond:
            again = self._stopping
            if again:
                self._force = True
                self._cond.notify_all()
        if again:
            logger.warning("received %s again: failing back running tasks now", name)
        else:
            logger.info("received %s: stopping", name)
        self.stop()


def _names(names: Optional[Iterable[str]]) -> Optional[List[str]]:
    if names is None:
        return None
    return [names] if isinstance(names, str) else list(names)


def _transient(exc: TaskdError) -> bool:
    """Whether a request that failed with exc is worth repeating."""
    return isinstance(exc, TaskdConnectionError) or exc.status in (408, 429) or exc.status >= 500


def _message(text: str) -> str:
    return text if len(text) <= _ERROR_MAX_CHARS else text[: _ERROR_MAX_CHARS - 1] + "…"


_TIME = re.compile(r"(\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d)(?:\.(\d+))?(Z|[+-]\d\d:\d\d)$", re.IGNORECASE)


def _parse_time(value: Any) -> Optional[datetime.datetime]:
    """Parse an RFC 3339 time as taskd writes it (Python 3.9's fromisoformat
    reads neither "Z" nor nanoseconds)."""
    if not isinstance(value, str):
        return None
    m = _TIME.match(value)
    if m is None:
        return None
    base, frac, zone = m.groups()
    zone = "+00:00" if zone.upper() == "Z" else zone
    micros = (frac or "").ljust(6, "0")[:6]
    try:
        return datetime.datetime.fromisoformat(f"{base}.{micros}{zone}")
    except ValueError:
        return None
