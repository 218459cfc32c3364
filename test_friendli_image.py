"""Tests for friendli_image, against a real local HTTP server that behaves like the Friendli API.

No urllib/http.client mocking: every fault is served on a real socket by ``FakeFriendli``.
Retry sleeps are injected (``fast_client``) so the suite runs in seconds.
"""

from __future__ import annotations

import base64
import json
import logging
import os
import pathlib
import socket
import struct
import sys
import threading
import time
import zlib
from collections import deque
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Callable, Deque, Dict, List, Optional, Union

import pytest

import friendli_image as fi

TOKEN = "fl-test-TOKEN-9f8e7d6c5b4a"
"""The only token FakeFriendli accepts; tests assert it never leaks."""


def make_png(width: int = 2, height: int = 2, extra: int = 0) -> bytes:
    """A real, valid PNG (optionally padded with an ancillary chunk to ``extra`` bytes)."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)

    raw = b"".join(b"\x00" + b"\xff\x00\x00" * width for _ in range(height))
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    body = chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(raw))
    if extra:
        body += chunk(b"zzPd", b"\x00" * extra)
    return b"\x89PNG\r\n\x1a\n" + body + chunk(b"IEND", b"")


PNG = make_png()
JPEG = b"\xff\xd8\xff\xe0\x00\x10JFIF\x00\x01\x01\x00\x00\x01\x00\x01\x00\x00\xff\xd9"
PNG_B64 = base64.b64encode(PNG).decode()


# ---------------------------------------------------------------------------
# The fake Friendli server
# ---------------------------------------------------------------------------


@dataclass
class Seen:
    """One request as the server received it."""

    method: str
    path: str
    headers: Dict[str, str]  # lower-cased names
    body: bytes

    @property
    def json(self) -> Any:
        return json.loads(self.body)


@dataclass
class Reply:
    """A scripted HTTP answer. ``body`` wins over ``json``; ``delay`` is slept before answering."""

    status: int = 200
    json: Any = None
    body: Optional[bytes] = None
    headers: Dict[str, str] = field(default_factory=dict)
    delay: float = 0.0
    content_type: str = "application/json"


Responder = Union[Reply, Callable[["Handler", Seen], None]]
"""A Reply, or a function that writes whatever it likes to the handler's socket (faults)."""


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: "FakeServer"

    def log_message(self, *args: Any) -> None:  # keep pytest output clean
        pass

    def _handle(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length) if length else b""
        seen = Seen(self.command, self.path, {k.lower(): v for k, v in self.headers.items()}, body)
        api = self.server.api
        with api.lock:
            api.requests.append(seen)
            responder: Optional[Responder] = api.script.popleft() if api.script else None
        if responder is None:
            responder = api.default(seen)
        if callable(responder):
            responder(self, seen)
        else:
            self.send_reply(responder)
        self.close_connection = True

    do_GET = do_POST = do_PUT = _handle

    def send_reply(self, reply: Reply) -> None:
        if reply.delay:
            time.sleep(reply.delay)
        body = reply.body if reply.body is not None else json.dumps(reply.json).encode()
        self.send_response(reply.status)
        headers = {"Content-Type": reply.content_type, "Content-Length": str(len(body)), **reply.headers}
        for name, value in headers.items():
            self.send_header(name, value)
        self.end_headers()
        self.wfile.write(body)


class FakeServer(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True
    api: "FakeFriendli"


def validation_error(loc: List[Any], msg: str) -> Reply:
    return Reply(422, {"detail": [{"loc": loc, "msg": msg, "type": "value_error"}]})


class FakeFriendli:
    """Behaves like the Friendli image API: checks path, bearer token and JSON body, and
    answers generations/edits (dedicated and container), image downloads (``/files/...``),
    or whatever a test scripted with :meth:`queue`."""

    def __init__(self) -> None:
        self.requests: List[Seen] = []
        self.script: Deque[Responder] = deque()
        self.lock = threading.Lock()
        self.files: Dict[str, bytes] = {"/files/image.png": PNG}
        self.images_per_request = 1
        self.server = FakeServer(("127.0.0.1", 0), Handler)
        self.server.api = self
        self.thread = threading.Thread(target=self.server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
        self.thread.start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_port}"

    def queue(self, *responders: Responder) -> None:
        """Answer the next requests with these, in order; then fall back to :meth:`default`."""
        with self.lock:
            self.script.extend(responders)

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()

    # -- behaving like the real API ------------------------------------------

    def default(self, seen: Seen) -> Reply:
        if seen.method == "GET":
            data = self.files.get(seen.path.split("?")[0])
            if data is None:
                return Reply(404, {"detail": "Not Found"})
            return Reply(200, body=data, content_type="image/png")
        path = seen.path
        if path in ("/dedicated/v1/images/generations", "/dedicated/v1/images/edits"):
            if seen.headers.get("authorization") != f"Bearer {TOKEN}":
                return Reply(401, {"detail": "Invalid or missing token"})
            return self.dedicated(seen, edit=path.endswith("edits"))
        if path in ("/v1/images/generations", "/v1/images/edits"):
            return self.container(seen, edit=path.endswith("edits"))
        return Reply(404, {"detail": "Not Found"})

    def _check_body(self, seen: Seen, *, required: List[str], formats: tuple) -> Union[Reply, Dict[str, Any]]:
        if seen.headers.get("content-type") != "application/json":
            return Reply(415, {"detail": "Content-Type must be application/json"})
        try:
            body = seen.json
        except ValueError:
            return validation_error(["body"], "JSON decode error")
        for name in required:
            if name not in body:
                return validation_error(["body", name], "Field required")
        steps = body.get("num_inference_steps", 20)
        if not isinstance(steps, int) or isinstance(steps, bool) or not 1 <= steps <= 50:
            return validation_error(["body", "num_inference_steps"], "must be in [1, 50]")
        if "response_format" in body and body["response_format"] not in formats:
            return validation_error(["body", "response_format"], "bad enum value")
        for name in ("prompt",):
            if not isinstance(body.get(name), str):
                return validation_error(["body", name], "must be a string")
        return body

    def dedicated(self, seen: Seen, *, edit: bool) -> Reply:
        checked = self._check_body(
            seen, required=["model", "prompt"] + (["image"] if edit else []), formats=fi.RESPONSE_FORMATS
        )
        if isinstance(checked, Reply):
            return checked
        body = checked
        fmt = body.get("response_format") or "url"
        seed = body.get("seed", 1234)
        items = []
        for i in range(self.images_per_request):
            item: Dict[str, Any] = {"seed": seed + i, "response_format": fmt}
            if fmt == "url":
                item["url"] = f"{self.url}/files/image.png?sig=abc"
            else:
                item["b64_json"] = PNG_B64 if fmt != "jpeg" and fmt != "jpg" else base64.b64encode(JPEG).decode()
            items.append(item)
        return Reply(200, {"data": items}, headers={"X-Request-Id": f"req-{len(self.requests)}"})

    def container(self, seen: Seen, *, edit: bool) -> Reply:
        checked = self._check_body(
            seen, required=["prompt"] + (["image"] if edit else []), formats=fi.CONTAINER_RESPONSE_FORMATS
        )
        if isinstance(checked, Reply):
            return checked
        fmt = checked.get("response_format") or "jpeg"
        return Reply(200, {"image": base64.b64encode(JPEG if fmt == "jpeg" else PNG).decode()})


@pytest.fixture(autouse=True)
def clean_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    """No test sees the machine's Friendli settings or proxies (tests talk to 127.0.0.1)."""
    for name in ("FRIENDLI_TOKEN", "FRIENDLI_TEAM", "FRIENDLI_BASE_URL") + tuple(
        v for n in ("http_proxy", "https_proxy", "all_proxy", "no_proxy") for v in (n, n.upper())
    ):
        monkeypatch.delenv(name, raising=False)


@pytest.fixture
def api() -> Any:
    server = FakeFriendli()
    yield server
    server.close()


class FakeSleep:
    """Records requested sleeps and advances a fake clock instead of sleeping."""

    def __init__(self) -> None:
        self.calls: List[float] = []
        self.now = 1000.0

    def __call__(self, seconds: float) -> None:
        self.calls.append(seconds)
        self.now += seconds

    def clock(self) -> float:
        return self.now


@pytest.fixture
def fake_sleep() -> FakeSleep:
    return FakeSleep()


@pytest.fixture
def client(api: FakeFriendli, fake_sleep: FakeSleep) -> fi.Client:
    """A client of the fake API whose retry sleeps take no time (clock advanced by the sleeps)."""
    return fi.Client(TOKEN, base_url=api.url, timeout=5, sleep=fake_sleep, clock=fake_sleep.clock)


# Raw-socket faults used by several test groups -------------------------------


def close_without_answer(handler: Handler, seen: Seen) -> None:
    handler.close_connection = True
    handler.connection.shutdown(socket.SHUT_RDWR)


def reset_connection(handler: Handler, seen: Seen) -> None:
    """Send a TCP RST (SO_LINGER 0) instead of an answer."""
    handler.connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    handler.connection.close()


def short_body(handler: Handler, seen: Seen) -> None:
    """Promise 1000 bytes, send 10, close."""
    handler.wfile.write(b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 1000\r\n\r\n{\"data\": [")
    handler.wfile.flush()
    handler.connection.shutdown(socket.SHUT_RDWR)


# ===========================================================================
# Issue 2: the core client
# ===========================================================================


def test_generate_sends_what_the_api_expects(api: FakeFriendli, client: fi.Client) -> None:
    res = client.generate(model="ep-1:adapter-a", prompt="An orange car", num_inference_steps=10, response_format="png")
    assert len(api.requests) == 1
    seen = api.requests[0]
    assert seen.method == "POST" and seen.path == "/dedicated/v1/images/generations"
    assert seen.headers["authorization"] == f"Bearer {TOKEN}"
    assert seen.headers["content-type"] == "application/json"
    assert seen.headers["accept"] == "application/json"
    major, minor = sys.version_info[:2]
    assert seen.headers["user-agent"] == f"friendli-image/{fi.__version__} python/{major}.{minor}"
    assert "x-friendli-team" not in seen.headers
    assert seen.json == {"model": "ep-1:adapter-a", "prompt": "An orange car", "num_inference_steps": 10,
                         "response_format": "png"}
    assert res.request_id == "req-1"
    assert res.data[0].seed == 1234 and res.data[0].response_format == "png"
    assert res.data[0].content() == PNG


def test_num_inference_steps_is_always_sent_and_none_fields_are_omitted(api: FakeFriendli, client: fi.Client) -> None:
    client.generate(model="ep", prompt="p", guidance_scale=None, seed=None)
    assert api.requests[0].json == {"model": "ep", "prompt": "p", "num_inference_steps": 20}
    client.generate(model="ep", prompt="p", guidance_scale=7.5, seed=0)
    assert api.requests[1].json == {"model": "ep", "prompt": "p", "num_inference_steps": 20, "guidance_scale": 7.5,
                                    "seed": 0}
