"""The client and the worker against a real taskd at $TASKD_URL.

clients/python/python_test.go starts one (``go test ./clients/python``).
To run these against a taskd of your own, declare the external kind py_echo
in its config file::

    kinds:
      - {name: py_echo, run: external, queue: external, timeout: 30s}

and run ``TASKD_URL=http://127.0.0.1:8080 python3 -m unittest discover -s
clients/python/tests -v``. Without TASKD_URL every test here is skipped.

TasksTest uses the built-in kinds only; PullTest needs the pull API
(POST /v1/claims, complete, fail, heartbeat) and py_echo.
"""

from __future__ import annotations

import os
import signal
import sys
import threading
import time
import unittest
import uuid
from typing import Any, Dict

from _support import read_until, start_echo_worker  # first: puts the package on sys.path

import echo_worker
from taskd import FINAL_STATES, Client, TaskdError, Worker

URL = os.environ.get("TASKD_URL", "")
SKIP_REASON = "TASKD_URL is not set: these tests need a running taskd (go test ./clients/python starts one)"


def setUpModule() -> None:
    if not URL:
        print(f"test_integration: skipped: {SKIP_REASON}", file=sys.stderr)
        raise unittest.SkipTest(SKIP_REASON)


def wait_until(fetch, cond, timeout: float = 15.0) -> Dict[str, Any]:
    """Poll fetch() until cond(value) holds; return the value."""
    deadline = time.monotonic() + timeout
    while True:
        value = fetch()
        if cond(value):
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"condition not met within {timeout}s; last: {value}")
        time.sleep(0.05)


class TasksTest(unittest.TestCase):
    """Submitting and following tasks of the built-in kinds."""

    def setUp(self) -> None:
        self.client = Client(URL, timeout=10)

    def test_submit_and_wait(self) -> None:
        task = self.client.submit("double", {"value": 21}, tags=["python-client"])
        self.assertEqual((task["kind"], task["queue"], task["tags"]), ("double", "default", ["python-client"]))
        self.assertIn(task["state"], ("available", "running", "completed"))
        done = self.client.get(task["id"], wait="15s")
        self.assertEqual(done["state"], "completed")
        self.assertEqual(done["result"], {"result": 42})
        self.assertEqual([a["outcome"] for a in done["attempts"]], ["completed"])

    def test_wait_elapses(self) -> None:
        task = self.client.submit("sleep", {"ms": 5000})
        self.addCleanup(self.cancel_quietly, task["id"])
        start = time.monotonic()
        got = self.client.get(task["id"], wait=0.5)
        took = time.monotonic() - start
        self.assertNotIn(got["state"], FINAL_STATES)
        self.assertGreaterEqual(took, 0.5)
        self.assertLess(took, 2.5)

    def test_delay_and_fields(self) -> None:
        task = self.client.submit("sleep", {"ms": 1}, delay=3600.5, priority=3, max_attempts=2, queue="default")
        self.addCleanup(self.cancel_quietly, task["id"])
        self.assertEqual((task["state"], task["priority"], task["max_attempts"]), ("scheduled", 3, 2))

    def test_idempotency_key(self) -> None:
        key = f"py-{uuid.uuid4()}"
        first = self.client.submit("double", {"value": 1}, idempotency_key=key)
        again = self.client.submit("double", {"value": 1}, idempotency_key=key)
        self.assertEqual(again["id"], first["id"])
        with self.assertRaises(TaskdError) as cm:
            self.client.submit("double", {"value": 2}, idempotency_key=key)
        self.assertEqual((cm.exception.status, cm.exception.type), (409, "urn:taskd:problem:idempotency-mismatch"))

    def test_validation_problem(self) -> None:
        with self.assertRaises(TaskdError) as cm:
            self.client.submit("double", {}, priority=9)
        e = cm.exception
        self.assertEqual((e.status, e.type, e.title), (422, "urn:taskd:problem:validation", "Unprocessable Entity"))
        self.assertEqual(sorted(f["field"] for f in e.errors), ["args.value", "priority"])
        self.assertTrue(e.detail)

        with self.assertRaises(TaskdError) as cm:
            self.client.submit("triple", {"value": 1})
        self.assertEqual([f["field"] for f in cm.exception.errors], ["kind"])

    def test_not_found(self) -> None:
        with self.assertRaises(TaskdError) as cm:
            self.client.get(2**62)
        self.assertEqual(cm.exception.status, 404)
        with self.assertRaises(TaskdError) as cm:
            self.client.get_batch(2**62)
        self.assertEqual(cm.exception.status, 404)

    def test_batch(self) -> None:
        created = self.client.submit_batch([{"kind": "double", "args": {"value": i}} for i in range(1, 11)])
        self.assertEqual(len(created["task_ids"]), 10)
        batch = self.client.get_batch(created["id"], wait="20s")
        self.assertTrue(batch["done"], batch)
        self.assertEqual(batch["total"], 10)
        self.assertEqual([t["id"] for t in batch["tasks"]], created["task_ids"])
        self.assertEqual(sum(t["result"]["result"] for t in batch["tasks"]), 110)

    def test_batch_wait(self) -> None:
        batch = self.client.submit_batch([{"kind": "double", "args": {"value": 2}}, {"kind": "sleep", "args": {"ms": 10}}],
                                         wait=20)
        self.assertTrue(batch["done"], batch)
        self.assertEqual(len(batch["task_ids"]), 2)
        self.assertEqual(batch["counts"], {"completed": 2})

    def test_batch_then(self) -> None:
        created = self.client.submit_batch([{"kind": "double", "args": {"value": i}} for i in range(1, 4)],
                                           then={"kind": "double", "args": {"value": 21}, "tags": ["gathered"]})
        # ?wait= waits for the batch's tasks; the callback follows them.
        batch = wait_until(lambda: self.client.get_batch(created["id"]), lambda b: b["then_task_id"] is not None, 20)
        self.assertTrue(batch["done"], batch)
        self.assertIsNone(batch["then_error"])
        task = self.client.get(batch["then_task_id"], wait="20s")
        self.assertEqual((task["state"], task["result"], task["after_batch"], task["batch_id"], task["tags"]),
                         ("completed", {"result": 42}, created["id"], None, ["gathered"]))
        with self.assertRaises(TaskdError) as cm:
            self.client.submit_batch([{"kind": "double", "args": {"value": 1}}], then={"kind": "double", "args": {}})
        self.assertEqual([f["field"] for f in cm.exception.errors], ["then.args.value"])

    def test_batch_is_all_or_nothing(self) -> None:
        with self.assertRaises(TaskdError) as cm:
            self.client.submit_batch([{"kind": "double", "args": {"value": 1}}, {"kind": "double", "args": {}}])
        self.assertEqual([f["field"] for f in cm.exception.errors], ["tasks[1].args.value"])

    def test_cancel(self) -> None:
        task = self.client.submit("sleep", {"ms": 1}, delay="1h")
        self.assertEqual(task["state"], "scheduled")
        cancelled = self.client.cancel(task["id"])
        self.assertEqual((cancelled["state"], cancelled["cancel_requested"]), ("cancelled", True))
        with self.assertRaises(TaskdError) as cm:
            self.client.cancel(task["id"])
        self.assertEqual((cm.exception.status, cm.exception.type), (409, "urn:taskd:problem:state-conflict"))

    def test_cancel_running(self) -> None:
        task = self.client.submit("sleep", {"ms": 60000})
        wait_until(lambda: self.client.get(task["id"]), lambda t: t["state"] == "running")
        asked = self.client.cancel(task["id"])
        self.assertTrue(asked["cancel_requested"])
        self.assertEqual(self.client.get(task["id"], wait="10s")["state"], "cancelled")

    def test_retry(self) -> None:
        task = self.client.submit("double", {"value": 4})
        self.assertEqual(self.client.get(task["id"], wait="15s")["state"], "completed")
        again = self.client.retry(task["id"])
        self.assertEqual((again["state"], again["result"]), ("available", None))
        done = self.client.get(task["id"], wait="15s")
        self.assertEqual((done["state"], done["result"]), ("completed", {"result": 8}))
        self.assertEqual(len(done["attempts"]), 2)

    def test_failing_task_is_retried(self) -> None:
        task = self.client.submit("fail", {"times": 1, "message": "flaky"})
        done = self.client.get(task["id"], wait="20s")
        self.assertEqual(done["state"], "completed", done)
        self.assertEqual(done["result"], {"attempts": 2})
        self.assertEqual([e["message"] for e in done["errors"]], ["flaky"])

    def test_backoff_and_timeout(self) -> None:
        task = self.client.submit("fail", {"times": 2}, max_attempts=3, timeout="10s",
                                  backoff={"initial": 1, "multiplier": 1, "jitter": 0})
        # The policy in effect: the task's fields, the rest the default.
        self.assertEqual(task["backoff"], {"initial": "1s", "max": "1h", "multiplier": 1, "jitter": 0})
        self.assertEqual(task["timeout"], "10s")
        done = self.client.get(task["id"], wait="20s")
        self.assertEqual((done["state"], done["result"]), ("completed", {"attempts": 3}), done)

    def test_timeout_cuts_an_attempt(self) -> None:
        task = self.client.submit("sleep", {"ms": 5000}, timeout=1, max_attempts=1)
        done = self.client.get(task["id"], wait="20s")
        self.assertEqual(done["state"], "discarded", done)
        self.assertEqual([a["outcome"] for a in done["attempts"]], ["timeout"])

    def test_bad_backoff(self) -> None:
        with self.assertRaises(TaskdError) as cm:
            self.client.submit("double", {"value": 1}, backoff={"multiplier": 20}, timeout="1ms")
        self.assertEqual(cm.exception.status, 422)
        self.assertEqual([e["field"] for e in cm.exception.errors], ["backoff.multiplier", "timeout"])

    def test_discarded(self) -> None:
        task = self.client.submit("fail", {"times": 5}, max_attempts=1)
        done = self.client.get(task["id"], wait="15s")
        self.assertEqual(done["state"], "discarded")
        self.assertEqual(done["errors"][0]["message"], "failed on purpose")

    def test_schedules(self) -> None:
        # python_test.go's configuration has one, which never fires during
        # the tests (February 29 only): a new schedule starts at its next
        # tick, so it has no task yet.
        schedules = self.client.schedules()
        self.assertEqual([(s["name"], s["spec"], s["kind"], s["last_task_id"]) for s in schedules],
                         [("py-leap-day", {"cron": "0 0 29 2 *"}, "py_echo", None)])
        self.assertTrue(schedules[0]["next_run_at"].endswith("-02-29T00:00:00Z"), schedules[0])

    def test_kinds(self) -> None:
        names = {k["name"] for k in self.client.kinds()}
        self.assertTrue({"double", "sleep", "fail", "cpu"} <= names, names)

    def cancel_quietly(self, id: int) -> None:
        try:
            self.client.cancel(id)
        except TaskdError:
            pass


class PullTest(unittest.TestCase):
    """Working the external kind py_echo with claims and with Worker. These
    need taskd's pull API and a config declaring py_echo."""

    @classmethod
    def setUpClass(cls) -> None:
        client = Client(URL, timeout=10)
        try:
            client.claim(kinds=[echo_worker.KIND], wait=0)
        except TaskdError as exc:
            raise AssertionError(
                f"cannot claim {echo_worker.KIND} ({exc}): taskd needs the pull API (POST /v1/claims) and a "
                f"config declaring {{name: {echo_worker.KIND}, run: external, queue: external}}"
            ) from exc

    def setUp(self) -> None:
        self.client = Client(URL, timeout=10)

    def start_worker(self, **opts: Any) -> Worker:
        opts = dict({"kinds": [echo_worker.KIND], "concurrency": 4, "poll_wait": "2s", "grace": 5, "name": "py-test"},
                    **opts)
        worker = Worker(self.client, **opts)
        worker.handler(echo_worker.KIND)(echo_worker.handle)
        errors = []

        def run() -> None:
            try:
                worker.run()
            except BaseException as exc:  # noqa: B902 - reported at cleanup
                errors.append(exc)

        thread = threading.Thread(target=run, daemon=True)
        thread.start()

        def stop() -> None:
            worker.stop()
            thread.join(15)
            self.assertFalse(thread.is_alive(), "Worker.run did not return")
            if errors:
                raise errors[0]

        self.addCleanup(stop)
        return worker

    def submit(self, args: Dict[str, Any], **fields: Any) -> int:
        task = self.client.submit(echo_worker.KIND, args, **fields)
        self.assertEqual(task["queue"], "external")
        return task["id"]

    def test_claim_complete(self) -> None:
        id = self.submit({"value": 1})
        claimed = self.client.claim(kinds=[echo_worker.KIND], wait="5s", lease="10s", worker="py-test")
        self.assertEqual(len(claimed), 1, claimed)
        task = claimed[0]
        self.assertEqual((task["id"], task["kind"], task["args"], task["attempt"], task["queue"], task["batch_id"],
                          task["after_batch"], task["schedule"]),
                         (id, echo_worker.KIND, {"value": 1}, 1, "external", None, None, None))
        self.assertIsInstance(task["lease"], str)
        self.assertIn("max_attempts", task)
        self.assertIn("lease_expires_at", task)
        self.assertEqual(self.client.get(id)["state"], "running")

        beat = self.client.heartbeat(id, task["lease"], extend="20s")
        self.assertIs(beat["cancel_requested"], False)
        self.assertIn("lease_expires_at", beat)

        done = self.client.complete(id, task["lease"], {"ok": True})
        self.assertEqual(done["state"], "completed")
        self.assertEqual(self.client.get(id)["result"], {"ok": True})
        with self.assertRaises(TaskdError) as cm:
            self.client.complete(id, task["lease"], {"ok": True})
        self.assertEqual(cm.exception.status, 409)

    def test_claim_fail(self) -> None:
        id = self.submit({"value": 2}, max_attempts=3)
        (first,) = self.client.claim(kinds=[echo_worker.KIND], wait="5s")
        self.assertEqual(first["id"], id)
        self.client.fail(id, first["lease"], "try again", retry_after=0)
        with self.assertRaises(TaskdError) as cm:
            self.client.heartbeat(id, first["lease"])
        self.assertEqual(cm.exception.status, 409)

        (second,) = self.client.claim(kinds=[echo_worker.KIND], wait="10s")
        self.assertEqual((second["id"], second["attempt"]), (id, 2))
        self.assertNotEqual(second["lease"], first["lease"])
        self.client.fail(id, second["lease"], "bad input", permanent=True)
        task = self.client.get(id)
        self.assertEqual(task["state"], "discarded")
        messages = [e["message"] for e in task["errors"]]
        self.assertEqual(len(messages), 2, messages)
        self.assertEqual(messages[0], "try again")
        self.assertTrue(messages[1].endswith("bad input"), messages)  # taskd writes "permanent: bad input"

    def test_batch_then_claimed(self) -> None:
        created = self.client.submit_batch([{"kind": "double", "args": {"value": 1}}],
                                           then={"kind": echo_worker.KIND, "args": {"value": 7}})
        (task,) = self.client.claim(kinds=[echo_worker.KIND], wait="15s")
        self.assertEqual((task["args"], task["after_batch"], task["batch_id"]), ({"value": 7}, created["id"], None))
        self.client.complete(task["id"], task["lease"], {"ok": True})

    def test_claim_nothing(self) -> None:
        start = time.monotonic()
        self.assertEqual(self.client.claim(kinds=[echo_worker.KIND], wait=0.5), [])
        self.assertGreaterEqual(time.monotonic() - start, 0.4)

    def test_claim_refuses_internal_kinds(self) -> None:
        with self.assertRaises(TaskdError) as cm:
            self.client.claim(kinds=["double"], wait=0)
        self.assertEqual(cm.exception.status, 422)

    def test_worker_completes(self) -> None:
        self.start_worker()
        ids = [self.submit({"value": i}) for i in range(5)]
        for i, id in enumerate(ids):
            task = self.client.get(id, wait="15s")
            self.assertEqual(task["state"], "completed", task)
            self.assertEqual(task["result"], {"echo": i, "attempt": 1})

    def test_worker_permanent(self) -> None:
        self.start_worker()
        id = self.submit({"mode": "permanent", "message": "bad input"})
        task = self.client.get(id, wait="15s")
        self.assertEqual((task["state"], task["attempt"]), ("discarded", 1))
        (error,) = task["errors"]
        self.assertTrue(error["message"].endswith("bad input"), error)  # taskd writes "permanent: bad input"

    def test_worker_exception(self) -> None:
        self.start_worker()
        id = self.submit({"mode": "error", "message": "boom"}, max_attempts=1)
        task = self.client.get(id, wait="15s")
        self.assertEqual(task["state"], "discarded")
        self.assertEqual([e["message"] for e in task["errors"]], ["ValueError: boom"])

    def test_worker_retry_after(self) -> None:
        self.start_worker()
        start = time.monotonic()
        id = self.submit({"mode": "retry_after", "seconds": 1})
        task = self.client.get(id, wait="20s")
        self.assertEqual(task["state"], "completed", task)
        self.assertEqual(task["result"], {"echo": None, "attempt": 2})
        self.assertEqual([e["message"] for e in task["errors"]], ["not yet"])
        self.assertGreaterEqual(time.monotonic() - start, 1)

    def test_worker_heartbeats_long_handler(self) -> None:
        # The lease is 5 s and the handler takes 8: only heartbeats keep it.
        self.start_worker(lease="5s")
        id = self.submit({"mode": "sleep", "seconds": 8})
        task = self.client.get(id, wait="25s")
        self.assertEqual(task["state"], "completed", task)
        self.assertGreaterEqual(task["result"]["slept"], 8)
        self.assertEqual([a["outcome"] for a in task["attempts"]], ["completed"])

    def test_worker_cancel_requested(self) -> None:
        self.start_worker(lease="5s")
        id = self.submit({"mode": "sleep", "seconds": 30})
        wait_until(lambda: self.client.get(id), lambda t: t["state"] == "running")
        self.client.cancel(id)
        task = self.client.get(id, wait="15s")
        # The handler saw cancel_requested at a heartbeat and returned.
        self.assertIn(task["state"], FINAL_STATES, task)
        if task["state"] == "completed":
            self.assertTrue(task["result"]["cancel_requested"], task)

    def test_sigterm_fails_back_running_task(self) -> None:
        proc = start_echo_worker(self, URL, "--grace", "1", "--lease", "5s")
        id = self.submit({"mode": "sleep", "seconds": 60})
        self.addCleanup(self.cancel_quietly, id)
        read_until(proc, lambda lines: f"started {id}" in lines)
        proc.send_signal(signal.SIGTERM)
        read_until(proc, lambda lines: "exited" in lines)
        self.assertEqual(proc.wait(10), 0)
        task = self.client.get(id)
        # Given back as interrupted: due again at once, for any worker, and
        # the attempt is not counted (nor an error recorded).
        self.assertEqual(task["state"], "available", task)
        self.assertEqual(task["attempt"], 0, task)
        self.assertEqual(task["errors"], [], task)
        self.assertEqual([a["outcome"] for a in task["attempts"]], ["interrupted"], task)
        self.assertEqual(task["attempts"][0]["error"], "worker shutting down", task)

    def cancel_quietly(self, id: int) -> None:
        try:
            self.client.cancel(id)
        except TaskdError:
            pass


if __name__ == "__main__":
    unittest.main()
