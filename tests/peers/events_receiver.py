"""The application's webhook receiver for tests/events.rs: verifies every
delivery with the real `standardwebhooks` library (nothing assetgate wrote
checks its own signatures) and records each request.

  python events_receiver.py --port P --secret whsec_... --record FILE [--fail-first N]
                            [--tls-cert CHAIN.pem --tls-key KEY.pem]

- A request that verifies gets 204, except the first N verified ones, which
  get 500 (the retry test).
- One that does not verify gets 401.
- Every request is appended to FILE as one JSON line:
  {"webhook_id", "webhook_timestamp", "webhook_signature", "body", "verified",
   "status", "error"}: the test replays and tampers with them.

- With --tls-cert/--tls-key it speaks HTTPS only (Python's ssl module, the
  given chain and key); a client that refuses the certificate aborts the
  handshake before any request, so nothing is recorded.

Prints "listening <port>" once it accepts connections.
"""

import argparse
import json
import ssl
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from standardwebhooks.webhooks import Webhook, WebhookVerificationError


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--port", type=int, default=0)
    ap.add_argument("--secret", required=True)
    ap.add_argument("--record", required=True)
    ap.add_argument("--fail-first", type=int, default=0)
    ap.add_argument("--tls-cert")
    ap.add_argument("--tls-key")
    args = ap.parse_args()

    wh = Webhook(args.secret)
    lock = threading.Lock()
    state = {"failures_left": args.fail_first}

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, fmt, *a):
            pass

        def do_POST(self):
            length = int(self.headers.get("Content-Length", "0"))
            body = self.rfile.read(length)
            headers = {k: v for k, v in self.headers.items()}
            entry = {
                "webhook_id": self.headers.get("webhook-id"),
                "webhook_timestamp": self.headers.get("webhook-timestamp"),
                "webhook_signature": self.headers.get("webhook-signature"),
                "body": body.decode("utf-8", "replace"),
                "verified": False,
                "error": None,
            }
            try:
                wh.verify(body, headers)
                entry["verified"] = True
            except WebhookVerificationError as e:
                entry["error"] = str(e)
            with lock:
                if not entry["verified"]:
                    status = 401
                elif state["failures_left"] > 0:
                    state["failures_left"] -= 1
                    status = 500
                else:
                    status = 204
                entry["status"] = status
                with open(args.record, "a") as f:
                    f.write(json.dumps(entry) + "\n")
            self.send_response(status)
            if status == 204:
                self.send_header("Content-Length", "0")
                self.end_headers()
            else:
                msg = b"failing on purpose" if status == 500 else b"bad signature"
                self.send_header("Content-Length", str(len(msg)))
                self.end_headers()
                self.wfile.write(msg)

    srv = ThreadingHTTPServer(("127.0.0.1", args.port), Handler)
    if args.tls_cert:
        tls = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        tls.load_cert_chain(args.tls_cert, args.tls_key)
        # The handshake runs in accept(); a failed one is an OSError there,
        # which socketserver drops (the next connection is served).
        srv.socket = tls.wrap_socket(srv.socket, server_side=True)
    print("listening", srv.server_address[1], flush=True)
    srv.serve_forever()


if __name__ == "__main__":
    sys.exit(main())
