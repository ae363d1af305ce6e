"""A webhook receiver that checks every delivery with verifiers we did not write: SIPSIM's documented
Python verification (sipsim-reference.md, section c) and the `standardwebhooks` package from PyPI.

Usage: python_receiver.py SIGNING_SECRET [STANDARD_WEBHOOKS_SECRET]  -- prints the port it listens on,
then one JSON line per request: {"event", "sipsim_ok", "standard_ok", "error"}. Answers 200 when both
verify, 400 otherwise. The second secret is what a Standard Webhooks library is given when the signing
secret is not `whsec_<base64>` (one brought from SIPSIM); it defaults to the first.
"""

import hashlib
import hmac
import json
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from standardwebhooks.webhooks import Webhook

SECRET = sys.argv[1]
STANDARD_SECRET = sys.argv[2] if len(sys.argv) > 2 else SECRET
OUTPUT = threading.Lock()


def verify_sipsim(request_body: bytes, signature: str, timestamp: str, secret: str) -> bool:
    """SIPSIM's documented algorithm, as its Python sample computes it."""
    expected = hmac.new(
        secret.encode(), f"{timestamp}.{request_body.decode()}".encode(), hashlib.sha256
    ).hexdigest()
    return hmac.compare_digest(expected, signature)


class Handler(BaseHTTPRequestHandler):
    def do_POST(self):
        body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
        result = {"event": self.headers.get("X-Webhook-Event"), "error": None}
        result["sipsim_ok"] = verify_sipsim(
            body,
            self.headers.get("X-Webhook-Signature", ""),
            self.headers.get("X-Webhook-Timestamp", ""),
            SECRET,
        )
        try:
            Webhook(STANDARD_SECRET).verify(body, dict(self.headers.items()))
            result["standard_ok"] = True
        except Exception as e:  # the library's WebhookVerificationError, or a malformed header
            result["standard_ok"] = False
            result["error"] = str(e)
        ok = result["sipsim_ok"] and result["standard_ok"]
        self.send_response(200 if ok else 400)
        self.end_headers()
        with OUTPUT:  # one whole line per request, even from concurrent handler threads
            sys.stdout.write(json.dumps(result) + "\n")
            sys.stdout.flush()

    def log_message(self, *args):
        pass


server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
print(server.server_address[1], flush=True)
server.serve_forever()
