"""The errors the client raises."""

from __future__ import annotations

import json
from typing import Any, Dict, List, Optional


class TaskdError(Exception):
    """An error answer from taskd, or no answer at all.

    For an HTTP error (any status outside 2xx) the attributes are the fields
    of the RFC 9457 problem taskd sent (``application/problem+json``):

    - ``status``: the HTTP status (``0`` for :class:`TaskdConnectionError`);
    - ``type``: the problem type, such as ``"urn:taskd:problem:validation"``;
    - ``title``: the HTTP status text;
    - ``detail``: an English explanation, not meant to be parsed;
    - ``errors``: the field errors, a list of ``{"field": ..., "message": ...}``
      dicts (empty when the problem names no field);
    - ``retry_after``: the ``Retry-After`` header in seconds, if one was sent
      (503 answers have it), else ``None``.

    An error answer that is not a problem (a proxy's HTML page, say) gets
    type ``"about:blank"``, the status text as title and the start of the
    body as detail.
    """

    def __init__(
        self,
        status: int,
        title: str,
        detail: str = "",
        *,
        type: str = "about:blank",
        errors: Optional[List[Dict[str, Any]]] = None,
        retry_after: Optional[float] = None,
    ) -> None:
        self.status = status
        self.title = title
        self.detail = detail
        self.type = type
        self.errors: List[Dict[str, Any]] = list(errors or [])
        self.retry_after = retry_after
        super().__init__(str(self))

    def __str__(self) -> str:
        head = f"{self.status} {self.title}" if self.status else self.title
        return f"{head}: {self.detail}" if self.detail else head

    def __repr__(self) -> str:
        return (
            f"{type(self).__name__}(status={self.status!r}, title={self.title!r}, "
            f"detail={self.detail!r}, type={self.type!r}, errors={self.errors!r})"
        )


class TaskdConnectionError(TaskdError):
    """taskd could not be reached, or the connection failed before a whole
    answer arrived (refused, reset, timed out, TLS failure).

    Its ``status`` is ``0``, its ``title`` ``"Connection failed"`` and its
    ``detail`` says what happened; the underlying exception, if any, is its
    ``__cause__``. Whether a request that failed this way took effect is
    unknown: repeat a submission with the same ``idempotency_key`` to find
    out safely.
    """

    def __init__(self, detail: str) -> None:
        super().__init__(0, "Connection failed", detail)


def problem_from_response(
    status: int, reason: str, body: bytes, retry_after_header: Optional[str] = None
) -> TaskdError:
    """Build the TaskdError for an HTTP error answer."""
    retry_after: Optional[float] = None
    if retry_after_header:
        try:
            retry_after = float(retry_after_header)
        except ValueError:
            retry_after = None  # an HTTP date: taskd sends seconds, proxies may not

    try:
        doc = json.loads(body.decode("utf-8"))
    except (UnicodeDecodeError, ValueError):
        doc = None
    if isinstance(doc, dict) and ("title" in doc or "type" in doc or "detail" in doc):
        errors = [e for e in doc.get("errors") or [] if isinstance(e, dict)]
        return TaskdError(
            status,
            _str(doc.get("title")) or reason,
            _str(doc.get("detail")),
            type=_str(doc.get("type")) or "about:blank",
            errors=errors,
            retry_after=retry_after,
        )
    text = body.decode("utf-8", errors="replace").strip()
    if len(text) > 200:
        text = text[:200] + "…"
    return TaskdError(status, reason, text, retry_after=retry_after)


def _str(value: Any) -> str:
    return value if isinstance(value, str) else ""
