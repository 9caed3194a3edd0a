"""A webhook receiver for tests/webhooks.rs, checking natter's deliveries with an
implementation nobody here wrote: PyPI's standardwebhooks (pinned in .ci/run).

    webhook_receiver.py SECRET [--port N] [--statuses 500,200]

Listens on 127.0.0.1 (port N, or one the system picks), prints {"port": N} as its first line,
then one JSON line per request: whether standardwebhooks.Webhook(SECRET).verify accepted it,
its webhook-id, the status it answered and the parsed body. --statuses: the answers to the
first requests, in order (200 after them). It runs until its stdin closes or it is killed.
"""

import argparse
import json
import sys
import threading
from http.server import BaseHTTPRequestHandler, HTTPServer

from standardwebhooks.webhooks import Webhook


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("secret")
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--statuses", default="")
    args = parser.parse_args()
    webhook = Webhook(args.secret)
    statuses = [int(s) for s in args.statuses.split(",") if s.strip()]
    lock = threading.Lock()

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self):
            length = int(self.headers.get("content-length") or 0)
            # Bounded: natter's events are small.
            body = self.rfile.read(min(length, 1 << 20))
            headers = {k.lower(): v for k, v in self.headers.items()}
            record = {"webhook_id": headers.get("webhook-id"), "path": self.path,
                      "user_agent": headers.get("user-agent"),
                      "content_type": headers.get("content-type")}
            try:
                webhook.verify(body, headers)
                record["verified"] = True
            except Exception as e:  # any refusal is reported, not raised
                record["verified"] = False
                record["error"] = repr(e)
            try:
                record["body"] = json.loads(body)
            except ValueError:
                record["body"] = None
            with lock:
                status = statuses.pop(0) if statuses else 200
            record["status"] = status
            self.send_response(status)
            self.send_header("content-length", "0")
            self.end_headers()
            with lock:
                print(json.dumps(record), flush=True)

        def log_message(self, *_):
            pass

    server = HTTPServer(("127.0.0.1", args.port), Handler)
    print(json.dumps({"port": server.server_address[1]}), flush=True)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    # Ends with the test: its stdin closes when the test drops the process.
    sys.stdin.read()
    server.shutdown()


if __name__ == "__main__":
    main()
