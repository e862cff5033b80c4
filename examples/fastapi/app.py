"""The FastAPI app of the article taskd grew from, with taskd doing the work.

The article serves each of its parallel-processing patterns from one
FastAPI process: asyncio.gather, BackgroundTasks, Celery, a Semaphore, a
ProcessPoolExecutor and an in-memory TaskManager. This app keeps its
endpoints and their answers, but hands every piece of work to taskd, which
keeps the tasks, their results and their errors in PostgreSQL. So a restart
of this app, of taskd or of a worker loses nothing, and any number of app
processes can share the same tasks.

    POST /process-multiple      gather a batch of double tasks (built-in)
    POST /submit-task           submit a double task ...
    GET  /get-result/{id}       ... and poll for its result
    POST /submit-heavy-task     submit a heavy_task (worked by worker.py) ...
    GET  /check-task/{id}       ... and poll for its result
    POST /process-with-limit    gather limited_work tasks, 5 at a time, which
    POST /hooks/limited         taskd pushes here, signed
    POST /process-cpu-bound     gather cpu tasks (built-in, on the cpu queue)
    POST /start-task            a fail task retried with exponential backoff ...
    GET  /task-status/{id}      ... and its state, attempt by attempt
    GET  /batch-results/{id}    a gather that outlived its wait, later

Run it with uvicorn from this directory (run.sh does):

    TASKD_URL=http://127.0.0.1:8080 EXAMPLE_WEBHOOK_SECRET=whsec_... \\
        /usr/bin/python3 -m uvicorn app:app --port 8000

EXAMPLE_WEBHOOK_SECRET must be the secret of limited_work in taskd.yaml.
"""

import asyncio
import json
import os
import pathlib
import sys
from typing import Any, Dict, List, Optional

from fastapi import FastAPI, HTTPException, Request
from fastapi.responses import JSONResponse

try:
    import taskd
except ImportError:  # not installed: use the one in this repository
    sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[2] / "clients" / "python"))
    import taskd

WEBHOOK_SECRET = os.environ.get("EXAMPLE_WEBHOOK_SECRET", "")
if not WEBHOOK_SECRET:
    raise RuntimeError("EXAMPLE_WEBHOOK_SECRET is not set: give it limited_work's secret from taskd.yaml")

# How long a gathering endpoint waits for its batch before it answers 202
# with the batch's id, to be read later from /batch-results/{id}.
GATHER_WAIT = os.environ.get("EXAMPLE_GATHER_WAIT", "60s")

client = taskd.Client(os.environ.get("TASKD_URL", "http://127.0.0.1:8080"))
app = FastAPI(title="The FastAPI parallel-processing article's app, on taskd")

# The endpoints that call taskd are plain `def`, not `async def`: the taskd
# client is blocking (http.client, and its wait= holds a request), and
# FastAPI runs plain functions in its thread pool, where blocking holds one
# thread and not the event loop that serves every other request. Only the
# webhook receiver, which never calls taskd, is `async def`.


@app.exception_handler(taskd.TaskdError)
async def taskd_error(request: Request, exc: taskd.TaskdError) -> JSONResponse:
    """Pass taskd's verdict on a request on to our caller: an unknown task
    is our 404, invalid args (checked by the kind's JSON Schema) our 422.
    Anything else is taskd's trouble, not the caller's: 502, or 503 when
    taskd did not answer."""
    if isinstance(exc, taskd.TaskdConnectionError):
        status = 503
    elif exc.status in (400, 404, 409, 422):
        status = exc.status
    else:
        status = 502
    return JSONResponse({"detail": exc.detail or exc.title, "errors": exc.errors}, status_code=status)


def last_error(task: Dict[str, Any]) -> Optional[str]:
    errors = task.get("errors") or []
    return errors[-1]["message"] if errors else None


def outcome(task: Dict[str, Any]) -> Any:
    """A gathered task's place in the answer: its result, or what went wrong."""
    if task["state"] == "completed":
        return task["result"]
    return {"status": "failed", "state": task["state"], "error": last_error(task)}


def batch_answer(batch: Dict[str, Any]) -> JSONResponse:
    """The results of a done batch in submission order, as asyncio.gather
    returns them; 202 while it is not done."""
    headers = {"Taskd-Batch-Id": str(batch["id"])}
    if not batch["done"]:
        return JSONResponse(
            {"status": "processing", "batch_id": batch["id"], "counts": batch["counts"]},
            status_code=202,
            headers=headers,
        )
    return JSONResponse([outcome(t) for t in batch["tasks"]], headers=headers)


def gather(kind: str, items: List[Dict[str, Any]]) -> Any:
    """Submit one task of kind per item, all or nothing, and wait for them.

    taskd holds the request until every task is final (?wait=), woken by
    the announcement of whichever process finished the last one.
    """
    if not items:
        return []
    batch = client.submit_batch([{"kind": kind, "args": item} for item in items], wait=GATHER_WAIT)
    return batch_answer(batch)


# asyncio.gather: process several items at once and answer with all results.


@app.post("/process-multiple")
def process_multiple(items: List[Dict[str, Any]]) -> Any:
    """Body: [{"value": 1}, {"value": 2}] → [{"result": 2}, {"result": 4}]."""
    return gather("double", items)


@app.get("/batch-results/{batch_id}")
def batch_results(batch_id: int) -> JSONResponse:
    """A gathering endpoint's results, once its batch is done."""
    return batch_answer(client.get_batch(batch_id))


# BackgroundTasks: answer at once with an id, let the caller poll.


@app.post("/submit-task")
def submit_task(data: Dict[str, Any]) -> Dict[str, Any]:
    """Body: {"value": 21} → {"task_id": ...}."""
    return {"task_id": client.submit("double", data)["id"]}


@app.get("/get-result/{task_id}")
def get_result(task_id: int) -> Any:
    """The result ({"result": 42}) once there is one, else {"status": "processing"}."""
    task = client.get(task_id)
    if task["state"] == "completed":
        return task["result"]
    if task["state"] in taskd.FINAL_STATES:
        return {"status": "failed", "error": last_error(task)}
    return {"status": "processing"}


# Celery: a heavy task for a separate worker process (worker.py).


@app.post("/submit-heavy-task")
def submit_heavy_task(data: Dict[str, Any]) -> Dict[str, Any]:
    """Body: {"value": 21, "seconds": 5} → {"task_id": ...}."""
    return {"task_id": client.submit("heavy_task", data)["id"]}


@app.get("/check-task/{task_id}")
def check_task(task_id: int) -> Dict[str, Any]:
    """{"status": "completed", "result": ...} once done, else {"status": "processing"}."""
    task = client.get(task_id)
    if task["state"] == "completed":
        return {"status": "completed", "result": task["result"]}
    if task["state"] in taskd.FINAL_STATES:
        return {"status": "failed", "error": last_error(task)}
    return {"status": "processing"}


# Semaphore(5): at most five of these tasks run at once. The bound is the
# limited queue's 5 workers (taskd.yaml), which push the tasks to the hook
# below.


@app.post("/process-with-limit")
def process_with_limit(items: List[Dict[str, Any]]) -> Any:
    """Body: [{"value": 1, "ms": 2000}, ...] → [{"processed": 1, "running_at_once": 5}, ...]."""
    return gather("limited_work", items)


class _Running:
    """One limited_work task this process is running, and the most such
    tasks it saw running at once meanwhile."""

    def __init__(self) -> None:
        self.peak = 0


_running: "set[_Running]" = set()


@app.post("/hooks/limited")
async def limited_hook(request: Request) -> Dict[str, Any]:
    """Work one limited_work task that taskd pushed: verify that taskd signed
    it, then do the article's two seconds of resource-intensive work.

    A 2xx answer completes the task with the body as its result; a 5xx or
    no answer fails the attempt and taskd retries it; any other 4xx (here a
    bad signature) discards it.
    """
    body = await request.body()  # verify the raw bytes, before parsing them
    try:
        taskd.verify_webhook(WEBHOOK_SECRET, request.headers, body)
    except taskd.WebhookVerificationError as exc:
        raise HTTPException(status_code=401, detail=str(exc))
    task = json.loads(body)  # {"id", "kind", "args", "attempt", "max_attempts", "queue", "batch_id", "schedule"}
    args = task["args"]

    me = _Running()
    _running.add(me)
    for r in _running:  # no lock needed: this all runs on the event loop
        r.peak = max(r.peak, len(_running))
    try:
        await asyncio.sleep(args.get("ms", 2000) / 1000)
    finally:
        _running.discard(me)
    return {"processed": args["value"], "running_at_once": me.peak}


# ProcessPoolExecutor: CPU-bound work away from the event loop, on every core.


@app.post("/process-cpu-bound")
def process_cpu_bound(items: List[Dict[str, Any]]) -> Any:
    """Body: [{"n": 100000}, ...] → [{"primes": 9592}, ...], counted by
    taskd's cpu workers (one per core), not by this process."""
    return gather("cpu", items)


# TaskManager: a task's state, with retries and exponential backoff.


@app.post("/start-task")
def start_task(data: Dict[str, Any]) -> Dict[str, Any]:
    """Body: {"times": 2, "message": "flaky", "max_retries": 3} → {"task_id": ...}.

    The built-in fail kind fails its first `times` attempts; taskd retries
    it after about 1 s, 2 s, 4 s, ... for up to max_retries retries (3, as
    in the article), then gives up.
    """
    args = dict(data)
    max_retries = args.pop("max_retries", 3)
    if not isinstance(max_retries, int) or isinstance(max_retries, bool) or not 0 <= max_retries <= 999:
        raise HTTPException(status_code=422, detail="max_retries must be an integer between 0 and 999")
    return {"task_id": client.submit("fail", args, max_attempts=max_retries + 1)["id"]}


@app.get("/task-status/{task_id}")
def task_status(task_id: int) -> Dict[str, Any]:
    """The article's TaskState (status, started_at, result, error), with
    each attempt taskd recorded."""
    task = client.get(task_id)
    if task["state"] == "completed":
        status = "completed"
    elif task["state"] in taskd.FINAL_STATES:
        status = "failed"
    else:
        status = "processing"
    return {
        "status": status,
        "started_at": task["created_at"],
        "result": task["result"],
        "error": last_error(task) if status != "completed" else None,
        "attempts": [
            {"attempt": a["attempt"], "outcome": a["outcome"], "started_at": a["started_at"], "error": a["error"]}
            for a in task.get("attempts") or []
        ],
    }
