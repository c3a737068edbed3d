"""Receive chatsessions webhooks: verify the signature, de-duplicate by webhook-id."""
import json
import os
from http.server import BaseHTTPRequestHandler, HTTPServer

from standardwebhooks import Webhook

hook, seen = Webhook(os.environ["WEBHOOK_SECRET"]), set()

class Receiver(BaseHTTPRequestHandler):
    def do_POST(self):
        body = self.rfile.read(int(self.headers["Content-Length"]))
        try:
            event = hook.verify(body, dict(self.headers))  # raises if forged or stale
        except Exception:
            self.send_response(400); self.end_headers(); return
        if self.headers["webhook-id"] not in seen:  # at-least-once: drop repeats
            seen.add(self.headers["webhook-id"])
            print(event["type"], json.dumps(event["data"]["session"]["session_id"]))
        self.send_response(204); self.end_headers()

HTTPServer(("127.0.0.1", int(os.environ.get("PORT", "9000"))), Receiver).serve_forever()
