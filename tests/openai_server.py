"""A real HTTP server on 127.0.0.1 speaking the OpenAI chat-completions API, for LLM tests.

`behaviour` decides each answer: a callable (messages -> content string), or one of
"slow", "http500", "bad_envelope". Requests are recorded for assertions.
"""
from __future__ import annotations

import json
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Callable


class OpenAiServer:
    def __init__(self) -> None:
        self.behaviour: str | Callable[[list[dict]], str] = lambda messages: '{"labels": []}'
        self.slow_s = 3.0
        self.requests: list[dict] = []
        server = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args) -> None:  # keep test output clean
                pass

            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length", 0))
                body = json.loads(self.rfile.read(length) or b"{}")
                server.requests.append({"path": self.path, "body": body, "auth": self.headers.get("Authorization")})
                b = server.behaviour
                if not self.path.endswith("/chat/completions"):
                    return self._send(404, {"error": {"message": "not found"}})
                if b == "http500":
                    return self._send(500, {"error": {"message": "internal error", "type": "server_error"}})
                if b == "bad_envelope":
                    return self._send_raw(200, b"this is not json")
                if b == "slow":
                    time.sleep(server.slow_s)
                    content = '{"labels": []}'
                else:
                    content = b(body.get("messages", []))
                self._send(200, {
                    "id": "chatcmpl-test", "object": "chat.completion", "created": int(time.time()),
                    "model": body.get("model", "test"),
                    "choices": [{"index": 0, "finish_reason": "stop",
                                 "message": {"role": "assistant", "content": content}}],
                    "usage": {"prompt_tokens": 1, "completion_tokens": 1, "total_tokens": 2}})

            def _send(self, code: int, payload: dict) -> None:
                self._send_raw(code, json.dumps(payload).encode())

            def _send_raw(self, code: int, data: bytes) -> None:
                try:
                    self.send_response(code)
                    self.send_header("Content-Type", "application/json")
                    self.send_header("Content-Length", str(len(data)))
                    self.end_headers()
                    self.wfile.write(data)
                except (BrokenPipeError, ConnectionResetError):  # client gave up (timeout test)
                    pass

        self._httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._httpd.daemon_threads = True
        self.port = self._httpd.server_address[1]
        self.base_url = f"http://127.0.0.1:{self.port}/v1"
        self._thread = threading.Thread(target=self._httpd.serve_forever, daemon=True)

    def __enter__(self) -> "OpenAiServer":
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._httpd.shutdown()
        self._httpd.server_close()


def user_payload(messages: list[dict]) -> dict:
    """The JSON the client put in the user message."""
    return json.loads(next(m["content"] for m in messages if m["role"] == "user"))


def main() -> None:
    """Run standalone (for the CLI tests in a subprocess): prints the base URL, serves `labels` from argv."""
    import sys

    labels = sys.argv[1:] or []
    with OpenAiServer() as srv:
        srv.behaviour = lambda messages: json.dumps({"labels": labels, "reference_labels": []})
        print(srv.base_url, flush=True)
        try:
            while True:
                time.sleep(1)
        except KeyboardInterrupt:
            pass


if __name__ == "__main__":
    main()
