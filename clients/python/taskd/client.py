"""The HTTP client of taskd's API v1."""

from __future__ import annotations

import datetime
import http.client
import json
import socket
import threading
import time
import urllib.parse
from typing import Any, Callable, Dict, Iterable, List, Mapping, Optional

from taskd._duration import Duration, format_duration, parse_duration
from taskd._errors import TaskdConnectionError, TaskdError, problem_from_response

__all__ = ["Client", "FINAL_STATES"]

__version__ = "0.1.0"

#: The states a task does not leave on its own.
FINAL_STATES = frozenset({"completed", "cancelled", "discarded"})

# The optional fields of a submitted task, besides kind and args.
_TASK_FIELDS = frozenset({"queue", "priority", "max_attempts", "scheduled_at", "delay", "tags", "backoff", "timeout"})

# The fields of a task's backoff; initial and max are durations.
_BACKOFF_FIELDS = frozenset({"initial", "max", "multiplier", "jitter"})

# Client-side waiting polls GET with this backoff, in seconds.
# The longest wait taskd holds one request for (?wait=); longer waits are
# several requests.
_SERVER_WAIT_MAX = 60.0
# Pauses between waiting requests that came back early unfinished (a
# server shutting down): never a tight loop.
_POLL_FIRST = 0.05
_POLL_MAX = 1.0

# A claim may be held by the server for its whole wait; the socket timeout
# is at least that plus this margin.
_CLAIM_TIMEOUT_MARGIN = 10.0


class Client:
    """A client of one taskd server.

    ``url`` is the server's base URL, such as ``"http://127.0.0.1:8080"``
    (a path prefix is kept: ``"https://example.com/taskd"``). ``token``, if
    given, is sent as ``Authorization: Bearer <token>``. ``timeout`` bounds
    each request in seconds (connecting, and each wait for data); a claim's
    timeout is raised above its ``wait``.

    Every method returns taskd's JSON answer as plain ``dict``/``list``
    values, and raises :class:`~taskd.TaskdError` for an error answer
    (non-2xx) and :class:`~taskd.TaskdConnectionError` (a subclass, status 0)
    when no answer arrived. Each request uses a new connection, so a
    ``Client`` may be shared between threads. HTTP proxies are not used.

    Durations (``delay``, ``timeout``, a backoff's ``initial`` and ``max``,
    ``wait``, ``lease``, ``retry_after``, ``extend``)
    are Go duration strings such as ``"30s"`` or ``"1h30m"``, numbers of
    seconds (``1.5`` is sent as ``"1.5s"``) or :class:`datetime.timedelta`.
    """

    def __init__(self, url: str, token: Optional[str] = None, timeout: float = 30.0) -> None:
        parts = urllib.parse.urlsplit(url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError(f"invalid taskd URL {url!r}: want http://host[:port] or https://host[:port]")
        if timeout <= 0:
            raise ValueError("timeout must be positive")
        self.url = url.rstrip("/")
        self.timeout = float(timeout)
        self._https = parts.scheme == "https"
        self._host = parts.hostname
        self._port = parts.port
        self._prefix = parts.path.rstrip("/")
        self._headers = {"Accept": "application/json", "User-Agent": f"taskd-python/{__version__}"}
        if token:
            self._headers["Authorization"] = f"Bearer {token}"

    def __repr__(self) -> str:
        return f"Client({self.url!r})"

    # Tasks.

    def submit(self, kind: str, args: Optional[Mapping[str, Any]] = None, **fields: Any) -> Dict[str, Any]:
        """Submit a task (``POST /v1/tasks``) and return it as inserted.

        ``args`` defaults to ``{}``. The optional ``fields`` are the API's:
        ``queue``, ``priority`` (1–4), ``max_attempts``, ``scheduled_at``
        (an RFC 3339 string or an aware :class:`datetime.datetime`),
        ``delay`` (a duration), ``tags`` (a list of strings), ``timeout``
        (a duration: how long one attempt may run) and ``backoff`` (the
        retry policy, a mapping of any of ``initial`` and ``max``, durations,
        ``multiplier`` and ``jitter``, numbers, such as ``{"initial": 1,
        "multiplier": 1, "jitter": 0}``; the rest is the kind's). A field
        (or backoff field) set to ``None`` is left out. The task returned
        shows the ``backoff`` and ``timeout`` in effect. ``idempotency_key``
        is sent as the
        ``Idempotency-Key`` header: repeating the call with the same key and
        body returns the task the first call created instead of a new one.
        """
        key = fields.pop("idempotency_key", None)
        body = _task_body(kind, args, fields, "submit()")
        return self._request("POST", "/v1/tasks", body, headers=_idempotency(key))

    def submit_batch(
        self,
        tasks: Iterable[Mapping[str, Any]],
        wait: Optional[Duration] = None,
        *,
        then: Optional[Mapping[str, Any]] = None,
        idempotency_key: Optional[str] = None,
    ) -> Dict[str, Any]:
        """Submit tasks all or nothing (``POST /v1/batches``).

        Each item is a mapping with ``kind``, ``args`` and any of
        :meth:`submit`'s fields, such as ``{"kind": "double", "args":
        {"value": 1}, "priority": 2}``. Returns ``{"id", "task_ids"}``.

        ``then``, a mapping like an item, is the batch's callback: a task
        the server inserts once, when every task of the batch is final. It
        carries the batch's ID as ``after_batch``; the batch shows it as
        ``then_task_id`` once it exists.

        With ``wait``, the server holds the answer until the batch is
        ``done`` or the wait has passed (``POST /v1/batches?wait=``), and
        the batch is returned as ``GET /v1/batches/{id}`` shows it then,
        with the ``task_ids`` added.
        """
        items = []
        for i, task in enumerate(tasks):
            task = dict(task)
            if "kind" not in task:
                raise ValueError(f"tasks[{i}] has no kind")
            kind, args = task.pop("kind"), task.pop("args", None)
            items.append(_task_body(kind, args, task, f"tasks[{i}]"))
        body: Dict[str, Any] = {"tasks": items}
        if then is not None:
            callback = dict(then)
            if "kind" not in callback:
                raise ValueError("then has no kind")
            kind, args = callback.pop("kind"), callback.pop("args", None)
            body["then"] = _task_body(kind, args, callback, "then")
        if wait is None:
            return self._request("POST", "/v1/batches", body, headers=_idempotency(idempotency_key))
        seconds = _wait_seconds(wait)
        deadline = time.monotonic() + seconds
        first = min(seconds, _SERVER_WAIT_MAX)
        batch = self._request(
            "POST", "/v1/batches?wait=" + _wait_param(first), body,
            headers=_idempotency(idempotency_key), timeout=max(self.timeout, first + 10),
        )
        if not batch.get("done") and deadline - time.monotonic() > 0:
            batch = self.get_batch(batch["id"], wait=deadline - time.monotonic())
        batch["task_ids"] = [t["id"] for t in batch.get("tasks", [])]
        return batch

    def get(self, id: int, wait: Optional[Duration] = None) -> Dict[str, Any]:
        """Return a task (``GET /v1/tasks/{id}``).

        With ``wait``, the server holds the answer until the task is final
        (``completed``, ``cancelled`` or ``discarded``) or the wait has
        passed (``?wait=``; waits over 60 s take several requests), and the
        task is returned as it is then, final or not.
        """
        path = f"/v1/tasks/{_id(id)}"
        if wait is None:
            return self._request("GET", path)
        return self._wait(path, lambda t: t.get("state") in FINAL_STATES, wait)

    def get_batch(self, id: int, wait: Optional[Duration] = None) -> Dict[str, Any]:
        """Return a batch's progress (``GET /v1/batches/{id}``):
        ``{"id", "total", "counts", "done", "tasks"}``.

        With ``wait``, waits up to that long for ``done`` to be true, as
        :meth:`get` does.
        """
        path = f"/v1/batches/{_id(id)}"
        if wait is None:
            return self._request("GET", path)
        return self._wait(path, lambda b: b.get("done") is True, wait)

    def cancel(self, id: int) -> Dict[str, Any]:
        """Cancel a task (``POST /v1/tasks/{id}/cancel``) and return it.

        A task that is not running is cancelled at once; a running one is
        asked to stop (``cancel_requested``) and is cancelled when its
        worker returns. A final task answers 409.
        """
        return self._request("POST", f"/v1/tasks/{_id(id)}/cancel")

    def retry(self, id: int) -> Dict[str, Any]:
        """Make a retryable or final task available again
        (``POST /v1/tasks/{id}/retry``) and return it."""
        return self._request("POST", f"/v1/tasks/{_id(id)}/retry")

    def kinds(self) -> List[Dict[str, Any]]:
        """Return the kinds taskd knows (the ``kinds`` of ``GET /v1/kinds``)."""
        return list(self._request("GET", "/v1/kinds").get("kinds") or [])

    def schedules(self) -> List[Dict[str, Any]]:
        """Return the schedules (periodic tasks) of taskd's configuration
        file, the ``schedules`` of ``GET /v1/schedules``: each with its
        ``name``, ``spec`` (``{"cron": ...}`` or ``{"every": ...}``),
        ``kind``, ``queue``, ``last_task_id``, ``last_enqueued_at`` and
        ``next_run_at`` (RFC 3339 strings or ``None``)."""
        return list(self._request("GET", "/v1/schedules").get("schedules") or [])

    # Pulling tasks to work them outside taskd (kinds with run: external).

    def claim(
        self,
        kinds: Optional[Iterable[str]] = None,
        queues: Optional[Iterable[str]] = None,
        max: int = 1,
        wait: Duration = "30s",
        lease: Optional[Duration] = None,
        worker: Optional[str] = None,
    ) -> List[Dict[str, Any]]:
        """Claim up to ``max`` (1–100) tasks (``POST /v1/claims``).

        Waits up to ``wait`` (at most 60 s) for a task to arrive and returns
        the claimed tasks, ``[]`` if none did. Each is a dict with ``id``,
        ``kind``, ``args``, ``attempt``, ``max_attempts``, ``queue``,
        ``batch_id``, ``schedule``, ``lease`` (the token that :meth:`complete`,
        :meth:`fail` and :meth:`heartbeat` need) and ``lease_expires_at``.
        ``lease`` (5 s to 1 h) is how long the task is ours without a
        heartbeat; it defaults to the kind's timeout, else 60 s. ``kinds``
        and ``queues`` restrict what is claimed; ``worker`` names the
        claimer in the task's attempts.
        """
        return self._claim(kinds, queues, max, wait, lease, worker, None)

    def complete(self, id: int, lease: str, result: Any = None) -> Dict[str, Any]:
        """Report a claimed task done (``POST /v1/tasks/{id}/complete``) and
        return the task. ``result`` (any JSON value) becomes the task's
        result. A lease that is no longer the task's answers 409."""
        body: Dict[str, Any] = {"lease": lease}
        if result is not None:
            body["result"] = result
        return self._request("POST", f"/v1/tasks/{_id(id)}/complete", body)

    def fail(
        self,
        id: int,
        lease: str,
        error: str,
        retry_after: Optional[Duration] = None,
        permanent: bool = False,
        interrupted: bool = False,
    ) -> Dict[str, Any]:
        """Report a claimed task's attempt failed (``POST /v1/tasks/{id}/fail``)
        and return the task.

        The task is retried like any failed task, after ``retry_after`` if
        given (``0`` retries at once) instead of the usual backoff, unless
        ``permanent`` is true or it has no attempts left: then it is
        discarded. ``interrupted`` gives the task back without counting the
        attempt, for a worker that stops before it could finish (it is
        offered again at once). A lease that is no longer the task's
        answers 409.
        """
        body: Dict[str, Any] = {"lease": lease, "error": error}
        if retry_after is not None:
            body["retry_after"] = format_duration(retry_after)
        if permanent:
            body["permanent"] = True
        if interrupted:
            body["interrupted"] = True
        return self._request("POST", f"/v1/tasks/{_id(id)}/fail", body)

    def heartbeat(self, id: int, lease: str, extend: Optional[Duration] = None) -> Dict[str, Any]:
        """Extend a claimed task's lease (``POST /v1/tasks/{id}/heartbeat``).

        Returns ``{"lease_expires_at", "cancel_requested"}``; a true
        ``cancel_requested`` means the task was cancelled and its work
        should stop. ``extend`` is the new lease, from now. A lease that is
        no longer the task's answers 409.
        """
        body: Dict[str, Any] = {"lease": lease}
        if extend is not None:
            body["extend"] = format_duration(extend)
        return self._request("POST", f"/v1/tasks/{_id(id)}/heartbeat", body)

    # Machinery.

    def _claim(
        self,
        kinds: Optional[Iterable[str]],
        queues: Optional[Iterable[str]],
        max: int,
        wait: Duration,
        lease: Optional[Duration],
        worker: Optional[str],
        cancel: Optional[_Cancel],
    ) -> List[Dict[str, Any]]:
        body: Dict[str, Any] = {"max": max, "wait": format_duration(wait)}
        if kinds is not None:
            body["kinds"] = [kinds] if isinstance(kinds, str) else list(kinds)
        if queues is not None:
            body["queues"] = [queues] if isinstance(queues, str) else list(queues)
        if lease is not None:
            body["lease"] = format_duration(lease)
        if worker is not None:
            body["worker"] = worker
        held = parse_duration(wait) + _CLAIM_TIMEOUT_MARGIN
        timeout = held if held > self.timeout else self.timeout
        answer = self._request("POST", "/v1/claims", body, timeout=timeout, cancel=cancel)
        return list(answer.get("tasks") or [])

    def _wait(self, path: str, done: Callable[[Dict[str, Any]], bool], wait: Duration) -> Dict[str, Any]:
        """GET path with ?wait= until done or the wait has passed."""
        deadline = time.monotonic() + _wait_seconds(wait)
        pause = _POLL_FIRST
        while True:
            chunk = min(max(deadline - time.monotonic(), 0.0), _SERVER_WAIT_MAX)
            asked = time.monotonic()
            obj = self._request("GET", f"{path}?wait={_wait_param(chunk)}", timeout=max(self.timeout, chunk + 10))
            remaining = deadline - time.monotonic()
            if done(obj) or remaining <= 0:
                return obj
            if time.monotonic() - asked < chunk:
                # Back before its wait, unfinished (a server shutting down).
                time.sleep(min(pause, remaining))
                pause = min(pause * 2, _POLL_MAX)

    def _request(
        self,
        method: str,
        path: str,
        body: Any = None,
        *,
        headers: Optional[Mapping[str, str]] = None,
        timeout: Optional[float] = None,
        cancel: Optional[_Cancel] = None,
    ) -> Any:
        """Send one request on a new connection and return its decoded JSON
        answer; raise TaskdError for an error answer."""
        all_headers = dict(self._headers)
        data = None
        if body is not None:
            data = json.dumps(body, separators=(",", ":"), allow_nan=False).encode("utf-8")
            all_headers["Content-Type"] = "application/json"
        if headers:
            all_headers.update(headers)

        conn_class = http.client.HTTPSConnection if self._https else http.client.HTTPConnection
        conn = conn_class(self._host, self._port, timeout=timeout or self.timeout)
        try:
            conn.connect()
            if cancel is not None:
                cancel.attach(conn)
            conn.request(method, self._prefix + path, body=data, headers=all_headers)
            resp = conn.getresponse()
            raw = resp.read()
        except (OSError, http.client.HTTPException) as exc:
            if cancel is not None and cancel.cancelled:
                raise TaskdConnectionError(f"{method} {path}: cancelled") from exc
            raise TaskdConnectionError(f"{method} {path}: {_describe(exc)}") from exc
        finally:
            if cancel is not None:
                cancel.detach()
            conn.close()

        if not 200 <= resp.status < 300:
            raise problem_from_response(resp.status, resp.reason, raw, resp.getheader("Retry-After"))
        if not raw:
            return {}
        try:
            return json.loads(raw.decode("utf-8"))
        except (UnicodeDecodeError, ValueError):
            raise TaskdError(
                resp.status, "Invalid response", f"{method} {path}: the answer is not JSON: {raw[:200]!r}"
            ) from None


class _Cancel:
    """Lets another thread (or a signal handler) abort a request that is
    waiting for its answer, by shutting its socket down."""

    def __init__(self) -> None:
        # Reentrant: cancel() may run in a signal handler that interrupted
        # this thread inside attach() or detach().
        self._lock = threading.RLock()
        self._conn: Optional[http.client.HTTPConnection] = None
        self.cancelled = False

    def attach(self, conn: http.client.HTTPConnection) -> None:
        with self._lock:
            if self.cancelled:
                raise TaskdConnectionError("cancelled before sending")
            self._conn = conn

    def detach(self) -> None:
        with self._lock:
            self._conn = None

    def cancel(self) -> None:
        with self._lock:
            self.cancelled = True
            conn = self._conn
        sock = conn.sock if conn is not None else None
        if sock is not None:
            try:
                sock.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass  # already closed


def _task_body(kind: str, args: Optional[Mapping[str, Any]], fields: Mapping[str, Any], where: str) -> Dict[str, Any]:
    unknown = sorted(set(fields) - _TASK_FIELDS)
    if unknown:
        raise TypeError(f"{where}: unknown task field {unknown[0]!r}; known: {', '.join(sorted(_TASK_FIELDS))}")
    body: Dict[str, Any] = {"kind": kind, "args": dict(args) if args is not None else {}}
    for name in sorted(fields):
        value = fields[name]
        if value is None:
            continue
        if name in ("delay", "timeout"):
            value = format_duration(value)
        elif name == "backoff":
            value = _backoff_body(value, where)
        elif name == "scheduled_at" and isinstance(value, datetime.datetime):
            if value.tzinfo is None:
                raise ValueError(f"{where}: scheduled_at must be an aware datetime (with a tzinfo)")
            value = value.isoformat()
        elif name == "tags":
            value = list(value)
        body[name] = value
    return body


def _backoff_body(backoff: Mapping[str, Any], where: str) -> Dict[str, Any]:
    unknown = sorted(set(backoff) - _BACKOFF_FIELDS)
    if unknown:
        raise TypeError(f"{where}: unknown backoff field {unknown[0]!r}; known: {', '.join(sorted(_BACKOFF_FIELDS))}")
    body: Dict[str, Any] = {}
    for name in sorted(backoff):
        value = backoff[name]
        if value is None:
            continue
        body[name] = format_duration(value) if name in ("initial", "max") else value
    return body


def _idempotency(key: Optional[str]) -> Optional[Dict[str, str]]:
    return {"Idempotency-Key": key} if key is not None else None


def _id(id: Any) -> int:
    if isinstance(id, bool):
        raise TypeError("a task or batch id must be an integer")
    return int(id)


def _describe(exc: BaseException) -> str:
    text = str(exc)
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


def _wait_seconds(wait: Duration) -> float:
    seconds = parse_duration(wait)
    if seconds < 0:
        raise ValueError(f"wait must not be negative, got {wait!r}")
    return seconds


def _wait_param(seconds: float) -> str:
    """A ?wait= value: milliseconds are enough."""
    return urllib.parse.quote(format_duration(round(seconds, 3)))
