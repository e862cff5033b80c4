"""A worker for the external kind py_echo, used by the tests: its handler is
imported by them, and the script runs in a subprocess to be sent SIGTERM.

    python3 echo_worker.py URL [--grace SECONDS] [--lease DURATION] [--concurrency N]

The handler does what the task's args say, by "mode":

- "echo" (default): returns {"echo": args["value"], "attempt": attempt}.
- "permanent": raises Permanent(args["message"]).
- "error": raises ValueError(args["message"]).
- "retry_after": raises RetryAfter(args["seconds"], "not yet") on attempts
  before args["until_attempt"] (default 2), then echoes.
- "sleep": sleeps args["seconds"], returning early once cancel_requested is
  set; returns {"slept": seconds, "cancel_requested": bool}.

The script prints "started <id>" when a handler starts and "exited" when
run() returns, for the tests to follow.
"""

from __future__ import annotations

import argparse
import logging
import sys
import time
from typing import Any

import _support  # noqa: F401  (puts the package on sys.path)

from taskd import Client, Permanent, RetryAfter, Task, Worker

KIND = "py_echo"

# Set by the script: print a line as each handler starts.
announce = False


def handle(task: Task) -> Any:
    """The handler of py_echo."""
    if announce:
        sys.stdout.write(f"started {task.id}\n")  # one write: handlers run on several threads
        sys.stdout.flush()
    args = task.args or {}
    mode = args.get("mode", "echo")
    if mode == "permanent":
        raise Permanent(args.get("message", "bad input"))
    if mode == "error":
        raise ValueError(args.get("message", "boom"))
    if mode == "retry_after" and task.attempt < args.get("until_attempt", 2):
        raise RetryAfter(args.get("seconds", 1), "not yet")
    if mode == "sleep":
        start = time.monotonic()
        while time.monotonic() - start < args["seconds"] and not task.cancel_requested:
            time.sleep(0.05)
        return {"slept": round(time.monotonic() - start, 3), "cancel_requested": task.cancel_requested}
    return {"echo": args.get("value"), "attempt": task.attempt}


def main() -> None:
    global announce
    parser = argparse.ArgumentParser()
    parser.add_argument("url")
    parser.add_argument("--grace", type=float, default=30.0)
    parser.add_argument("--lease", default=None)
    parser.add_argument("--concurrency", type=int, default=2)
    opts = parser.parse_args()
    logging.basicConfig(level=logging.INFO, stream=sys.stderr, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    announce = True
    worker = Worker(Client(opts.url), kinds=[KIND], concurrency=opts.concurrency, lease=opts.lease,
                    poll_wait="5s", grace=opts.grace, name="echo-worker")
    worker.handler(KIND)(handle)
    worker.run()
    print("exited", flush=True)


if __name__ == "__main__":
    main()
