"""verify_webhook against signatures computed here, independently."""

import base64
import hashlib
import hmac
import os
import time
import unittest

import _support  # noqa: F401  (puts the package on sys.path)

from taskd import WebhookVerificationError, verify_webhook

KEY = os.urandom(24)
SECRET = "whsec_" + base64.b64encode(KEY).decode()
BODY = b'{"id":42,"kind":"resize","args":{"url":"https://example.com/a.png"},"attempt":1}'


def sign(key: bytes, msg_id: str, timestamp: str, body: bytes) -> str:
    mac = hmac.new(key, msg_id.encode() + b"." + timestamp.encode() + b"." + body, hashlib.sha256)
    return "v1," + base64.b64encode(mac.digest()).decode()


def headers_for(body: bytes = BODY, timestamp: int = 0, key: bytes = KEY, msg_id: str = "42") -> dict:
    ts = str(timestamp or int(time.time()))
    return {"webhook-id": msg_id, "webhook-timestamp": ts, "webhook-signature": sign(key, msg_id, ts, body)}


class VerifyWebhookTest(unittest.TestCase):
    def test_valid(self) -> None:
        verify_webhook(SECRET, headers_for(), BODY)

    def test_published_vector(self) -> None:
        # The example of the Standard Webhooks specification.
        verify_webhook(
            "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw",
            {
                "webhook-id": "msg_p5jXN8AQM9LWM0D4loKWxJek",
                "webhook-timestamp": "1614265330",
                "webhook-signature": "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE=",
            },
            '{"test": 2432232314}',
            tolerance=10**12,
        )

    def test_secret_without_prefix(self) -> None:
        verify_webhook(base64.b64encode(KEY).decode(), headers_for(), BODY)

    def test_str_body(self) -> None:
        body = '{"name":"café"}'
        verify_webhook(SECRET, headers_for(body.encode("utf-8")), body)

    def test_bytes_like_body(self) -> None:
        verify_webhook(SECRET, headers_for(), bytearray(BODY))
        verify_webhook(SECRET, headers_for(), memoryview(BODY))

    def test_case_insensitive_headers(self) -> None:
        h = headers_for()
        verify_webhook(SECRET, {"Webhook-Id": h["webhook-id"], "WEBHOOK-TIMESTAMP": h["webhook-timestamp"],
                                "Webhook-Signature": h["webhook-signature"]}, BODY)

    def test_mapping_headers(self) -> None:
        # A case-insensitive mapping such as Starlette's Headers.
        class Headers:
            def __init__(self, items: dict) -> None:
                self._items = {k.lower(): v for k, v in items.items()}

            def get(self, name: str, default=None):
                return self._items.get(name.lower(), default)

            def items(self):
                return self._items.items()

        verify_webhook(SECRET, Headers({k.upper(): v for k, v in headers_for().items()}), BODY)

    def test_multiple_signatures(self) -> None:
        h = headers_for()
        old = sign(os.urandom(24), h["webhook-id"], h["webhook-timestamp"], BODY)
        for sigs in [f"{old} {h['webhook-signature']}", f"{h['webhook-signature']} {old}",
                     f"v2,abc {h['webhook-signature']}"]:
            with self.subTest(signatures=sigs):
                verify_webhook(SECRET, dict(h, **{"webhook-signature": sigs}), BODY)

    def test_bad_signatures(self) -> None:
        h = headers_for()
        good = h["webhook-signature"]
        cases = {
            "other key": sign(os.urandom(24), h["webhook-id"], h["webhook-timestamp"], BODY),
            "wrong version": "v2," + good[3:],
            "no version": good[3:],
            "truncated": good[:-4],
            "empty": "",
            "only other signatures": sign(os.urandom(24), "x", "y", BODY) + " v1,",
        }
        for name, sig in cases.items():
            with self.subTest(name), self.assertRaises(WebhookVerificationError):
                verify_webhook(SECRET, dict(h, **{"webhook-signature": sig}), BODY)

    def test_tampering(self) -> None:
        h = headers_for()
        with self.assertRaises(WebhookVerificationError):
            verify_webhook(SECRET, h, BODY + b" ")
        with self.assertRaises(WebhookVerificationError):
            verify_webhook(SECRET, dict(h, **{"webhook-id": "43"}), BODY)
        # The timestamp is signed: moving it (within the tolerance) breaks it.
        with self.assertRaises(WebhookVerificationError):
            verify_webhook(SECRET, dict(h, **{"webhook-timestamp": str(int(h["webhook-timestamp"]) + 1)}), BODY)

    def test_tolerance(self) -> None:
        now = int(time.time())
        verify_webhook(SECRET, headers_for(timestamp=now - 290), BODY)
        verify_webhook(SECRET, headers_for(timestamp=now + 290), BODY)
        with self.assertRaisesRegex(WebhookVerificationError, "too old"):
            verify_webhook(SECRET, headers_for(timestamp=now - 310), BODY)
        with self.assertRaisesRegex(WebhookVerificationError, "future"):
            verify_webhook(SECRET, headers_for(timestamp=now + 310), BODY)
        verify_webhook(SECRET, headers_for(timestamp=now - 3000), BODY, tolerance=3600)
        with self.assertRaises(WebhookVerificationError):
            verify_webhook(SECRET, headers_for(timestamp=now - 20), BODY, tolerance=10)

    def test_bad_timestamp(self) -> None:
        h = headers_for()
        for ts in ["", "soon", "1.5e9", "12 34", f" {h['webhook-timestamp']}", "+" + h["webhook-timestamp"],
                   h["webhook-timestamp"][:4] + "_" + h["webhook-timestamp"][4:]]:
            with self.subTest(ts=ts), self.assertRaises(WebhookVerificationError):
                verify_webhook(SECRET, dict(h, **{"webhook-timestamp": ts}), BODY)

    def test_missing_headers(self) -> None:
        for name in ["webhook-id", "webhook-timestamp", "webhook-signature"]:
            h = headers_for()
            del h[name]
            with self.subTest(missing=name), self.assertRaisesRegex(WebhookVerificationError, name):
                verify_webhook(SECRET, h, BODY)

    def test_bad_secret(self) -> None:
        with self.assertRaises(ValueError):
            verify_webhook("whsec_not base64!", headers_for(), BODY)
        self.assertFalse(issubclass(ValueError, WebhookVerificationError))


if __name__ == "__main__":
    unittest.main()
