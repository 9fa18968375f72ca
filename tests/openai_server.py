"""A real HTTP server on 127.0.0.1 speaking the OpenAI chat-completions API, for LLM tests.

`behaviour` decides each answer: a callable (messages -> content string), or one of the named
misbehaviours in `HOSTILE` (plus "slow", "http500", "bad_envelope"). Requests are recorded.
"""
from __future__ import annotations

import gzip
import json
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Callable

# What a broken, overloaded or malicious endpoint does; each must end in a fallback, never a stall.
HOSTILE = ("http429", "hang", "cut", "drip", "huge", "huge_chunked", "gzip_bomb")
HUGE_BYTES = 50 * 1024 * 1024


def _gzip_bomb(size: int) -> bytes:
    """`size` bytes of zeros, gzipped (~1000:1), wrapped in nothing: a body that inflates to `size`."""
    return gzip.compress(b"\0" * size, compresslevel=9)


class OpenAiServer:
    def __init__(self) -> None:
        self.behaviour: str | Callable[[list[dict]], str] = lambda messages: '{"labels": []}'
        self.slow_s = 3.0
        self.redirect_to = ""           # for "redirect": Location of a 307 (paths under /v2/ answer)
        self.requests: list[dict] = []
        self._stop = threading.Event()  # ends hangs and drips when the server closes
        server = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args) -> None:  # keep test output clean
                pass

            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length", 0))
                body = json.loads(self.rfile.read(length) or b"{}")
                server.requests.append({"path": self.path, "body": body, "auth": self.headers.get("Authorization")})
                b = server.behaviour
                try:
                    if not self.path.endswith("/chat/completions"):
                        return self._send(404, {"error": {"message": "not found"}})
                    if isinstance(b, str):
                        return self._misbehave(b, body)
                    self._send(200, server.completion(body, b(body.get("messages", []))))
                except (BrokenPipeError, ConnectionResetError):  # the client gave up (deadline tests)
                    pass

            def _misbehave(self, b: str, body: dict) -> None:
                if b == "http500":
                    return self._send(500, {"error": {"message": "internal error", "type": "server_error"}})
                if b == "http429":
                    return self._send(429, {"error": {"message": "rate limited", "type": "rate_limit"}})
                if b == "bad_envelope":
                    return self._send_raw(200, b"this is not json")
                if b == "redirect" and not self.path.startswith("/v2/"):  # 307 to redirect_to; /v2/ answers
                    self.send_response(307)
                    self.send_header("Location", server.redirect_to)
                    self.send_header("Content-Length", "0")
                    return self.end_headers()
                if b == "slow":
                    time.sleep(server.slow_s)
                    return self._send(200, server.completion(body, '{"labels": []}'))
                if b == "hang":  # accept, read, never answer
                    server._stop.wait(120)
                    return
                data = json.dumps(server.completion(body, '{"labels": ["dog"]}')).encode()
                if b == "redirect":  # the target of a followed redirect
                    return self._send_raw(200, data)
                if b == "gzip_ok":  # gzipped although the client asked for identity: small, so fine
                    packed = gzip.compress(data)
                    self._headers(200, len(packed), {"Content-Encoding": "gzip"})
                    self.wfile.write(packed)
                    return
                if b == "cut":  # promise the whole answer, send half, close
                    self._headers(200, len(data))
                    self.wfile.write(data[: len(data) // 2])
                    self.wfile.flush()
                    self.close_connection = True
                    return
                if b == "drip":  # one byte a second: every socket read succeeds, the answer never ends
                    self._headers(200, len(data))
                    for byte in data:
                        if server._stop.wait(1.0):
                            return
                        self.wfile.write(bytes([byte]))
                        self.wfile.flush()
                    return
                if b == "huge":  # 50 MB, declared
                    self._headers(200, HUGE_BYTES)
                    return self._stream_zeros(HUGE_BYTES)
                if b == "huge_chunked":  # 50 MB, no length given
                    self.send_response(200)
                    self.send_header("Content-Type", "application/json")
                    self.send_header("Transfer-Encoding", "chunked")
                    self.end_headers()
                    piece = b" " * 65536
                    for _ in range(HUGE_BYTES // len(piece)):
                        self.wfile.write(b"%x\r\n%s\r\n" % (len(piece), piece))
                    self.wfile.write(b"0\r\n\r\n")
                    return
                if b == "gzip_bomb":  # 50 KB on the wire, 50 MB inflated
                    bomb = server.bomb
                    self._headers(200, len(bomb), {"Content-Encoding": "gzip"})
                    self.wfile.write(bomb)
                    return
                raise ValueError(f"unknown behaviour {b!r}")

            def _stream_zeros(self, n: int) -> None:
                piece = b" " * 65536
                for _ in range(n // len(piece)):
                    self.wfile.write(piece)

            def _headers(self, code: int, length: int, extra: dict | None = None) -> None:
                self.send_response(code)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(length))
                for k, v in (extra or {}).items():
                    self.send_header(k, v)
                self.end_headers()

            def _send(self, code: int, payload: dict) -> None:
                self._send_raw(code, json.dumps(payload).encode())

            def _send_raw(self, code: int, data: bytes) -> None:
                self._headers(code, len(data))
                self.wfile.write(data)

        self._httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._httpd.daemon_threads = True
        self.port = self._httpd.server_address[1]
        self.base_url = f"http://127.0.0.1:{self.port}/v1"
        self._thread = threading.Thread(target=self._httpd.serve_forever, daemon=True)
        self._bomb: bytes | None = None

    @property
    def bomb(self) -> bytes:
        if self._bomb is None:
            self._bomb = _gzip_bomb(HUGE_BYTES)
        return self._bomb

    @staticmethod
    def completion(body: dict, content: str) -> dict:
        return {"id": "chatcmpl-test", "object": "chat.completion", "created": int(time.time()),
                "model": body.get("model", "test"),
                "choices": [{"index": 0, "finish_reason": "stop", "message": {"role": "assistant", "content": content}}],
                "usage": {"prompt_tokens": 1, "completion_tokens": 1, "total_tokens": 2}}

    def __enter__(self) -> "OpenAiServer":
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._httpd.shutdown()
        self._httpd.server_close()


def user_payload(messages: list[dict]) -> dict:
    """The JSON the client put in the user message."""
    return json.loads(next(m["content"] for m in messages if m["role"] == "user"))


def main() -> None:
    """Run standalone (node and CLI tests in a subprocess): prints the base URL, then serves.

    argv: labels to answer with, or `--hostile` to take the behaviour from stdin lines (one per line:
    a name from HOSTILE, or `labels a,b` for a good answer).
    """
    import sys

    args = sys.argv[1:]
    with OpenAiServer() as srv:
        if args[:1] == ["--hostile"]:
            srv.behaviour = "hang"
            print(srv.base_url, flush=True)
            for line in sys.stdin:
                cmd = line.strip()
                if cmd.startswith("labels "):
                    labels = cmd.split(" ", 1)[1].split(",")
                    srv.behaviour = lambda m, labels=labels: json.dumps({"labels": labels, "reference_labels": []})
                elif cmd:
                    srv.behaviour = cmd
                print(f"ok {cmd}", flush=True)
            return
        srv.behaviour = lambda messages: json.dumps({"labels": args, "reference_labels": []})
        print(srv.base_url, flush=True)
        try:
            while True:
                time.sleep(1)
        except KeyboardInterrupt:
            pass


if __name__ == "__main__":
    main()


def sent_image(messages: list[dict]):
    """The image a VLM client sent (OpenAI image_url content part, JPEG/PNG data URL) as a BGR array."""
    import base64

    import cv2
    import numpy as np

    for m in messages:
        for part in m.get("content") if isinstance(m.get("content"), list) else []:
            if part.get("type") == "image_url":
                data = base64.b64decode(part["image_url"]["url"].split(",", 1)[1])
                return cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR)
    raise ValueError("no image in the request")


def scripted_vlm(objects: dict[str, tuple[float, float, float, float]], *, style: str = "qwen",
                 coords: str = "absolute"):
    """A behaviour that acts as a grounding VLM: it reads the size of the image it was sent and answers the box
    of the first object whose name is in the prompt (given relative to the image, 0..1), in that image's pixels
    (Qwen2.5-VL), or with `coords="relative_1000"` in 0..1000 of the image whatever its size (Qwen3-VL)."""
    def answer(messages: list[dict]) -> str:
        h, w = sent_image(messages).shape[:2]
        if coords == "relative_1000":
            h = w = 1000
        text = " ".join(p.get("text", "") for m in messages if isinstance(m.get("content"), list)
                        for p in m["content"])
        name = next((n for n in objects if n in text.split('"')[1]), None) if '"' in text else None
        if name is None:
            return "[]"
        rx0, ry0, rx1, ry1 = objects[name]
        box = [round(rx0 * w), round(ry0 * h), round(rx1 * w), round(ry1 * h)]
        point = [round((box[0] + box[2]) / 2), round((box[1] + box[3]) / 2)]
        if style == "seg_zero":
            return f"<think>the {name} is there</think><answer>{json.dumps({'bbox': box, 'points_1': point})}</answer>"
        return "```json\n" + json.dumps([{"bbox_2d": box, "point_2d": point, "label": name}]) + "\n```"

    return answer
