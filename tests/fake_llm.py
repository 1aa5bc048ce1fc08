"""A small OpenAI-compatible chat server on loopback, for tests that drive the real client.

`FakeLLM` answers POST /v1/chat/completions with whatever its `responder` returns for the
request's messages, after playing any scripted failures queued in `failures` (an HTTP status
to return, or 'slow' to stall past the client's timeout). Every request is recorded, with its
Authorization header, so tests can count requests and check what the client sent.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


class FakeLLM:
    def __init__(self, responder: Callable[[list[dict]], str]):
        self.responder = responder
        self.failures: list[int | str] = []
        self.requests: list[dict] = []
        self.slow_s = 3.0
        self._lock = threading.Lock()
        owner = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):  # quiet
                pass

            def do_POST(self):  # noqa: N802 - http.server's naming
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                with owner._lock:
                    owner.requests.append({"path": self.path, "body": body,
                                           "authorization": self.headers.get("Authorization")})
                    failure = owner.failures.pop(0) if owner.failures else None
                if failure == "slow":
                    time.sleep(owner.slow_s)
                elif failure is not None:
                    self._send(int(failure), {"error": {"message": "scripted failure", "type": "server_error"}})
                    return
                text = owner.responder(body["messages"])
                self._send(200, {
                    "id": "chatcmpl-test", "object": "chat.completion", "created": 0, "model": body["model"],
                    "choices": [{"index": 0, "finish_reason": "stop",
                                 "message": {"role": "assistant", "content": text}}],
                    "usage": {"prompt_tokens": 11, "completion_tokens": 7, "total_tokens": 18},
                })

            def _send(self, status: int, payload: dict) -> None:
                data = json.dumps(payload).encode()
                try:
                    self.send_response(status)
                    self.send_header("Content-Type", "application/json")
                    self.send_header("Content-Length", str(len(data)))
                    if status == 429:
                        self.send_header("Retry-After", "0")
                    self.end_headers()
                    self.wfile.write(data)
                except (BrokenPipeError, ConnectionResetError):
                    pass  # the client gave up (timeout test)

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}/v1"

    def __enter__(self) -> FakeLLM:
        self.thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self.server.shutdown()
        self.server.server_close()
