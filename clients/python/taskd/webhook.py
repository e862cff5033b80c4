"""Verifying the signatures of the requests taskd pushes to HTTP kinds."""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import re
import time
from typing import Any, Mapping, Optional, Union

__all__ = ["WebhookVerificationError", "verify_webhook"]

_SECRET_PREFIX = "whsec_"

# int() would also take " 12", "+12", "1_2" and non-ASCII digits.
_DIGITS = re.compile(r"[0-9]+")


class WebhookVerificationError(Exception):
    """A pushed request is not signed by the expected secret, or its
    signature headers are missing, malformed or out of date."""


def verify_webhook(
    secret: str,
    headers: Mapping[str, Any],
    body: Union[bytes, bytearray, memoryview, str],
    tolerance: float = 300,
) -> None:
    """Check that a request taskd pushed is authentic; raise
    :class:`WebhookVerificationError` if it is not.

    taskd signs pushes the Standard Webhooks way
    (https://www.standardwebhooks.com): ``webhook-signature`` holds one or
    more space-separated ``v1,<base64 HMAC-SHA256>`` signatures of
    ``"<webhook-id>.<webhook-timestamp>.<body>"``, keyed with the secret.
    The request is accepted if any ``v1`` signature matches (there are
    several while a secret is being rotated) and ``webhook-timestamp`` (Unix
    seconds) is within ``tolerance`` seconds of now, either way, which
    bounds replays.

    ``secret`` is ``"whsec_"`` followed by the base64 key (the prefix may be
    left out). ``headers`` is any mapping of the request's headers, such as
    a ``dict`` or Starlette's ``request.headers``; names are matched without
    regard to case. ``body`` is the raw body, exactly as received: bytes, or
    a str that is encoded as UTF-8. Verify before parsing it.

    A ``secret`` that is not valid base64 raises :class:`ValueError`: that
    is a configuration mistake, not a bad request.
    """
    key = _decode_secret(secret)
    msg_id = _header(headers, "webhook-id")
    timestamp = _header(headers, "webhook-timestamp")
    signatures = _header(headers, "webhook-signature")

    if not _DIGITS.fullmatch(timestamp):
        raise WebhookVerificationError(f"invalid webhook-timestamp {timestamp!r}: want Unix seconds")
    sent_at = int(timestamp)
    now = time.time()
    if sent_at < now - tolerance:
        raise WebhookVerificationError("webhook-timestamp is too old")
    if sent_at > now + tolerance:
        raise WebhookVerificationError("webhook-timestamp is too far in the future")

    if isinstance(body, str):
        body = body.encode("utf-8")
    signed = f"{msg_id}.{timestamp}.".encode("utf-8") + bytes(body)
    expected = base64.b64encode(hmac.new(key, signed, hashlib.sha256).digest())

    for candidate in signatures.split(" "):
        version, sep, value = candidate.partition(",")
        if sep and version == "v1" and hmac.compare_digest(value.encode("utf-8"), expected):
            return
    raise WebhookVerificationError("no matching signature")


def _decode_secret(secret: str) -> bytes:
    if secret.startswith(_SECRET_PREFIX):
        secret = secret[len(_SECRET_PREFIX) :]
    try:
        return base64.b64decode(secret, validate=True)
    except (binascii.Error, ValueError):
        raise ValueError('invalid webhook secret: want "whsec_" followed by base64') from None


def _header(headers: Mapping[str, Any], name: str) -> str:
    value: Optional[Any] = headers.get(name)
    if value is None:
        for key, v in headers.items():
            if isinstance(key, str) and key.lower() == name:
                value = v
                break
    if isinstance(value, bytes):
        value = value.decode("latin-1")
    if not isinstance(value, str) or not value:
        raise WebhookVerificationError(f"missing {name} header")
    return value
