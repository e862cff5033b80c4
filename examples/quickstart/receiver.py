"""A push receiver for the `resize` kind of examples/taskd.yaml.

taskd POSTs each attempt here, signed with RESIZE_SECRET. The answer's
status decides the attempt: 2xx completes the task with the JSON body as
its result, 5xx retries it, 422 discards it. Standard library only:

    RESIZE_SECRET=whsec_... python3 examples/quickstart/receiver.py
"""

import http.server
import json
import os
import sys

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "..", "clients", "python"))

from taskd import WebhookVerificationError, verify_webhook  # noqa: E402

SECRET = os.environ["RESIZE_SECRET"]


class Handler(http.server.BaseHTTPRequestHandler):
    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
        try:
            verify_webhook(SECRET, self.headers, body)
        except WebhookVerificationError as e:
            # Not from taskd (or too old): 401 discards nothing taskd sent.
            self.answer(401, {"error": str(e)})
            return
        task = json.loads(body)
        args = task["args"]
        if args["width"] > 2048:
            # A 4xx other than 408/425/429 tells taskd not to try again.
            self.answer(422, {"error": "width above 2048 is not supported"})
            return
        print(f"task {task['id']} attempt {task['attempt']}: resizing {args['image']} to {args['width']}px", flush=True)
        self.answer(200, {"image": args["image"], "width": args["width"], "resized": True})

    def answer(self, status: int, doc: dict) -> None:
        data = json.dumps(doc).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, *args) -> None:  # quiet: the task prints itself
        pass


if __name__ == "__main__":
    print("receiver listening on http://127.0.0.1:9000/resize", flush=True)
    http.server.ThreadingHTTPServer(("127.0.0.1", 9000), Handler).serve_forever()
