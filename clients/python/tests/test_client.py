"""The Client against a fake server: requests sent, answers and problems read."""

import datetime
import socket
import threading
import time
import unittest

from _support import FakeServer, Request, problem  # first: puts the package on sys.path

from taskd import Client, TaskdConnectionError, TaskdError


def ok(body, status=200):
    return lambda req: (status, {}, body)


class ProblemTest(unittest.TestCase):
    def test_problem_fields(self) -> None:
        errors = [{"field": "args.value", "message": "is required"}, {"field": "priority", "message": "must be between 1 and 4"}]
        respond = lambda req: problem(422, "Unprocessable Entity", "invalid task: ...", "urn:taskd:problem:validation", errors)
        with FakeServer(respond) as srv:
            with self.assertRaises(TaskdError) as cm:
                Client(srv.url).submit("double", {}, priority=9)
        e = cm.exception
        self.assertNotIsInstance(e, TaskdConnectionError)
        self.assertEqual(e.status, 422)
        self.assertEqual(e.type, "urn:taskd:problem:validation")
        self.assertEqual(e.title, "Unprocessable Entity")
        self.assertEqual(e.detail, "invalid task: ...")
        self.assertEqual(e.errors, errors)
        self.assertIsNone(e.retry_after)
        self.assertEqual(str(e), "422 Unprocessable Entity: invalid task: ...")

    def test_problem_without_errors(self) -> None:
        with FakeServer(lambda req: problem(404, "Not Found", "task 7 does not exist")) as srv:
            with self.assertRaises(TaskdError) as cm:
                Client(srv.url).get(7)
        self.assertEqual((cm.exception.status, cm.exception.type, cm.exception.errors), (404, "about:blank", []))

    def test_retry_after(self) -> None:
        def respond(req):
            status, headers, body = problem(503, "Service Unavailable", "database unreachable", "urn:taskd:problem:unavailable")
            return status, dict(headers, **{"Retry-After": "2"}), body

        with FakeServer(respond) as srv:
            with self.assertRaises(TaskdError) as cm:
                Client(srv.url).kinds()
        self.assertEqual(cm.exception.retry_after, 2.0)

    def test_not_a_problem(self) -> None:
        respond = lambda req: (502, {"Content-Type": "text/html"}, b"<html>bad gateway</html>")
        with FakeServer(respond) as srv:
            with self.assertRaises(TaskdError) as cm:
                Client(srv.url).get(1)
        e = cm.exception
        self.assertEqual((e.status, e.type, e.title, e.detail), (502, "about:blank", "Bad Gateway", "<html>bad gateway</html>"))

    def test_invalid_json_answer(self) -> None:
        with FakeServer(lambda req: (200, {}, b"{not json")) as srv:
            with self.assertRaises(TaskdError) as cm:
                Client(srv.url).get(1)
        self.assertEqual(cm.exception.status, 200)

    def test_connection_refused(self) -> None:
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            port = s.getsockname()[1]
        with self.assertRaises(TaskdConnectionError) as cm:
            Client(f"http://127.0.0.1:{port}").get(1)
        self.assertEqual(cm.exception.status, 0)
        self.assertIsInstance(cm.exception, TaskdError)
        self.assertIsInstance(cm.exception.__cause__, OSError)

    def test_connection_dropped(self) -> None:
        def respond(req):
            raise ConnectionAbortedError

        with FakeServer(respond) as srv:
            with self.assertRaises(TaskdConnectionError):
                Client(srv.url).get(1)

    def test_timeout(self) -> None:
        def respond(req):
            time.sleep(1)
            return 200, {}, {}

        with FakeServer(respond) as srv:
            with self.assertRaises(TaskdConnectionError):
                Client(srv.url, timeout=0.1).get(1)


class RequestTest(unittest.TestCase):
    def test_submit(self) -> None:
        with FakeServer(ok({"id": 1, "state": "scheduled"}, 201)) as srv:
            c = Client(srv.url + "/", token="s3cret")
            task = c.submit("double", {"value": 21}, queue="default", priority=2, max_attempts=3, delay=1.5,
                            tags=("a", "b"), idempotency_key="order-1", scheduled_at=None)
        self.assertEqual(task, {"id": 1, "state": "scheduled"})
        (req,) = srv.requests
        self.assertEqual((req.method, req.path), ("POST", "/v1/tasks"))
        self.assertEqual(req.json(), {"kind": "double", "args": {"value": 21}, "queue": "default", "priority": 2,
                                      "max_attempts": 3, "delay": "1.5s", "tags": ["a", "b"]})
        self.assertEqual(req.headers["authorization"], "Bearer s3cret")
        self.assertEqual(req.headers["idempotency-key"], "order-1")
        self.assertEqual(req.headers["content-type"], "application/json")

    def test_submit_defaults(self) -> None:
        with FakeServer(ok({"id": 1}, 201)) as srv:
            Client(srv.url).submit("sleep")
        (req,) = srv.requests
        self.assertEqual(req.json(), {"kind": "sleep", "args": {}})
        self.assertNotIn("authorization", req.headers)
        self.assertNotIn("idempotency-key", req.headers)

    def test_submit_scheduled_at(self) -> None:
        at = datetime.datetime(2026, 1, 2, 15, 4, 5, tzinfo=datetime.timezone.utc)
        with FakeServer(ok({"id": 1}, 201)) as srv:
            Client(srv.url).submit("sleep", {"ms": 1}, scheduled_at=at)
        self.assertEqual(srv.requests[0].json()["scheduled_at"], "2026-01-02T15:04:05+00:00")
        with self.assertRaises(ValueError):
            Client(srv.url).submit("sleep", {"ms": 1}, scheduled_at=datetime.datetime(2026, 1, 2))

    def test_submit_backoff_and_timeout(self) -> None:
        with FakeServer(ok({"id": 1}, 201)) as srv:
            c = Client(srv.url)
            backoff = {"initial": 1, "max": datetime.timedelta(minutes=5), "multiplier": 1, "jitter": 0}
            c.submit("fail", {"times": 1}, backoff=backoff, timeout=30)
            c.submit_batch([{"kind": "sleep", "args": {"ms": 1}, "backoff": {"initial": "2s", "jitter": None},
                             "timeout": "1m"}])
        self.assertEqual(srv.requests[0].json(), {"kind": "fail", "args": {"times": 1}, "timeout": "30s",
                                                  "backoff": {"initial": "1s", "max": "300s", "multiplier": 1,
                                                              "jitter": 0}})
        self.assertEqual(srv.requests[1].json(), {"tasks": [{"kind": "sleep", "args": {"ms": 1}, "timeout": "1m",
                                                             "backoff": {"initial": "2s"}}]})
        with self.assertRaisesRegex(TypeError, "factor"):
            Client("http://127.0.0.1:1").submit("fail", {"times": 1}, backoff={"factor": 2})

    def test_submit_unknown_field(self) -> None:
        with self.assertRaisesRegex(TypeError, "prio"):
            Client("http://127.0.0.1:1").submit("double", {"value": 1}, prio=1)

    def test_path_prefix(self) -> None:
        with FakeServer(ok({"kinds": [{"name": "double"}]})) as srv:
            self.assertEqual(Client(srv.url + "/taskd").kinds(), [{"name": "double"}])
        self.assertEqual(srv.paths(), ["/taskd/v1/kinds"])

    def test_schedules(self) -> None:
        listed = [{"name": "nightly", "spec": {"cron": "0 3 * * *"}, "kind": "double", "queue": "default",
                   "last_task_id": None, "last_enqueued_at": None, "next_run_at": "2026-03-05T03:00:00Z"}]
        with FakeServer(ok({"schedules": listed})) as srv:
            self.assertEqual(Client(srv.url).schedules(), listed)
        self.assertEqual(srv.paths("GET"), ["/v1/schedules"])

    def test_invalid_url(self) -> None:
        for url in ["127.0.0.1:8080", "ftp://x", "http://"]:
            with self.subTest(url=url), self.assertRaises(ValueError):
                Client(url)

    def test_batch(self) -> None:
        with FakeServer(ok({"id": 7, "task_ids": [1, 2]}, 201)) as srv:
            got = Client(srv.url).submit_batch(
                [{"kind": "double", "args": {"value": 1}}, {"kind": "sleep", "args": {"ms": 5}, "delay": 2}],
                idempotency_key="b-1",
            )
        self.assertEqual(got, {"id": 7, "task_ids": [1, 2]})
        (req,) = srv.requests
        self.assertEqual(req.path, "/v1/batches")
        self.assertEqual(req.json(), {"tasks": [{"kind": "double", "args": {"value": 1}},
                                                {"kind": "sleep", "args": {"ms": 5}, "delay": "2s"}]})
        self.assertEqual(req.headers["idempotency-key"], "b-1")
        with self.assertRaisesRegex(TypeError, r"tasks\[0\]"):
            Client(srv.url).submit_batch([{"kind": "double", "args": {}, "bogus": 1}])

    def test_batch_then(self) -> None:
        with FakeServer(ok({"id": 7, "task_ids": [1]}, 201)) as srv:
            Client(srv.url).submit_batch([{"kind": "double", "args": {"value": 1}}],
                                         then={"kind": "double", "args": {"value": 0}, "delay": 1.5, "priority": None})
        (req,) = srv.requests
        self.assertEqual(req.json(), {"tasks": [{"kind": "double", "args": {"value": 1}}],
                                      "then": {"kind": "double", "args": {"value": 0}, "delay": "1.5s"}})
        with self.assertRaisesRegex(TypeError, r"^then: unknown task field 'bogus'"):
            Client(srv.url).submit_batch([{"kind": "double", "args": {}}], then={"kind": "double", "bogus": 1})
        with self.assertRaisesRegex(ValueError, "then has no kind"):
            Client(srv.url).submit_batch([{"kind": "double", "args": {}}], then={"args": {}})

    def test_cancel_retry(self) -> None:
        with FakeServer(ok({"id": 5, "state": "cancelled"})) as srv:
            c = Client(srv.url)
            c.cancel(5)
            c.retry(5)
        self.assertEqual(srv.paths("POST"), ["/v1/tasks/5/cancel", "/v1/tasks/5/retry"])
        self.assertEqual([r.body for r in srv.requests], [b"", b""])

    def test_pull_calls(self) -> None:
        def respond(req: Request):
            if req.path == "/v1/claims":
                return 200, {}, {"tasks": [{"id": 3, "lease": "L"}]}
            if req.path.endswith("/heartbeat"):
                return 200, {}, {"lease_expires_at": "2026-01-02T15:04:05.123456789Z", "cancel_requested": False}
            return 200, {}, {"id": 3}

        with FakeServer(respond) as srv:
            c = Client(srv.url)
            self.assertEqual(c.claim(kinds=["a", "b"], queues="external", max=5, wait=1.5, lease="10s", worker="w1"),
                             [{"id": 3, "lease": "L"}])
            c.claim()
            c.complete(3, "L", {"ok": True})
            c.complete(3, "L")
            c.fail(3, "L", "boom")
            c.fail(3, "L", "later", retry_after=0, permanent=False)
            c.fail(3, "L", "bad", permanent=True)
            self.assertFalse(c.heartbeat(3, "L", extend=30)["cancel_requested"])
            c.heartbeat(3, "L")
        bodies = [(r.path, r.json()) for r in srv.requests]
        self.assertEqual(bodies, [
            ("/v1/claims", {"kinds": ["a", "b"], "queues": ["external"], "max": 5, "wait": "1.5s", "lease": "10s", "worker": "w1"}),
            ("/v1/claims", {"max": 1, "wait": "30s"}),
            ("/v1/tasks/3/complete", {"lease": "L", "result": {"ok": True}}),
            ("/v1/tasks/3/complete", {"lease": "L"}),
            ("/v1/tasks/3/fail", {"lease": "L", "error": "boom"}),
            ("/v1/tasks/3/fail", {"lease": "L", "error": "later", "retry_after": "0s"}),
            ("/v1/tasks/3/fail", {"lease": "L", "error": "bad", "permanent": True}),
            ("/v1/tasks/3/heartbeat", {"lease": "L", "extend": "30s"}),
            ("/v1/tasks/3/heartbeat", {"lease": "L"}),
        ])

    def test_claim_outlives_timeout(self) -> None:
        # A claim that the server holds for its wait is not cut off by the
        # client's shorter timeout.
        def respond(req):
            time.sleep(0.5)
            return 200, {}, {"tasks": []}

        with FakeServer(respond) as srv:
            self.assertEqual(Client(srv.url, timeout=0.2).claim(wait="1s"), [])

    def test_json_refuses_nan(self) -> None:
        with self.assertRaises(ValueError):
            Client("http://127.0.0.1:1").submit("double", {"value": float("nan")})


class WaitTest(unittest.TestCase):
    """The client lets the server wait (?wait=), 60 s per request at most."""

    def test_get_lets_the_server_wait(self) -> None:
        with FakeServer(ok({"id": 1, "state": "completed"})) as srv:
            task = Client(srv.url).get(1, wait="10s")
        self.assertEqual(task["state"], "completed")
        self.assertEqual(srv.paths(), ["/v1/tasks/1?wait=10s"])

    def test_get_returns_what_the_server_has_at_the_deadline(self) -> None:
        # A server that holds the request for its whole wait, then answers
        # with the task unfinished.
        def respond(req: Request):
            wait = req.path.split("?wait=", 1)[1]
            time.sleep(float(wait.rstrip("s")))
            return 200, {}, {"id": 1, "state": "running"}

        with FakeServer(respond) as srv:
            task = Client(srv.url).get(1, wait=0.3)
        self.assertEqual(task["state"], "running")
        self.assertEqual(srv.paths(), ["/v1/tasks/1?wait=0.3s"])

    def test_an_early_unfinished_answer_is_asked_again(self) -> None:
        # Back at once and unfinished (a server shutting down): asked again
        # after a pause, with what is left of the wait.
        states = iter(["running", "completed"])
        with FakeServer(lambda req: (200, {}, {"id": 1, "state": next(states)})) as srv:
            task = Client(srv.url).get(1, wait="10s")
        self.assertEqual(task["state"], "completed")
        paths = srv.paths()
        self.assertEqual(len(paths), 2)
        self.assertEqual(paths[0], "/v1/tasks/1?wait=10s")
        self.assertTrue(paths[1].startswith("/v1/tasks/1?wait=9."), paths[1])

    def test_long_waits_take_several_requests(self) -> None:
        with FakeServer(ok({"id": 1, "state": "completed"})) as srv:
            Client(srv.url).get(1, wait="5m")
        self.assertEqual(srv.paths(), ["/v1/tasks/1?wait=60s"])

    def test_get_without_wait(self) -> None:
        with FakeServer(ok({"id": 1, "state": "running"})) as srv:
            Client(srv.url).get(1)
        self.assertEqual(srv.paths(), ["/v1/tasks/1"])

    def test_negative_wait(self) -> None:
        with self.assertRaises(ValueError):
            Client("http://127.0.0.1:1").get(1, wait=-1)

    def test_batch_wait(self) -> None:
        def respond(req: Request):
            return 201, {}, {"id": 7, "total": 2, "done": True, "counts": {"completed": 2},
                             "tasks": [{"id": 1, "state": "completed"}, {"id": 2, "state": "completed"}]}

        with FakeServer(respond) as srv:
            batch = Client(srv.url).submit_batch([{"kind": "double", "args": {"value": 1}}] * 2, wait="5s")
        self.assertTrue(batch["done"])
        self.assertEqual(batch["task_ids"], [1, 2])
        self.assertEqual(srv.paths(), ["/v1/batches?wait=5s"])


class ThreadSafetyTest(unittest.TestCase):
    def test_shared_client(self) -> None:
        with FakeServer(lambda req: (200, {}, {"id": int(req.path.rsplit("/", 1)[1])})) as srv:
            c = Client(srv.url)
            got = {}

            def get(i):
                got[i] = c.get(i)["id"]

            threads = [threading.Thread(target=get, args=(i,)) for i in range(1, 21)]
            for t in threads:
                t.start()
            for t in threads:
                t.join()
        self.assertEqual(got, {i: i for i in range(1, 21)})


if __name__ == "__main__":
    unittest.main()
