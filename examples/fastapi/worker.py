"""The example's pull worker: it works heavy_task, the article's Celery task.

Where the article starts a Celery worker that takes jobs from Redis, this
process claims heavy_task tasks from taskd (POST /v1/claims), runs them and
reports each result back. Start as many as you like, on any machine that
reaches taskd: two workers never get the same task, and a task whose worker
dies (kill -9) goes to another one once its 5 s lease runs out.

    TASKD_URL=http://127.0.0.1:8080 /usr/bin/python3 worker.py

TASKD_URL defaults to http://127.0.0.1:8080; WORKER_CONCURRENCY (4) is how
many tasks it runs at once. The taskd client is imported from
clients/python, next to this example in the repository, unless it is
installed.
"""

import logging
import os
import pathlib
import sys
import time

try:
    import taskd
except ImportError:  # not installed: use the one in this repository
    sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[2] / "clients" / "python"))
    import taskd

logging.basicConfig(level=logging.INFO, format="%(asctime)s worker %(process)d %(levelname)s %(message)s")
log = logging.getLogger("worker")

worker = taskd.Worker(
    taskd.Client(os.environ.get("TASKD_URL", "http://127.0.0.1:8080")),
    concurrency=int(os.environ.get("WORKER_CONCURRENCY", "4")),
)


@worker.handler("heavy_task")
def heavy_task(task: taskd.Task) -> dict:
    """The article's process_heavy_task: work for a while (5 s unless args
    say otherwise), then double the value.

    A task runs at least once, not exactly once (a worker killed after the
    work but before its report has the task run again): this one has no
    side effects, so running it twice does no harm.
    """
    seconds = task.args.get("seconds", 5)
    log.info("task %d: started, attempt %d, working %gs", task.id, task.attempt, seconds)
    deadline = time.monotonic() + seconds
    # Sleep in steps so that a cancellation (seen by the heartbeats) stops
    # the work early: nothing interrupts a handler.
    while (left := deadline - time.monotonic()) > 0:
        if task.cancel_requested:
            raise taskd.Permanent("cancelled")
        time.sleep(min(left, 0.1))
    log.info("task %d: done", task.id)
    return {"result": task.args["value"] * 2}


if __name__ == "__main__":
    worker.run()  # until SIGTERM or SIGINT, which let running tasks finish
