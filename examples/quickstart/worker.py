"""A pull worker for the `transcode` kind of examples/taskd.yaml.

It claims transcode tasks from taskd, "transcodes" them (sleeps), and
completes them; SIGTERM or Ctrl-C stops it gracefully. Standard library
only:

    TASKD_URL=http://127.0.0.1:8080 python3 examples/quickstart/worker.py
"""

import logging
import os
import sys
import time

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "..", "clients", "python"))

from taskd import Client, Permanent, Worker  # noqa: E402

logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
worker = Worker(Client(os.environ.get("TASKD_URL", "http://127.0.0.1:8080")), concurrency=4, name="quickstart-worker")


@worker.handler("transcode")
def transcode(task):
    path = task.args["path"]
    if "corrupt" in path:
        raise Permanent(f"{path} cannot be read")  # discarded, no retry
    time.sleep(1)  # the work
    logging.info("task %s attempt %s: transcoded %s", task.id, task.attempt, path)
    return {"output": path.rsplit(".", 1)[0] + "." + task.args.get("format", "webm")}


if __name__ == "__main__":
    worker.run()
