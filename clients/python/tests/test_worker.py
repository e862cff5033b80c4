"""The Worker against a fake of taskd's pull API (claims, complete, fail,
heartbeat), so that its loop, heartbeats and shutdown are checked without a
server. test_integration.py runs the same against a real taskd."""

from __future__ import annotations

import datetime
import itertools
import signal
import threading
import time
import unittest
from typing import Any, Callable, Dict, List, Optional

from _support import FakeServer, Request, problem, read_until, start_echo_worker  # first: puts the package on sys.path

import echo_worker
from taskd import Client, Permanent, RetryAfter, Task, TaskdError, Worker
from taskd._duration import parse_duration


class FakeTaskd:
    """Hands out queued tasks to claims (waiting up to the claim's wait),
    and checks leases on complete, fail and heartbeat (409 when stale). A
    non-permanent failure puts the task back with its attempt counted."""

    def __init__(self) -> None:
        self.cond = threading.Condition()
        self.queue: List[Dict[str, Any]] = []
        self.leases: Dict[str, Dict[str, Any]] = {}  # lease → task
        self.calls: List[Request] = []
        self.cancel_ids: set = set()
        self.claim_errors: List[Any] = []  # responses to send to the next claims
        self.complete_status = 200
        self.closed = False
        self._ids = itertools.count(1)
        self._leases = itertools.count(1)
        self.server = FakeServer(self.respond)

    def __enter__(self) -> "FakeTaskd":
        self.server.__enter__()
        return self

    def __exit__(self, *exc: Any) -> None:
        with self.cond:
            self.closed = True
            self.cond.notify_all()
        self.server.__exit__(*exc)

    @property
    def url(self) -> str:
        return self.server.url

    def add(self, args: Any, max_attempts: int = 5, kind: str = "py_echo") -> int:
        with self.cond:
            task = {"id": next(self._ids), "kind": kind, "args": args, "attempt": 0,
                    "max_attempts": max_attempts, "queue": "external", "batch_id": None,
                    "after_batch": None}
            self.queue.append(task)
            self.cond.notify_all()
            return task["id"]

    def outcomes(self, id: Optional[int] = None) -> List[Request]:
        with self.cond:
            return [r for r in self.calls if r.path.split("/")[-1] in ("complete", "fail")
                    and (id is None or r.path.split("/")[3] == str(id))]

    def calls_to(self, suffix: str) -> List[Request]:
        with self.cond:
            return [r for r in self.calls if r.path.endswith(suffix)]

    def wait_for(self, cond: Callable[[], bool], timeout: float = 10) -> None:
        deadline = time.monotonic() + timeout
        while not cond():
            if time.monotonic() > deadline:
                raise AssertionError(f"condition not met within {timeout}s; calls: {self.calls}")
            time.sleep(0.02)

    def respond(self, req: Request):
        body = req.json() or {}
        with self.cond:
            self.calls.append(req)
            if req.path == "/v1/claims":
                if self.claim_errors:
                    return self.claim_errors.pop(0)
                deadline = time.monotonic() + parse_duration(body.get("wait", "30s"))
                while not self.queue and not self.closed and time.monotonic() < deadline:
                    self.cond.wait(deadline - time.monotonic())
                out = []
                lease_s = parse_duration(body.get("lease", "60s"))
                while self.queue and len(out) < body.get("max", 1):
                    task = self.queue.pop(0)
                    task["attempt"] += 1
                    lease = f"lease-{next(self._leases)}"
                    self.leases[lease] = task
                    out.append(dict(task, lease=lease, lease_expires_at=_rfc3339(lease_s)))
                return 200, {}, {"tasks": out}

            _, _, _, id, action = req.path.split("/")
            task = self.leases.get(body.get("lease"))
            if task is None or str(task["id"]) != id:
                return problem(409, "Conflict", "the lease is not the task's", "urn:taskd:problem:lease-lost")
            if action == "heartbeat":
                lease_s = parse_duration(body.get("extend", "60s"))
                return 200, {}, {"lease_expires_at": _rfc3339(lease_s), "cancel_requested": task["id"] in self.cancel_ids}
            if action == "complete":
                if self.complete_status != 200:
                    return problem(self.complete_status, "Conflict", "lease expired")
                del self.leases[body["lease"]]
                return 200, {}, {"id": task["id"], "state": "completed"}
            del self.leases[body["lease"]]
            if not body.get("permanent") and task["attempt"] < task["max_attempts"]:
                self.queue.append(task)
                self.cond.notify_all()
            return 200, {}, {"id": task["id"]}


def _rfc3339(seconds_from_now: float) -> str:
    at = datetime.datetime.now(datetime.timezone.utc) + datetime.timedelta(seconds=seconds_from_now)
    return at.strftime("%Y-%m-%dT%H:%M:%S.%f") + "123Z"  # nanoseconds, as Go writes them


class WorkerTest(unittest.TestCase):
    def setUp(self) -> None:
        self.fake = FakeTaskd().__enter__()
        self.addCleanup(self.fake.__exit__, None, None, None)

    def start(self, handler: Callable[[Task], Any] = echo_worker.handle, **opts: Any) -> Worker:
        opts.setdefault("poll_wait", "1s")
        worker = Worker(Client(self.fake.url), **opts)
        worker.handler("py_echo")(handler)
        errors: List[BaseException] = []

        def run() -> None:
            try:
                worker.run()
            except BaseException as exc:  # noqa: B902 - reported by the test
                errors.append(exc)

        thread = threading.Thread(target=run, daemon=True)
        thread.start()
        worker.thread, worker.errors = thread, errors  # type: ignore[attr-defined]

        def stop() -> None:
            worker.stop()
            thread.join(10)

        self.addCleanup(stop)
        return worker

    def join(self, worker: Worker, timeout: float = 10) -> None:
        worker.thread.join(timeout)  # type: ignore[attr-defined]
        self.assertFalse(worker.thread.is_alive(), "run() did not return")  # type: ignore[attr-defined]
        if worker.errors:  # type: ignore[attr-defined]
            raise worker.errors[0]  # type: ignore[attr-defined]

    def test_complete(self) -> None:
        ids = [self.fake.add({"value": i}) for i in range(5)]
        worker = self.start(concurrency=2, name="w1")
        self.fake.wait_for(lambda: len(self.fake.outcomes()) == 5)
        worker.stop()
        self.join(worker)
        for id in ids:
            (req,) = self.fake.outcomes(id)
            self.assertTrue(req.path.endswith("/complete"))
            self.assertEqual(req.json()["result"], {"echo": id - 1, "attempt": 1})
        claim = self.fake.calls_to("/v1/claims")[0].json()
        self.assertEqual(claim, {"kinds": ["py_echo"], "max": 2, "wait": "1s", "worker": "w1"})

    def test_failures(self) -> None:
        permanent = self.fake.add({"mode": "permanent", "message": "bad input"})
        error = self.fake.add({"mode": "error", "message": "boom"}, max_attempts=1)
        retry = self.fake.add({"mode": "retry_after", "seconds": 0.25})
        worker = self.start(concurrency=3)
        self.fake.wait_for(lambda: len(self.fake.outcomes()) == 4)
        worker.stop()
        self.join(worker)
        self.assertEqual([r.json() for r in self.fake.outcomes(permanent)],
                         [{"lease": "lease-1", "error": "bad input", "permanent": True}])
        self.assertEqual([r.json()["error"] for r in self.fake.outcomes(error)], ["ValueError: boom"])
        first, second = self.fake.outcomes(retry)
        self.assertEqual((first.json()["error"], first.json()["retry_after"]), ("not yet", "0.25s"))
        self.assertEqual(second.json()["result"], {"echo": None, "attempt": 2})

    def test_exception_without_message(self) -> None:
        def handler(task: Task) -> None:
            raise KeyError

        self.fake.add({}, max_attempts=1)
        worker = self.start(handler)
        self.fake.wait_for(lambda: len(self.fake.outcomes()) == 1)
        self.assertEqual(self.fake.outcomes()[0].json()["error"], "KeyError")
        worker.stop()
        self.join(worker)

    def test_result_not_json(self) -> None:
        self.fake.add({}, max_attempts=1)
        worker = self.start(lambda task: {"when": datetime.datetime.now()})
        self.fake.wait_for(lambda: len(self.fake.outcomes()) == 1)
        self.assertRegex(self.fake.outcomes()[0].json()["error"], r"^TypeError: .*JSON")
        worker.stop()
        self.join(worker)

    def test_permanent_and_retry_after_defaults(self) -> None:
        def handler(task: Task) -> None:
            if task.args["n"] == 1:
                raise Permanent()
            raise RetryAfter("2s")

        self.fake.add({"n": 1})
        self.fake.add({"n": 2}, max_attempts=1)
        worker = self.start(handler, concurrency=2)
        self.fake.wait_for(lambda: len(self.fake.outcomes()) == 2)
        worker.stop()
        self.join(worker)
        got = sorted((r.json()["error"], r.json().get("retry_after")) for r in self.fake.outcomes())
        self.assertEqual(got, [("permanent failure", None), ("retry after 2s", "2s")])

    def test_claims_ask_for_free_slots(self) -> None:
        running, peak, lock = [0], [0], threading.Lock()

        def handler(task: Task) -> None:
            with lock:
                running[0] += 1
                peak[0] = max(peak[0], running[0])
            time.sleep(0.15)
            with lock:
                running[0] -= 1

        for _ in range(7):
            self.fake.add({})
        worker = self.start(handler, concurrency=3)
        self.fake.wait_for(lambda: len(self.fake.outcomes()) == 7)
        worker.stop()
        self.join(worker)
        self.assertEqual(peak[0], 3)
        asked = [r.json()["max"] for r in self.fake.calls_to("/v1/claims")]
        self.assertEqual(asked[0], 3)
        self.assertTrue(all(1 <= n <= 3 for n in asked), asked)

    def test_heartbeats_long_handlers(self) -> None:
        self.fake.add({"mode": "sleep", "seconds": 0.7})
        worker = self.start(lease=0.3)
        self.fake.wait_for(lambda: len(self.fake.outcomes()) == 1)
        worker.stop()
        self.join(worker)
        beats = self.fake.calls_to("/heartbeat")
        # Every 0.1 s, a third of the lease (fewer on a loaded machine).
        self.assertGreaterEqual(len(beats), 2)
        self.assertLessEqual(len(beats), 10)
        self.assertEqual(beats[0].json(), {"lease": "lease-1", "extend": "0.3s"})
        self.assertTrue(self.fake.outcomes()[0].path.endswith("/complete"))
        self.assertEqual(self.fake.calls_to("/v1/claims")[0].json()["lease"], "0.3s")

    def test_heartbeat_interval_from_server_lease(self) -> None:
        # Without a lease of its own, the worker heartbeats at a third of
        # what the claim's lease_expires_at leaves.
        seen: List[Task] = []

        def handler(task: Task) -> None:
            seen.append(task)
            time.sleep(0.2)

        self.fake.add({})
        worker = self.start(handler)
        self.fake.wait_for(lambda: len(self.fake.outcomes()) == 1)
        worker.stop()
        self.join(worker)
        self.assertAlmostEqual(seen[0]._beat_every, 20, delta=1)  # the fake's default lease: 60 s
        self.assertEqual(self.fake.calls_to("/heartbeat"), [])
        self.assertIsNotNone(seen[0].lease_expires_at)
        self.assertEqual(seen[0].lease_expires_at.tzinfo, datetime.timezone.utc)

    def test_cancel_requested(self) -> None:
        id = self.fake.add({"mode": "sleep", "seconds": 10})
        worker = self.start(lease=0.3)
        self.fake.wait_for(lambda: len(self.fake.calls_to("/heartbeat")) >= 1)
        with self.fake.cond:
            self.fake.cancel_ids.add(id)
        self.fake.wait_for(lambda: len(self.fake.outcomes()) == 1, timeout=3)
        (req,) = self.fake.outcomes()
        self.assertEqual(req.json()["result"]["cancel_requested"], True)
        worker.stop()
        self.join(worker)

    def test_stop_lets_running_tasks_finish(self) -> None:
        self.fake.add({"mode": "sleep", "seconds": 0.5})
        worker = self.start(grace=5)
        self.fake.wait_for(lambda: len(self.fake.leases) == 1)
        worker.stop()
        self.join(worker)
        (req,) = self.fake.outcomes()
        self.assertTrue(req.path.endswith("/complete"))

    def test_stop_fails_back_after_grace(self) -> None:
        id = self.fake.add({"mode": "sleep", "seconds": 30})
        worker = self.start(grace=0.3)
        self.fake.wait_for(lambda: len(self.fake.leases) == 1)
        start = time.monotonic()
        worker.stop()
        self.join(worker)
        self.assertLess(time.monotonic() - start, 2)
        (req,) = self.fake.outcomes(id)
        self.assertEqual(req.json(), {"lease": "lease-1", "error": "worker shutting down", "interrupted": True})
        # The abandoned handler saw cancel_requested and returned; its
        # outcome is not reported.
        time.sleep(0.3)
        self.assertEqual(len(self.fake.outcomes(id)), 1)

    def test_stop_abandons_a_waiting_claim(self) -> None:
        worker = self.start(poll_wait="30s")
        self.fake.wait_for(lambda: len(self.fake.calls_to("/v1/claims")) == 1)
        time.sleep(0.1)
        start = time.monotonic()
        worker.stop()
        self.join(worker)
        self.assertLess(time.monotonic() - start, 2)

    def test_lease_lost_on_complete(self) -> None:
        self.fake.complete_status = 409
        self.fake.add({"value": 1})
        self.fake.add({"value": 2})
        worker = self.start()
        with self.assertLogs("taskd.worker", "WARNING") as logs:
            self.fake.wait_for(lambda: len(self.fake.outcomes()) == 2)
            worker.stop()
            self.join(worker)
        self.assertTrue(any("lease lost" in line for line in logs.output), logs.output)

    def test_claim_errors_back_off(self) -> None:
        unavailable = problem(503, "Service Unavailable", "database unreachable")
        self.fake.claim_errors = [unavailable, unavailable, unavailable]
        self.fake.add({"value": 1})
        start = time.monotonic()
        with self.assertLogs("taskd.worker", "WARNING"):
            worker = self.start()
            self.fake.wait_for(lambda: len(self.fake.outcomes()) == 1)
        # 0.1 + 0.2 + 0.4 s of backoff.
        self.assertGreaterEqual(time.monotonic() - start, 0.7)
        worker.stop()
        self.join(worker)

    def test_connection_errors_back_off(self) -> None:
        server = self.fake.server
        url = self.fake.url
        self.fake.__exit__(None, None, None)  # nothing listens at url now
        worker = Worker(Client(url), poll_wait="1s")
        worker.handler("py_echo")(echo_worker.handle)
        thread = threading.Thread(target=worker.run, daemon=True)
        with self.assertLogs("taskd.worker", "WARNING") as logs:
            thread.start()
            time.sleep(0.5)
            worker.stop()
            thread.join(5)
        self.assertFalse(thread.is_alive())
        self.assertGreaterEqual(sum("claiming tasks failed" in line for line in logs.output), 2)
        del server

    def test_fatal_claim_error(self) -> None:
        self.fake.claim_errors = [problem(422, "Unprocessable Entity", "kind py_echo does not run external",
                                          "urn:taskd:problem:validation", [{"field": "kinds[0]", "message": "..."}])]
        worker = self.start()
        worker.thread.join(5)  # type: ignore[attr-defined]
        (err,) = worker.errors  # type: ignore[attr-defined]
        self.assertIsInstance(err, TaskdError)
        self.assertEqual(err.status, 422)

    def test_configuration_errors(self) -> None:
        c = Client(self.fake.url)
        with self.assertRaisesRegex(ValueError, "no handler for kind 'other'"):
            w = Worker(c, kinds=["py_echo", "other"])
            w.handler("py_echo")(echo_worker.handle)
            w.run()
        with self.assertRaisesRegex(ValueError, "no kinds"):
            Worker(c).run()
        with self.assertRaises(ValueError):
            Worker(c, concurrency=0)
        with self.assertRaises(ValueError):
            Worker(c, poll_wait="soon")
        w = Worker(c)
        w.handler("a")(echo_worker.handle)
        with self.assertRaises(ValueError):
            w.handler("a")(echo_worker.handle)

    def test_runs_once(self) -> None:
        worker = self.start()
        worker.stop()
        self.join(worker)
        with self.assertRaises(RuntimeError):
            worker.run()


class SignalTest(unittest.TestCase):
    """The worker on a process's main thread stops on SIGTERM."""

    def test_sigterm_fails_back_running_tasks(self) -> None:
        with FakeTaskd() as fake:
            long = fake.add({"mode": "sleep", "seconds": 60})
            short = fake.add({"mode": "sleep", "seconds": 0.5})
            proc = start_echo_worker(self, fake.url, "--grace", "1.5")
            started = read_until(proc, lambda lines: sum(l.startswith("started") for l in lines) == 2)
            proc.send_signal(signal.SIGTERM)
            read_until(proc, lambda lines: "exited" in lines)
            self.assertEqual(proc.wait(5), 0, f"output: {started}")
            self.assertEqual([r.json()["error"] for r in fake.outcomes(long)], ["worker shutting down"])
            self.assertTrue(fake.outcomes(short)[0].path.endswith("/complete"))

    def test_second_signal_skips_the_grace(self) -> None:
        with FakeTaskd() as fake:
            fake.add({"mode": "sleep", "seconds": 60})
            proc = start_echo_worker(self, fake.url, "--grace", "60")
            read_until(proc, lambda lines: any(l.startswith("started") for l in lines))
            proc.send_signal(signal.SIGINT)
            time.sleep(0.3)
            start = time.monotonic()
            proc.send_signal(signal.SIGINT)
            read_until(proc, lambda lines: "exited" in lines)
            self.assertLess(time.monotonic() - start, 3)
            self.assertEqual(proc.wait(5), 0)
            self.assertEqual([r.json()["error"] for r in fake.outcomes()], ["worker shutting down"])


if __name__ == "__main__":
    unittest.main()
