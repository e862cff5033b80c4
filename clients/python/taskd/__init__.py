"""The Python client of taskd, a PostgreSQL-backed task service.

- :class:`Client` submits, follows, cancels and retries tasks and batches,
  and claims tasks of external kinds to work them.
- :class:`Worker` runs handlers for external kinds: claim → handle →
  complete/fail, with heartbeats and graceful shutdown.
- :func:`verify_webhook` checks the signature of a task taskd pushed to an
  HTTP kind.

Every error answer raises :class:`TaskdError`; a failure to get an answer
raises its subclass :class:`TaskdConnectionError`, whose status is 0.
"""

from taskd._errors import TaskdConnectionError, TaskdError
from taskd.client import FINAL_STATES, Client, __version__
from taskd.webhook import WebhookVerificationError, verify_webhook
from taskd.worker import Permanent, RetryAfter, Task, Worker

__all__ = [
    "FINAL_STATES",
    "Client",
    "Permanent",
    "RetryAfter",
    "Task",
    "TaskdConnectionError",
    "TaskdError",
    "WebhookVerificationError",
    "Worker",
    "__version__",
    "verify_webhook",
]
