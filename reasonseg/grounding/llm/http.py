"""A small HTTP/1.1 JSON client with a hard deadline and a bounded answer, for LLM endpoints.

Why not the `openai` SDK / httpx: their timeout bounds each socket read, so a server that drips one
byte a second holds the caller for as long as it likes, and they read (and gunzip) whole bodies
into memory. A robot's grounding thread needs both bounded. Here:

* `deadline_s` is a total wall-clock budget for connect + request + the whole answer: a watchdog
  shuts the socket down when it runs out, which wakes any blocked read;
* the answer is read in slices up to `max_bytes` (a declared Content-Length over the limit is
  refused before reading; gzip/deflate bodies are inflated with the same bound, so a gzip bomb
  costs at most `max_bytes`);
* redirects are followed only to the same origin (307/308, which keep the POST); a redirect to
  another origin is an error, so a key is never sent to, nor an answer trusted from, a third party;
* URLs are redacted (userinfo, query) before they appear in any message.
"""
from __future__ import annotations

import base64
import http.client
import json
import socket
import ssl
import threading
import time
import zlib
from dataclasses import dataclass
from typing import Any, Mapping
from urllib.parse import SplitResult, unquote, urlsplit, urlunsplit

MAX_REDIRECTS = 3
_READ_SLICE = 64 * 1024


class HttpError(RuntimeError):
    """The request failed; the message is one line, with no secrets in it."""


class HttpTimeout(HttpError):
    pass


class HttpUnreachable(HttpError):
    pass


class HttpStatusError(HttpError):
    def __init__(self, status: int) -> None:
        super().__init__(f"HTTP {status}")
        self.status = status


def redact_url(url: str) -> str:
    """`https://user:key@host/v1?api-key=x` -> `https://***@host/v1?***`: safe to log."""
    try:
        p = urlsplit(url)
        host = p.hostname or ""
        if p.port:
            host = f"{host}:{p.port}"
    except ValueError:
        return "<invalid URL>"
    netloc = f"***@{host}" if (p.username or p.password) else host
    return urlunsplit((p.scheme, netloc, p.path, "***" if p.query else "", ""))


@dataclass(frozen=True)
class _Target:
    scheme: str
    host: str
    port: int
    path: str          # path + query, as sent
    auth: str | None   # Basic credentials from the URL's userinfo

    @property
    def origin(self) -> tuple[str, str, int]:
        return self.scheme, self.host.lower(), self.port


def _target(url: str) -> _Target:
    try:
        p: SplitResult = urlsplit(url)
        port = p.port
    except ValueError:
        raise HttpError(f"invalid URL {redact_url(url)}") from None
    if p.scheme not in ("http", "https") or not p.hostname:
        raise HttpError(f"unsupported URL {redact_url(url)} (need http:// or https://)")
    auth = None
    if p.username is not None:
        creds = f"{unquote(p.username)}:{unquote(p.password or '')}".encode()
        auth = "Basic " + base64.b64encode(creds).decode()
    path = (p.path or "/") + (f"?{p.query}" if p.query else "")
    return _Target(p.scheme, p.hostname, port or (443 if p.scheme == "https" else 80), path, auth)


def url_origin(url: str) -> tuple[str, str, int] | None:
    """(scheme, host, port) of an http(s) URL, the unit a key is bound to; None for a URL that is not one."""
    try:
        return _target(url).origin
    except HttpError:
        return None


class _Watchdog:
    """Shuts the connection's socket down at the deadline: any blocked read then returns at once."""

    def __init__(self, conn: http.client.HTTPConnection, seconds: float) -> None:
        self._conn = conn
        self.fired = False
        self._timer = threading.Timer(max(seconds, 0.0), self._fire)
        self._timer.daemon = True
        self._timer.start()

    def _fire(self) -> None:
        self.fired = True
        sock = self._conn.sock
        if sock is not None:
            try:  # socket.socket.shutdown, not SSLSocket's: no TLS close-notify from this thread
                socket.socket.shutdown(sock, socket.SHUT_RDWR)
            except OSError:
                pass

    def cancel(self) -> None:
        self._timer.cancel()


def _inflater(encoding: str):
    enc = encoding.strip().lower()
    if enc in ("", "identity"):
        return None
    if enc in ("gzip", "x-gzip"):
        return zlib.decompressobj(16 + zlib.MAX_WBITS)
    if enc == "deflate":
        return zlib.decompressobj(32 + zlib.MAX_WBITS)  # zlib or gzip header
    raise HttpError(f"unsupported Content-Encoding {encoding!r}")


def _read_body(resp: http.client.HTTPResponse, max_bytes: int, deadline: float) -> bytes:
    declared = resp.getheader("Content-Length")
    if declared and declared.strip().isdigit() and int(declared) > max_bytes:
        raise HttpError(f"answer too large ({int(declared)} bytes declared, limit {max_bytes})")
    inflate = _inflater(resp.getheader("Content-Encoding") or "")
    out = bytearray()
    while True:
        if time.monotonic() > deadline:
            raise HttpTimeout("deadline passed while reading the answer")
        chunk = resp.read1(_READ_SLICE)  # returns after one socket read: the deadline is checked often
        if not chunk:
            if resp.length:  # Content-Length not reached: the server closed mid-body
                raise HttpError("answer cut short (connection closed mid-body)")
            break
        if inflate is not None:
            chunk = _inflate(inflate.decompress, chunk, max_bytes + 1 - len(out))  # never past the budget
            if inflate.unconsumed_tail:
                raise HttpError(f"answer too large (inflates past {max_bytes} bytes)")
        out += chunk
        if len(out) > max_bytes:
            raise HttpError(f"answer too large (over {max_bytes} bytes)")
    if inflate is not None:
        out += _inflate(lambda data, _: inflate.flush(), b"", 0)
        if len(out) > max_bytes:
            raise HttpError(f"answer too large (inflates past {max_bytes} bytes)")
    return bytes(out)


def _inflate(fn, data: bytes, max_length: int) -> bytes:
    try:
        return fn(data, max_length)
    except zlib.error:
        raise HttpError("answer is not valid compressed data") from None


def post_json(url: str, payload: Mapping[str, Any], *, headers: Mapping[str, str] | None = None,
              deadline_s: float, max_bytes: int) -> Any:
    """POST `payload` as JSON, return the parsed JSON answer; raises HttpError (HttpTimeout, HttpStatusError)."""
    body = json.dumps(payload).encode("utf-8")
    deadline = time.monotonic() + deadline_s
    target = _target(url)
    origin = target.origin
    for _ in range(MAX_REDIRECTS + 1):
        status, location, data = _post_once(target, body, headers or {}, deadline, max_bytes)
        if status in (307, 308) and location:
            nxt = _target(_join(target, location))
            if nxt.origin != origin:
                raise HttpError(f"endpoint redirected to another origin ({redact_url(location)}); not followed")
            target = nxt
            continue
        if 300 <= status < 400:
            raise HttpError(f"endpoint answered a redirect (HTTP {status}); not followed")
        if status >= 400:
            raise HttpStatusError(status)
        try:
            return json.loads(data)
        except (UnicodeDecodeError, json.JSONDecodeError):
            raise HttpError("answer is not JSON") from None
    raise HttpError(f"more than {MAX_REDIRECTS} redirects")


def _join(target: _Target, location: str) -> str:
    if "://" in location:
        return location
    base = f"{target.scheme}://{target.host}:{target.port}"
    return base + (location if location.startswith("/") else "/" + location)


def _post_once(target: _Target, body: bytes, headers: Mapping[str, str], deadline: float,
               max_bytes: int) -> tuple[int, str | None, bytes]:
    remaining = deadline - time.monotonic()
    if remaining <= 0:
        raise HttpTimeout("deadline passed before the request")
    if target.scheme == "https":
        conn: http.client.HTTPConnection = http.client.HTTPSConnection(
            target.host, target.port, timeout=remaining, context=ssl.create_default_context())
    else:
        conn = http.client.HTTPConnection(target.host, target.port, timeout=remaining)
    watchdog = _Watchdog(conn, remaining)
    try:
        hdrs = {"Content-Type": "application/json", "Accept": "application/json",
                "Accept-Encoding": "identity", "Connection": "close", **headers}
        if target.auth and "Authorization" not in hdrs:
            hdrs["Authorization"] = target.auth
        conn.request("POST", target.path, body=body, headers=hdrs)
        resp = conn.getresponse()
        location = resp.getheader("Location")
        data = _read_body(resp, max_bytes, deadline) if resp.status < 300 else b""
        if watchdog.fired:  # a read that the watchdog ended looks like EOF
            raise HttpTimeout("deadline passed")
        return resp.status, location, data
    except HttpError:
        if watchdog.fired:
            raise HttpTimeout("deadline passed") from None
        raise
    except (OSError, http.client.HTTPException, ValueError) as exc:
        if watchdog.fired or isinstance(exc, (socket.timeout, TimeoutError)):
            raise HttpTimeout("deadline passed") from None
        if isinstance(exc, (ConnectionRefusedError, socket.gaierror)):
            raise HttpUnreachable(f"unreachable ({type(exc).__name__})") from None
        raise HttpError(f"connection failed ({type(exc).__name__})") from None
    finally:
        watchdog.cancel()
        conn.close()
