"""Tests for friendli_image, against a real local HTTP server that behaves like the Friendli API.

No urllib/http.client mocking: every fault is served on a real socket by ``FakeFriendli`` (one
server for the whole session, reset before each test).  Retry sleeps are injected (the ``client``
fixture) so the suite runs in seconds.

Sections follow the module's: constants, errors, data types, retry policy, transport, client,
SDK facade, command line; then packaging promises and the README's examples.
"""

from __future__ import annotations

import ast
import asyncio
import base64
import copy
import dataclasses
import email.message
import email.utils
import errno
import gc
import gzip
import http.client
import inspect
import io
import json
import logging
import os
import pathlib
import pickle
import random
import re
import select
import selectors
import shutil
import signal
import socket
import socketserver
import ssl
import struct
import subprocess
import sys
import textwrap
import threading
import time
import traceback
import types
import typing
import urllib.parse
import zlib
from collections import deque
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Callable, Deque, Dict, Iterator, List, Optional, Sequence, Set, Tuple, Union

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

    def handle_error(self, request: Any, client_address: Any) -> None:
        """Stay quiet when a client hangs up early (timeouts and faults do that on purpose)."""
        if not isinstance(sys.exc_info()[1], (ConnectionError, socket.timeout)):
            super().handle_error(request, client_address)


def validation_error(loc: List[Any], msg: str) -> Reply:
    return Reply(422, {"detail": [{"loc": loc, "msg": msg, "type": "value_error"}]})


class FakeFriendli:
    """Behaves like the Friendli image API: checks path, bearer token and JSON body, and
    answers generations/edits (dedicated and container), image downloads (``/files/...``),
    or whatever a test scripted with :meth:`queue`."""

    scheme = "http"

    def __init__(self, server_class: Any = None) -> None:
        self.requests: List[Seen] = []
        self.script: Deque[Responder] = deque()
        self.lock = threading.Lock()
        self.files: Dict[str, bytes] = {"/files/image.png": PNG}
        self.images_per_request = 1
        self.server = (server_class or FakeServer)(("127.0.0.1", 0), Handler)
        self.server.api = self
        self.thread = threading.Thread(target=self.server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
        self.thread.start()

    @property
    def url(self) -> str:
        return f"{self.scheme}://127.0.0.1:{self.server.server_port}"

    def reset(self) -> None:
        with self.lock:
            self.requests.clear()
            self.script.clear()
        self.files = {"/files/image.png": PNG}
        self.images_per_request = 1

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

    def _check_body(self, seen: Seen, *, required: List[str], formats: Any) -> Union[Reply, Dict[str, Any]]:
        if seen.headers.get("content-type") != "application/json":
            return Reply(415, {"detail": "Content-Type must be application/json"})
        try:
            body: Dict[str, Any] = seen.json
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


def served(make: Callable[[], Any]) -> Callable[[], Iterator[Any]]:
    """A fixture body: a server made by ``make``, for the fixture's scope, then closed."""

    def serve() -> Iterator[Any]:
        server = make()
        yield server
        server.close()

    return serve


shared_api = pytest.fixture(scope="session", name="shared_api")(served(FakeFriendli))


@pytest.fixture
def api(shared_api: FakeFriendli) -> FakeFriendli:
    """The session's fake API, reset: no scripted answers, no requests seen, default files."""
    shared_api.reset()
    return shared_api


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
    handler.wfile.write(b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 1000\r\n\r\n"
                        b'{"data": [')
    handler.wfile.flush()
    handler.connection.shutdown(socket.SHUT_RDWR)

API_GENERATIONS_PATH = "/dedicated/v1/images/generations"
MARGIN = 1.5  # seconds of slack on every wall-clock bound (a loaded 2-core machine)


# ---------------------------------------------------------------------------
# Raw-socket faults
# ---------------------------------------------------------------------------


def _send_rst(handler: Handler) -> None:
    """Abort the connection with a TCP RST (SO_LINGER 0) instead of a FIN."""
    handler.connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    handler.connection.close()


def _write_raw(handler: Handler, data: bytes) -> None:
    handler.wfile.write(data)
    handler.wfile.flush()


def rst_mid_headers(handler: Handler, seen: Seen) -> None:
    _write_raw(handler, b"HTTP/1.1 200 OK\r\nContent-Type: applic")
    time.sleep(0.02)  # let the partial headers reach the client first
    _send_rst(handler)


def rst_mid_body(handler: Handler, seen: Seen) -> None:
    _write_raw(handler, b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 1000\r\n\r\n"
                        b'{"data": [{"seed": 1, "b64_json": "iVBOR')
    time.sleep(0.02)
    _send_rst(handler)


def chunked_cut_off(handler: Handler, seen: Seen) -> None:
    _write_raw(handler, b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n"
                        b'20\r\n{"data": [{"seed": 1, "b64_json"\r\n40\r\n: "iVBOR')
    handler.connection.shutdown(socket.SHUT_RDWR)


def never_answer(handler: Handler, seen: Seen) -> None:
    """Accept the request and say nothing until the client hangs up (at most 10 s)."""
    handler.connection.settimeout(10)
    try:
        handler.connection.recv(1)
    except OSError:
        pass


def _trickle(handler: Handler, head: bytes, tail: bytes, interval: float) -> None:
    """Write ``head`` at once, then ``tail`` one byte per ``interval`` until the client hangs up."""
    try:
        _write_raw(handler, head)
        for byte in tail:
            time.sleep(interval)
            _write_raw(handler, bytes([byte]))
    except OSError:
        pass


_BIG_JSON = json.dumps({"data": [{"seed": 1, "b64_json": PNG_B64}]}).encode() * 4


def trickle_headers(handler: Handler, seen: Seen) -> None:
    """Each byte arrives well within the socket timeout, yet the whole answer takes ~20 s."""
    _trickle(handler, b"", b"HTTP/1.1 200 OK\r\n" + b"X-Slow: " + b"z" * 400 + b"\r\n\r\n", 0.05)


def trickle_body(handler: Handler, seen: Seen) -> None:
    head = b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: %d\r\n\r\n" % len(_BIG_JSON)
    _trickle(handler, head, _BIG_JSON, 0.05)


def trickle_a_byte_a_second(handler: Handler, seen: Seen) -> None:
    _trickle(handler, b"", b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\n{}", 1.0)


def echo_token_401(handler: Handler, seen: Seen) -> None:
    """A server that echoes the Authorization header in the body, a header and the reason phrase."""
    auth = seen.headers.get("authorization", "")
    body = json.dumps({"detail": f"invalid credentials: {auth}", "received": dict(seen.headers)}).encode()
    _write_raw(handler, (f"HTTP/1.1 401 Bad {auth}\r\nContent-Type: application/json\r\n"
                         f"WWW-Authenticate: Bearer error=\"invalid_token\", token=\"{auth}\"\r\n"
                         f"X-Request-Id: {auth}\r\nContent-Length: {len(body)}\r\n\r\n").encode() + body)


def echo_token_422(handler: Handler, seen: Seen) -> None:
    """A validation error that quotes the header it did not like (``.errors`` must not show it)."""
    auth = seen.headers.get("authorization", "")
    body = json.dumps({"detail": [{"loc": ["header", "authorization"], "msg": "bad", "input": auth}]}).encode()
    _write_raw(handler, b"HTTP/1.1 422 Unprocessable\r\nContent-Type: application/json\r\nContent-Length: %d\r\n\r\n"
               % len(body) + body)


def echo_token_html_200(handler: Handler, seen: Seen) -> None:
    """A captive portal / misconfigured proxy: 200 with an HTML page that echoes the request headers."""
    auth = seen.headers.get("authorization", "")
    body = f"<html><body>Authorization: {auth}<br>Your request was received.</body></html>".encode()
    _write_raw(handler, b"HTTP/1.1 200 OK\r\nContent-Type: text/html\r\nContent-Length: %d\r\n\r\n" % len(body) + body)


def echo_token_in_200_json_error(handler: Handler, seen: Seen) -> None:
    """A 200 whose JSON is not the documented shape and quotes the token right at the start."""
    auth = seen.headers.get("authorization", "")
    body = json.dumps({"error": auth, "data": None}).encode()
    _write_raw(handler, b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: %d\r\n\r\n"
               % len(body) + body)


def chunked_reply(payload: bytes) -> Responder:
    """A 200 sent with Transfer-Encoding: chunked (no Content-Length)."""

    def respond(handler: Handler, seen: Seen) -> None:
        chunks = [payload[i:i + 1000] for i in range(0, len(payload), 1000)]
        data = b"".join(b"%x\r\n%s\r\n" % (len(c), c) for c in chunks) + b"0\r\n\r\n"
        _write_raw(handler, b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n"
                   + data)

    return respond


def lying_content_length(length: int) -> Responder:
    """A 200 that announces ``length`` bytes and sends a few."""

    def respond(handler: Handler, seen: Seen) -> None:
        _write_raw(handler, b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n{}" % length)
        handler.connection.shutdown(socket.SHUT_RDWR)

    return respond


def ok_json(payload: Any, **headers: str) -> Reply:
    return Reply(200, payload, headers=headers)


def png_item(seed: Optional[int] = 7, **extra: Any) -> Dict[str, Any]:
    item: Dict[str, Any] = {"response_format": "png", "b64_json": PNG_B64, **extra}
    if seed is not None:
        item["seed"] = seed
    return item


# ===========================================================================
# Public constants
# ===========================================================================


def test_public_constants_have_their_documented_values() -> None:
    assert fi.DEFAULT_BASE_URL == "https://api.friendli.ai"
    assert fi.DEFAULT_CONTAINER_BASE_URL == "http://localhost:8000"
    assert fi.MAX_INPUT_IMAGE_BYTES == 50 * 1024 * 1024
    assert fi.DEFAULT_MAX_RESPONSE_BYTES == 256 * 1024 * 1024
    assert fi.DEFAULT_TIMEOUT == 60.0 and fi.MAX_RETRY_AFTER == 60.0
    assert 0 < fi.DEFAULT_TOTAL_TIMEOUT < 15 * 60  # inside AWS Lambda's hard limit
    assert fi.DEFAULT_RETRY_CONFIG.strategy == "backoff" and fi.DEFAULT_RETRY_CONFIG.backoff is not None
    assert fi.DEFAULT_RETRY_CONFIG.backoff.max_elapsed_time == fi.DEFAULT_TOTAL_TIMEOUT * 1000
    assert fi.logger.name == "friendli_image"


def test_every_name_in_all_exists_once_and_is_public() -> None:
    assert len(fi.__all__) == len(set(fi.__all__))
    for name in fi.__all__:
        assert not name.startswith("_") and hasattr(fi, name), name


# ===========================================================================
# Errors
# ===========================================================================

NO_RETRIES = fi.RetryConfig("none")
ERR_PATH = "/dedicated/v1/images/generations"


def err_call(api: FakeFriendli, client: fi.Client, reply: Responder, **kwargs: Any) -> fi.APIStatusError:
    """Serve ``reply`` to one generation without retries; return the status error it raised."""
    api.queue(reply)
    with pytest.raises(fi.APIStatusError) as info:
        client.generate(model="ep", prompt="p", retries=kwargs.pop("retries", NO_RETRIES), **kwargs)
    return info.value


STATUS_CLASSES = [
    pytest.param(400, fi.BadRequestError, id="400-bad-request"),
    pytest.param(401, fi.AuthenticationError, id="401-authentication"),
    pytest.param(403, fi.PermissionDeniedError, id="403-permission-denied"),
    pytest.param(404, fi.NotFoundError, id="404-not-found"),
    pytest.param(422, fi.UnprocessableEntityError, id="422-unprocessable"),
    pytest.param(429, fi.RateLimitError, id="429-rate-limit"),
    pytest.param(500, fi.InternalServerError, id="500-first-5xx"),
    pytest.param(501, fi.InternalServerError, id="501-not-only-500"),
    pytest.param(599, fi.InternalServerError, id="599-last-5xx"),
    pytest.param(499, fi.APIStatusError, id="499-below-5xx-is-plain"),
    pytest.param(409, fi.APIStatusError, id="409-unmapped-4xx-is-plain"),
    pytest.param(418, fi.APIStatusError, id="418-unmapped-4xx-is-plain"),
    pytest.param(407, fi.APIStatusError, id="407-proxy-auth-is-plain"),
]


@pytest.mark.parametrize("status, cls", STATUS_CLASSES)
def test_each_status_maps_to_its_error_class(api: FakeFriendli, client: fi.Client, status: int, cls: type) -> None:
    err = err_call(api, client, Reply(status, {"detail": f"server says {status}"}, headers={"X-Request-Id": "rid-9"}))
    assert type(err) is cls
    assert isinstance(err, fi.SDKError) and isinstance(err, fi.FriendliError)
    assert err.status_code == status and err.attempts == 1
    assert err.message == f"server says {status}"
    assert json.loads(err.body) == {"detail": f"server says {status}"}
    assert err.request_id == "rid-9"
    text = str(err)
    assert text.startswith(str(status)) and "rid-9" in text and f"server says {status}" in text
    assert "attempts" not in text  # one attempt: no suffix
    assert len(api.requests) == 1


@pytest.mark.parametrize("status", [301, 302, 307, 308])
def test_a_redirect_of_an_api_call_is_a_plain_status_error_and_not_followed(
    api: FakeFriendli, client: fi.Client, status: int
) -> None:
    err = err_call(api, client, Reply(status, body=b"", headers={"Location": api.url + "/elsewhere"}))
    assert type(err) is fi.APIStatusError and err.status_code == status
    assert "redirect" in str(err) and "base_url" in str(err)  # says why, and what to check
    assert [s.path for s in api.requests] == [ERR_PATH]  # the token never went to /elsewhere


def test_sdk_error_is_api_status_error_and_the_hierarchy_holds() -> None:
    assert fi.SDKError is fi.APIStatusError
    assert issubclass(fi.FriendliValidationError, fi.FriendliError)
    assert issubclass(fi.FriendliValidationError, ValueError)
    assert issubclass(fi.APITimeoutError, fi.APIConnectionError)
    assert issubclass(fi.ImageSaveError, fi.FriendliError) and issubclass(fi.ImageSaveError, OSError)
    for cls in (fi.BadRequestError, fi.AuthenticationError, fi.PermissionDeniedError, fi.NotFoundError,
                fi.UnprocessableEntityError, fi.RateLimitError, fi.InternalServerError):
        assert issubclass(cls, fi.APIStatusError)
    for cls in (fi.APIStatusError, fi.APIConnectionError, fi.InvalidResponseError):
        assert issubclass(cls, fi.FriendliError) and not issubclass(cls, ValueError)


@pytest.mark.parametrize(
    "body, expected",
    [
        pytest.param(b'{"detail": "from detail"}', "from detail", id="detail-string"),
        pytest.param(b'{"detail": {"message": "detail object"}}', "detail object", id="detail-object-message"),
        pytest.param(b'{"message": "from message"}', "from message", id="message-string"),
        pytest.param(b'{"error": {"message": "nested", "type": "x"}}', "nested", id="error-object-message"),
        pytest.param(b'{"error": "plain error"}', "plain error", id="error-string"),
        pytest.param(b'{"detail": "first", "message": "second"}', "first", id="detail-wins-over-message"),
        pytest.param(b'{"detail": "", "error": "fallback"}', "fallback", id="empty-detail-falls-through"),
        pytest.param(b"<html>Bad Gateway</html>", "Bad Request", id="not-json-is-the-reason"),
        pytest.param(b"{}", "Bad Request", id="no-known-key-is-the-reason"),
        pytest.param(b"[1, 2]", "Bad Request", id="json-array-is-the-reason"),
        pytest.param(b"", "Bad Request", id="empty-body-is-the-reason"),
        pytest.param(b'{"detail": [{"msg": "x"}]}', '[{"msg": "x"}]', id="detail-list-as-json"),
        pytest.param(b'\xff\xfe{"detail": "x"}', "Bad Request", id="not-utf8-is-the-reason"),
    ],
)
def test_error_message_is_the_servers_text_else_the_reason(
    api: FakeFriendli, client: fi.Client, body: bytes, expected: str
) -> None:
    err = err_call(api, client, Reply(400, body=body))
    assert type(err) is fi.BadRequestError
    assert err.message == expected
    assert err.body == body.decode("utf-8", "replace")


def test_an_error_quoting_a_lone_surrogate_can_be_printed(api: FakeFriendli, client: fi.Client) -> None:
    """A JSON escape like \\ud800 in the server's text: catches print(err) raising UnicodeEncodeError in the
    caller's own except block."""
    err = err_call(api, client, Reply(400, body=b'{"detail": "bad \\ud800 value"}'))
    assert "bad ? value" in str(err) and err.message == "bad ? value"
    str(err).encode("utf-8")


def test_error_names_the_api_url(api: FakeFriendli, client: fi.Client) -> None:
    err = err_call(api, client, Reply(404, {"detail": "no such endpoint"}))
    assert f"from {api.url}{ERR_PATH}: no such endpoint" in str(err)


def test_error_of_a_download_names_the_url_without_its_query(api: FakeFriendli, client: fi.Client) -> None:
    url = api.url + "/files/missing.png?X-Amz-Signature=s3cr3t&token=abc#frag"
    image = fi.GeneratedImage(seed=1, response_format="url", url=url)
    with pytest.raises(fi.NotFoundError) as info:
        image.content()
    text = str(info.value)
    assert api.url + "/files/missing.png" in text
    assert "s3cr3t" not in text and "token=" not in text and "?" not in text and "frag" not in text
    assert api.requests[0].path == "/files/missing.png?X-Amz-Signature=s3cr3t&token=abc"  # sent whole


def test_error_headers_are_case_insensitive(api: FakeFriendli, client: fi.Client) -> None:
    err = err_call(api, client, Reply(429, {"detail": "slow"}, headers={"X-Request-Id": "rid-1", "X-Custom": "v"}))
    for name in ("x-request-id", "X-Request-Id", "X-REQUEST-ID"):
        assert err.headers[name] == "rid-1"
    assert err.headers.get("x-custom") == err.headers.get("X-CUSTOM") == "v"
    assert err.headers.get("content-type") == "application/json"
    assert err.request_id == "rid-1"


def test_error_without_request_id_says_none(api: FakeFriendli, client: fi.Client) -> None:
    err = err_call(api, client, Reply(400, {"detail": "bad"}))
    assert err.request_id is None and "request id" not in str(err)


@pytest.mark.parametrize(
    "size, kept",
    [
        pytest.param(64 * 1024, 64 * 1024, id="exactly-64KiB-kept-whole"),
        pytest.param(64 * 1024 + 1, 64 * 1024, id="one-byte-more-cut-to-64KiB"),
        pytest.param(4 * 1024 * 1024, 64 * 1024, id="4MiB-cut-to-64KiB"),
    ],
)
@pytest.mark.parametrize("status", [300, 400])  # 300: the first status that is not a success
def test_error_bodies_are_kept_up_to_64_kib(
    api: FakeFriendli, client: fi.Client, size: int, kept: int, status: int
) -> None:
    body = (b"0123456789abcdef" * (size // 16 + 1))[:size]
    err = err_call(api, client, Reply(status, body=body))
    assert err.status_code == status and err.body == body[:kept].decode()
    assert len(str(err)) < 400  # the message quotes a summary, not the body


@pytest.mark.parametrize(
    "headers, expected",
    [
        pytest.param({"retry-after-ms": "1500"}, 1.5, id="retry-after-ms"),
        pytest.param({"Retry-After": "7"}, 7.0, id="retry-after-seconds"),
        pytest.param({"Retry-After": "120"}, 120.0, id="retry-after-beyond-max-still-carried"),
        pytest.param({"retry-after-ms": "250", "Retry-After": "9"}, 0.25, id="ms-wins-over-seconds"),
        pytest.param({}, None, id="not-said-is-none"),
        pytest.param({"Retry-After": "soon"}, None, id="unreadable-is-none"),
    ],
)
def test_error_carries_retry_after(
    api: FakeFriendli, client: fi.Client, headers: Dict[str, str], expected: Optional[float]
) -> None:
    err = err_call(api, client, Reply(429, {"detail": "slow down"}, headers=headers))
    assert err.retry_after == expected


def test_error_after_several_attempts_says_so(api: FakeFriendli, client: fi.Client, fake_sleep: FakeSleep) -> None:
    retry = fi.RetryConfig("backoff", fi.BackoffStrategy(10, 100, 2, 60000, jitter_ms=0), max_retries=2)
    api.queue(*[Reply(503, {"detail": "busy"}, headers={"X-Request-Id": f"r{i}"}) for i in range(3)])
    with pytest.raises(fi.InternalServerError) as info:
        client.generate(model="ep", prompt="p", retries=retry)
    err = info.value
    assert err.attempts == 3 and str(err).endswith("(after 3 attempts)")
    assert err.request_id == "r2" and err.message == "busy"  # the last answer's
    assert len(api.requests) == 3


@pytest.mark.parametrize(
    "body, errors",
    [
        pytest.param({"detail": [{"loc": ["body", "prompt"], "msg": "Field required", "type": "missing"}]},
                     [{"loc": ["body", "prompt"], "msg": "Field required", "type": "missing"}], id="detail-list"),
        pytest.param({"detail": "just text"}, [], id="detail-string-is-empty"),
        pytest.param({"other": 1}, [], id="no-detail-is-empty"),
        pytest.param([{"detail": []}], [], id="top-level-array-is-empty"),
    ],
)
def test_422_errors_is_the_parsed_detail_list(
    api: FakeFriendli, client: fi.Client, body: Any, errors: List[Any]
) -> None:
    err = err_call(api, client, Reply(422, body))
    assert isinstance(err, fi.UnprocessableEntityError)
    assert err.errors == errors


@pytest.mark.parametrize(
    "body",
    [
        pytest.param(b'{"detail": ' + b"[" * 30000 + b"]" * 30000 + b"}", id="deeply-nested"),
        pytest.param(b"<html>garbage</html>", id="not-json"),
        pytest.param(b'{"detail": [' + b'"x", ' * 20000 + b'"y"]}', id="cut-at-64KiB"),
        pytest.param(b"", id="empty"),
    ],
)
def test_422_errors_is_empty_for_garbage(api: FakeFriendli, client: fi.Client, body: bytes) -> None:
    err = err_call(api, client, Reply(422, body=body))
    assert isinstance(err, fi.UnprocessableEntityError)
    assert err.errors == []


def err_pickle_round_trip(err: BaseException) -> BaseException:
    clone = pickle.loads(pickle.dumps(err))
    assert type(clone) is type(err) and str(clone) == str(err)
    for name in ("attempts", "request_id", "status_code", "body", "message", "retry_after", "sent", "errno",
                 "filename", "strerror"):
        if hasattr(err, name):
            assert getattr(clone, name) == getattr(err, name), name
    return clone


@pytest.mark.parametrize("status, cls", STATUS_CLASSES)
def test_status_errors_from_the_server_survive_pickling(
    api: FakeFriendli, client: fi.Client, fake_sleep: FakeSleep, status: int, cls: type
) -> None:
    retry = fi.RetryConfig("backoff", fi.BackoffStrategy(1, 1, 1, 60000, jitter_ms=0), max_retries=1,
                           status_codes_override=[status])
    api.queue(Reply(status, {"detail": [1]}, headers={"X-Request-Id": "rid", "Retry-After": "2"}))
    api.queue(Reply(status, {"detail": [1]}, headers={"X-Request-Id": "rid", "Retry-After": "3"}))
    with pytest.raises(fi.APIStatusError) as info:
        client.generate(model="ep", prompt="p", retries=retry)
    err = info.value
    expected_attempts = 1 if status == 407 else 2  # 407 is never retried
    assert err.attempts == expected_attempts
    clone = err_pickle_round_trip(err)
    assert isinstance(clone, fi.APIStatusError) and clone.headers["x-request-id"] == "rid"
    if cls is fi.UnprocessableEntityError:
        assert clone.errors == [1]  # type: ignore[attr-defined]


@pytest.mark.parametrize(
    "err",
    [
        pytest.param(fi.FriendliError("base", attempts=2, request_id="r"), id="FriendliError"),
        pytest.param(fi.FriendliValidationError("bad value"), id="FriendliValidationError"),
        pytest.param(fi.APIConnectionError("reset", sent=True, attempts=3), id="APIConnectionError"),
        pytest.param(fi.APITimeoutError("timed out", sent=False, attempts=4), id="APITimeoutError"),
        pytest.param(fi.InvalidResponseError("odd", status_code=200, attempts=2, request_id="r"),
                     id="InvalidResponseError"),
        pytest.param(fi.RateLimitError("429 slow", status_code=429, body="{}", server_message="slow",
                                       retry_after=1.5, attempts=3, request_id="r"), id="RateLimitError"),
        pytest.param(fi.ImageSaveError("cannot save"), id="ImageSaveError-message-only"),
    ],
)
def test_errors_built_directly_survive_pickling(err: fi.FriendliError) -> None:
    clone = err_pickle_round_trip(err)
    assert isinstance(clone, fi.FriendliError)
    assert str(clone).count("attempts") == str(err).count("attempts")  # the suffix is not added twice


def test_an_unprocessable_entity_error_built_without_a_body_has_no_errors() -> None:
    assert fi.UnprocessableEntityError("m", body=None).errors == []  # type: ignore[arg-type]


@pytest.mark.parametrize("err, attempts", [
    pytest.param(fi.FriendliError("m"), 0, id="FriendliError"),
    pytest.param(fi.FriendliValidationError("m"), 0, id="FriendliValidationError"),
    pytest.param(fi.InvalidResponseError("m"), 0, id="InvalidResponseError"),
    pytest.param(fi.APIStatusError("m"), 1, id="APIStatusError-an-answer-came"),
    pytest.param(fi.APIConnectionError("m"), 1, id="APIConnectionError-an-attempt-was-made"),
])
def test_errors_built_directly_have_plain_defaults(err: fi.FriendliError, attempts: int) -> None:
    assert str(err) == "m" and err.attempts == attempts and err.request_id is None
    assert getattr(err, "sent", False) is False  # a connection error is "not sent" unless said


def test_validation_errors_are_value_errors(api: FakeFriendli, client: fi.Client) -> None:
    with pytest.raises(ValueError) as info:
        client.generate(model="ep", prompt="")
    assert isinstance(info.value, fi.FriendliValidationError)
    assert api.requests == []


def test_image_save_error_is_an_os_error_with_errno_and_filename(tmp_path: pathlib.Path) -> None:
    target = tmp_path / "missing" / "x.png"
    with pytest.raises(OSError) as info:
        fi.GeneratedImage(1, "png", b64_json=PNG_B64).save(target)
    err = info.value
    assert isinstance(err, fi.ImageSaveError) and isinstance(err, fi.FriendliError)
    assert err.errno == errno.ENOENT and err.filename == str(target)


def test_image_save_error_from_save_survives_pickling(tmp_path: pathlib.Path) -> None:
    with pytest.raises(fi.ImageSaveError) as info:
        fi.GeneratedImage(1, "png", b64_json=PNG_B64).save(tmp_path / "missing" / "x.png")
    err_pickle_round_trip(info.value)


# ===========================================================================
# Data types
# ===========================================================================

GIF = (b"GIF89a\x01\x00\x01\x00\x80\x00\x00\xff\xff\xff\x00\x00\x00!\xf9\x04\x01\x00\x00\x00\x00,\x00\x00\x00"
       b"\x00\x01\x00\x01\x00\x00\x02\x02D\x01\x00;")
WEBP = b"RIFF" + struct.pack("<I", 26) + b"WEBPVP8 " + struct.pack("<I", 14) + b"\x30\x01\x00\x9d\x01\x2a" + bytes(8)
JPEG_B64 = base64.b64encode(JPEG).decode()
PNG_URI = "data:image/png;base64," + PNG_B64
JPEG_URI = "data:image/jpeg;base64," + JPEG_B64
LIMIT = fi.MAX_INPUT_IMAGE_BYTES
DEDICATED_FORMATS = ["url", "raw", "png", "jpeg", "jpg"]
CONTAINER_FORMATS = ["raw", "jpeg"]


def dt_client(api: FakeFriendli, **options: Any) -> fi.Client:
    return fi.Client(TOKEN, base_url=api.url, **{"timeout": 5, "retries": NO_RETRIES, **options})


def dt_container(api: FakeFriendli, **options: Any) -> fi.Client:
    return fi.Client(base_url=api.url, target="container", **{"timeout": 5, "retries": NO_RETRIES, **options})


# -- model strings -------------------------------------------------------------------------


@pytest.mark.parametrize(
    "text",
    [
        pytest.param("ep", id="endpoint-only"),
        pytest.param("ep-1:adapter_2", id="endpoint-and-adapter"),
        pytest.param("(endpoint-id)", id="spec-placeholder"),
        pytest.param("caf\u00e9", id="non-ascii-letters"),
    ],
)
def test_model_strings_are_sent_as_given(api: FakeFriendli, client: fi.Client, text: str) -> None:
    """Catches a model string rebuilt from its parts (an adapter dropped), or a valid one refused."""
    client.generate(model=text, prompt="p")
    assert api.requests[0].json["model"] == text


@pytest.mark.parametrize(
    "text",
    [
        pytest.param("", id="empty"),
        pytest.param("   ", id="blank"),
        pytest.param("a:b:c", id="two-colons"),
        pytest.param(":x", id="no-endpoint"),
        pytest.param("x:", id="empty-adapter"),
        pytest.param("ep id", id="inner-space"),
        pytest.param(" ep", id="leading-space"),
        pytest.param("ep\t", id="tab"),
        pytest.param("ep\x00", id="nul"),
        pytest.param("ep\x7f", id="del"),
        pytest.param("ep\n", id="newline"),
        pytest.param("ep:ad apt", id="space-in-adapter"),
        pytest.param("ep\u200b", id="zero-width-space"),
        pytest.param("ep\u00a0", id="no-break-space"),
        pytest.param("\ud800", id="lone-surrogate"),
        pytest.param("ep:\udfff", id="lone-surrogate-in-adapter"),
    ],
)
def test_bad_model_strings_fail_before_any_traffic(api: FakeFriendli, client: fi.Client, text: str) -> None:
    with pytest.raises(fi.FriendliValidationError, match="model"):
        client.generate(model=text, prompt="p")
    assert api.requests == []


# -- every bad input fails before the network ---------------------------------------------


def dt_gen(url: str, client_options: Optional[Dict[str, Any]] = None, **call: Any) -> Any:
    options: Dict[str, Any] = {"timeout": 5, "retries": NO_RETRIES, **(client_options or {})}
    return fi.Client(TOKEN, base_url=url, **options).generate(**{"model": "ep", "prompt": "p", **call})


def dt_edit(url: str, **call: Any) -> Any:
    return fi.Client(TOKEN, base_url=url, timeout=5, retries=NO_RETRIES).edit(
        **{"model": "ep", "prompt": "p", "image": PNG, **call})


def dt_cont(url: str, **call: Any) -> Any:
    return fi.Client(base_url=url, target="container", timeout=5, retries=NO_RETRIES).generate(
        **{"prompt": "p", **call})


def dt_backoff(**fields: Any) -> fi.BackoffStrategy:
    values: Dict[str, Any] = {"initial_interval": 500, "max_interval": 60000, "exponent": 1.5,
                              "max_elapsed_time": 60000, **fields}
    return fi.BackoffStrategy(**values)


BIG = 10 ** 400  # an int no float can hold
DEEP: List[Any] = []
for _ in range(100_000):  # a list nested deeper than repr() or json can go
    DEEP = [DEEP]
NAN, INF = float("nan"), float("inf")

def dt_failing_path() -> Any:
    class FailingPath(os.PathLike):  # type: ignore[type-arg]  # os.PathLike[str] fails at run time on 3.8
        def __fspath__(self) -> str:
            raise RuntimeError("no path here")

    return FailingPath()


class DtIndex:
    """An integer that is not an int, as numpy's are."""

    def __init__(self, value: int) -> None:
        self.value = value

    def __index__(self) -> int:
        return self.value

    def __str__(self) -> str:
        return str(self.value)


BAD_INPUTS = [
    # prompt
    pytest.param(lambda u: dt_gen(u, prompt=""), "prompt", id="prompt-empty"),
    pytest.param(lambda u: dt_gen(u, prompt="  \n\t"), "prompt", id="prompt-whitespace"),
    pytest.param(lambda u: dt_gen(u, prompt=None), "prompt", id="prompt-none"),
    pytest.param(lambda u: dt_gen(u, prompt=42), "prompt", id="prompt-int"),
    pytest.param(lambda u: dt_gen(u, prompt=b"bytes"), "prompt", id="prompt-bytes"),
    pytest.param(lambda u: dt_gen(u, prompt="a \ud800 b"), "prompt", id="prompt-lone-surrogate"),
    pytest.param(lambda u: dt_gen(u, prompt=DEEP), "got a deeply nested list", id="prompt-nested-too-deep-to-show"),
    pytest.param(lambda u: dt_edit(u, prompt=""), "prompt", id="edit-prompt-empty"),
    # model
    pytest.param(lambda u: dt_gen(u, model="ep\ud800"), "model", id="model-lone-surrogate"),
    pytest.param(lambda u: dt_gen(u, model=None), "model is required", id="dedicated-model-missing"),
    pytest.param(lambda u: dt_gen(u, model=42), "model", id="model-int"),
    pytest.param(lambda u: dt_cont(u, model="ad apt"), "model", id="container-adapter-with-space"),
    # num_inference_steps
    pytest.param(lambda u: dt_gen(u, num_inference_steps=0), "num_inference_steps", id="steps-0-below-range"),
    pytest.param(lambda u: dt_gen(u, num_inference_steps=51), "num_inference_steps", id="steps-51-above-range"),
    pytest.param(lambda u: dt_gen(u, num_inference_steps=-1), "num_inference_steps", id="steps-negative"),
    pytest.param(lambda u: dt_gen(u, num_inference_steps=True), "num_inference_steps", id="steps-bool"),
    pytest.param(lambda u: dt_gen(u, num_inference_steps=10.0), "num_inference_steps", id="steps-float"),
    pytest.param(lambda u: dt_gen(u, num_inference_steps=None), "num_inference_steps", id="steps-none"),
    pytest.param(lambda u: dt_edit(u, num_inference_steps=51), "num_inference_steps", id="edit-steps-51"),
    # guidance_scale
    pytest.param(lambda u: dt_gen(u, guidance_scale=NAN), "guidance_scale", id="guidance-nan"),
    pytest.param(lambda u: dt_gen(u, guidance_scale=INF), "guidance_scale", id="guidance-inf"),
    pytest.param(lambda u: dt_gen(u, guidance_scale=-INF), "guidance_scale", id="guidance-minus-inf"),
    pytest.param(lambda u: dt_gen(u, guidance_scale="3"), "guidance_scale", id="guidance-str"),
    pytest.param(lambda u: dt_gen(u, guidance_scale=True), "guidance_scale", id="guidance-bool"),
    pytest.param(lambda u: dt_gen(u, guidance_scale=BIG), "guidance_scale", id="guidance-int-overflows-float"),
    # seed
    pytest.param(lambda u: dt_gen(u, seed="1"), "seed", id="seed-str"),
    pytest.param(lambda u: dt_gen(u, seed=1.5), "seed", id="seed-float"),
    pytest.param(lambda u: dt_gen(u, seed=True), "seed", id="seed-bool"),
    # response_format, per target
    pytest.param(lambda u: dt_gen(u, response_format="gif"), "response_format", id="dedicated-format-gif"),
    pytest.param(lambda u: dt_gen(u, response_format="PNG"), "response_format", id="dedicated-format-case"),
    pytest.param(lambda u: dt_gen(u, response_format=""), "response_format", id="dedicated-format-empty"),
    pytest.param(lambda u: dt_cont(u, response_format="png"), "response_format", id="container-format-png"),
    pytest.param(lambda u: dt_cont(u, response_format="url"), "response_format", id="container-format-url"),
    pytest.param(lambda u: dt_cont(u, response_format="jpg"), "response_format", id="container-format-jpg"),
    pytest.param(lambda u: dt_edit(u, response_format="gif"), "response_format", id="edit-format-gif"),
    # controlnet_weights and control_images
    pytest.param(lambda u: dt_gen(u, control_images=[PNG], controlnet_weights=[-0.01]), "controlnet_weights",
                 id="weight-below-0"),
    pytest.param(lambda u: dt_gen(u, control_images=[PNG], controlnet_weights=[1.01]), "controlnet_weights",
                 id="weight-above-1"),
    pytest.param(lambda u: dt_gen(u, control_images=[PNG], controlnet_weights=[NAN]), "controlnet_weights",
                 id="weight-nan"),
    pytest.param(lambda u: dt_gen(u, control_images=[PNG], controlnet_weights=[BIG]), "controlnet_weights",
                 id="weight-int-overflows-float"),
    pytest.param(lambda u: dt_gen(u, control_images=[PNG], controlnet_weights=[True]), "controlnet_weights",
                 id="weight-bool"),
    pytest.param(lambda u: dt_gen(u, control_images=[PNG], controlnet_weights=[0.5, 0.5]), "controlnet_weights",
                 id="weights-longer-than-images"),
    pytest.param(lambda u: dt_gen(u, control_images=[PNG, PNG], controlnet_weights=[0.5]), "controlnet_weights",
                 id="weights-shorter-than-images"),
    pytest.param(lambda u: dt_gen(u, controlnet_weights="0.5"), "controlnet_weights", id="weights-str"),
    pytest.param(lambda u: dt_gen(u, controlnet_weights=0.5), "controlnet_weights", id="weights-scalar"),
    pytest.param(lambda u: dt_gen(u, control_images=[]), "control_images", id="control-images-empty-list"),
    pytest.param(lambda u: dt_gen(u, control_images="https://example.com/a.png"), "control_images",
                 id="control-images-str"),
    pytest.param(lambda u: dt_gen(u, control_images=PNG), "control_images", id="control-images-bytes"),
    pytest.param(lambda u: dt_gen(u, control_images=["https://example.com/a b.png"]), "control_images[0]",
                 id="control-image-url-with-space"),
    pytest.param(lambda u: dt_gen(u, control_images=[PNG, "https://example.com/\ud800.png"]),
                 "control_images[1]", id="control-image-url-lone-surrogate"),
    # edit images
    pytest.param(lambda u: dt_edit(u, image="https://example.com/a b.png"), "image", id="edit-url-with-space"),
    pytest.param(lambda u: dt_edit(u, image="https://example.com/a\nb.png"), "image", id="edit-url-with-newline"),
    pytest.param(lambda u: dt_edit(u, image="https://example.com/\ud800.png"), "image",
                 id="edit-url-lone-surrogate"),
    pytest.param(lambda u: dt_edit(u, image=None), "image is required", id="edit-image-none"),
    pytest.param(lambda u: dt_edit(u, image=[]), "image", id="edit-image-empty-list"),
    pytest.param(lambda u: dt_edit(u, image=42), "image", id="edit-image-int"),
    pytest.param(lambda u: dt_edit(u, image=""), "image", id="edit-image-empty-str"),
    pytest.param(lambda u: dt_edit(u, image="data:image/png," + PNG_B64), "image", id="edit-data-uri-not-base64"),
    pytest.param(lambda u: dt_edit(u, image="data:image/png;base64,@@@@"), "image", id="edit-data-uri-garbage"),
    pytest.param(lambda u: dt_edit(u, image=pathlib.Path("a\0b.png")), "image must be a file path", id="edit-path-nul"),
    pytest.param(lambda u: dt_edit(u, image=pathlib.Path("\ud800.png")), "image must be a file path",
                 id="edit-path-lone-surrogate"),
    # timeouts, client-wide and per call
    pytest.param(lambda u: dt_gen(u, {"timeout": 0}), "timeout", id="client-timeout-0"),
    pytest.param(lambda u: dt_gen(u, {"timeout": -1}), "timeout", id="client-timeout-negative"),
    pytest.param(lambda u: dt_gen(u, {"timeout": NAN}), "timeout", id="client-timeout-nan"),
    pytest.param(lambda u: dt_gen(u, {"timeout": BIG}), "timeout", id="client-timeout-huge-int"),
    pytest.param(lambda u: dt_gen(u, {"timeout": "5"}), "timeout", id="client-timeout-str"),
    pytest.param(lambda u: dt_gen(u, timeout=0), "timeout", id="call-timeout-0"),
    pytest.param(lambda u: dt_gen(u, timeout=-1), "timeout", id="call-timeout-negative"),
    pytest.param(lambda u: dt_gen(u, timeout=NAN), "timeout", id="call-timeout-nan"),
    pytest.param(lambda u: dt_gen(u, timeout=BIG), "timeout", id="call-timeout-huge-int"),
    pytest.param(lambda u: dt_gen(u, total_timeout=0), "total_timeout", id="total-timeout-0"),
    pytest.param(lambda u: dt_gen(u, {"timeout": 1e10}), "timeout must be within [0, 1e+09]",
                 id="client-timeout-beyond-what-a-socket-takes"),
    pytest.param(lambda u: dt_gen(u, total_timeout=1e10), "total_timeout", id="total-timeout-beyond-a-sleep"),
    pytest.param(lambda u: dt_gen(u, cancel="yes"), "cancel must be a threading.Event", id="cancel-not-an-event"),
    pytest.param(lambda u: dt_gen(u, total_timeout=-1), "total_timeout", id="total-timeout-negative"),
    pytest.param(lambda u: dt_gen(u, total_timeout=NAN), "total_timeout", id="total-timeout-nan"),
    pytest.param(lambda u: dt_gen(u, total_timeout=BIG), "total_timeout", id="total-timeout-huge-int"),
    pytest.param(lambda u: dt_edit(u, timeout=0), "timeout", id="edit-timeout-0"),
    # other client options
    pytest.param(lambda u: fi.ImageGenerationRequest("ep", "p", target="cloud"), "target", id="request-target-unknown"),
    pytest.param(lambda u: fi.Client(TOKEN, base_url=u, target="cloud"), "target", id="client-target-unknown"),
    pytest.param(lambda u: fi.Client(5, base_url=u), "no API token", id="token-an-int"),
    pytest.param(lambda u: fi.Client(TOKEN, base_url=""), "base_url", id="base-url-empty-not-the-default"),
    pytest.param(lambda u: fi.Client(TOKEN, base_url=0), "base_url", id="base-url-0-not-the-default"),
    pytest.param(lambda u: fi.Client(base_url=[], target="container"), "base_url", id="container-base-url-a-list"),
    pytest.param(lambda u: fi.SyncFriendli(token=TOKEN, server_url=u).dedicated.image.generate(
        model="ep", prompt="p", server_url=""), "base_url", id="facade-call-server-url-empty"),
    pytest.param(lambda u: fi.Client(TOKEN, base_url=u + "/?"), "query or fragment", id="base-url-empty-query"),
    pytest.param(lambda u: fi.Client(TOKEN, base_url=u + "/#"), "query or fragment", id="base-url-empty-fragment"),
    pytest.param(lambda u: fi.Client(TOKEN, base_url="ftp://h/?key=SECRETX"), "base_url must look like",
                 id="base-url-bad-scheme-query-not-quoted"),
    pytest.param(lambda u: fi.Client(TOKEN, base_url=u + "/?key=SECRETX"), "query or fragment",
                 id="base-url-query-not-quoted"),
    pytest.param(lambda u: fi.Client(TOKEN, base_url=u, allow_insecure_http="yes"), "allow_insecure_http",
                 id="allow-insecure-http-a-str"),
    pytest.param(lambda u: fi.Client(TOKEN, base_url=u, allow_insecure_http=None), "allow_insecure_http",
                 id="allow-insecure-http-none"),
    pytest.param(lambda u: fi.Client(TOKEN, base_url=u, user_agent=""), "user_agent", id="user-agent-empty"),
    pytest.param(lambda u: fi.Client(TOKEN, base_url=u, user_agent=0), "user_agent", id="user-agent-0"),
    pytest.param(lambda u: dt_edit(u, image="http://"), "not a usable URL", id="edit-url-no-host"),
    pytest.param(lambda u: dt_edit(u, image="http://[::1/x.png"), "not a usable URL", id="edit-url-unclosed-bracket"),
    pytest.param(lambda u: dt_edit(u, image="https://h:99999/x.png?sig=SECRETX"), "not a usable URL",
                 id="edit-url-port-out-of-range-query-not-quoted"),
    pytest.param(lambda u: dt_gen(u, {"sleep": 5}), "sleep must be a function", id="sleep-not-callable"),
    pytest.param(lambda u: dt_gen(u, {"clock": 5}), "clock must be a function", id="clock-not-callable"),
    pytest.param(lambda u: fi.AsyncClient(TOKEN, base_url=u, executor=5), "executor", id="executor-not-an-executor"),
    # retry settings
    pytest.param(lambda u: dt_gen(u, retries=fi.RetryConfig("backoff", dt_backoff(initial_interval=BIG))),
                 "initial_interval", id="backoff-initial-huge-int"),
    pytest.param(lambda u: dt_gen(u, retries=fi.RetryConfig("backoff", dt_backoff(max_interval=NAN))),
                 "max_interval", id="backoff-max-interval-nan"),
    pytest.param(lambda u: dt_gen(u, retries=fi.RetryConfig("backoff", dt_backoff(exponent=-1.5))),
                 "exponent", id="backoff-exponent-negative"),
    pytest.param(lambda u: dt_gen(u, retries=fi.RetryConfig("backoff", dt_backoff(initial_interval=-1))),
                 "initial_interval", id="backoff-initial-negative"),
    pytest.param(lambda u: dt_gen(u, retries=fi.RetryConfig("backoff", dt_backoff(jitter_ms=-500))),
                 "jitter_ms", id="backoff-jitter-negative"),
    pytest.param(lambda u: dt_gen(u, retries=fi.RetryConfig("backoff", dt_backoff(jitter_ms=INF))),
                 "jitter_ms", id="backoff-jitter-inf"),
    pytest.param(lambda u: dt_gen(u, retries=fi.RetryConfig("backoff", dt_backoff(max_elapsed_time=0))),
                 "max_elapsed_time", id="backoff-max-elapsed-0"),
    pytest.param(lambda u: dt_gen(u, retries=fi.RetryConfig("backoff", dt_backoff(max_elapsed_time=BIG))),
                 "max_elapsed_time", id="backoff-max-elapsed-huge-int"),
    pytest.param(lambda u: dt_gen(u, retries=fi.RetryConfig("sometimes")), "strategy", id="retry-bad-strategy"),
    pytest.param(lambda u: dt_gen(u, retries=fi.RetryConfig("backoff", status_codes_override=503)),
                 "status_codes_override", id="retry-codes-not-a-list"),
    pytest.param(lambda u: dt_gen(u, retries=fi.RetryConfig("backoff", status_codes_override="5XX")),
                 "status_codes_override", id="retry-codes-a-str"),
    pytest.param(lambda u: dt_gen(u, retries=fi.RetryConfig("backoff", status_codes_override=["5YY"])),
                 "status_codes_override", id="retry-codes-bad-pattern"),
    pytest.param(lambda u: dt_gen(u, retries=fi.RetryConfig("backoff", status_codes_override=[True])),
                 "status_codes_override", id="retry-codes-bool"),
    pytest.param(lambda u: dt_gen(u, retries=fi.RetryConfig("backoff", status_codes_override=[600])),
                 "status_codes_override", id="retry-codes-600"),
    pytest.param(lambda u: dt_gen(u, retries=fi.RetryConfig("backoff", status_codes_override=[DEEP])),
                 "status_codes_override", id="retry-codes-nested-too-deep"),
    pytest.param(lambda u: dt_gen(u, retries=fi.RetryConfig("backoff", max_retries=-1)), "max_retries",
                 id="retry-max-retries-negative"),
    pytest.param(lambda u: dt_gen(u, retries=fi.RetryConfig("backoff", backoff={"initial_interval": 1})),
                 "backoff", id="retry-backoff-not-a-strategy"),
    pytest.param(lambda u: dt_gen(u, retries="none"), "retries", id="retries-a-str"),
    # team
    pytest.param(lambda u: dt_gen(u, {"team": "a team"}), "team", id="client-team-with-space"),
    pytest.param(lambda u: dt_gen(u, x_friendli_team="a team"), "team", id="call-team-with-space"),
    pytest.param(lambda u: dt_gen(u, x_friendli_team="t\r\nX-Evil: 1"), "team", id="call-team-with-crlf"),
    pytest.param(lambda u: dt_gen(u, x_friendli_team="\ud300"), "team", id="call-team-not-latin-1"),
    # http_headers
    pytest.param(lambda u: dt_gen(u, http_headers={"Bad Name": "v"}), "http_headers", id="header-name-with-space"),
    pytest.param(lambda u: dt_gen(u, http_headers={"X-A:b": "v"}), "http_headers", id="header-name-with-colon"),
    pytest.param(lambda u: dt_gen(u, http_headers={"": "v"}), "http_headers", id="header-name-empty"),
    pytest.param(lambda u: dt_gen(u, http_headers={"X-Evil": "a\r\nInjected: 1"}), "http_headers",
                 id="header-value-crlf"),
    pytest.param(lambda u: dt_gen(u, http_headers={"X-Evil": "a\nb"}), "http_headers", id="header-value-lf"),
    pytest.param(lambda u: dt_gen(u, http_headers={"X-Note": "\u2713"}), "http_headers",
                 id="header-value-not-latin-1"),
    pytest.param(lambda u: dt_gen(u, http_headers={"X-Note": "a\x00b"}), "http_headers", id="header-value-nul"),
    pytest.param(lambda u: dt_gen(u, http_headers={"X-Note": 5}), "http_headers", id="header-value-int"),
    pytest.param(lambda u: dt_gen(u, http_headers=5), "http_headers must be a mapping", id="headers-an-int"),
    pytest.param(lambda u: dt_gen(u, http_headers=[("Authorization", "Bearer SECRETX")]),
                 "http_headers must be a mapping of header names to values, got a value of type list",
                 id="headers-a-list-of-pairs-not-quoted"),  # it may hold a token
    pytest.param(lambda u: dt_edit(u, image=dt_failing_path()), "image must be a file path",
                 id="edit-path-whose-fspath-fails"),
]


@pytest.mark.parametrize("make, fragment", BAD_INPUTS)
def test_bad_inputs_fail_before_the_network(api: FakeFriendli, make: Callable[[str], Any], fragment: str) -> None:
    with pytest.raises(fi.FriendliValidationError) as info:
        make(api.url)
    assert isinstance(info.value, ValueError) and info.value.attempts == 0
    assert fragment in str(info.value) and "SECRETX" not in str(info.value)
    assert api.requests == []


GOOD_INPUTS = [
    pytest.param({"num_inference_steps": 1}, "num_inference_steps", 1, id="steps-1-lowest"),
    pytest.param({"num_inference_steps": 50}, "num_inference_steps", 50, id="steps-50-highest"),
    pytest.param({"guidance_scale": 0}, "guidance_scale", 0, id="guidance-0"),
    pytest.param({"guidance_scale": 3.5}, "guidance_scale", 3.5, id="guidance-float"),
    pytest.param({"seed": 0}, "seed", 0, id="seed-0"),
    pytest.param({"seed": 2 ** 63 - 1}, "seed", 2 ** 63 - 1, id="seed-large"),
    pytest.param({"control_images": [PNG], "controlnet_weights": [0]}, "controlnet_weights", [0], id="weight-0"),
    pytest.param({"control_images": [PNG], "controlnet_weights": [1]}, "controlnet_weights", [1], id="weight-1"),
    pytest.param({"control_images": [PNG, PNG], "controlnet_weights": (0.0, 1.0)}, "controlnet_weights", [0.0, 1.0],
                 id="weights-tuple-same-length"),
    pytest.param({"controlnet_weights": [0.5]}, "controlnet_weights", [0.5], id="weights-without-images"),
    pytest.param({"http_headers": email.message.Message()}, "prompt", "p", id="headers-a-message-object"),
    pytest.param({"retries": fi.RetryConfig("backoff", status_codes_override=[DtIndex(503)])}, "prompt", "p",
                 id="retry-code-with-index-like-numpy-ints"),
    pytest.param({"control_images": (PNG,)}, "control_images", [{"image": PNG_URI}], id="control-images-tuple"),
    pytest.param({"prompt": "\ud7ff \ue000"}, "prompt", "\ud7ff \ue000", id="prompt-next-to-the-surrogates"),
] + [pytest.param({"response_format": f}, "response_format", f, id=f"dedicated-format-{f}") for f in DEDICATED_FORMATS]


@pytest.mark.parametrize("call, key, sent", GOOD_INPUTS)
def test_inputs_at_the_limits_are_accepted_and_sent(
    api: FakeFriendli, client: fi.Client, call: Dict[str, Any], key: str, sent: Any
) -> None:
    client.generate(**{"model": "ep", "prompt": "p", **call})
    body = api.requests[0].json
    assert body[key] == sent and type(body[key]) is type(sent)


@pytest.mark.parametrize("fmt", CONTAINER_FORMATS)
def test_container_formats_are_accepted(api: FakeFriendli, fmt: str) -> None:
    res = dt_container(api).generate(prompt="p", response_format=fmt)
    assert api.requests[0].path == "/v1/images/generations" and api.requests[0].json["response_format"] == fmt
    assert res.data[0].content() == (JPEG if fmt == "jpeg" else PNG)


@pytest.mark.parametrize(
    "client_options, call",
    [
        pytest.param({"timeout": 0.5}, {}, id="client-timeout-small"),
        pytest.param({}, {"timeout": 0.5}, id="call-timeout-small"),
        pytest.param({}, {"total_timeout": 0.5}, id="call-total-timeout-small"),
        pytest.param({}, {"retries": fi.RetryConfig("backoff", dt_backoff(max_elapsed_time=1, jitter_ms=0),
                                                     max_retries=0), "total_timeout": 5},  # 1 ms is no budget
                     id="backoff-max-elapsed-1"),
        pytest.param({"team": "team-1"}, {}, id="client-team"),
        pytest.param({}, {"http_headers": {"X-Note": "caf\u00e9"}}, id="latin-1-header-value"),
    ],
)
def test_settings_at_the_limits_are_accepted(
    api: FakeFriendli, client_options: Dict[str, Any], call: Dict[str, Any]
) -> None:
    dt_client(api, **client_options).generate(model="ep", prompt="p", **call)
    seen = api.requests[0]
    assert seen.path == ERR_PATH
    if "team" in client_options:
        assert seen.headers["x-friendli-team"] == "team-1"
    if "http_headers" in call:
        assert seen.headers["x-note"] == "caf\u00e9"


@pytest.mark.parametrize(
    "token",
    [
        pytest.param("abc def-SECRET", id="space"),
        pytest.param("abc\ndef-SECRET", id="newline"),
        pytest.param("abc\tdef-SECRET", id="tab"),
        pytest.param("fl-SECRET-caf\u00e9", id="non-ascii"),
        pytest.param("\ufefffl-SECRET", id="byte-order-mark"),
        pytest.param("fl-SECRET\x00", id="nul"),
    ],
)
def test_a_bad_token_is_refused_without_echoing_it(api: FakeFriendli, token: str) -> None:
    with pytest.raises(fi.FriendliValidationError) as info:
        fi.Client(token, base_url=api.url).generate(model="ep", prompt="p")
    assert "token" in str(info.value)
    assert "SECRET" not in str(info.value) and "SECRET" not in repr(info.value.args)
    assert api.requests == []


# -- input images ----------------------------------------------------------------------------


@pytest.fixture
def dt_jpeg_file(tmp_path: pathlib.Path) -> pathlib.Path:
    path = tmp_path / "photo.jpeg"
    path.write_bytes(JPEG)
    return path


@pytest.mark.parametrize(
    "kind",
    ["url", "url-with-query", "data-uri", "base64-text", "bytes", "bytearray", "memoryview", "path", "str-path",
     "mapping-of-path", "mapping-of-bytes", "mapping-of-url"],
)
def test_each_kind_of_input_image_is_sent_as_the_api_expects(
    api: FakeFriendli, client: fi.Client, dt_jpeg_file: pathlib.Path, kind: str
) -> None:
    given, sent = {
        "url": ("https://example.com/cat.png", "https://example.com/cat.png"),
        "url-with-query": ("HTTP://example.com/cat.png?sig=a%20b", "HTTP://example.com/cat.png?sig=a%20b"),
        "data-uri": (PNG_URI, PNG_URI),
        "base64-text": (PNG_B64, PNG_B64),
        "bytes": (PNG, PNG_URI),
        "bytearray": (bytearray(PNG), PNG_URI),
        "memoryview": (memoryview(PNG), PNG_URI),
        "path": (dt_jpeg_file, JPEG_URI),
        "str-path": (str(dt_jpeg_file), JPEG_URI),
        "mapping-of-path": ({"image": dt_jpeg_file}, JPEG_URI),
        "mapping-of-bytes": ({"image": PNG}, PNG_URI),
        "mapping-of-url": ({"image": "https://example.com/a.png"}, "https://example.com/a.png"),
    }[kind]
    client.edit(model="ep", prompt="p", image=given)
    client.generate(model="ep", prompt="p", control_images=[given])
    edit, generation = api.requests
    assert edit.path == "/dedicated/v1/images/edits" and edit.json["image"] == {"image": sent}
    assert generation.json["control_images"] == [{"image": sent}]


@pytest.mark.parametrize("data, kind", [(PNG, "png"), (JPEG, "jpeg"), (WEBP, "webp"), (GIF, "gif"),
                                        (b"II*\x00" + bytes(8), "tiff"), (b"MM\x00*" + bytes(8), "tiff"),
                                        (b"BM" + bytes(20), "bmp")])
def test_the_image_type_of_bytes_and_files_comes_from_their_content(
    tmp_path: pathlib.Path, data: bytes, kind: str
) -> None:
    unnamed = tmp_path / "no-suffix.png"  # a misleading name: the bytes decide
    unnamed.write_bytes(data)
    request = fi.ImageEditRequest(model="ep", prompt="p", image=[data, unnamed])
    expected = f"data:image/{kind};base64," + base64.b64encode(data).decode()
    assert request.to_dict()["image"] == [{"image": expected}, {"image": expected}]


def dt_padded_png(size: int) -> bytes:
    return PNG[:16] + bytes(size - 16)


def dt_sparse_png_file(path: pathlib.Path, size: int) -> pathlib.Path:
    with open(path, "wb") as fh:
        fh.write(PNG[:16])
        fh.truncate(size)
    return path


def dt_check_exact_limit_uri(uri: Any) -> None:
    """``uri`` is the data URI of ``dt_padded_png(LIMIT)`` (checked without decoding 50 MiB again)."""
    assert isinstance(uri, str) and uri.startswith("data:image/png;base64," + base64.b64encode(PNG[:15]).decode())
    assert len(uri) == len("data:image/png;base64,") + (LIMIT + 2) // 3 * 4
    assert uri.endswith("AAAA" * 100 + "AAA=")  # LIMIT % 3 == 2: one padding character


def test_input_bytes_up_to_exactly_50_mib_are_accepted_and_one_more_refused(
    api: FakeFriendli, client: fi.Client
) -> None:
    dt_check_exact_limit_uri(fi.ImageEditRequest(model="ep", prompt="p", image=dt_padded_png(LIMIT)).image)
    over = dt_padded_png(LIMIT + 1)
    for image in (over, memoryview(over), {"image": over}):
        with pytest.raises(fi.FriendliValidationError, match="50 MiB") as info:
            client.edit(model="ep", prompt="p", image=image)
        assert str(info.value).startswith("image:")
    with pytest.raises(fi.FriendliValidationError, match="50 MiB") as info:
        client.generate(model="ep", prompt="p", control_images=[PNG, over])
    assert str(info.value).startswith("control_images[1]:")
    assert api.requests == []


def test_input_files_up_to_exactly_50_mib_are_accepted_and_one_more_refused(
    api: FakeFriendli, client: fi.Client, tmp_path: pathlib.Path
) -> None:
    exact = dt_sparse_png_file(tmp_path / "exact.png", LIMIT)
    dt_check_exact_limit_uri(fi.ImageEditRequest(model="ep", prompt="p", image=exact).image)
    over = dt_sparse_png_file(tmp_path / "over.png", LIMIT + 1)
    for image in (over, str(over)):
        with pytest.raises(fi.FriendliValidationError, match="50 MiB") as info:
            client.edit(model="ep", prompt="p", image=[PNG, image])
        assert str(info.value).startswith("image[1]:")
    assert api.requests == []


def test_base64_of_exactly_the_limit_is_not_refused_for_its_padding() -> None:
    zeros = LIMIT - 15  # base64 of PNG[:15] + zeros, LIMIT bytes, built without encoding 50 MiB ("A"s)
    text = base64.b64encode(PNG[:15]).decode() + "A" * (zeros // 3 * 4) + {0: "", 1: "AA==", 2: "AAA="}[zeros % 3]
    assert text.endswith("AAA=")  # a naive count (characters / 4 * 3) would make it 1 byte over the limit
    uri = "data:image/png;base64," + text
    del text
    assert fi.ImageEditRequest(model="ep", prompt="p", image=uri).image == uri
    over = uri[len("data:image/png;base64,"):-4] + "AAAA"  # LIMIT - 2 + 3 bytes: one byte over, no padding
    del uri
    with pytest.raises(fi.FriendliValidationError, match="50 MiB"):
        fi.ImageEditRequest(model="ep", prompt="p", image=over)


@pytest.mark.skipif(not os.path.exists("/dev/zero"), reason="needs /dev/zero")
def test_an_endless_device_is_refused_quickly(api: FakeFriendli, client: fi.Client) -> None:
    started = time.monotonic()
    with pytest.raises(fi.FriendliValidationError, match="not a regular file"):
        client.edit(model="ep", prompt="p", image=pathlib.Path("/dev/zero"))
    with pytest.raises(fi.FriendliValidationError):
        client.edit(model="ep", prompt="p", image="/dev/zero")
    assert time.monotonic() - started < 1.0
    assert api.requests == []


@pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="needs os.mkfifo")
@pytest.mark.parametrize("as_str", [False, True], ids=["path", "str-path"])
def test_a_fifo_is_refused_without_blocking(
    api: FakeFriendli, client: fi.Client, tmp_path: pathlib.Path, as_str: bool
) -> None:
    fifo = tmp_path / "pipe.png"
    os.mkfifo(fifo)
    outcome: List[BaseException] = []

    def run() -> None:
        try:
            client.edit(model="ep", prompt="p", image=str(fifo) if as_str else fifo)
        except BaseException as exc:  # noqa: B902 - reported to the test thread
            outcome.append(exc)

    worker = threading.Thread(target=run, daemon=True)
    worker.start()
    worker.join(5)
    if worker.is_alive():  # unblock the reader so the thread ends, then fail
        with open(os.open(fifo, os.O_WRONLY | os.O_NONBLOCK), "wb"):
            pass
        pytest.fail("reading a FIFO blocked")
    assert len(outcome) == 1 and isinstance(outcome[0], fi.FriendliValidationError)
    assert api.requests == []


@pytest.mark.parametrize(
    "make, fragment",
    [
        pytest.param(lambda d: pathlib.Path(d) / "missing.png", "cannot read", id="missing-path"),
        pytest.param(lambda d: str(pathlib.Path(d) / "missing.png"), "existing file", id="missing-str-path"),
        pytest.param(lambda d: pathlib.Path(d), "cannot read", id="directory-path"),
        pytest.param(lambda d: str(d), "image", id="directory-str-path"),
        pytest.param(lambda d: "photos/cat1", "existing file", id="mistyped-path-that-is-valid-base64"),
        pytest.param(lambda d: "not an image, not a file", "existing file", id="plain-text"),
    ],
)
def test_paths_that_are_not_readable_images_are_refused(
    api: FakeFriendli, client: fi.Client, tmp_path: pathlib.Path, make: Callable[[pathlib.Path], Any], fragment: str
) -> None:
    with pytest.raises(fi.FriendliValidationError) as info:
        client.edit(model="ep", prompt="p", image=make(tmp_path))
    assert fragment in str(info.value)
    assert api.requests == []


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="Linux's PATH_MAX")
def test_a_path_as_long_as_the_system_allows_is_still_read_as_a_file(
    api: FakeFriendli, client: fi.Client, tmp_path: pathlib.Path
) -> None:
    (tmp_path / "x.png").write_bytes(PNG)
    padding = 4095 - len(f"{tmp_path}/x.png")  # 4095 characters: the longest path Linux takes (PATH_MAX 4096)
    path = f"{tmp_path}/{'./' * (padding // 2)}{'/' * (padding % 2)}x.png"
    assert len(path) == 4095
    client.edit(model="ep", prompt="p", image=path)
    assert api.requests[0].json["image"] == {"image": PNG_URI}


@pytest.mark.parametrize(
    "make",
    [
        pytest.param(lambda d: b"hello, this is text", id="bytes"),
        pytest.param(lambda d: b"", id="empty-bytes"),
        pytest.param(lambda d: (d / "notes.png", (d / "notes.png").write_text("shopping list"))[0], id="file"),
    ],
)
def test_bytes_of_no_known_image_type_are_refused_and_the_message_suggests_a_data_uri(
    api: FakeFriendli, client: fi.Client, tmp_path: pathlib.Path, make: Callable[[pathlib.Path], Any]
) -> None:
    with pytest.raises(fi.FriendliValidationError) as info:
        client.edit(model="ep", prompt="p", image=[PNG, make(tmp_path)])
    text = str(info.value)
    assert text.startswith("image[1]: cannot tell the image type")
    assert "data:image/" in text and "base64" in text
    assert api.requests == []


# -- request dataclasses ---------------------------------------------------------------------


def test_generation_request_to_dict_omits_none_and_always_sends_the_steps() -> None:
    minimal = fi.ImageGenerationRequest(model="ep", prompt="p")
    assert minimal.to_dict() == {"model": "ep", "prompt": "p", "num_inference_steps": 20}
    full = fi.ImageGenerationRequest(
        model="ep:ad", prompt="p", num_inference_steps=7, guidance_scale=2.5, seed=3,
        response_format="png", control_images=["https://example.com/c.png", PNG], controlnet_weights=(0.5, 1),
    )
    assert full.to_dict() == {
        "model": "ep:ad", "prompt": "p", "num_inference_steps": 7, "guidance_scale": 2.5, "seed": 3,
        "response_format": "png", "control_images": [{"image": "https://example.com/c.png"}, {"image": PNG_URI}],
        "controlnet_weights": [0.5, 1],
    }
    assert json.loads(full.to_json()) == full.to_dict()
    container = fi.ImageGenerationRequest(model=None, prompt="p", target="container")
    assert container.to_dict() == {"prompt": "p", "num_inference_steps": 20}  # no "target", no "model"


def test_edit_request_to_dict_sends_one_image_as_an_object_and_a_list_as_a_list() -> None:
    one = fi.ImageEditRequest(model="ep", prompt="p", image="https://example.com/a.png", seed=1)
    assert one.to_dict() == {"model": "ep", "prompt": "p", "num_inference_steps": 20, "seed": 1,
                             "image": {"image": "https://example.com/a.png"}}
    many = fi.ImageEditRequest(model="ep", prompt="p", image=[PNG, JPEG_B64])
    assert many.to_dict()["image"] == [{"image": PNG_URI}, {"image": JPEG_B64}]
    single_list = fi.ImageEditRequest(model="ep", prompt="p", image=(PNG,))
    assert single_list.to_dict()["image"] == [{"image": PNG_URI}]  # a list of one stays a list
    assert json.loads(many.to_json()) == many.to_dict()
    container = fi.ImageEditRequest(model="lora", prompt="p", image=PNG, target="container", response_format="raw")
    assert container.to_dict() == {"model": "lora", "prompt": "p", "num_inference_steps": 20,
                                   "response_format": "raw", "image": {"image": PNG_URI}}


@pytest.mark.parametrize("fields", [{"control_images": [PNG]}, {"controlnet_weights": [0.5]}],
                         ids=["control_images", "controlnet_weights"])
def test_edit_request_refuses_controlnet_fields(fields: Dict[str, Any]) -> None:
    with pytest.raises(fi.FriendliValidationError, match="not part of an image edit"):
        fi.ImageEditRequest(model="ep", prompt="p", image=PNG, **fields)


def test_edit_method_has_no_controlnet_parameters(client: fi.Client) -> None:
    with pytest.raises(TypeError):
        client.edit(model="ep", prompt="p", image=PNG, control_images=[PNG])  # type: ignore[call-arg]


def test_the_body_is_utf8_json_not_ascii_escaped(api: FakeFriendli, client: fi.Client) -> None:
    prompt = "caf\u00e9 \u732b \U0001f98a"
    request = fi.ImageGenerationRequest(model="ep", prompt=prompt)
    assert request.to_json() == json.dumps(request.to_dict(), ensure_ascii=False).encode("utf-8")
    client.generate(model="ep", prompt=prompt)
    seen = api.requests[0]
    assert prompt.encode("utf-8") in seen.body and b"\\u" not in seen.body
    assert seen.json["prompt"] == prompt
    assert seen.headers["content-type"] == "application/json"


# -- results: liberal in what they accept ---------------------------------------------------


def dt_result(api: FakeFriendli, payload: Any, *, container: bool = False, **call: Any) -> fi.ImageGenerationResult:
    api.queue(Reply(200, body=payload) if isinstance(payload, bytes) else ok_json(payload, **{"X-Request-Id": "rq"}))
    if container:
        return dt_container(api).generate(prompt="p", **call)
    return dt_client(api).generate(model="ep", prompt="p", **call)


SPEC_GENERATION_EXAMPLE = {"data": [{"url": "(url-to-generated-image)", "seed": 123, "response_format": "url"}]}
SPEC_EDIT_EXAMPLE = {"data": [{"url": "(url-to-edited-image)", "seed": 789, "response_format": "url"}]}
SPEC_CONTAINER_EXAMPLE = {"image": "<base64 encoded image>"}


def test_the_specs_generation_example_parses(api: FakeFriendli) -> None:
    res = dt_result(api, SPEC_GENERATION_EXAMPLE)
    assert len(res.data) == 1 and res.request_id == "rq"
    image = res.data[0]
    assert (image.seed, image.response_format, image.url, image.b64_json) == (
        123, "url", "(url-to-generated-image)", None)


def test_the_specs_edit_example_parses(api: FakeFriendli, client: fi.Client) -> None:
    api.queue(ok_json(SPEC_EDIT_EXAMPLE))
    res = client.edit(model="ep", prompt="p", image=PNG, retries=NO_RETRIES)
    assert [(i.seed, i.response_format, i.url) for i in res.data] == [(789, "url", "(url-to-edited-image)")]


def test_the_specs_container_example_parses(api: FakeFriendli) -> None:
    res = dt_result(api, SPEC_CONTAINER_EXAMPLE, container=True, seed=5)
    assert len(res.data) == 1
    image = res.data[0]
    assert image.b64_json == "<base64 encoded image>" and image.url is None
    assert image.seed == 5 and image.response_format == "jpeg"  # the request's, or the container's default


@pytest.mark.parametrize(
    "item, seed, url, b64",
    [
        pytest.param({"b64_json": PNG_B64}, None, None, PNG_B64, id="only-b64_json"),
        pytest.param({"url": "https://cdn.example/x.png", "response_format": "url"}, None,
                     "https://cdn.example/x.png", None, id="missing-seed"),
        pytest.param({"seed": None, "b64_json": PNG_B64, "url": None}, None, None, PNG_B64, id="explicit-nulls"),
        pytest.param({"seed": 9, "b64_json": PNG_B64, "extra": {"x": 1}}, 9, None, PNG_B64, id="unknown-field"),
    ],
)
def test_items_with_optional_fields_missing_parse(
    api: FakeFriendli, item: Dict[str, Any], seed: Optional[int], url: Optional[str], b64: Optional[str]
) -> None:
    image = dt_result(api, {"data": [item]}).data[0]
    assert (image.seed, image.url, image.b64_json) == (seed, url, b64)


def test_an_empty_data_list_is_a_result_with_no_images(api: FakeFriendli, tmp_path: pathlib.Path) -> None:
    res = dt_result(api, {"data": []})
    assert res.data == [] and res.request_id == "rq"
    assert res.save_all(tmp_path / "out") == [] and (tmp_path / "out").is_dir()


def test_an_item_with_both_url_and_b64_json_uses_the_b64_json(api: FakeFriendli) -> None:
    image = dt_result(api, {"data": [png_item(url=api.url + "/files/other.png")]}).data[0]
    assert image.url == api.url + "/files/other.png" and image.b64_json == PNG_B64
    assert image.content() == PNG
    assert [s.method for s in api.requests] == ["POST"]  # nothing downloaded


def test_a_url_item_downloads_its_image(api: FakeFriendli) -> None:
    image = dt_result(api, {"data": [{"url": api.url + "/files/image.png?sig=abc", "seed": 1}]}).data[0]
    assert image.content() == PNG and image.data_uri() == PNG_URI
    assert api.requests[1].method == "GET" and api.requests[1].path == "/files/image.png?sig=abc"


@pytest.mark.parametrize(
    "item_format, requested, expected",
    [
        pytest.param("png", "jpeg", "png", id="items-own-wins"),
        pytest.param("url", "png", "url", id="items-own-wins-over-png"),
        pytest.param(None, "jpeg", "jpeg", id="none-uses-the-requests"),
        pytest.param(None, None, None, id="neither-said"),
    ],
)
def test_an_items_own_response_format_wins_over_the_requests(
    api: FakeFriendli, item_format: Optional[str], requested: Optional[str], expected: Optional[str]
) -> None:
    item: Dict[str, Any] = {"seed": 1, "b64_json": PNG_B64}
    if item_format is not None:
        item["response_format"] = item_format
    image = dt_result(api, {"data": [item]}, response_format=requested).data[0]
    assert image.response_format == expected


# -- results: strict where used --------------------------------------------------------------


@pytest.mark.parametrize(
    "payload, container, field",
    [
        pytest.param(SPEC_GENERATION_EXAMPLE, False, "data[0].url", id="spec-placeholder-url"),
        pytest.param({"data": [{"seed": 1, "url": "ftp://host/x.png?sig=s3cr3t"}]}, False, "data[0].url",
                     id="ftp-url"),
        pytest.param({"data": [png_item(), {"seed": 2, "url": "file:///etc/passwd"}]}, False, "data[1].url",
                     id="file-url-second-item"),
        pytest.param({"data": [{"seed": 1, "b64_json": "!!not base64!!"}]}, False, "data[0].b64_json",
                     id="invalid-base64"),
        pytest.param({"data": [{"seed": 1, "b64_json": "QUJD="}]}, False, "data[0].b64_json", id="bad-padding"),
        pytest.param({"data": [{"seed": 1, "b64_json": "AAAA===="}]}, False, "data[0].b64_json",
                     id="a-group-of-padding-only"),
        pytest.param({"data": [{"seed": 1, "b64_json": ""}]}, False, "data[0].b64_json", id="empty-base64"),
        pytest.param({"data": [{"seed": 1, "response_format": "png"}]}, False, "data[0]", id="neither-field"),
        pytest.param(SPEC_CONTAINER_EXAMPLE, True, "image.b64_json", id="container-spec-placeholder"),
    ],
)
def test_unusable_values_raise_invalid_response_naming_the_field(
    api: FakeFriendli, tmp_path: pathlib.Path, payload: Any, container: bool, field: str
) -> None:
    res = dt_result(api, payload, container=container)  # accepted as sent
    image = res.data[-1]
    target = tmp_path / "out.png"
    for use in (image.content, image.data_uri, lambda: image.save(target)):
        with pytest.raises(fi.InvalidResponseError) as info:
            use()
        assert str(info.value).startswith(field + (" " if field.endswith("]") else "")), str(info.value)
        assert "s3cr3t" not in str(info.value) and info.value.attempts == 0  # refused without an attempt
    assert list(tmp_path.iterdir()) == []  # save() wrote nothing
    for clone in (copy.copy(image), copy.deepcopy(image), pickle.loads(pickle.dumps(image))):
        with pytest.raises(fi.InvalidResponseError, match=re.escape(field)):  # copies still name the field
            clone.content()
    assert [s.method for s in api.requests] == ["POST"]  # nothing downloaded


@pytest.mark.parametrize(
    "payload, container, fragment",
    [
        pytest.param({"images": []}, False, "'data'", id="data-missing"),
        pytest.param({"data": None}, False, "'data'", id="data-null"),
        pytest.param({"data": {"url": "x"}}, False, "'data'", id="data-an-object"),
        pytest.param({"data": "x"}, False, "'data'", id="data-a-string"),
        pytest.param({"data": [png_item(), "x"]}, False, "data[1] is not an object", id="item-a-string"),
        pytest.param({"data": [[]]}, False, "data[0] is not an object", id="item-a-list"),
        pytest.param({"data": [png_item(seed="7")]}, False, "data[0].seed is not an integer", id="seed-a-string"),
        pytest.param({"data": [png_item(seed=True)]}, False, "data[0].seed", id="seed-a-bool"),
        pytest.param({"data": [png_item(seed=1.5)]}, False, "data[0].seed", id="seed-a-float"),
        pytest.param({"data": [png_item(url=5)]}, False, "data[0].url is not a string", id="url-a-number"),
        pytest.param({"data": [{"seed": 1, "b64_json": 5}]}, False, "data[0].b64_json", id="b64-a-number"),
        pytest.param({"data": [png_item(response_format=5)]}, False, "data[0].response_format",
                     id="response-format-a-number"),
        pytest.param([{"url": "x"}], False, "JSON object", id="top-level-array"),
        pytest.param(b"<html>Welcome to nginx</html>", False, "not UTF-8 JSON", id="not-json"),
        pytest.param(b"\xff\xfe{}", False, "not UTF-8 JSON", id="not-utf8"),
        pytest.param(b"[" * 100000, False, "JSON", id="deeply-nested"),
        pytest.param(None, False, "JSON object", id="json-null"),
        pytest.param({"other": 1}, True, "'image'", id="container-image-missing"),
        pytest.param({"image": 5}, True, "'image'", id="container-image-a-number"),
        pytest.param({"image": None}, True, "'image'", id="container-image-null"),
        pytest.param({"data": [png_item()]}, True, "'image'", id="container-given-dedicated-shape"),
    ],
)
def test_a_response_breaking_the_schema_is_refused_at_once(
    api: FakeFriendli, payload: Any, container: bool, fragment: str
) -> None:
    with pytest.raises(fi.InvalidResponseError) as info:
        dt_result(api, payload, container=container)
    assert fragment in str(info.value) and str(info.value).startswith("unexpected response")
    assert info.value.status_code == 200 and info.value.attempts == 1
    assert len(api.requests) == 1


@pytest.mark.parametrize("seed, expected", [(1.0, 1), (1e3, 1000), (-0.0, 0)], ids=["1.0", "1e3", "minus-0.0"])
def test_a_seed_written_as_a_whole_float_is_an_integer(api: FakeFriendli, seed: float, expected: int) -> None:
    """JSON Schema counts 1.0 as an integer: catches a schema-valid answer refused (the image already billed)."""
    got = dt_result(api, {"data": [png_item(seed=seed)]}).data[0].seed  # type: ignore[arg-type]
    assert got == expected and type(got) is int


def test_a_schema_error_keeps_the_request_id(api: FakeFriendli, client: fi.Client) -> None:
    api.queue(Reply(200, {"data": 1}, headers={"X-Request-Id": "rid-7"}))
    with pytest.raises(fi.InvalidResponseError) as info:
        client.generate(model="ep", prompt="p")
    assert info.value.request_id == "rid-7" and len(api.requests) == 1  # not retried


@pytest.mark.parametrize("content_type, ending", [("text/html", "not UTF-8 JSON (text/html)"),
                                                  ("", "not UTF-8 JSON")], ids=["named", "unnamed"])
def test_a_body_that_is_not_json_is_named_with_its_content_type_when_it_has_one(
    api: FakeFriendli, client: fi.Client, content_type: str, ending: str
) -> None:
    api.queue(Reply(200, body=b"<html>Welcome</html>", content_type=content_type))
    with pytest.raises(fi.InvalidResponseError) as info:
        client.generate(model="ep", prompt="p")
    assert str(info.value) == f"unexpected response: the body is {ending}"


@pytest.mark.parametrize("fields, field", [
    pytest.param({"b64_json": 5}, "image.b64_json", id="b64-an-int"),
    pytest.param({"b64_json": PNG_B64.encode()}, "image.b64_json", id="b64-bytes"),
    pytest.param({"url": 5}, "image.url", id="url-an-int"),
    pytest.param({"url": b"https://cdn.example/x.png?sig=s3cr3t"}, "image.url", id="url-bytes"),
    pytest.param({"url": ["https://cdn.example/x.png"]}, "image.url", id="url-a-list"),
])
def test_an_image_built_by_hand_with_wrong_types_fails_where_used(fields: Dict[str, Any], field: str) -> None:
    image = fi.GeneratedImage(1, "png", **fields)
    assert "s3cr3t" not in repr(image)
    for use in (image.content, image.data_uri):
        with pytest.raises(fi.InvalidResponseError, match=re.escape(field)):
            use()


# -- GeneratedImage values -------------------------------------------------------------------


def test_repr_of_a_generated_image_is_short_and_hides_url_secrets(api: FakeFriendli) -> None:
    big = base64.b64encode(make_png(extra=256 * 1024)).decode()
    secret_url = "https://user:pa55@cdn.example/img.png?X-Amz-Signature=s3cr3t#frag"
    res = dt_result(api, {"data": [{"b64_json": big, "seed": 5, "response_format": "png"},
                                   {"url": secret_url, "seed": 6, "response_format": "url"}]})
    text = repr(res)
    assert len(text) < 400
    assert f"seed=5, response_format='png', b64_json='{big[:32]}\u2026' ({len(big)} chars)" in text
    assert "https://cdn.example/img.png" in text
    for secret in ("s3cr3t", "Signature", "pa55", "user", "frag", "?"):
        assert secret not in text
    assert res.data[0].b64_json == big and res.data[1].url == secret_url  # the attributes are whole
    small = fi.GeneratedImage(1, "png", b64_json="QUJD")
    assert repr(small) == "GeneratedImage(seed=1, response_format='png', b64_json='QUJD')"


UNPARSABLE_URL = "http://[::1/x.png?sig=s3cr3t"  # what urllib.parse.urlsplit refuses (ValueError)


def test_repr_of_an_item_with_an_unparsable_url_works_and_hides_its_query(api: FakeFriendli) -> None:
    res = dt_result(api, {"data": [{"url": UNPARSABLE_URL, "seed": 1}]})  # accepted as sent
    text = repr(res)
    assert "seed=1" in text and "s3cr3t" not in text


def test_using_an_item_with_an_unparsable_url_names_the_field(api: FakeFriendli, tmp_path: pathlib.Path) -> None:
    image = dt_result(api, {"data": [{"url": UNPARSABLE_URL, "seed": 1}]}).data[0]
    for use in (image.content, image.data_uri, lambda: image.save(tmp_path / "x.png")):
        with pytest.raises(fi.InvalidResponseError, match=re.escape("data[0].url")) as info:
            use()
        assert "s3cr3t" not in str(info.value)
    assert list(tmp_path.iterdir()) == [] and len(api.requests) == 1


def test_results_survive_asdict_copy_deepcopy_and_pickle(api: FakeFriendli) -> None:
    res = dt_result(api, {"data": [{"seed": 1, "response_format": "url", "url": api.url + "/files/image.png?s=1"},
                                   png_item(seed=2)]})
    assert dataclasses.asdict(res) == {
        "data": [
            {"seed": 1, "response_format": "url", "url": api.url + "/files/image.png?s=1", "b64_json": None},
            {"seed": 2, "response_format": "png", "url": None, "b64_json": PNG_B64},
        ],
        "request_id": "rq",
    }
    for clone in (copy.copy(res), copy.deepcopy(res), pickle.loads(pickle.dumps(res))):
        assert clone == res and clone is not res
        assert clone.data[1].content() == PNG
    unpickled = pickle.loads(pickle.dumps(res))
    assert unpickled.data[0].content() == PNG  # downloads with default settings
    assert [s.method for s in api.requests] == ["POST", "GET"]
    image = pickle.loads(pickle.dumps(fi.GeneratedImage(1, "png", b64_json="!!")))
    with pytest.raises(fi.InvalidResponseError, match="b64_json"):  # still names its field
        image.content()


def test_data_uri_of_wrapped_base64_and_of_unknown_bytes() -> None:
    wrapped = base64.encodebytes(make_png(extra=300)).decode()  # a newline every 76 characters
    assert "\n" in wrapped
    assert fi.GeneratedImage(1, "png", b64_json=wrapped).data_uri() == (
        "data:image/png;base64," + base64.b64encode(make_png(extra=300)).decode())
    raw = base64.b64encode(b"\x00\x01\x02 raw pixels").decode()
    assert fi.GeneratedImage(None, "raw", b64_json=raw).data_uri() == "data:application/octet-stream;base64," + raw
    assert fi.GeneratedImage(None, "jpeg", b64_json=JPEG_B64).data_uri() == JPEG_URI


# -- save() and save_all() -------------------------------------------------------------------


def dt_image(data: bytes) -> fi.GeneratedImage:
    return fi.GeneratedImage(seed=1, response_format="png", b64_json=base64.b64encode(data).decode())


def dt_listing(directory: pathlib.Path) -> List[str]:
    return sorted(p.name for p in directory.iterdir())


@pytest.mark.parametrize(
    "data, suffix",
    [(PNG, ".png"), (JPEG, ".jpg"), (GIF, ".gif"), (WEBP, ".webp"), (b"II*\x00" + bytes(8), ".tiff"),
     (b"BM" + bytes(20), ".bmp"), (b"\x00\x01 raw pixels", ".bin")],
    ids=["png", "jpeg", "gif", "webp", "tiff", "bmp", "unknown"],
)
def test_save_without_a_suffix_takes_it_from_the_bytes(tmp_path: pathlib.Path, data: bytes, suffix: str) -> None:
    written = dt_image(data).save(tmp_path / "car")
    assert written == tmp_path / ("car" + suffix)
    assert written.read_bytes() == data
    assert dt_listing(tmp_path) == ["car" + suffix]


@pytest.mark.parametrize("name", ["named.jpeg", "photo.PNG", "image.bin", "archive.tar.gz"])
def test_save_keeps_a_suffix_given_in_the_path(tmp_path: pathlib.Path, name: str) -> None:
    written = dt_image(PNG).save(str(tmp_path / name))
    assert written == tmp_path / name and isinstance(written, pathlib.Path)
    assert written.read_bytes() == PNG and dt_listing(tmp_path) == [name]


@pytest.mark.parametrize(
    "name, size",
    [
        pytest.param("a" * 246 + ".png", 250, id="250-bytes-with-suffix"),
        pytest.param("b" * 246, 250, id="250-bytes-once-the-suffix-is-added"),
        pytest.param("\u00e9" * 123 + ".png", 250, id="250-bytes-of-utf8"),
        pytest.param("c" * 251 + ".png", 255, id="255-bytes-the-longest-legal"),
    ],
)
def test_save_to_a_long_legal_name(tmp_path: pathlib.Path, name: str, size: int) -> None:
    written = dt_image(PNG).save(tmp_path / name)
    assert len(written.name.encode()) == size and written.read_bytes() == PNG
    assert dt_listing(tmp_path) == [written.name]


@pytest.mark.parametrize("name", ["d" * 252 + ".png", "e" * 253], ids=["256-bytes", "256-once-the-suffix-is-added"])
def test_save_to_a_name_one_byte_too_long_is_an_image_save_error(tmp_path: pathlib.Path, name: str) -> None:
    with pytest.raises(fi.ImageSaveError) as info:
        dt_image(PNG).save(tmp_path / name)
    assert info.value.errno == errno.ENAMETOOLONG
    assert dt_listing(tmp_path) == []  # no temporary file left behind


def test_save_into_a_missing_directory_is_an_image_save_error(tmp_path: pathlib.Path) -> None:
    target = tmp_path / "missing" / "x.png"
    with pytest.raises(fi.ImageSaveError) as info:
        dt_image(PNG).save(target)
    err = info.value
    assert isinstance(err, OSError) and err.errno == errno.ENOENT and err.filename == str(target)
    assert dt_listing(tmp_path) == []


def test_save_onto_a_directory_is_an_image_save_error_and_leaves_no_temporary_file(tmp_path: pathlib.Path) -> None:
    (tmp_path / "taken.png").mkdir()
    with pytest.raises(fi.ImageSaveError) as info:
        dt_image(PNG).save(tmp_path / "taken.png")
    err = info.value
    assert isinstance(err, OSError) and err.errno in (errno.EISDIR, errno.EEXIST, errno.ENOTEMPTY, errno.EACCES)
    assert dt_listing(tmp_path) == ["taken.png"]  # no .part left behind
    assert list((tmp_path / "taken.png").iterdir()) == []


def test_save_with_overwrite_false_refuses_an_existing_file_and_true_replaces_it(tmp_path: pathlib.Path) -> None:
    target = tmp_path / "x.png"
    target.write_bytes(b"old")
    with pytest.raises(fi.ImageSaveError) as info:
        dt_image(PNG).save(target, overwrite=False)
    assert info.value.errno == errno.EEXIST and info.value.filename == str(target)
    assert target.read_bytes() == b"old" and dt_listing(tmp_path) == ["x.png"]
    assert dt_image(PNG).save(target, overwrite=True) == target and target.read_bytes() == PNG
    assert dt_image(JPEG).save(target) == target and target.read_bytes() == JPEG  # True is the default
    fresh = dt_image(PNG).save(tmp_path / "new.png", overwrite=False)  # False writes a new file
    assert fresh.read_bytes() == PNG
    assert dt_listing(tmp_path) == ["new.png", "x.png"]


@pytest.mark.skipif(sys.platform == "win32", reason="an open file cannot be replaced on Windows")
def test_save_replaces_atomically_and_a_reader_of_the_old_file_keeps_the_old_content(tmp_path: pathlib.Path) -> None:
    target = tmp_path / "x.png"
    old = make_png(extra=100_000)
    target.write_bytes(old)
    with open(target, "rb") as reader:
        head = reader.read(10)
        dt_image(PNG).save(target)
        assert head + reader.read() == old
    assert target.read_bytes() == PNG
    assert dt_listing(tmp_path) == ["x.png"]


@pytest.mark.skipif(sys.platform == "win32", reason="an open file cannot be replaced on Windows")
def test_save_never_shows_a_partial_file(tmp_path: pathlib.Path) -> None:
    target = tmp_path / "x.png"
    first, second = make_png(extra=400_000), make_png(3, 3, extra=600_000)
    target.write_bytes(first)
    images = [dt_image(first), dt_image(second)]
    stop = threading.Event()
    seen: List[bytes] = []

    def read_while_saving() -> None:
        while not stop.is_set():
            with open(target, "rb") as fh:
                data = fh.read()
            if data not in (first, second):
                seen.append(data)

    reader = threading.Thread(target=read_while_saving, daemon=True)
    reader.start()
    try:
        for i in range(20):
            images[i % 2].save(target)
    finally:
        stop.set()
        reader.join(5)
    assert not reader.is_alive() and seen == []
    assert dt_listing(tmp_path) == ["x.png"]


def test_save_all_creates_the_directory_and_names_each_image(tmp_path: pathlib.Path) -> None:
    res = fi.ImageGenerationResult([dt_image(PNG), dt_image(JPEG), dt_image(GIF)], request_id="r")
    folder = tmp_path / "out" / "nested"
    paths = res.save_all(folder)
    assert paths == [folder / "image-0.png", folder / "image-1.jpg", folder / "image-2.gif"]
    assert [p.read_bytes() for p in paths] == [PNG, JPEG, GIF]
    again = res.save_all(str(folder), prefix="car")  # an existing directory is fine
    assert [p.name for p in again] == ["car-0.png", "car-1.jpg", "car-2.gif"]
    assert dt_listing(folder) == sorted(p.name for p in paths + again)  # no temporary files


@pytest.mark.parametrize("prefix", ["", "a/b", "../escape", "a\\b", "/abs", os.sep + "x"])
def test_save_all_refuses_a_prefix_with_a_directory_part(tmp_path: pathlib.Path, prefix: str) -> None:
    res = fi.ImageGenerationResult([dt_image(PNG)])
    with pytest.raises(fi.FriendliValidationError, match="prefix"):
        res.save_all(tmp_path / "d", prefix=prefix)
    assert dt_listing(tmp_path) == []


def test_save_all_when_the_directory_cannot_be_made_is_an_image_save_error(tmp_path: pathlib.Path) -> None:
    (tmp_path / "file").write_bytes(b"x")
    res = fi.ImageGenerationResult([dt_image(PNG)])
    for folder in (tmp_path / "file" / "sub", tmp_path / "file"):
        with pytest.raises(fi.ImageSaveError) as info:
            res.save_all(folder)
        assert isinstance(info.value, OSError) and info.value.errno in (errno.ENOTDIR, errno.EEXIST)
        assert info.value.filename == str(folder)
        assert str(info.value) == f"cannot create the directory {str(folder)!r}: {os.strerror(info.value.errno)}"
    assert dt_listing(tmp_path) == ["file"]


def test_save_all_into_an_empty_directory_name_is_the_current_directory(
    tmp_path: pathlib.Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    assert fi.ImageGenerationResult([dt_image(PNG)]).save_all("") == [pathlib.Path("image-0.png")]
    assert (tmp_path / "image-0.png").read_bytes() == PNG


@pytest.mark.parametrize("path, problem", [
    pytest.param(5, "must be a file path", id="an-int"),
    pytest.param(None, "must be a file path", id="none"),
    pytest.param(b"x.png", "must be a file path", id="bytes"),
    pytest.param("", "must be a file path", id="empty"),
    pytest.param("x\0.png", "must be a file path", id="nul"),
    pytest.param("/", "must name a file", id="root"),
    pytest.param("..", "must name a file", id="parent"),
    pytest.param("out/", "must name a file", id="trailing-slash"),
    pytest.param("out/.", "must name a file", id="dot-at-the-end"),  # pathlib reads it as "out": out.png
    pytest.param(".", "must name a file", id="current-directory"),
    pytest.param("\ud800.png", "must be a file path", id="lone-surrogate"),
])
def test_save_and_save_all_refuse_what_is_not_a_path(api: FakeFriendli, tmp_path: pathlib.Path,
                                                     monkeypatch: pytest.MonkeyPatch, path: Any, problem: str) -> None:
    monkeypatch.chdir(tmp_path)
    for image in (dt_image(PNG), fi.GeneratedImage(1, "url", url=api.url + "/image.png")):
        with pytest.raises(fi.FriendliValidationError, match=f"path {problem}"):
            image.save(path)
    assert api.requests == []  # refused before downloading
    if problem != "must name a file" and path != "":  # a directory may be "/" or "..", and "" is the current one
        with pytest.raises(fi.FriendliValidationError, match=f"directory {problem}"):
            fi.ImageGenerationResult([dt_image(PNG)]).save_all(path)
    assert dt_listing(tmp_path) == []


@pytest.mark.parametrize("overwrite", ["False", 0, None])
def test_save_overwrite_must_be_a_bool(tmp_path: pathlib.Path, overwrite: Any) -> None:
    """Catches overwrite="False" (truthy) silently replacing an existing file."""
    (tmp_path / "x.png").write_bytes(b"old")
    with pytest.raises(fi.FriendliValidationError, match="overwrite must be a bool"):
        dt_image(PNG).save(tmp_path / "x.png", overwrite=overwrite)
    assert (tmp_path / "x.png").read_bytes() == b"old" and dt_listing(tmp_path) == ["x.png"]


# -- typing ----------------------------------------------------------------------------------


def dt_public_callables() -> List[Tuple[str, Any]]:
    found: List[Tuple[str, Any]] = []
    for name in fi.__all__:
        obj = getattr(fi, name)
        if inspect.isfunction(obj):
            found.append((name, obj))
        elif inspect.isclass(obj):
            found.append((name, obj))
            for klass in obj.__mro__:
                if klass.__module__ != fi.__name__:
                    continue
                for attr, member in vars(klass).items():
                    if attr.startswith("_") and not (attr.startswith("__") and attr.endswith("__")):
                        continue  # private; special methods (__init__, __enter__, ...) are public
                    if isinstance(member, (classmethod, staticmethod)):
                        member = member.__func__
                    elif isinstance(member, property):
                        member = member.fget
                    if inspect.isfunction(member):
                        found.append((f"{name}.{attr}", member))
    return found


def test_type_hints_resolve_on_every_public_class_method_and_function() -> None:
    checked = dt_public_callables()
    names = {name for name, _ in checked}
    assert {"Client.generate", "Client.edit", "GeneratedImage.save", "generate", "main",
            "UnprocessableEntityError.errors", "ImageGenerationResult.save_all", "Client.__init__",
            "Client.__enter__", "AsyncClient.__aenter__"} <= names
    failures = []
    for name, obj in checked:
        try:
            typing.get_type_hints(obj)
        except Exception as exc:  # noqa: BLE001 - every failure is listed
            failures.append(f"{name}: {type(exc).__name__}: {exc}")
    assert failures == []
    hints = typing.get_type_hints(fi.GeneratedImage.save)
    assert hints["return"] is pathlib.Path and hints["overwrite"] is bool


@pytest.mark.parametrize("make, name", [
    (lambda client: client.generate(model="ep", prompt="p", num_inference_steps=10**400), "num_inference_steps"),
    (lambda client: client.generate(model="ep", prompt="p", num_inference_steps=-(10**400)), "num_inference_steps"),
    (lambda client: fi.RetryConfig("backoff", max_retries=-(10**400)), "max_retries"),
    (lambda client: fi.Client(TOKEN, max_response_bytes=-(10**400)), "max_response_bytes"),
], ids=["steps-huge", "steps-huge-negative", "max-retries", "max-response-bytes"])
def test_an_int_too_large_for_a_float_is_a_validation_error(
    api: FakeFriendli, client: fi.Client, make: Callable[[fi.Client], Any], name: str
) -> None:
    with pytest.raises(fi.FriendliValidationError, match=name):
        make(client)
    assert api.requests == []


def test_an_error_body_with_line_breaks_and_escapes_makes_a_one_line_message(
    api: FakeFriendli, client: fi.Client
) -> None:
    api.queue(Reply(500, body=b"line one\r\nline two\x1b[31m red", content_type="text/plain"))
    with pytest.raises(fi.InternalServerError) as info:
        client.generate(model="ep", prompt="p", retries=fi.RetryConfig("none"))
    assert "\n" not in str(info.value) and "\x1b" not in str(info.value) and "line one line two" in str(info.value)
    assert info.value.body == "line one\r\nline two\x1b[31m red"  # the body itself is kept as it came


def test_save_without_overwrite_never_replaces_a_file(tmp_path: pathlib.Path) -> None:
    image = fi.GeneratedImage(1, "png", b64_json=PNG_B64)
    target = tmp_path / "x.png"
    assert image.save(target, overwrite=False) == target and target.read_bytes() == PNG
    with pytest.raises(fi.ImageSaveError) as info:
        image.save(target, overwrite=False)
    assert info.value.errno == 17 and target.read_bytes() == PNG and sorted(os.listdir(tmp_path)) == ["x.png"]


# ===========================================================================
# Retry policy
# ===========================================================================


def rt_backoff(initial_ms: int = 500, max_ms: int = 60000, exponent: float = 1.5, budget_ms: int = 3600000,
               **options: Any) -> fi.RetryConfig:
    """A backoff policy without jitter (sleeps exact), with RetryConfig ``options``."""
    return fi.RetryConfig("backoff", fi.BackoffStrategy(initial_ms, max_ms, exponent, budget_ms, jitter_ms=0),
                          **options)


RT_NO_RETRIES = fi.RetryConfig("none")


def rt_client(api: FakeFriendli, fake_sleep: Optional[FakeSleep] = None, **options: Any) -> fi.Client:
    """A client of the fake API; with ``fake_sleep``, its sleeps and clock are fake."""
    if fake_sleep is not None:
        options.setdefault("sleep", fake_sleep)
        options.setdefault("clock", fake_sleep.clock)
    options.setdefault("timeout", 5)
    return fi.Client(TOKEN, base_url=api.url, **options)


def rt_posts(api: FakeFriendli) -> List[Seen]:
    return [seen for seen in api.requests if seen.method == "POST"]


def rt_gets(api: FakeFriendli) -> List[Seen]:
    return [seen for seen in api.requests if seen.method == "GET"]


def rt_error(status: int, **headers: str) -> Reply:
    return Reply(status, {"detail": f"status {status}"}, headers=headers)


def rt_url_item(url: str) -> Reply:
    """A generation answer whose one image is to be downloaded from ``url``."""
    return ok_json({"data": [{"seed": 1, "response_format": "url", "url": url}]})


class RtResetServer:
    """Accepts each connection and aborts it at once with a TCP RST, reading nothing.

    The listening socket's receive buffer is tiny (accepted sockets inherit it), so a
    client sending a body of several MB is still sending when the RST arrives.
    """

    def __init__(self) -> None:
        self.sock = socket.socket()
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(16)
        self.sock.settimeout(0.05)
        self.accepted = 0
        self.stopping = False
        self.thread = threading.Thread(target=self._serve, daemon=True)
        self.thread.start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.sock.getsockname()[1]}"

    def _serve(self) -> None:
        while not self.stopping:
            try:
                conn, _ = self.sock.accept()
            except socket.timeout:
                continue
            except OSError:
                return
            conn.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            self.accepted += 1
            conn.close()

    def close(self) -> None:
        self.stopping = True
        self.thread.join(2)
        self.sock.close()


rt_reset_server = pytest.fixture(scope="module", name="rt_reset_server")(served(RtResetServer))


@pytest.fixture
def rt_rst(rt_reset_server: RtResetServer) -> RtResetServer:
    rt_reset_server.accepted = 0
    return rt_reset_server


@pytest.fixture(scope="module")
def rt_refused_url() -> Iterator[str]:
    """A port bound but not listening: connecting is refused, and no one else can take the port."""
    with socket.socket() as bound:
        bound.bind(("127.0.0.1", 0))
        yield f"http://127.0.0.1:{bound.getsockname()[1]}"


rt_other_server = pytest.fixture(scope="module", name="rt_other_server")(served(FakeFriendli))


@pytest.fixture
def rt_other(rt_other_server: FakeFriendli) -> FakeFriendli:
    """A second server (another port, reached as ``localhost``): where redirects point."""
    rt_other_server.reset()
    return rt_other_server


def rt_host_url(server: FakeFriendli) -> str:
    return f"http://localhost:{server.server.server_port}"


def rt_write(handler: Handler, data: bytes) -> None:
    handler.wfile.write(data)
    handler.wfile.flush()


RT_HUGE_PROMPT = "x" * (16 * 1024 * 1024)
"""Far more than the socket buffers on both sides hold: sending it is still going on when a RST arrives."""


# -- which statuses are retried ------------------------------------------------------------------


@pytest.mark.parametrize("status", [429, 500, 502, 503, 504])
def test_retryable_statuses_are_retried(
    api: FakeFriendli, client: fi.Client, fake_sleep: FakeSleep, status: int
) -> None:
    """Catches a retryable status answered with an error at once."""
    api.queue(rt_error(status))
    res = client.generate(model="ep", prompt="p", response_format="png", retries=rt_backoff())
    assert res.data[0].content() == PNG
    assert len(rt_posts(api)) == 2 and fake_sleep.calls == [0.5]


@pytest.mark.parametrize(
    "status, cls",
    [
        (400, fi.BadRequestError), (401, fi.AuthenticationError), (403, fi.PermissionDeniedError),
        (404, fi.NotFoundError), (407, fi.APIStatusError), (409, fi.APIStatusError),
        (422, fi.UnprocessableEntityError), (501, fi.InternalServerError),
    ],
    ids=lambda v: str(v) if isinstance(v, int) else v.__name__,
)
def test_other_statuses_are_not_retried(
    api: FakeFriendli, client: fi.Client, fake_sleep: FakeSleep, status: int, cls: type
) -> None:
    """Catches a request that may bill being sent again after a final answer (501 is a 5xx but final)."""
    api.queue(rt_error(status))
    with pytest.raises(fi.APIStatusError) as info:
        client.generate(model="ep", prompt="p", retries=rt_backoff())
    assert type(info.value) is cls and info.value.status_code == status
    assert info.value.attempts == 1 and len(api.requests) == 1 and fake_sleep.calls == []


@pytest.mark.parametrize("status", [429, 503])
def test_retryable_statuses_end_with_their_error_when_retries_run_out(
    api: FakeFriendli, client: fi.Client, fake_sleep: FakeSleep, status: int
) -> None:
    """Catches the last answer's error being lost (or replaced by a generic one) once retries end."""
    api.queue(*[rt_error(status, **{"X-Request-Id": f"r{n}"}) for n in range(3)])
    with pytest.raises(fi.APIStatusError) as info:
        client.generate(model="ep", prompt="p", retries=rt_backoff(max_retries=1))
    err = info.value
    assert type(err) is (fi.RateLimitError if status == 429 else fi.InternalServerError)
    assert err.status_code == status and err.attempts == 2 and "(after 2 attempts)" in str(err)
    assert err.request_id == "r1" and len(api.requests) == 2


@pytest.mark.parametrize(
    "codes, status, retried",
    [
        ([409], 409, True),  # an int is matched
        ([409], 503, False),  # the override replaces the defaults
        (["5XX"], 501, True),
        (["5XX"], 429, False),
        (["5xx"], 599, True),  # the pattern's case does not matter
        (["4X9"], 409, True),  # X is one digit, the others must match
        (["4X9"], 429, True),
        (["4X9"], 404, False),
        (["4X9"], 419, True),
        ([418, "50X"], 418, True),
        ([418, "50X"], 510, False),
        (["4XX"], 407, False),  # 407 is never retried, whatever the pattern
        ([407], 407, False),
        (["4XX", "5XX"], 407, False),
    ],
    ids=lambda v: ",".join(map(str, v)) if isinstance(v, list) else str(v),
)
def test_status_codes_override(
    api: FakeFriendli, client: fi.Client, fake_sleep: FakeSleep, codes: List[Any], status: int, retried: bool
) -> None:
    """Catches patterns matched as prefixes or substrings, ignored ints, defaults kept, or a retried 407."""
    api.queue(rt_error(status))
    retries = rt_backoff(status_codes_override=codes)
    if retried:
        client.generate(model="ep", prompt="p", retries=retries)
        assert len(api.requests) == 2 and fake_sleep.calls == [0.5]
    else:
        with pytest.raises(fi.APIStatusError) as info:
            client.generate(model="ep", prompt="p", retries=retries)
        assert info.value.status_code == status and info.value.attempts == 1
        assert len(api.requests) == 1 and fake_sleep.calls == []


def test_retries_status_matches_digit_by_digit() -> None:
    config = fi.RetryConfig("backoff", status_codes_override=["50X", 429, "4xx"])
    assert [config.retries_status(s) for s in (500, 503, 510, 429, 404, 407, 302)] == [
        True, True, False, True, True, False, False]
    assert [fi.DEFAULT_RETRY_CONFIG.retries_status(s) for s in (429, 500, 502, 503, 504, 501, 407, 408)] == [
        True, True, True, True, True, False, False, False]


@pytest.mark.parametrize(
    "make",
    [
        lambda: fi.RetryConfig("backoff", status_codes_override=503),
        lambda: fi.RetryConfig("backoff", status_codes_override="5XX"),
        lambda: fi.RetryConfig("backoff", status_codes_override=[True]),
        lambda: fi.RetryConfig("backoff", status_codes_override=["5YY"]),
        lambda: fi.RetryConfig("backoff", status_codes_override=["XXX"]),
        lambda: fi.RetryConfig("backoff", status_codes_override=[600]),
        lambda: fi.RetryConfig("exponential"),
        lambda: fi.RetryConfig("backoff", backoff={"initial_interval": 1}),
        lambda: fi.RetryConfig("backoff", retry_connection_errors="yes"),
        lambda: fi.RetryConfig("backoff", retry_read_errors=1),
        lambda: fi.RetryConfig("backoff", max_retries=-1),
        lambda: fi.RetryConfig("backoff", max_retries=True),
        lambda: fi.BackoffStrategy(500, 1000, 1.5, 3600000, jitter_ms=-500),
        lambda: fi.BackoffStrategy(500, 1000, 1.5, 0),
        lambda: fi.BackoffStrategy(-1, 1000, 1.5, 1000),
        lambda: fi.BackoffStrategy(500, 1000, float("nan"), 1000),
        lambda: fi.BackoffStrategy(500, float("inf"), 1.5, 1000),
    ],
)
def test_retry_settings_are_validated_when_built(make: Callable[[], Any]) -> None:
    """Catches a bad setting accepted, to fail (or loop) only during a call."""
    with pytest.raises(fi.FriendliValidationError):
        make()


# -- backoff ---------------------------------------------------------------------------------------


def test_backoff_sleeps_grow_exponentially_without_jitter(
    api: FakeFriendli, client: fi.Client, fake_sleep: FakeSleep
) -> None:
    """Catches a wrong exponent, an off-by-one retry index, or jitter added when jitter_ms=0."""
    api.queue(*[rt_error(503) for _ in range(4)])
    client.generate(model="ep", prompt="p", retries=rt_backoff())
    assert fake_sleep.calls == [0.5, 0.75, 1.125, 1.6875]


def test_backoff_sleeps_are_capped_at_max_interval(
    api: FakeFriendli, client: fi.Client, fake_sleep: FakeSleep
) -> None:
    """Catches max_interval ignored (4 s, 8 s ... instead of 1 s)."""
    api.queue(*[rt_error(503) for _ in range(5)])
    client.generate(model="ep", prompt="p", retries=rt_backoff(500, 1000, 2))
    assert fake_sleep.calls == [0.5, 1.0, 1.0, 1.0, 1.0]


@pytest.mark.parametrize(
    "backoff, low, high",
    [
        (fi.BackoffStrategy(500, 60000, 1.5, 300000), 0.5, 1.5),  # default jitter: up to 1 s
        (fi.BackoffStrategy(500, 60000, 1.5, 300000, jitter_ms=100), 0.5, 0.6),
        (fi.BackoffStrategy(500, 800, 1.5, 300000), 0.5, 0.8),  # the jitter is capped too
    ],
    ids=["default-1s", "jitter-100ms", "capped"],
)
def test_backoff_jitter(backoff: fi.BackoffStrategy, low: float, high: float) -> None:
    """Catches jitter missing, larger than asked, or added after the cap."""
    samples = [backoff.delay(0) for _ in range(300)]
    assert all(low <= s <= high for s in samples)
    assert max(samples) - min(samples) > (high - low) * 0.5  # really spread over the range


def test_default_policy_sleeps_include_jitter(api: FakeFriendli, client: fi.Client, fake_sleep: FakeSleep) -> None:
    """Catches the default policy's sleeps leaving the [backoff, backoff + 1 s] window."""
    api.queue(*[rt_error(503) for _ in range(3)])
    client.generate(model="ep", prompt="p")
    assert len(fake_sleep.calls) == 3
    for n, slept in enumerate(fake_sleep.calls):
        assert 0.5 * 1.5 ** n <= slept <= 0.5 * 1.5 ** n + 1.0


@pytest.mark.parametrize("exponent", [1.5, 2, 10])
@pytest.mark.parametrize("retry_index", [5000, 2 ** 31, 10 ** 9])
def test_backoff_delay_of_a_huge_retry_index_is_the_cap(exponent: float, retry_index: int) -> None:
    """Catches an OverflowError (or inf/nan) from exponent ** retry_index."""
    assert fi.BackoffStrategy(500, 1000, exponent, 3600000, jitter_ms=0).delay(retry_index) == 1.0
    assert 0 < fi.BackoffStrategy(500, 1000, exponent, 3600000).delay(retry_index) <= 1.0
    assert fi.BackoffStrategy(500, 1000, exponent, 3600000, jitter_ms=0).delay(0) == 0.5


# -- how many attempts ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "retries, attempts",
    [
        (fi.RetryConfig("none"), 1),
        (fi.RetryConfig("none", fi.BackoffStrategy(10, 10, 1, 100000, jitter_ms=0)), 1),
        (rt_backoff(max_retries=0), 1),
        (rt_backoff(max_retries=1), 2),
        (rt_backoff(max_retries=2), 3),
    ],
    ids=["none", "none-with-backoff", "max-retries-0", "max-retries-1", "max-retries-2"],
)
def test_number_of_attempts(
    api: FakeFriendli, client: fi.Client, fake_sleep: FakeSleep, retries: fi.RetryConfig, attempts: int
) -> None:
    """Catches strategy 'none' retrying when a backoff is given, or max_retries off by one."""
    api.queue(*[rt_error(503) for _ in range(10)])
    with pytest.raises(fi.InternalServerError) as info:
        client.generate(model="ep", prompt="p", retries=retries)
    assert info.value.attempts == attempts and len(api.requests) == attempts
    assert len(fake_sleep.calls) == attempts - 1
    assert ("(after" in str(info.value)) is (attempts > 1)


@pytest.mark.parametrize(
    "client_retries, call_retries, requests",
    [
        (RT_NO_RETRIES, None, 1),  # the client's policy
        (RT_NO_RETRIES, rt_backoff(), 2),  # the call's policy wins
        (rt_backoff(), RT_NO_RETRIES, 1),
        (rt_backoff(), None, 2),
    ],
    ids=["client-none", "call-backoff-over-client-none", "call-none-over-client-backoff", "client-backoff"],
)
def test_retries_per_call_override_the_clients(
    api: FakeFriendli, fake_sleep: FakeSleep, client_retries: fi.RetryConfig,
    call_retries: Optional[fi.RetryConfig], requests: int,
) -> None:
    """Catches a per-call ``retries=`` ignored, or the client's policy ignored."""
    client = rt_client(api, fake_sleep, retries=client_retries)
    api.queue(rt_error(503))
    if requests == 2:
        client.generate(model="ep", prompt="p", retries=call_retries)
    else:
        with pytest.raises(fi.InternalServerError):
            client.generate(model="ep", prompt="p", retries=call_retries)
    assert len(api.requests) == requests


# -- failures before the request was sent -----------------------------------------------------------


@pytest.mark.parametrize("retry_connection_errors", [True, False])
def test_connection_refused_is_retried_only_with_retry_connection_errors(
    rt_refused_url: str, fake_sleep: FakeSleep, retry_connection_errors: bool
) -> None:
    """Catches a refused connection marked as sent, or retry_connection_errors ignored."""
    client = fi.Client(TOKEN, base_url=rt_refused_url, sleep=fake_sleep, clock=fake_sleep.clock)
    retries = rt_backoff(max_retries=2, retry_connection_errors=retry_connection_errors)
    with pytest.raises(fi.APIConnectionError) as info:
        client.generate(model="ep", prompt="p", retries=retries)
    err = info.value
    assert type(err) is fi.APIConnectionError and err.sent is False
    assert err.attempts == (3 if retry_connection_errors else 1)
    assert fake_sleep.calls == ([0.5, 0.75] if retry_connection_errors else [])


@pytest.mark.parametrize("retry_connection_errors", [True, False])
def test_a_reset_while_still_sending_is_a_failure_before_sending(
    rt_rst: RtResetServer, fake_sleep: FakeSleep, retry_connection_errors: bool
) -> None:
    """The server aborts the connection without reading while a 16 MB body is being sent.

    Catches a failure during sending reported as ``sent=True`` (then never retried, though
    nothing can have been billed), or retry_connection_errors ignored for it.
    """
    client = fi.Client(TOKEN, base_url=rt_rst.url, sleep=fake_sleep, clock=fake_sleep.clock)
    retries = rt_backoff(max_retries=2, retry_connection_errors=retry_connection_errors)
    with pytest.raises(fi.APIConnectionError) as info:
        client.generate(model="ep", prompt=RT_HUGE_PROMPT, retries=retries)
    err = info.value
    assert type(err) is fi.APIConnectionError and err.sent is False
    expected = 3 if retry_connection_errors else 1
    assert err.attempts == expected and rt_rst.accepted == expected
    assert len(fake_sleep.calls) == expected - 1
    assert RT_HUGE_PROMPT[:100] not in str(err)


@pytest.mark.parametrize("status, error", [(413, fi.APIStatusError), (401, fi.AuthenticationError)])
def test_an_answer_sent_before_the_body_was_read_is_the_answer(fake_sleep: FakeSleep, status: int, error: type) -> None:
    """A gateway refuses a 16 MB request after its headers (413, or a 401) and closes without reading the body, so
    sending fails.  Catches that answer lost: the call retried as "not sent", uploading the body each time; and the
    failed send kept, with the frames that sent the headers, after the call.  (Over TLS the answer is read when
    the TLS layer still has it after the failed send, not always: not tested here.)"""
    listener = socket.create_server(("127.0.0.1", 0))
    accepted: List[int] = []

    def serve() -> None:
        with listener:
            conn, _ = listener.accept()
            accepted.append(1)
            with conn:
                head = b""
                while b"\r\n\r\n" not in head:
                    head += conn.recv(65536)
                body = b'{"detail": "request entity too large"}'
                conn.sendall(b"HTTP/1.1 %d Refused\r\nContent-Type: application/json\r\nContent-Length: %d\r\n"
                             b"Connection: close\r\n\r\n%s" % (status, len(body), body))

    server = threading.Thread(target=serve, daemon=True)
    server.start()
    client = fi.Client(TOKEN, base_url=f"http://127.0.0.1:{listener.getsockname()[1]}", sleep=fake_sleep,
                       clock=fake_sleep.clock)
    gc.collect()
    gc.disable()  # what survives the call must not be freed by a collection before it is looked for
    try:
        with pytest.raises(error) as info:
            client.generate(model="ep", prompt=RT_HUGE_PROMPT, retries=rt_backoff(max_retries=2))
        kept = [o for o in gc.get_objects() if isinstance(o, types.FrameType) and o.f_code.co_name == "_send_output"]
    finally:
        gc.enable()
    assert info.value.status_code == status and "request entity too large" in str(info.value)
    assert accepted == [1] and fake_sleep.calls == [] and info.value.attempts == 1
    assert kept == []  # http.client's frame holding the request's headers, token included
    server.join(5)


# -- failures after the request was sent ------------------------------------------------------------

RT_AFTER_SENDING: List[Any] = [
    pytest.param(reset_connection, fi.APIConnectionError, id="rst-before-any-status"),
    pytest.param(close_without_answer, fi.APIConnectionError, id="closed-before-any-status"),
    pytest.param(rst_mid_headers, fi.APIConnectionError, id="rst-mid-headers"),
    pytest.param(rst_mid_body, fi.APIConnectionError, id="rst-mid-body"),
    pytest.param(short_body, fi.APIConnectionError, id="body-shorter-than-content-length"),
    pytest.param(chunked_cut_off, fi.APIConnectionError, id="chunked-cut-off"),
    pytest.param(never_answer, fi.APITimeoutError, id="never-answers"),
]


@pytest.mark.parametrize("fault, cls", RT_AFTER_SENDING)
def test_a_failure_after_sending_is_not_retried_by_default(
    api: FakeFriendli, fake_sleep: FakeSleep, fault: Responder, cls: type
) -> None:
    """Catches a generation sent twice (billed twice) after the server may have acted on it."""
    client = rt_client(api, fake_sleep, timeout=0.2)
    api.queue(fault)
    with pytest.raises(fi.APIConnectionError) as info:
        client.generate(model="ep", prompt="p")  # the default policy
    err = info.value
    assert type(err) is cls and err.sent is True and err.attempts == 1
    assert len(api.requests) == 1 and fake_sleep.calls == []


@pytest.mark.parametrize("fault, cls", RT_AFTER_SENDING)
def test_a_failure_after_sending_is_retried_with_retry_read_errors(
    api: FakeFriendli, fake_sleep: FakeSleep, fault: Responder, cls: type
) -> None:
    """Catches retry_read_errors=True ignored."""
    client = rt_client(api, fake_sleep, timeout=0.2)
    api.queue(fault)
    res = client.generate(model="ep", prompt="p", response_format="png", retries=rt_backoff(retry_read_errors=True))
    assert res.data[0].content() == PNG
    assert len(api.requests) == 2 and fake_sleep.calls == [0.5]


@pytest.mark.parametrize(
    "connection_errors, read_errors",
    [(True, False), (False, True), (True, True), (False, False)],
    ids=["connection-only", "read-only", "both", "neither"],
)
def test_connection_and_read_error_options_are_independent(
    api: FakeFriendli, rt_refused_url: str, fake_sleep: FakeSleep, connection_errors: bool, read_errors: bool
) -> None:
    """Catches one option switching the other's kind of failure on or off."""
    retries = rt_backoff(max_retries=1, retry_connection_errors=connection_errors, retry_read_errors=read_errors)
    refused = fi.Client(TOKEN, base_url=rt_refused_url, sleep=fake_sleep, clock=fake_sleep.clock)
    with pytest.raises(fi.APIConnectionError) as info:
        refused.generate(model="ep", prompt="p", retries=retries)
    assert info.value.attempts == (2 if connection_errors else 1)
    api.queue(reset_connection)
    client = rt_client(api, fake_sleep)
    if read_errors:
        client.generate(model="ep", prompt="p", retries=retries)
    else:
        with pytest.raises(fi.APIConnectionError) as info:
            client.generate(model="ep", prompt="p", retries=retries)
        assert info.value.sent is True and info.value.attempts == 1
    assert len(api.requests) == (2 if read_errors else 1)


@pytest.mark.parametrize("fault, cls", RT_AFTER_SENDING[:-1])
def test_a_download_is_retried_after_a_failure_after_sending(
    api: FakeFriendli, client: fi.Client, fake_sleep: FakeSleep, fault: Responder, cls: type
) -> None:
    """Catches an image download (an idempotent GET, nothing billed) left failed by the no-double-billing rule."""
    api.queue(rt_url_item(api.url + "/files/image.png?sig=abc"), fault)
    item = client.generate(model="ep", prompt="p").data[0]
    assert item.content() == PNG
    assert [s.method for s in api.requests] == ["POST", "GET", "GET"]
    assert len(fake_sleep.calls) == 1


def test_a_download_is_retried_after_a_timeout(api: FakeFriendli, fake_sleep: FakeSleep) -> None:
    """Catches a timed-out download treated like an unsafe POST."""
    client = rt_client(api, fake_sleep, timeout=0.2)
    api.queue(rt_url_item(api.url + "/files/image.png"), never_answer)
    assert client.generate(model="ep", prompt="p").data[0].content() == PNG
    assert [s.method for s in api.requests] == ["POST", "GET", "GET"]


# -- Retry-After --------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "status, headers, expected",
    [
        (429, {"retry-after-ms": "1500"}, 1.5),
        (429, {"retry-after-ms": "0"}, 0.5),  # zero: the backoff delay
        (429, {"retry-after-ms": "-200"}, 0.5),
        (429, {"retry-after-ms": "soon"}, 0.5),
        (429, {"retry-after-ms": "nan"}, 0.5),
        (429, {"Retry-After": "2"}, 2.0),
        (429, {"Retry-After": "0"}, 0.5),
        (429, {"Retry-After": "-3"}, 0.5),
        (429, {"Retry-After": "later, maybe"}, 0.5),
        (429, {"Retry-After": "Mon, 01 Jan 99999999999999999999 00:00:00 GMT"}, 0.5),
        (429, {"Retry-After": "Thu, 01 Jan 1998 00:00:00 GMT"}, 0.5),  # a date in the past
        (429, {"retry-after-ms": "1500", "Retry-After": "9"}, 1.5),  # the ms header wins
        (429, {"Retry-After": "60"}, 60.0),  # exactly MAX_RETRY_AFTER: waited
        (429, {"retry-after-ms": "60000"}, 60.0),
        (503, {"Retry-After": "3"}, 3.0),  # any retried status, not only 429
    ],
    ids=lambda v: "|".join(f"{k}={x}" for k, x in v.items()) if isinstance(v, dict) else str(v),
)
def test_retry_after_sets_the_sleep(
    api: FakeFriendli, client: fi.Client, fake_sleep: FakeSleep, status: int, headers: Dict[str, str],
    expected: float,
) -> None:
    """Catches the header ignored, misread (ms as s), or a zero/negative/garbage value slept on."""
    api.queue(Reply(status, {"detail": "slow down"}, headers=headers))
    client.generate(model="ep", prompt="p", retries=rt_backoff())
    assert fake_sleep.calls == [expected] and len(api.requests) == 2


def test_retry_after_as_an_http_date(api: FakeFriendli, client: fi.Client, fake_sleep: FakeSleep) -> None:
    """Catches an HTTP date ignored or read as an absolute number of seconds."""
    when = email.utils.formatdate(time.time() + 5, usegmt=True)  # whole seconds: 4 to 5 s ahead
    api.queue(Reply(429, {"detail": "slow down"}, headers={"Retry-After": when}))
    client.generate(model="ep", prompt="p", retries=rt_backoff())
    assert len(fake_sleep.calls) == 1 and 3.0 <= fake_sleep.calls[0] <= 5.5


@pytest.mark.parametrize(
    "status, headers, retry_after",
    [
        (429, {"Retry-After": "61"}, 61.0),
        (429, {"Retry-After": "1800"}, 1800.0),
        (429, {"retry-after-ms": "60001"}, 60.001),
        (503, {"Retry-After": "120"}, 120.0),
    ],
    ids=["429-61s", "429-1800s", "429-60001ms", "503-120s"],
)
def test_a_retry_after_over_the_cap_fails_fast_with_that_answer(
    api: FakeFriendli, client: fi.Client, fake_sleep: FakeSleep, status: int, headers: Dict[str, str],
    retry_after: float,
) -> None:
    """Catches a long Retry-After slept on (a silent wait of up to the whole budget) or dropped from the error."""
    api.queue(Reply(status, {"detail": "come back later"}, headers=headers))
    with pytest.raises(fi.APIStatusError) as info:
        client.generate(model="ep", prompt="p")  # default policy and budget
    err = info.value
    assert type(err) is (fi.RateLimitError if status == 429 else fi.InternalServerError)
    assert err.retry_after == pytest.approx(retry_after) and err.attempts == 1
    assert fake_sleep.calls == [] and len(api.requests) == 1


@pytest.mark.parametrize("retry_after, waited", [("9.5", True), ("10.5", False)])
def test_a_retry_after_longer_than_the_time_left_fails_fast(
    api: FakeFriendli, client: fi.Client, fake_sleep: FakeSleep, retry_after: str, waited: bool
) -> None:
    """Catches a sleep past total_timeout (the call would end late, or with a timeout instead of the answer)."""
    api.queue(Reply(429, {"detail": "slow down"}, headers={"Retry-After": retry_after}))
    if waited:
        client.generate(model="ep", prompt="p", total_timeout=10)
        assert fake_sleep.calls == [9.5]
    else:
        with pytest.raises(fi.RateLimitError) as info:
            client.generate(model="ep", prompt="p", total_timeout=10)
        assert info.value.retry_after == 10.5 and info.value.attempts == 1 and fake_sleep.calls == []


# -- the budget --------------------------------------------------------------------------------------


def test_defaults_are_bounded() -> None:
    """Catches a default that lets a call wait for an hour (the SDK's budget) or sleep past a minute."""
    assert fi.DEFAULT_TOTAL_TIMEOUT == 300 and fi.DEFAULT_TOTAL_TIMEOUT <= 600
    assert fi.MAX_RETRY_AFTER == 60
    assert fi.DEFAULT_TIMEOUT <= fi.DEFAULT_TOTAL_TIMEOUT
    config = fi.DEFAULT_RETRY_CONFIG
    assert config.strategy == "backoff" and config.max_retries is None
    assert config.retry_connection_errors is True and config.retry_read_errors is False
    assert config.status_codes_override is None
    assert config.backoff == fi.BackoffStrategy(500, 60000, 1.5, 300000)
    assert config.backoff is not None and config.backoff.jitter_ms is None
    assert fi.RetryConfig("backoff").backoff == config.backoff  # a policy without a backoff gets the default


def test_total_timeout_bounds_the_whole_call(api: FakeFriendli, client: fi.Client, fake_sleep: FakeSleep) -> None:
    """Catches total_timeout ignored, or a sleep that would pass it."""
    api.queue(*[rt_error(429) for _ in range(20)])
    start = fake_sleep.now
    with pytest.raises(fi.RateLimitError) as info:
        client.generate(model="ep", prompt="p", total_timeout=10, retries=rt_backoff())
    # 0.5 + 0.75 + 1.125 + 1.6875 + 2.53125 = 6.6 s; the next sleep (3.8 s) would pass 10 s.
    assert fake_sleep.calls == [0.5, 0.75, 1.125, 1.6875, 2.53125]
    assert info.value.attempts == 6 and fake_sleep.now - start <= 10


@pytest.mark.parametrize("storm", ["503", "429-retry-after-60", "refused"])
def test_a_storm_with_default_settings_ends_within_the_default_budget(
    api: FakeFriendli, client: fi.Client, fake_sleep: FakeSleep, rt_refused_url: str,
    monkeypatch: pytest.MonkeyPatch, storm: str,
) -> None:
    """Fake clock: whatever the server does, a call with default settings ends within DEFAULT_TOTAL_TIMEOUT.

    Catches an unbounded default (the call retrying for an hour, or for ever).
    """
    if storm == "refused":
        client = fi.Client(TOKEN, base_url=rt_refused_url, sleep=fake_sleep, clock=fake_sleep.clock)
    elif storm == "503":
        monkeypatch.setattr(api, "default", lambda seen: rt_error(503))
    else:
        monkeypatch.setattr(api, "default", lambda seen: rt_error(429, **{"Retry-After": "60"}))
    cls = {"503": fi.InternalServerError, "refused": fi.APIConnectionError}.get(storm, fi.RateLimitError)
    start = fake_sleep.now
    with pytest.raises(fi.FriendliError) as info:
        client.generate(model="ep", prompt="p")
    elapsed = fake_sleep.now - start
    assert type(info.value) is cls
    assert fi.DEFAULT_TOTAL_TIMEOUT - fi.MAX_RETRY_AFTER - 1 < elapsed <= fi.DEFAULT_TOTAL_TIMEOUT
    assert info.value.attempts == len(fake_sleep.calls) + 1
    if storm != "refused":
        assert len(api.requests) == info.value.attempts
    if storm == "429-retry-after-60":
        assert fake_sleep.calls == [60.0] * 4  # a fifth wait would leave no time for the attempt after it


@pytest.mark.parametrize("budget_ms, sleeps", [(5000, 4), (6593, 4), (6594, 5)])
def test_max_elapsed_time_is_the_budget_when_no_total_timeout(
    rt_refused_url: str, fake_sleep: FakeSleep, budget_ms: int, sleeps: int
) -> None:
    """Catches the backoff's max_elapsed_time ignored, or read in the wrong unit.

    Refused connections, not a server: at the boundary the last attempt has a fraction of a millisecond, and a
    request cut that short could reach a shared server late and take an answer queued for the next test."""
    client = fi.Client(TOKEN, base_url=rt_refused_url, sleep=fake_sleep, clock=fake_sleep.clock)
    with pytest.raises(fi.APIConnectionError):
        client.generate(model="ep", prompt="p", retries=rt_backoff(budget_ms=budget_ms))
    # 0.5 + 0.75 + 1.125 + 1.6875 = 4.0625 s; the next sleep (2.53125 s) ends at 6.59375 s
    assert fake_sleep.calls == [0.5, 0.75, 1.125, 1.6875, 2.53125][:sleeps]


def test_when_the_budget_cuts_an_attempt_short_the_error_is_the_last_answer(api: FakeFriendli) -> None:
    """Real clock: a 503, then an attempt the shrinking budget (not the server) ends.

    Catches the call reporting a timeout of its own making instead of what the server said.
    """
    client = rt_client(api, timeout=5)
    api.queue(rt_error(503), never_answer)
    started = time.monotonic()
    with pytest.raises(fi.APIStatusError) as info:
        client.generate(model="ep", prompt="p", total_timeout=0.3, retries=rt_backoff(initial_ms=10))
    elapsed = time.monotonic() - started
    assert type(info.value) is fi.InternalServerError and info.value.attempts == 2
    assert 0.24 < elapsed < 0.3 + MARGIN


def test_when_the_attempts_own_timeout_ends_it_the_error_is_a_timeout(api: FakeFriendli) -> None:
    """The other side: the per-attempt timeout (not the budget) ended the attempt.

    Catches a real timeout hidden behind an earlier, unrelated server answer.
    """
    client = rt_client(api, timeout=0.2)
    api.queue(rt_error(503), never_answer)
    with pytest.raises(fi.APITimeoutError) as info:
        client.generate(model="ep", prompt="p", total_timeout=30, retries=rt_backoff(initial_ms=10))
    assert info.value.attempts == 2 and info.value.sent is True


# -- logging ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("max_retries, suffix", [(3, "(attempt 2 of at most 4)"), (None, "(attempt 2)")])
def test_retries_are_logged_at_info(
    api: FakeFriendli, client: fi.Client, caplog: pytest.LogCaptureFixture, max_retries: Optional[int], suffix: str
) -> None:
    """Catches a silent retry, a log without reason/delay, or a wrong 'attempt n of at most m'."""
    caplog.set_level(logging.INFO, logger="friendli_image")
    api.queue(rt_error(503))
    client.generate(model="ep", prompt="p", retries=rt_backoff(max_retries=max_retries))
    infos = [r for r in caplog.records if r.name == "friendli_image" and r.levelno == logging.INFO]
    assert len(infos) == 1
    message = infos[0].getMessage()
    assert "retrying" in message and "503" in message and "0.5 s" in message and message.endswith(suffix)


def test_no_log_record_holds_the_token_or_a_query_string(
    api: FakeFriendli, client: fi.Client, rt_refused_url: str, fake_sleep: FakeSleep,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """Catches a log line (retry or debug) quoting the token or a pre-signed URL's signature."""
    caplog.set_level(logging.DEBUG, logger="friendli_image")
    api.queue(echo_token_401)
    with pytest.raises(fi.AuthenticationError):
        client.generate(model="ep", prompt="p")
    api.queue(rt_error(503), rt_url_item(api.url + "/files/image.png?sig=SECRETSIG&X-Amz-Credential=KEY"),
              rt_error(503), reset_connection)
    item = client.generate(model="ep", prompt="p").data[0]
    assert item.content() == PNG
    refused = fi.Client(TOKEN, base_url=rt_refused_url, sleep=fake_sleep, clock=fake_sleep.clock)
    with pytest.raises(fi.APIConnectionError):
        refused.generate(model="ep", prompt="p", retries=rt_backoff(max_retries=1))
    records = [r for r in caplog.records if r.name == "friendli_image"]
    retries = [r for r in records if r.levelno == logging.INFO]
    assert len(retries) == 4  # 503 on the API, 503 and a reset on the download, the refused connection
    assert all(" s " in r.getMessage() and "attempt" in r.getMessage() for r in retries)
    assert any("503" in r.getMessage() for r in retries)
    assert any("connection" in r.getMessage().lower() for r in retries)  # the reason is given
    for record in records:
        text = record.getMessage() + repr(record.args) + repr(record.__dict__)
        assert TOKEN not in text and "SECRETSIG" not in text and "sig=" not in text and "KEY" not in text


# -- cancel ----------------------------------------------------------------------------------------------


def test_cancel_wakes_the_retry_sleep(api: FakeFriendli, monkeypatch: pytest.MonkeyPatch) -> None:
    """Real sleep: the server asks for 30 s; the caller gives up after 0.2 s.

    Catches a cancel that waits out the sleep, or that lets another attempt go out.
    """
    monkeypatch.setattr(api, "default", lambda seen: rt_error(503, **{"Retry-After": "30"}))
    client = rt_client(api)
    cancel = threading.Event()
    timer = threading.Timer(0.2, cancel.set)
    started = time.monotonic()
    timer.start()
    try:
        with pytest.raises(fi.FriendliError, match="cancelled") as info:
            client.generate(model="ep", prompt="p", cancel=cancel)
    finally:
        timer.cancel()
    elapsed = time.monotonic() - started
    assert 0.15 < elapsed < 0.2 + MARGIN
    assert not isinstance(info.value, fi.APIStatusError)
    time.sleep(0.05)
    assert len(api.requests) == 1


# ===========================================================================
# Transport
# ===========================================================================

# -- deadlines ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "fault",
    [pytest.param(trickle_headers, id="trickled-headers"), pytest.param(trickle_body, id="trickled-body"),
     pytest.param(never_answer, id="never-answers")],
)
def test_every_attempt_ends_at_its_deadline(api: FakeFriendli, fault: Responder) -> None:
    """Each byte arrives within the socket timeout, yet the attempt must end at ``timeout``.

    Catches a deadline enforced per read only (a trickling server would hold the call for ever).
    """
    client = rt_client(api, timeout=0.25, retries=RT_NO_RETRIES)
    api.queue(fault)
    started = time.monotonic()
    with pytest.raises(fi.APITimeoutError) as info:
        client.generate(model="ep", prompt="p")
    elapsed = time.monotonic() - started
    assert 0.25 * 0.8 < elapsed < 0.25 + MARGIN
    assert info.value.attempts == 1 and info.value.sent is True


def test_a_per_call_timeout_overrides_the_clients(api: FakeFriendli) -> None:
    """Catches ``timeout=`` per call ignored, in either direction."""
    short = rt_client(api, timeout=5, retries=RT_NO_RETRIES)
    api.queue(never_answer)
    started = time.monotonic()
    with pytest.raises(fi.APITimeoutError):
        short.generate(model="ep", prompt="p", timeout=0.2)
    assert 0.16 < time.monotonic() - started < 0.2 + MARGIN
    longer = rt_client(api, timeout=0.1, retries=RT_NO_RETRIES)
    api.queue(Reply(200, {"data": [png_item()]}, delay=0.25))
    assert longer.generate(model="ep", prompt="p", timeout=3).data[0].content() == PNG


def test_the_deadline_holds_across_redirect_hops_of_a_download(api: FakeFriendli) -> None:
    """Every hop answers within the timeout, the chain does not.

    Catches each redirect hop getting a fresh timeout (the download would take 0.5 s and succeed).
    """
    client = rt_client(api, timeout=0.3, retries=RT_NO_RETRIES)
    hops = [Reply(302, body=b"", headers={"Location": f"/hop/{n + 1}"}, delay=0.1) for n in range(4)]
    api.queue(rt_url_item(api.url + "/hop/0"), *hops, Reply(200, body=PNG, content_type="image/png", delay=0.1))
    item = client.generate(model="ep", prompt="p").data[0]
    started = time.monotonic()
    with pytest.raises(fi.APITimeoutError):
        item.content()
    elapsed = time.monotonic() - started
    assert 0.3 * 0.8 < elapsed < 0.3 + MARGIN
    assert len(rt_gets(api)) < 5


def rt_tls_peer(listener: socket.socket, trickle: bool) -> None:
    """Accept one connection and never finish a TLS handshake: say nothing, or trickle a record's bytes."""
    peer, _ = listener.accept()
    with peer:
        if trickle:  # the header of a 16 KiB handshake record, then one byte every 50 ms
            peer.sendall(b"\x16\x03\x03\x40\x00")
            for _ in range(100):
                try:
                    peer.sendall(b"\x00")
                except OSError:
                    break
                time.sleep(0.05)
        else:
            peer.recv(1 << 16)
            time.sleep(3)


@pytest.mark.parametrize("trickle", [False, True], ids=["silent", "trickling"])
def test_a_tls_handshake_that_never_completes_ends_at_the_deadline(trickle: bool) -> None:
    """Catches a handshake run without the attempt's deadline, or with a timeout per read only (the trickle
    would hold the call for five seconds)."""
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen()
        peer = threading.Thread(target=rt_tls_peer, args=(listener, trickle), daemon=True)
        peer.start()
        client = fi.Client(TOKEN, base_url=f"https://127.0.0.1:{listener.getsockname()[1]}", timeout=0.3,
                           retries=RT_NO_RETRIES)
        started = time.monotonic()
        with pytest.raises(fi.APITimeoutError) as info:
            client.generate(model="ep", prompt="p")
        elapsed = time.monotonic() - started
    assert 0.3 * 0.8 < elapsed < 0.3 + MARGIN
    assert info.value.sent is False and "timed out after 0.3 s" in str(info.value)


def test_the_tls_handshake_gets_all_the_time_left_not_the_first_address_share(monkeypatch: pytest.MonkeyPatch) -> None:
    """Two addresses; the first accepts at once and never finishes the handshake.  Catches the handshake bounded
    by that address's share of the time for connecting (half of it) instead of all the time left."""
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen()
        threading.Thread(target=rt_tls_peer, args=(listener, False), daemon=True).start()
        rt_resolve_to(monkeypatch, "two.localhost", ["127.0.0.1", "127.0.0.2"])
        client = fi.Client(TOKEN, base_url=f"https://two.localhost:{listener.getsockname()[1]}", timeout=0.3,
                           retries=RT_NO_RETRIES)
        started = time.monotonic()
        with pytest.raises(fi.APITimeoutError):
            client.generate(model="ep", prompt="p")
        elapsed = time.monotonic() - started
    assert 0.3 * 0.9 < elapsed < 0.3 + MARGIN


def rt_black_holes(addresses: Sequence[str], port: int = 0) -> Tuple[List[socket.socket], int]:
    """Listeners on ``addresses`` at one port (``0``: any free one), each with a full accept queue, so that a new
    connect hangs (its SYN dropped): the addresses of a host that does not answer."""
    sockets: List[socket.socket] = []
    try:
        for address in addresses:
            listener = socket.socket()
            sockets.append(listener)
            listener.bind((address, port))
            listener.listen(0)
            port = listener.getsockname()[1]
            for _ in range(8):  # fill the queue; the connect that hangs proves the hole
                probe = socket.socket()
                sockets.append(probe)
                probe.settimeout(0.05)
                try:
                    probe.connect(listener.getsockname())
                except socket.timeout:
                    break
            else:
                raise OSError("a full accept queue refuses connections here instead of dropping them")
    except OSError as exc:
        for sock in sockets:
            sock.close()
        pytest.skip(f"no black-holed addresses on this machine: {exc}")
    return sockets, port


def rt_resolve_to(monkeypatch: pytest.MonkeyPatch, name: str, addresses: Sequence[str]) -> None:
    """``name`` resolves to several IPv4 addresses, as a host with many records (a real resolver cannot be
    told to, without root)."""
    real = socket.getaddrinfo

    def getaddrinfo(host: Any, port: Any, *args: Any, **kwargs: Any) -> Any:
        if host != name:
            return real(host, port, *args, **kwargs)
        return [(socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_TCP, "", (each, port)) for each in addresses]

    monkeypatch.setattr(socket, "getaddrinfo", getaddrinfo)


def test_the_deadline_holds_across_the_addresses_of_a_host(monkeypatch: pytest.MonkeyPatch) -> None:
    """Six addresses, none answering the TCP handshake: the attempt still ends at ``timeout``.

    Catches socket.create_connection's timeout for each address (the attempt would take six timeouts).
    """
    addresses = [f"127.0.0.{n}" for n in range(1, 7)]
    sockets, port = rt_black_holes(addresses)
    try:
        rt_resolve_to(monkeypatch, "many.localhost", addresses)
        client = fi.Client(TOKEN, base_url=f"http://many.localhost:{port}", timeout=0.4, retries=RT_NO_RETRIES)
        started = time.monotonic()
        with pytest.raises(fi.APITimeoutError) as info:
            client.generate(model="ep", prompt="p")
        elapsed = time.monotonic() - started
    finally:
        for sock in sockets:
            sock.close()
    assert 0.4 * 0.8 < elapsed < 0.4 + MARGIN
    assert info.value.sent is False and "timed out after 0.4 s" in str(info.value)


def test_an_address_that_does_not_answer_leaves_time_for_the_next(api: FakeFriendli,
                                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    """A host's first address drops the connection, its second is the API: the call succeeds in ``timeout``.

    Catches the first address given all the time left (every attempt would time out there)."""
    api_port = urllib.parse.urlsplit(api.url).port or 80
    sockets, _ = rt_black_holes(["127.0.0.2"], api_port)
    try:
        rt_resolve_to(monkeypatch, "many.localhost", ["127.0.0.2", "127.0.0.1"])
        api.queue(Reply(200, {"data": [png_item(seed=5)]}))
        client = fi.Client(TOKEN, base_url=f"http://many.localhost:{api_port}", timeout=1, retries=RT_NO_RETRIES)
        started = time.monotonic()
        assert client.generate(model="ep", prompt="p").data[0].seed == 5
        elapsed = time.monotonic() - started
    finally:
        for sock in sockets:
            sock.close()
    assert 0.4 < elapsed < 1 + MARGIN  # half the time went to the first address


@pytest.mark.parametrize(
    "code, retried",
    [
        pytest.param("EAI_NONAME", False, id="no-such-name"),
        pytest.param("EAI_NODATA", False, id="no-address-for-the-name"),
        pytest.param("EAI_AGAIN", True, id="temporary-failure"),
    ],
)
def test_a_dns_failure_is_retried_only_when_it_may_pass(monkeypatch: pytest.MonkeyPatch, fake_sleep: FakeSleep,
                                                        code: str, retried: bool) -> None:
    """Catches a name that does not exist retried for the whole budget, or a DNS hiccup not retried."""
    if not hasattr(socket, code):
        pytest.skip(f"socket.{code} is not defined here")
    real = socket.getaddrinfo

    def getaddrinfo(host: Any, *args: Any, **kwargs: Any) -> Any:
        if host == "dns.localhost":
            raise socket.gaierror(getattr(socket, code), "a resolver's answer")
        return real(host, *args, **kwargs)

    monkeypatch.setattr(socket, "getaddrinfo", getaddrinfo)
    client = fi.Client(TOKEN, base_url="http://dns.localhost:9", retries=rt_backoff(max_retries=2), sleep=fake_sleep,
                       clock=fake_sleep.clock)
    with pytest.raises(fi.APIConnectionError, match="cannot resolve the host") as info:
        client.generate(model="ep", prompt="p")
    assert info.value.attempts == (3 if retried else 1) and info.value.sent is False


@pytest.mark.parametrize("scheme, port", [("http", 80), ("https", 443)])
def test_a_url_without_a_port_goes_to_its_schemes_port(monkeypatch: pytest.MonkeyPatch, scheme: str,
                                                       port: int) -> None:
    """Catches a wrong default port (the request, token included, would go to another service)."""
    real, asked = socket.getaddrinfo, []

    def getaddrinfo(host: Any, port: Any, *args: Any, **kwargs: Any) -> Any:
        if host != "ports.localhost":
            return real(host, port, *args, **kwargs)
        asked.append(port)
        raise socket.gaierror(socket.EAI_NONAME, "a resolver's answer")  # nothing is sent anywhere

    monkeypatch.setattr(socket, "getaddrinfo", getaddrinfo)
    with pytest.raises(fi.APIConnectionError, match="cannot resolve the host"):
        fi.Client(TOKEN, base_url=f"{scheme}://ports.localhost", retries=RT_NO_RETRIES).generate(model="ep", prompt="p")
    assert asked == [port]


# -- interim (1xx) answers ---------------------------------------------------------------------------------


def rt_interim_then(statuses: Sequence[bytes], final: bytes) -> Responder:
    """Interim answers (status lines with headers), then ``final`` (b"" to close instead)."""

    def respond(handler: Handler, seen: Seen) -> None:
        rt_write(handler, b"".join(statuses) + final)
        if not final:
            handler.connection.shutdown(socket.SHUT_RDWR)

    return respond


RT_100 = b"HTTP/1.1 100 Continue\r\n\r\n"
RT_102 = b"HTTP/1.1 102 Processing\r\n\r\n"
RT_103 = b"HTTP/1.1 103 Early Hints\r\nLink: </x>; rel=preload\r\n\r\n"


def rt_final_200(payload: bytes, content_type: bytes = b"application/json") -> bytes:
    return b"HTTP/1.1 200 OK\r\nContent-Type: %s\r\nContent-Length: %d\r\n\r\n%s" % (content_type, len(payload),
                                                                                       payload)


@pytest.mark.parametrize(
    "interim",
    [
        pytest.param([RT_102], id="102"),
        pytest.param([RT_103], id="103"),
        pytest.param([RT_100], id="100"),
        pytest.param([RT_100, RT_102], id="100-102"),
        pytest.param([RT_102, RT_103], id="102-103"),
        pytest.param([RT_102, RT_102, RT_102], id="102-102-102"),
        pytest.param([RT_100, RT_102, RT_103, RT_102], id="100-102-103-102"),
    ],
)
def test_interim_answers_are_skipped(api: FakeFriendli, client: fi.Client, interim: List[bytes]) -> None:
    """Catches a 1xx taken as the final answer (an APIStatusError or an empty result)."""
    payload = json.dumps({"data": [png_item(seed=42)]}).encode()
    api.queue(rt_interim_then(interim, rt_final_200(payload)))
    res = client.generate(model="ep", prompt="p")
    assert res.data[0].seed == 42 and res.data[0].content() == PNG and len(api.requests) == 1


def test_interim_answers_are_skipped_on_a_download(api: FakeFriendli, client: fi.Client) -> None:
    api.queue(rt_url_item(api.url + "/files/x.png"), rt_interim_then([RT_103], rt_final_200(PNG, b"image/png")))
    assert client.generate(model="ep", prompt="p").data[0].content() == PNG


def test_an_interim_answer_then_nothing_is_a_connection_error(api: FakeFriendli, client: fi.Client) -> None:
    """Catches a hang, or a crash other than a FriendliError, when no final answer follows."""
    api.queue(rt_interim_then([RT_102], b""))
    with pytest.raises(fi.APIConnectionError) as info:
        client.generate(model="ep", prompt="p")
    assert info.value.sent is True and len(api.requests) == 1


# -- response size cap -------------------------------------------------------------------------------------


def rt_raw_answer(status: int, payload: bytes, framing: str, content_type: str = "application/json",
                  **headers: str) -> Responder:
    """An answer framed by Content-Length, chunked encoding, or the connection closing."""

    def respond(handler: Handler, seen: Seen) -> None:
        head = f"HTTP/1.1 {status} X\r\nContent-Type: {content_type}\r\n"
        head += "".join(f"{name}: {value}\r\n" for name, value in headers.items())
        if framing == "length":
            data = f"{head}Content-Length: {len(payload)}\r\n\r\n".encode() + payload
        elif framing == "chunked":
            chunks = [payload[i:i + 1000] for i in range(0, len(payload), 1000)]
            data = (f"{head}Transfer-Encoding: chunked\r\n\r\n".encode()
                    + b"".join(b"%x\r\n%s\r\n" % (len(c), c) for c in chunks) + b"0\r\n\r\n")
        else:
            data = f"{head}Connection: close\r\n\r\n".encode() + payload
        try:
            rt_write(handler, data)
            handler.connection.shutdown(socket.SHUT_WR)
        except OSError:
            pass  # the client stopped reading at its cap

    return respond


def test_a_malformed_chunk_size_is_a_connection_error_after_sending(api: FakeFriendli, fake_sleep: FakeSleep) -> None:
    """http.client may raise ValueError for a negative chunk size: catches it reported as a URL that
    cannot be sent, when the request was sent and the answer is what is broken."""
    def respond(handler: Handler, seen: Seen) -> None:
        rt_write(handler, b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n-5\r\nhello\r\n0\r\n\r\n")

    api.queue(respond)
    with pytest.raises(fi.APIConnectionError) as info:
        rt_client(api, fake_sleep).generate(model="ep", prompt="p")
    said = str(info.value)  # CPython 3.8 reads the size as an incomplete answer instead
    assert info.value.sent is True and ("the answer cannot be read (ValueError)" in said or "incomplete" in said)
    assert fake_sleep.calls == []  # sent, so not retried by default


@pytest.mark.parametrize("wrap_port", [False, True], ids=["space-in-path", "port-over-65535"])
def test_a_redirect_to_a_url_that_cannot_be_sent_is_neither_retried_nor_quoted(
    api: FakeFriendli, fake_sleep: FakeSleep, caplog: pytest.LogCaptureFixture, wrap_port: bool
) -> None:
    """A download's second hop names a URL that cannot be sent: a space in its path, or a port that would wrap
    around to another (this server's own, here).

    Catches that failure taken for a retryable one because the first hop was sent (the call would retry for
    its whole budget), its message quoting the pre-signed query, and a port of 65536 + N reaching port N."""
    client = rt_client(api, fake_sleep)
    port = urllib.parse.urlsplit(api.url).port or 0
    location = f"http://127.0.0.1:{port + 65536}/x.png" if wrap_port else "/next img.png"
    api.queue(rt_url_item(api.url + "/hop/0"),
              Reply(302, body=b"", headers={"Location": location + "?X-Amz-Signature=SECRETSIG"}))
    item = client.generate(model="ep", prompt="p").data[0]
    with caplog.at_level(logging.INFO, logger="friendli_image"):
        with pytest.raises(fi.APIConnectionError) as info:
            item.content()
    assert info.value.attempts == 1 and "a redirect to a URL that cannot be sent" in str(info.value)
    assert fake_sleep.calls == [] and len(api.requests) == 2  # the API call and the first hop, nothing more
    assert "SECRETSIG" not in str(info.value) + caplog.text


def test_http_client_debugging_neither_breaks_a_call_nor_prints_the_token(
    api: FakeFriendli, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """``http.client.HTTPConnection.debuglevel = 1``, a common recipe, is also the default of urllib's
    handlers made after it on 3.12+: catches an answer reader that cannot take the debug level, and the
    request headers (the token among them) printed to standard output."""
    monkeypatch.setattr(http.client.HTTPConnection, "debuglevel", 1)
    client = fi.Client(TOKEN, base_url=api.url, timeout=5, retries=RT_NO_RETRIES)
    api.queue(Reply(200, {"data": [png_item()]}))
    assert client.generate(model="ep", prompt="p").data[0].content() == PNG
    out, err = capsys.readouterr()
    assert TOKEN not in out + err


RT_FRAMINGS = ["length", "chunked", "close"]
RT_PAYLOAD = json.dumps({"data": [png_item(), png_item(seed=8)]}).encode()


@pytest.mark.parametrize("framing", RT_FRAMINGS)
@pytest.mark.parametrize("cap", [len(RT_PAYLOAD), len(RT_PAYLOAD) - 1, len(RT_PAYLOAD) // 4],
                         ids=["at-cap", "one-over", "far-over"])
def test_the_response_size_cap(api: FakeFriendli, fake_sleep: FakeSleep, framing: str, cap: int) -> None:
    """Catches an off-by-one at the cap, or the cap applied only when a Content-Length is given."""
    client = rt_client(api, fake_sleep, max_response_bytes=cap)
    api.queue(rt_raw_answer(200, RT_PAYLOAD, framing))
    if cap == len(RT_PAYLOAD):
        assert [image.seed for image in client.generate(model="ep", prompt="p").data] == [7, 8]
    else:
        with pytest.raises(fi.InvalidResponseError, match="max_response_bytes") as info:
            client.generate(model="ep", prompt="p")
        assert info.value.attempts == 1 and info.value.status_code == 200
    assert len(api.requests) == 1  # a too-large answer is not retried


@pytest.mark.parametrize("slack", [0, -1], ids=["at-cap", "one-over"])
def test_the_size_cap_applies_to_downloads(api: FakeFriendli, fake_sleep: FakeSleep, slack: int) -> None:
    image = make_png(extra=3000)
    client = rt_client(api, fake_sleep, max_response_bytes=len(image) + slack)
    api.files["/files/image.png"] = image
    item = client.generate(model="ep", prompt="p").data[0]
    if slack == 0:
        assert item.content() == image
    else:
        with pytest.raises(fi.InvalidResponseError, match="max_response_bytes"):
            item.content()
    assert len(rt_gets(api)) == 1


@pytest.mark.parametrize("sent", [64 * 1024 + 1, 64 * 1024, 10], ids=["more-than-is-kept", "exactly-what-is-kept",
                                                                     "a-few-bytes"])
def test_an_error_answer_cut_short_is_still_its_status(api: FakeFriendli, sent: int) -> None:
    """100 kB promised, then the connection closes.  The status had arrived: the error is the status's, with what
    came of the body (at most 64 KiB).  Catches it reported as a connection failure, and an off-by-one at 64 KiB."""

    def respond(handler: Handler, seen: Seen) -> None:
        rt_write(handler, b"HTTP/1.1 400 X\r\nContent-Length: 100000\r\n\r\n" + b"x" * sent)

    api.queue(respond)
    with pytest.raises(fi.BadRequestError) as info:
        rt_client(api, retries=RT_NO_RETRIES).generate(model="ep", prompt="p")
    assert info.value.body == "x" * min(sent, 64 * 1024)


@pytest.mark.parametrize("reset", [False, True], ids=["closed", "reset"])
def test_a_503_whose_body_is_cut_short_is_retried(api: FakeFriendli, fake_sleep: FakeSleep, reset: bool) -> None:
    """A retryable status says the request was not served, however its body ends: catches an APIConnectionError
    after sending (not retried, and without the status)."""

    def respond(handler: Handler, seen: Seen) -> None:
        rt_write(handler, b"HTTP/1.1 503 Busy\r\nContent-Length: 100\r\n\r\n" + b"x" * 10)
        if reset:
            handler.connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        handler.close_connection = True

    api.queue(respond)
    assert rt_client(api, fake_sleep).generate(model="ep", prompt="p").data
    assert len(api.requests) == 2 and len(fake_sleep.calls) == 1


def test_a_huge_content_length_beyond_the_cap_is_refused_before_reading(api: FakeFriendli, client: fi.Client) -> None:
    """Catches a body read (or allocated) because a Content-Length said so."""
    api.queue(lying_content_length(10 ** 15))
    with pytest.raises(fi.InvalidResponseError, match="max_response_bytes"):
        client.generate(model="ep", prompt="p")


def test_a_lying_content_length_costs_no_memory(api: FakeFriendli) -> None:
    """200 MB announced (under the default cap), 2 bytes sent: nothing allocated up front, a clean error."""
    import tracemalloc

    client = rt_client(api, retries=RT_NO_RETRIES)
    api.queue(lying_content_length(200 * 1024 * 1024))
    tracemalloc.start()
    try:
        with pytest.raises(fi.APIConnectionError, match="incomplete") as info:
            client.generate(model="ep", prompt="p")
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 16 * 1024 * 1024 and info.value.sent is True


@pytest.mark.parametrize("framing", RT_FRAMINGS)
@pytest.mark.parametrize("size, kept", [(64 * 1024, 64 * 1024), (64 * 1024 + 1, 64 * 1024), (300_000, 64 * 1024)],
                         ids=["64KiB", "64KiB+1", "300KB"])
def test_error_bodies_are_truncated_not_refused(
    api: FakeFriendli, fake_sleep: FakeSleep, framing: str, size: int, kept: int
) -> None:
    """Catches a large error body refused (the status lost) or kept whole (memory), and max_response_bytes
    applied to error bodies."""
    client = rt_client(api, fake_sleep, max_response_bytes=1000)
    api.queue(rt_raw_answer(400, b"x" * size, framing, "text/plain"))
    with pytest.raises(fi.BadRequestError) as info:
        client.generate(model="ep", prompt="p")
    assert info.value.status_code == 400 and len(info.value.body) == kept


# -- Content-Encoding ----------------------------------------------------------------------------------------


def rt_encoded(encoding: str, data: bytes) -> bytes:
    if encoding in ("gzip", "x-gzip", "GZIP"):
        return gzip.compress(data)
    if encoding == "deflate":
        return zlib.compress(data)
    return data


@pytest.mark.parametrize("encoding", ["gzip", "x-gzip", "GZIP", "deflate", "identity"])
def test_encoded_answers_are_decoded(api: FakeFriendli, client: fi.Client, encoding: str) -> None:
    """Catches compressed bytes returned as the image, or JSON parsed before decoding."""
    payload = json.dumps({"data": [png_item()]}).encode()
    api.queue(Reply(200, body=rt_encoded(encoding, payload), headers={"Content-Encoding": encoding}),
              rt_url_item(api.url + "/files/image.png"),
              Reply(200, body=rt_encoded(encoding, PNG), content_type="image/png",
                    headers={"Content-Encoding": encoding}))
    assert client.generate(model="ep", prompt="p").data[0].content() == PNG  # an encoded API answer
    assert client.generate(model="ep", prompt="p").data[0].content() == PNG  # an encoded download


@pytest.mark.parametrize(
    "encoding, body",
    [
        ("br", b"\x1b\x03\x00\xf8\xa5PNG"),
        ("gzip", b"not gzip at all"),
        ("gzip", gzip.compress(PNG)[:-12]),  # cut short
        ("deflate", b"\x00\x01garbage"),
        ("compress", PNG),
        ("gzip, br", gzip.compress(PNG)),  # two codings: never half-decoded
    ],
    ids=["br", "garbage-gzip", "truncated-gzip", "garbage-deflate", "compress", "gzip-then-br"],
)
def test_undecodable_encodings_are_refused(
    api: FakeFriendli, client: fi.Client, encoding: str, body: bytes
) -> None:
    """Catches undecoded or half-decoded bytes returned as the image."""
    api.queue(rt_url_item(api.url + "/files/image.png"),
              Reply(200, body=body, content_type="image/png", headers={"Content-Encoding": encoding}))
    item = client.generate(model="ep", prompt="p").data[0]
    with pytest.raises(fi.InvalidResponseError):
        item.content()
    assert len(rt_gets(api)) == 1  # not retried
    api.queue(Reply(200, body=body, headers={"Content-Encoding": encoding}))
    with pytest.raises(fi.InvalidResponseError):
        client.generate(model="ep", prompt="p")


def rt_chunked(data: bytes) -> bytes:
    return b"%x\r\n%s\r\n0\r\n\r\n" % (len(data), data)


@pytest.mark.parametrize("head, body", [
    (b"Content-Encoding: gzip\r\nContent-Encoding: gzip\r\n", gzip.compress(gzip.compress(PNG))),
    (b"Content-Encoding: identity\r\nContent-Encoding: gzip\r\n", gzip.compress(PNG)),
    (b"Content-Encoding: gzip\r\n", gzip.compress(PNG[:20]) + gzip.compress(PNG[20:])),
    (b"Transfer-Encoding: gzip, chunked\r\n", rt_chunked(gzip.compress(PNG))),
    (b"Transfer-Encoding: gzip\r\nConnection: close\r\n", gzip.compress(PNG)),
], ids=["two-gzip-lines", "identity-line-then-gzip-line", "two-gzip-members", "transfer-gzip-chunked",
        "transfer-gzip"])
def test_a_download_whose_codings_are_not_all_undone_is_refused(
    api: FakeFriendli, client: fi.Client, head: bytes, body: bytes
) -> None:
    """Catches only the first Content-Encoding line read (compressed bytes returned as the image), only the first
    of two gzip members decoded (a cut image), and a transfer coding http.client does not undo taken for the body."""
    def respond(handler: Handler, seen: Seen) -> None:
        length = b"" if b"Transfer-Encoding" in head else b"Content-Length: %d\r\n" % len(body)
        rt_write(handler, b"HTTP/1.1 200 OK\r\nContent-Type: image/png\r\n" + head + length + b"\r\n" + body)
        handler.close_connection = True

    api.queue(rt_url_item(api.url + "/files/image.png"), respond)
    item = client.generate(model="ep", prompt="p").data[0]
    with pytest.raises(fi.InvalidResponseError, match="cannot be"):
        item.content()


def test_a_chunk_size_of_minus_one_cannot_read_past_the_size_cap(api: FakeFriendli, fake_sleep: FakeSleep) -> None:
    """http.client (3.10+) reads a chunk size of -1 as "read to the end": catches a response larger than
    max_response_bytes read whole into memory, bounded only by the attempt's timeout."""
    written = []

    def respond(handler: Handler, seen: Seen) -> None:
        rt_write(handler, b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n-1\r\n")
        block, total = b"x" * 65536, 0
        try:
            while total < 64 * 1024 * 1024:
                handler.wfile.write(block)
                total += len(block)
        except OSError:  # the client stopped reading and closed
            pass
        written.append(total)
        handler.close_connection = True

    client = rt_client(api, fake_sleep, max_response_bytes=1000, retries=RT_NO_RETRIES)
    api.queue(respond)
    with pytest.raises((fi.InvalidResponseError, fi.APIConnectionError)) as info:  # 3.8, 3.9: an incomplete answer
        client.generate(model="ep", prompt="p")
    if isinstance(info.value, fi.InvalidResponseError):
        assert "larger than max_response_bytes" in str(info.value) and info.value.status_code is None
    deadline = time.monotonic() + 5
    while not written and time.monotonic() < deadline:
        time.sleep(0.01)
    assert written and written[0] < 16 * 1024 * 1024  # socket buffers, not the 64 MiB offered


def test_raw_deflate_is_decoded_or_refused_never_returned(api: FakeFriendli, client: fi.Client) -> None:
    """Some servers send 'deflate' without the zlib wrapper: the image must never be the compressed bytes."""
    squeezer = zlib.compressobj(wbits=-15)
    raw = squeezer.compress(PNG) + squeezer.flush()
    api.queue(rt_url_item(api.url + "/files/image.png"),
              Reply(200, body=raw, content_type="image/png", headers={"Content-Encoding": "deflate"}))
    item = client.generate(model="ep", prompt="p").data[0]
    try:
        assert item.content() == PNG
    except fi.InvalidResponseError:
        pass


def test_a_truncated_body_decoding_to_exactly_the_cap_is_undecodable_not_too_large(
    api: FakeFriendli, fake_sleep: FakeSleep
) -> None:
    image = make_png(extra=50_000)
    client = rt_client(api, fake_sleep, max_response_bytes=len(image))
    api.queue(Reply(200, body=gzip.compress(image)[:-8], headers={"Content-Encoding": "gzip"}))  # no trailer
    with pytest.raises(fi.InvalidResponseError) as info:
        client.generate(model="ep", prompt="p")
    assert str(info.value) == "'gzip' body cannot be decoded"


@pytest.mark.parametrize("slack", [0, -1], ids=["at-cap", "one-over"])
def test_the_size_cap_applies_to_the_decoded_bytes(api: FakeFriendli, fake_sleep: FakeSleep, slack: int) -> None:
    """Catches the cap checked against the compressed size only."""
    image = make_png(extra=50_000)
    client = rt_client(api, fake_sleep, max_response_bytes=len(image) + slack)
    api.queue(rt_url_item(api.url + "/files/image.png"),
              Reply(200, body=gzip.compress(image), content_type="image/png", headers={"Content-Encoding": "gzip"}))
    item = client.generate(model="ep", prompt="p").data[0]
    if slack == 0:
        assert item.content() == image
    else:
        with pytest.raises(fi.InvalidResponseError, match="max_response_bytes"):
            item.content()


def test_a_gzip_bomb_is_refused(api: FakeFriendli, fake_sleep: FakeSleep) -> None:
    """64 MB of zeros in 64 KB of gzip, cap 1 MB: catches a bomb inflated in full."""
    import tracemalloc

    bomb = gzip.compress(bytes(64 * 1024 * 1024), compresslevel=1)
    client = rt_client(api, fake_sleep, max_response_bytes=1024 * 1024)
    api.queue(rt_url_item(api.url + "/files/image.png"),
              Reply(200, body=bomb, content_type="image/png", headers={"Content-Encoding": "gzip"}))
    item = client.generate(model="ep", prompt="p").data[0]
    tracemalloc.start()
    try:
        with pytest.raises(fi.InvalidResponseError, match="max_response_bytes"):
            item.content()
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 16 * 1024 * 1024


# -- downloads ------------------------------------------------------------------------------------------------


def test_a_download_is_a_get_without_the_token(api: FakeFriendli, client: fi.Client) -> None:
    """Catches the API token sent to an image host (often a third-party CDN)."""
    item = client.generate(model="ep", prompt="p").data[0]
    assert item.content() == PNG
    post, get = api.requests
    assert post.headers["authorization"] == f"Bearer {TOKEN}"
    assert get.method == "GET" and get.path == "/files/image.png?sig=abc" and get.body == b""
    assert "authorization" not in get.headers and get.headers.get("user-agent", "").startswith("friendli-image/")


@pytest.mark.parametrize("status", [301, 302, 303, 307, 308])
@pytest.mark.parametrize("relative", [False, True], ids=["absolute", "relative"])
def test_a_download_follows_redirects(
    api: FakeFriendli, client: fi.Client, rt_other: FakeFriendli, status: int, relative: bool
) -> None:
    """Catches a redirect status returned as an error, or the token carried to the new host."""
    rt_other.files["/cdn/moved.png"] = make_png(3, 3)
    target = "/files/image.png?hop=2" if relative else rt_host_url(rt_other) + "/cdn/moved.png?sig=xyz"
    api.queue(rt_url_item(api.url + "/hop/1?sig=abc"), Reply(status, body=b"", headers={"Location": target}))
    content = client.generate(model="ep", prompt="p").data[0].content()
    assert content == (PNG if relative else make_png(3, 3))
    gets = rt_gets(api) + rt_other.requests
    moved = "/files/image.png?hop=2" if relative else "/cdn/moved.png?sig=xyz"
    assert [s.path for s in gets] == ["/hop/1?sig=abc", moved]
    assert all(s.method == "GET" and "authorization" not in s.headers for s in gets)


@pytest.mark.parametrize("url", [
    "http:///image.png?sig=s3cr3t", "https://?sig=s3cr3t", "http://h:99999/x.png?sig=s3cr3t",
    "http://[::1/x.png?sig=s3cr3t", "http://h/a b.png?sig=s3cr3t", "http://h/x\x00.png?sig=s3cr3t",
    "http://h/\u00e9.png?sig=s3cr3t", "http://h/\ud800.png?sig=s3cr3t",
], ids=["no-host", "empty-authority", "port-out-of-range", "unclosed-bracket", "space", "nul", "not-ascii",
        "lone-surrogate"])
def test_an_item_url_that_cannot_be_sent_is_refused_by_content_naming_the_field(
    api: FakeFriendli, fake_sleep: FakeSleep, url: str
) -> None:
    """Checked where used, before any traffic: catches it sent and reported as a network failure (urllib's
    "no host given" was retried for the whole budget), a port that wraps around to another, and the message
    quoting the pre-signed query."""
    client = rt_client(api, fake_sleep, retries=fi.DEFAULT_RETRY_CONFIG)
    api.queue(rt_url_item(url))
    item = client.generate(model="ep", prompt="p").data[0]
    with pytest.raises(fi.InvalidResponseError, match=r"data\[0\]\.url is not an http\(s\) URL") as info:
        item.content()
    assert "s3cr3t" not in str(info.value) and info.value.attempts == 0
    assert len(api.requests) == 1 and fake_sleep.calls == []


@pytest.mark.parametrize("hops, ok", [(10, True), (11, False)])
def test_a_download_follows_at_most_10_redirects(api: FakeFriendli, fake_sleep: FakeSleep, hops: int, ok: bool) -> None:
    """Catches a redirect loop followed for ever, or a limit below the documented 10."""
    client = rt_client(api, fake_sleep, retries=RT_NO_RETRIES)
    chain = [Reply(302, body=b"", headers={"Location": f"/hop/{n + 1}" if n + 1 < hops else "/files/image.png"})
             for n in range(hops)]
    api.queue(rt_url_item(api.url + "/hop/0"), *chain)
    item = client.generate(model="ep", prompt="p").data[0]
    if ok:
        assert item.content() == PNG
        assert len(rt_gets(api)) == hops + 1
    else:
        with pytest.raises(fi.APIConnectionError, match="redirects"):
            item.content()
        assert len(rt_gets(api)) == 11


@pytest.mark.parametrize("location", ["ftp://127.0.0.1/x.png", "file:///etc/passwd", "data:image/png;base64,AAAA"])
def test_a_download_redirect_to_another_scheme_is_refused(
    api: FakeFriendli, fake_sleep: FakeSleep, location: str
) -> None:
    """Catches file:// or ftp:// followed (a server could make the client read local files)."""
    client = rt_client(api, fake_sleep, retries=RT_NO_RETRIES)
    api.queue(rt_url_item(api.url + "/files/image.png"), Reply(302, body=b"", headers={"Location": location}))
    item = client.generate(model="ep", prompt="p").data[0]
    with pytest.raises(fi.APIConnectionError, match="a redirect to a URL that cannot be sent"):
        item.content()
    assert len(rt_gets(api)) == 1


@pytest.mark.parametrize("too_many", [False, True], ids=["to-ftp", "redirect-loop"])
def test_a_refused_download_redirect_is_not_retried(
    api: FakeFriendli, fake_sleep: FakeSleep, monkeypatch: pytest.MonkeyPatch, too_many: bool
) -> None:
    """The refusal is decided by the client and would repeat on every attempt.

    Catches a deterministic refusal retried with backoff for the whole budget (5 minutes by default;
    10 s here to keep the test short).
    """
    client = rt_client(api, fake_sleep, retries=rt_backoff(budget_ms=10000))
    location = "/files/loop.png" if too_many else "ftp://127.0.0.1/x.png"
    item = client.generate(model="ep", prompt="p").data[0]
    monkeypatch.setattr(api, "default", lambda seen: Reply(302, body=b"", headers={"Location": location}))
    with pytest.raises(fi.APIConnectionError) as info:
        item.content()
    assert info.value.attempts == 1 and fake_sleep.calls == []


@pytest.mark.parametrize("status, cls", [(403, fi.PermissionDeniedError), (404, fi.NotFoundError)])
def test_a_download_refused_by_the_image_host(
    api: FakeFriendli, client: fi.Client, fake_sleep: FakeSleep, status: int, cls: type
) -> None:
    """Catches an expired image URL reported as something else, or retried."""
    api.queue(rt_url_item(api.url + "/files/image.png?sig=expired"),
              Reply(status, body=b"<Error>AccessDenied</Error>", content_type="application/xml"))
    item = client.generate(model="ep", prompt="p").data[0]
    with pytest.raises(fi.APIStatusError) as info:
        item.content()
    assert type(info.value) is cls and info.value.status_code == status and info.value.attempts == 1
    assert "expired" not in str(info.value) and fake_sleep.calls == []


# -- API calls never follow redirects ----------------------------------------------------------------------------


@pytest.mark.parametrize("status", [301, 302, 303, 307, 308])
def test_api_calls_never_follow_redirects(
    api: FakeFriendli, client: fi.Client, rt_other: FakeFriendli, status: int
) -> None:
    """Catches the token (and the billed request) sent to wherever a Location points."""
    api.queue(Reply(status, body=b"", headers={"Location": rt_host_url(rt_other) + API_GENERATIONS_PATH}))
    with pytest.raises(fi.APIStatusError, match="base_url") as info:
        client.generate(model="ep", prompt="p")
    assert type(info.value) is fi.APIStatusError and info.value.status_code == status
    assert info.value.attempts == 1 and len(api.requests) == 1
    assert rt_other.requests == []


# -- one client, many threads --------------------------------------------------------------------------------------


class RtThreadClock:
    """A fake sleep and clock for many threads: each thread has its own clock; sleeps are recorded under a lock."""

    def __init__(self) -> None:
        self._local = threading.local()
        self._lock = threading.Lock()
        self.calls: List[float] = []

    def clock(self) -> float:
        return float(getattr(self._local, "now", 1000.0))

    def sleep(self, seconds: float) -> None:
        with self._lock:
            self.calls.append(seconds)
        self._local.now = self.clock() + seconds


def rt_injected_503(prompt: str, attempt: int) -> bool:
    """About one attempt in six fails; decided by (prompt, attempt), so independent of thread timing."""
    return random.Random(f"{prompt}/{attempt}").random() < 0.16


def test_one_client_shared_by_16_threads(api: FakeFriendli, monkeypatch: pytest.MonkeyPatch) -> None:
    """16 threads x 20 calls, some answered 503 first.

    Catches state shared between calls (headers, bodies, attempt counts, results crossing threads).
    """
    threads, per_thread = 16, 20
    api.server.socket.listen(64)  # room for 16 simultaneous connects
    attempts: Dict[str, int] = {}
    lock = threading.Lock()

    def answer(seen: Seen) -> Reply:
        body = seen.json
        prompt = body["prompt"]
        with lock:
            attempt = attempts[prompt] = attempts.get(prompt, 0) + 1
        number = int(prompt.split()[-1])
        if (seen.headers.get("authorization") != f"Bearer {TOKEN}" or seen.headers.get("x-call") != str(number)
                or seen.headers.get("x-friendli-team") != f"team-{number % 7}" or body.get("seed") != number):
            return Reply(400, {"detail": "headers or body of another call"})
        if rt_injected_503(prompt, attempt):
            return rt_error(503)
        image = base64.b64encode(PNG + prompt.encode()).decode()
        return Reply(200, {"data": [{"seed": number, "response_format": "png", "b64_json": image}]},
                     headers={"X-Request-Id": f"req-{number}"})

    monkeypatch.setattr(api, "default", answer)
    fake = RtThreadClock()
    client = fi.Client(TOKEN, base_url=api.url, timeout=10, sleep=fake.sleep, clock=fake.clock)

    def run(thread: int) -> List[Tuple[int, fi.ImageGenerationResult]]:
        out = []
        for n in range(per_thread):
            number = thread * per_thread + n
            out.append((number, client.generate(
                model="ep", prompt=f"prompt {number}", seed=number, response_format="png", retries=rt_backoff(100),
                x_friendli_team=f"team-{number % 7}", http_headers={"X-Call": str(number)})))
        return out

    with ThreadPoolExecutor(threads) as pool:
        outcomes = [pair for chunk in pool.map(run, range(threads)) for pair in chunk]
    assert len(outcomes) == threads * per_thread
    for number, res in outcomes:
        assert res.request_id == f"req-{number}" and res.data[0].seed == number
        assert res.data[0].content() == PNG + f"prompt {number}".encode()
    for prompt, count in attempts.items():  # each call retried exactly its own 503s
        failures = 0
        while rt_injected_503(prompt, failures + 1):
            failures += 1
        assert count == failures + 1, prompt
    total_503 = sum(attempts.values()) - threads * per_thread
    assert total_503 >= 10 and len(fake.calls) == total_503


def test_a_call_whose_cancel_is_already_set_sends_nothing(api: FakeFriendli, client: fi.Client) -> None:
    cancel = threading.Event()
    cancel.set()
    with pytest.raises(fi.FriendliError, match="cancelled") as info:
        client.generate(model="ep", prompt="p", cancel=cancel)
    assert api.requests == [] and info.value.attempts == 0


# -- edges of the transport and the client -----------------------------------------------------------------------


@pytest.mark.parametrize("status", [200, 201, 203, 299])  # 299: the last success
def test_any_2xx_with_the_documented_body_is_a_result(api: FakeFriendli, client: fi.Client, status: int) -> None:
    api.queue(Reply(status, {"data": [png_item()]}))
    assert client.generate(model="ep", prompt="p").data[0].content() == PNG


def test_a_non_json_error_body_of_200_characters_is_quoted_whole(api: FakeFriendli, client: fi.Client) -> None:
    body = "x" * 199 + "!"
    api.queue(Reply(400, body=body.encode(), content_type="text/plain"))
    with pytest.raises(fi.BadRequestError) as info:
        client.generate(model="ep", prompt="p")
    assert str(info.value).endswith(body)


@pytest.mark.parametrize("length, whole", [(48, True), (49, False)])
def test_repr_shows_b64_json_whole_up_to_48_characters(length: int, whole: bool) -> None:
    text = repr(fi.GeneratedImage(1, "png", b64_json="A" * length))
    assert ("A" * length in text) is whole and (f"({length} chars)" in text) is not whole


@pytest.mark.parametrize("url, ok", [
    ("http://api.localhost:8000", True), ("http://localhost:8000", True), ("https://h/path#frag", False),
    ("https://h/path?q=1", False),
], ids=["dot-localhost", "localhost", "fragment", "query"])
def test_base_url_loopback_names_and_fragments(url: str, ok: bool) -> None:
    if ok:
        assert fi.Client(TOKEN, base_url=url).base_url == url
    else:
        with pytest.raises(fi.FriendliValidationError, match="query or fragment"):
            fi.Client(TOKEN, base_url=url)


def test_an_empty_friendli_team_sends_no_team(api: FakeFriendli, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FRIENDLI_TEAM", "")
    client = fi.Client(TOKEN, base_url=api.url)
    client.generate(model="ep", prompt="p")
    assert client.team is None and "x-friendli-team" not in api.requests[0].headers


# ===========================================================================
# Transport: secrets, TLS, proxies, fuzzing
# ===========================================================================
#
# The token lives in one holder and in a request only while it is sent: no error (message, args,
# chained causes, traceback frame locals), log record, repr or file shows it, nor a base_url password,
# nor the query string of a pre-signed image URL.  Nothing carrying the token travels in clear text,
# neither through a proxy nor to a host off this machine.  TLS is verified (certificates made here by
# the openssl command), proxies are real local servers, and a seeded fuzzer serves random responses.
#
# Run the fuzzer longer by hand:  FRIENDLI_FUZZ_COUNT=20000 python3 -m pytest -k fuzz test_friendli_image.py

SEC_NO_RETRIES = fi.RetryConfig("none")
SEC_ONE_RETRY = fi.RetryConfig("backoff", fi.BackoffStrategy(1, 1, 1, 60000, jitter_ms=0), True, max_retries=1)
SEC_PASSWORD = "hunter2-PASSWORD-77"
SEC_SIGNATURE = "SECRETSIG0f9e8d7c"
SEC_TOKEN_PIECES = [TOKEN[i:i + 10] for i in range(len(TOKEN) - 9)]  # a cut-off quote leaks too


# -- finding secrets in whatever a user may print, log or inspect -----------------------------------------------

_SEC_OPAQUE = (type, types.ModuleType, types.CodeType, types.FrameType, types.TracebackType, types.BuiltinFunctionType)


def sec_attributes(obj: Any) -> List[Any]:
    """The values of an object's attributes: its ``__dict__`` and its slots."""
    values: List[Any] = []
    attributes = getattr(obj, "__dict__", None)
    if isinstance(attributes, dict):
        values += list(attributes.values())
    for klass in type(obj).__mro__:
        slots = klass.__dict__.get("__slots__", ())
        for name in [slots] if isinstance(slots, str) else slots:
            if name not in ("__dict__", "__weakref__"):
                try:
                    values.append(getattr(obj, name))
                except AttributeError:
                    pass
    return values


def sec_children(obj: Any) -> List[Any]:
    """What a user could reach from ``obj`` by printing or inspecting it."""
    children: List[Any] = []
    if isinstance(obj, BaseException):
        children += [obj.__cause__, obj.__context__, *obj.args]
        for name in ("body", "message", "headers", "request_id", "errors"):
            try:
                children.append(getattr(obj, name, None))
            except Exception:
                pass
    if isinstance(obj, email.message.Message):
        children += [part for pair in obj.items() for part in pair]
    elif isinstance(obj, dict):
        children += [part for pair in obj.items() for part in pair]
    elif isinstance(obj, (list, tuple, set, frozenset, deque)):
        children += list(obj)
    if isinstance(obj, types.FunctionType):
        for cell in obj.__closure__ or ():
            try:
                children.append(cell.cell_contents)
            except ValueError:  # an empty cell
                pass
    elif isinstance(obj, types.MethodType):
        children.append(obj.__self__)
    elif not isinstance(obj, _SEC_OPAQUE):
        children += sec_attributes(obj)
    return children


def sec_walk(roots: Sequence[Any], max_depth: int = 6, max_objects: int = 30000,
             exempt: Optional[Set[int]] = None) -> Iterator[Any]:
    """Every object reachable from ``roots`` (bounded in depth and count); ``exempt`` objects are
    visited but not entered."""
    seen: Set[int] = set()
    exempt = exempt or set()
    stack: List[Tuple[Any, int]] = [(root, 0) for root in reversed(list(roots))]
    while stack and len(seen) < max_objects:
        obj, depth = stack.pop()
        if obj is None or id(obj) in seen:
            continue
        seen.add(id(obj))
        yield obj
        if isinstance(obj, (str, bytes, bytearray, memoryview, int, float)) or depth >= max_depth or id(obj) in exempt:
            continue
        stack.extend((child, depth + 1) for child in reversed(sec_children(obj)))


def sec_texts(roots: Sequence[Any], exempt: Optional[Set[int]] = None) -> Iterator[str]:
    """str() and repr() of each root and of what is reachable from it: an exception's chain, args and
    attributes, containers, headers, objects' attributes, a function's closure, a method's ``self``."""
    for obj in sec_walk(roots, exempt=exempt):
        if isinstance(obj, (bytes, bytearray, memoryview)):
            yield bytes(obj).decode("latin-1")
            continue
        for show in (str, repr):
            try:
                yield show(obj)
            except Exception:  # an object whose repr fails shows nothing
                pass


def sec_token_holders(*roots: Any) -> Set[int]:
    """The objects reachable from ``roots`` that hold the token itself, as an attribute or in a closure (by id)."""
    holders: Set[int] = set()
    for obj in sec_walk(roots):
        if isinstance(obj, (str, dict, list, tuple)):
            continue
        held = sec_children(obj) if isinstance(obj, types.FunctionType) else sec_attributes(obj)
        if any(isinstance(value, str) and value == TOKEN for value in held):
            holders.add(id(obj))
    return holders


def sec_exception_chain(err: BaseException) -> List[BaseException]:
    chain: List[BaseException] = []
    pending: List[Optional[BaseException]] = [err]
    while pending:
        exc = pending.pop()
        if exc is not None and all(exc is not known for known in chain):
            chain.append(exc)
            pending += [exc.__cause__, exc.__context__]
    return chain


def sec_frames(err: BaseException) -> List[types.FrameType]:
    """The frames of the tracebacks of ``err`` and of every exception chained to it."""
    frames: List[types.FrameType] = []
    for exc in sec_exception_chain(err):
        tb = exc.__traceback__
        while tb is not None:
            frames.append(tb.tb_frame)
            tb = tb.tb_next
    return frames


def sec_error_texts(err: BaseException, frames: bool = True, exempt: Optional[Set[int]] = None) -> Iterator[str]:
    """Everything an error shows: its formatted traceback, its chain and attributes, and (walked) the
    locals of every frame of its traceback and of its chained exceptions' tracebacks.

    ``frames=False`` leaves the frame locals out: for a value the caller passed in (a base_url, an
    image URL kept in its result), the frames it was passed through hold it by necessity.  ``exempt``:
    the token's one holder (see :func:`sec_token_holders`), whose inside is not looked at."""
    yield "".join(traceback.format_exception(type(err), err, err.__traceback__))
    roots: List[Any] = list(sec_exception_chain(err))
    for frame in sec_frames(err) if frames else []:
        for name, value in frame.f_locals.items():
            roots += [name, value]
    yield from sec_texts(roots, exempt)


def sec_raised(call: Callable[[], Any]) -> BaseException:
    """The exception ``call`` raises (its traceback starts here, with no test locals in it)."""
    try:
        call()
    except BaseException as exc:
        return exc
    raise AssertionError("the call did not fail")


def sec_assert_absent(secret_pieces: Sequence[str], texts: Iterator[str], where: str) -> int:
    """Assert no text holds a piece of the secret; return how many texts were looked at."""
    count = 0
    for text in texts:
        count += 1
        for piece in secret_pieces:
            assert piece not in text, f"{piece!r} leaked into {where}: {text[:400]!r}"
    return count


def sec_assert_logs_clean(caplog: pytest.LogCaptureFixture, secret_pieces: Sequence[str]) -> None:
    for record in caplog.records:
        texts = [record.getMessage(), repr(record.args), record.exc_text or "", str(record.msg)]
        sec_assert_absent(secret_pieces, iter(texts), "a log record")
    sec_assert_absent(secret_pieces, iter([caplog.text]), "the log")


def sec_closed_port() -> int:
    """A loopback port with nothing listening (connections to it are refused)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def sec_write(handler: Handler, data: bytes) -> None:
    handler.wfile.write(data)
    handler.wfile.flush()


def sec_raw(template: str) -> Responder:
    """A responder writing ``template`` as raw bytes, ``{auth}`` replaced by the request's Authorization."""

    def respond(handler: Handler, seen: Seen) -> None:
        sec_write(handler, template.replace("{auth}", seen.headers.get("authorization", "")).encode("latin-1"))

    return respond


def sec_echo_token_500(handler: Handler, seen: Seen) -> None:
    """A 5xx (retried) that quotes the Authorization header in its reason, headers and body."""
    auth = seen.headers.get("authorization", "")
    body = json.dumps({"detail": f"upstream rejected {auth}", "echo": dict(seen.headers)}).encode()
    sec_write(handler, (f"HTTP/1.1 500 {auth}\r\nContent-Type: application/json\r\nX-Echo: {auth}\r\n"
                         f"X-Request-Id: {auth}\r\nContent-Length: {len(body)}\r\n\r\n").encode() + body)


# -- the checker checks: it finds a planted token wherever the tests look ------------------------------------


class SecHolder:
    def __init__(self, value: Any) -> None:
        self.value = value


def sec_plant_in_local() -> None:
    headers = {"Authorization": "Bearer " + TOKEN}
    raise ValueError(f"failed with {len(headers)} headers")


def sec_plant_suppressed_context() -> None:
    try:
        sec_plant_in_local()
    except ValueError:
        raise fi.FriendliError("clean message") from None


def sec_plant_in_chained_frame() -> None:
    try:
        sec_plant_in_local()
    except ValueError as exc:
        raise fi.FriendliError("clean message") from exc


def sec_plant_in_object() -> None:
    holder = SecHolder([SecHolder({"h": ("Bearer " + TOKEN,)})])
    raise fi.FriendliError(f"clean message {id(holder)}")


@pytest.mark.parametrize("plant", [
    pytest.param(sec_plant_in_local, id="frame-local-dict"),
    pytest.param(sec_plant_in_chained_frame, id="frame-local-of-a-chained-cause"),
    pytest.param(sec_plant_in_object, id="attribute-of-an-object-in-a-local"),
    pytest.param(sec_plant_suppressed_context, id="context-still-kept-after-raise-from-None"),
])
def test_secrets_the_leak_checker_finds_a_planted_token(plant: Callable[[], None]) -> None:
    """The checker used below would notice a token in a frame local, a chained cause, an object's attribute,
    or the ``__context__`` that ``raise ... from None`` hides from tracebacks but keeps."""
    err = sec_raised(plant)
    assert TOKEN not in str(err)
    with pytest.raises(AssertionError, match="leaked"):
        sec_assert_absent(SEC_TOKEN_PIECES, sec_error_texts(err), "a planted error")
    assert sec_frames(err), "the traceback was walked"


# -- faults: no error, chain, traceback local or log shows the token ------------------------------------------


@dataclass
class SecFault:
    id: str
    responders: Sequence[Responder]
    error: type
    refused: bool = False  # talk to a port where nothing listens
    timeout: float = 5.0
    bug: str = ""


SEC_FAULTS = [
    SecFault("401-echoing-the-token", [echo_token_401], fi.AuthenticationError),
    SecFault("500-echoing-the-token-retried", [sec_echo_token_500, sec_echo_token_500], fi.InternalServerError),
    SecFault("500-plain", [Reply(500, {"detail": "boom"})] * 2, fi.InternalServerError),
    SecFault("422-echoing-the-token", [echo_token_422], fi.UnprocessableEntityError),
    SecFault("429-echoing-in-retry-after", [sec_raw("HTTP/1.1 429 {auth}\r\nRetry-After: {auth}\r\n"
                                                     "Content-Length: 0\r\n\r\n")] * 2, fi.RateLimitError),
    SecFault("302-echoing-in-location", [sec_raw("HTTP/1.1 302 Found\r\nLocation: http://127.0.0.1:1/?t={auth}\r\n"
                                                  "Content-Length: 0\r\n\r\n")], fi.APIStatusError),
    SecFault("103-echoing-then-401", [sec_raw("HTTP/1.1 103 Early Hints\r\nLink: </{auth}>\r\n\r\n"
                                               "HTTP/1.1 401 {auth}\r\nContent-Length: 0\r\n\r\n")],
             fi.AuthenticationError),
    SecFault("connection-refused", [], fi.APIConnectionError, refused=True),
    SecFault("reset-instead-of-an-answer", [reset_connection], fi.APIConnectionError),
    SecFault("timeout", [never_answer], fi.APITimeoutError, timeout=0.2),
    SecFault("invalid-json-200", [Reply(200, body=b'{"data": [')], fi.InvalidResponseError),
    SecFault("html-200-echoing-the-token", [echo_token_html_200], fi.InvalidResponseError),
    SecFault("json-200-echoing-the-token", [echo_token_in_200_json_error], fi.InvalidResponseError),
    SecFault("200-headers-echoing-then-cut", [sec_raw("HTTP/1.1 200 OK\r\nX-Echo: {auth}\r\nContent-Length: 9\r\n"
                                                       "\r\n{\"da")], fi.APIConnectionError),
    SecFault("malformed-status-line-echoing-the-token", [sec_raw("HTTP/1.1 abc {auth}\r\n\r\n")],
             fi.APIConnectionError),
    SecFault("status-line-is-the-echoed-header", [sec_raw("Authorization: {auth}\r\n\r\n")], fi.APIConnectionError),
    SecFault("status-out-of-range-echoing", [sec_raw("HTTP/1.1 99999 {auth}\r\n\r\n")], fi.APIConnectionError),
    SecFault("body-reset-midway", [rst_mid_body], fi.APIConnectionError),
    SecFault("400-json-escaping-every-character-of-the-token", [lambda handler, seen: sec_echo_escaped(handler, seen)],
             fi.BadRequestError),
    SecFault("400-echoing-across-the-64-KiB-cut", [lambda handler, seen: sec_echo_at_the_cut(handler, seen)],
             fi.BadRequestError),
    SecFault("400-json-escaping-the-token-in-a-body-over-64-KiB",
             [lambda handler, seen: sec_echo_escaped(handler, seen, pad=70_000)], fi.BadRequestError),
    SecFault("2xx-over-the-cap-echoing-in-its-request-id",
             [sec_raw("HTTP/1.1 200 OK\r\nX-Request-Id: {auth}\r\nContent-Length: 999999999\r\n\r\n")],
             fi.InvalidResponseError),
]


def sec_echo_escaped(handler: Handler, seen: Seen, pad: int = 0) -> None:
    """JSON may spell any character as an escape (PHP writes / as \\/): the token, decoded, is in the message.
    With ``pad``, the body is longer than the 64 KiB kept, so what is kept is not JSON any more."""
    escaped = "".join(f"\\u{ord(char):04x}" for char in seen.headers.get("authorization", ""))
    body = ('{"detail": "bad credentials: ' + escaped + '", "pad": "' + "x" * pad + '"}').encode("ascii")
    sec_write(handler, b"HTTP/1.1 400 Bad\r\nContent-Type: application/json\r\nContent-Length: %d\r\n\r\n%s"
              % (len(body), body))


def sec_echo_at_the_cut(handler: Handler, seen: Seen) -> None:
    """The echoed token starts 12 bytes before the 64 KiB an error body is cut to: a cut-off piece leaks too."""
    body = b"x" * (64 * 1024 - 12 - len("Bearer ")) + seen.headers.get("authorization", "").encode("latin-1")
    sec_write(handler, b"HTTP/1.1 400 Bad\r\nContent-Length: %d\r\n\r\n%s" % (len(body), body))


@pytest.mark.parametrize("fault", [
    pytest.param(f, id=f.id, marks=[pytest.mark.xfail(reason=f.bug, strict=True)] if f.bug else []) for f in SEC_FAULTS
])
def test_secrets_no_error_traceback_local_or_log_shows_the_token(
    fault: SecFault, api: FakeFriendli, fake_sleep: FakeSleep, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    api.queue(*fault.responders)
    base_url = f"http://127.0.0.1:{sec_closed_port()}" if fault.refused else api.url
    client = fi.Client(TOKEN, base_url=base_url, timeout=fault.timeout, retries=SEC_ONE_RETRY, sleep=fake_sleep,
                       clock=fake_sleep.clock)
    err = sec_raised(lambda: client.generate(model="ep", prompt="p", response_format="png"))
    assert isinstance(err, fault.error), repr(err)
    if not fault.refused:
        assert api.requests and api.requests[0].headers["authorization"] == f"Bearer {TOKEN}"  # it was sent
    # The traceback reaches into the module: its frames' locals were looked at.
    assert any(frame.f_code.co_filename == fi.__file__ for frame in sec_frames(err))
    for name in ("args", "body", "headers", "message", "request_id"):
        sec_assert_absent(SEC_TOKEN_PIECES, iter([repr(getattr(err, name, None))]), f"err.{name}")
    sec_assert_absent(SEC_TOKEN_PIECES, iter([str(err), repr(err)]), "str/repr of the error")
    holders = sec_token_holders(client)
    assert len(holders) == 1  # the one place the token is kept
    looked_at = sec_assert_absent(SEC_TOKEN_PIECES, sec_error_texts(err, exempt=holders),
                                  "the error, its chain or a frame local")
    assert looked_at > 50
    sec_assert_logs_clean(caplog, SEC_TOKEN_PIECES)


def test_secrets_a_token_echoed_in_a_malformed_status_line_is_in_no_formatted_exception(
    api: FakeFriendli, client: fi.Client
) -> None:
    api.queue(sec_raw("HTTP/1.1 abc Bearer {auth}\r\n\r\n"))
    err = sec_raised(lambda: client.generate(model="ep", prompt="p", retries=SEC_NO_RETRIES))
    assert isinstance(err, fi.APIConnectionError)
    for exc in sec_exception_chain(err):
        formatted = "".join(traceback.format_exception(type(exc), exc, exc.__traceback__))
        assert TOKEN not in formatted
    assert TOKEN not in "".join(traceback.format_exception(type(err), err, err.__traceback__, chain=True))


def test_secrets_an_echoed_token_is_redacted_yet_the_error_stays_useful(api: FakeFriendli, client: fi.Client) -> None:
    api.queue(echo_token_401)
    err = sec_raised(lambda: client.generate(model="ep", prompt="p"))
    assert isinstance(err, fi.AuthenticationError) and err.status_code == 401 and err.attempts == 1
    assert "invalid credentials" in str(err) and "invalid credentials" in err.message
    assert err.headers.get("content-type") == "application/json"  # headers still there, still case-insensitive
    assert "invalid_token" in err.headers.get("www-authenticate", "")
    assert TOKEN not in json.dumps(json.loads(err.body))


@pytest.mark.skipif(not hasattr(signal, "setitimer"), reason="needs POSIX interval timers")
def test_secrets_a_system_exit_during_an_attempt_leaves_no_token_in_its_traceback(api: FakeFriendli) -> None:
    """A SIGTERM handler calling sys.exit() while a server is slow: catches urllib's frames (the request's
    headers) and the attempt's own locals kept in the SystemExit's traceback."""
    client = fi.Client(TOKEN, base_url=api.url, timeout=5, retries=SEC_NO_RETRIES)

    def leave(signum: int, frame: Any) -> None:
        sys.exit(3)

    api.queue(never_answer)
    previous = signal.signal(signal.SIGALRM, leave)
    try:
        signal.setitimer(signal.ITIMER_REAL, 0.2)
        err = sec_raised(lambda: client.generate(model="ep", prompt="p"))
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)
    assert isinstance(err, SystemExit) and err.code == 3
    assert any(frame.f_code.co_filename == fi.__file__ for frame in sec_frames(err))
    sec_assert_absent(SEC_TOKEN_PIECES, sec_error_texts(err, exempt=sec_token_holders(client)),
                      "the SystemExit, its chain or a frame local")


def test_secrets_a_malformed_token_from_a_callable_is_in_no_frame_local(api: FakeFriendli) -> None:
    """A token read from a file without strip(): catches it kept as a local of the frame that refused it."""
    client = fi.Client(lambda: TOKEN + "\n", base_url=api.url, retries=SEC_NO_RETRIES)
    err = sec_raised(lambda: client.generate(model="ep", prompt="p"))
    assert isinstance(err, fi.FriendliValidationError) and "printable ASCII" in str(err)
    assert sec_frames(err) and api.requests == []
    sec_assert_absent(SEC_TOKEN_PIECES, sec_error_texts(err), "the error or a frame local")


@pytest.mark.parametrize("status", [403, 503, 0], ids=["403", "503", "malformed-status-line"])
def test_secrets_an_image_host_echoing_the_pre_signed_query_is_redacted(
    api: FakeFriendli, fake_sleep: FakeSleep, caplog: pytest.LogCaptureFixture, status: int
) -> None:
    """S3-style error pages quote the request, signature included: catches it in the message, the body, the
    headers or (a 503 is retried) the retry log line."""
    signature = "SIGN4TURE0123456789abcdef"

    def echo(handler: Handler, seen: Seen) -> None:
        body = f"<Error><Request>GET {seen.path}</Request><Sig>{signature}</Sig></Error>".encode()
        if not status:  # http.client quotes a status line it cannot read in its error
            sec_write(handler, f"HTTP/1.1 abc {seen.path}\r\n\r\n".encode())
            return
        sec_write(handler, f"HTTP/1.1 {status} Denied {seen.path}\r\nX-Echo: {signature}\r\n"
                           f"Content-Length: {len(body)}\r\n\r\n".encode() + body)

    client = rt_client(api, fake_sleep, retries=SEC_ONE_RETRY)
    api.queue(rt_url_item(f"{api.url}/img.png?X-Amz-Date=20261126&X-Amz-Signature={signature}"), echo, echo)
    item = client.generate(model="ep", prompt="p").data[0]
    with caplog.at_level(logging.INFO, logger="friendli_image"):
        err = sec_raised(item.content)
    if not status:
        assert isinstance(err, fi.APIConnectionError) and "[REDACTED]" in str(err)
    else:
        assert isinstance(err, fi.APIStatusError) and err.status_code == status
        assert "[REDACTED]" in err.body and "/img.png" in str(err)
    texts = [str(err), getattr(err, "body", ""), getattr(err, "message", ""),
             repr(getattr(err, "headers", {}).items()), caplog.text]
    assert not [text for text in texts if signature in text]
    assert ("retrying" in caplog.text) is (status != 403)  # a download is retried after a 503 or a bad answer


def test_secrets_the_callers_own_authorization_header_is_redacted_like_the_token(api: FakeFriendli) -> None:
    """README suggests http_headers={"Authorization": ...} for a container behind a gateway: catches it quoted
    back (whole, or the credential after "Bearer ") in the error."""
    own = "Bearer OWN-gateway-secret-0123"
    api.queue(echo_token_401)
    client = fi.Client(base_url=api.url, target="container", retries=SEC_NO_RETRIES)
    err = sec_raised(lambda: client.generate(prompt="p", http_headers={"Authorization": own}))
    assert isinstance(err, fi.AuthenticationError) and api.requests[0].headers["authorization"] == own
    texts = [str(err), err.body, err.message, repr(err.headers.items()), repr(err.request_id)]
    assert [text for text in texts if "OWN-gateway" in text] == []


def test_a_redirect_hop_refused_before_sending_is_a_failure_before_sending(
    api: FakeFriendli, fake_sleep: FakeSleep
) -> None:
    """The first hop was sent; the second is refused at connect.  Catches the first hop's "sent" kept for the
    second (retried although retry_connection_errors is off)."""
    client = rt_client(api, fake_sleep, retries=fi.RetryConfig("backoff", retry_connection_errors=False,
                                                                max_retries=2))
    api.queue(rt_url_item(api.url + "/hop/0"),
              Reply(302, body=b"", headers={"Location": f"http://127.0.0.1:{sec_closed_port()}/x.png"}))
    item = client.generate(model="ep", prompt="p").data[0]
    with pytest.raises(fi.APIConnectionError) as info:
        item.content()
    assert info.value.sent is False and info.value.attempts == 1 and fake_sleep.calls == []


def test_an_empty_download_is_not_an_image(api: FakeFriendli, client: fi.Client, tmp_path: pathlib.Path) -> None:
    """A 204 or an empty 200 from the image host: catches b"" returned as the image and saved as an empty file."""
    api.queue(rt_url_item(api.url + "/files/empty.png"), Reply(204, body=b""))
    item = client.generate(model="ep", prompt="p").data[0]
    with pytest.raises(fi.InvalidResponseError, match=r"data\[0\]\.url gave an empty body"):
        item.save(tmp_path / "out")
    assert list(tmp_path.iterdir()) == []


# -- the token callable -----------------------------------------------------------------------------------------


def test_secrets_a_token_callable_is_called_once_per_attempt(api: FakeFriendli, fake_sleep: FakeSleep) -> None:
    calls: List[int] = []

    def token() -> str:
        calls.append(1)
        return TOKEN

    client = fi.Client(token, base_url=api.url, sleep=fake_sleep, clock=fake_sleep.clock)
    assert calls == []  # not read when the client is made
    api.queue(Reply(503, {"detail": "busy"}), Reply(503, {"detail": "busy"}))
    res = client.generate(model="ep", prompt="p", response_format="png")
    assert len(calls) == 3 == len(api.requests) and res.data[0].content() == PNG
    assert all(seen.headers["authorization"] == f"Bearer {TOKEN}" for seen in api.requests)


def test_secrets_a_failing_token_callable_names_only_the_exception_type(
    api: FakeFriendli, fake_sleep: FakeSleep, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    calls: List[int] = []

    def token() -> str:
        calls.append(1)
        raise KeyError("secret-store-down")

    client = fi.Client(token, base_url=api.url, sleep=fake_sleep, clock=fake_sleep.clock)
    err = sec_raised(lambda: client.generate(model="ep", prompt="p"))
    assert isinstance(err, fi.FriendliError) and "KeyError" in str(err)
    assert err.__cause__ is None and err.__context__ is None
    sec_assert_absent(["secret-store-down"], sec_error_texts(err), "the error of a failing token callable")
    sec_assert_logs_clean(caplog, ["secret-store-down"])
    assert calls == [1] and api.requests == []  # nothing sent, not retried


@pytest.mark.parametrize("later, error", [(KeyError("store down"), fi.FriendliError), ("", fi.FriendliValidationError)],
                         ids=["raises", "returns-nothing"])
def test_a_token_callable_failing_on_a_retry_says_how_many_attempts_were_made(
    api: FakeFriendli, fake_sleep: FakeSleep, later: Any, error: type
) -> None:
    answers = iter([TOKEN, TOKEN, later])

    def token() -> str:
        answer = next(answers)
        if isinstance(answer, Exception):
            raise answer
        return str(answer)

    client = fi.Client(token, base_url=api.url, sleep=fake_sleep, clock=fake_sleep.clock)
    api.queue(Reply(503, {"detail": "busy"}), Reply(503, {"detail": "busy"}))
    with pytest.raises(fi.FriendliError) as info:
        client.generate(model="ep", prompt="p")
    assert type(info.value) is error and info.value.attempts == 2 and len(api.requests) == 2
    assert str(info.value).endswith("(after 2 attempts)")


@pytest.mark.parametrize("bad", ["tok with-space-SECRETX", "", "   ", 42, None], ids=repr)
def test_secrets_a_token_callable_returning_an_unusable_value_is_refused_without_echo(api: FakeFriendli,
                                                                                      bad: Any) -> None:
    client = fi.Client(lambda: bad, base_url=api.url)
    err = sec_raised(lambda: client.generate(model="ep", prompt="p"))
    assert isinstance(err, fi.FriendliValidationError)
    assert "SECRETX" not in str(err) and api.requests == []


# -- reprs and the one holder -----------------------------------------------------------------------------------


def test_secrets_no_repr_or_attribute_of_a_client_or_facade_shows_the_token(api: FakeFriendli) -> None:
    client = fi.Client(TOKEN, base_url=api.url)
    sync = fi.SyncFriendli(token=TOKEN, server_url=api.url)
    objects: List[Any] = [client, sync, fi.AsyncClient(TOKEN, base_url=api.url),
                          fi.AsyncFriendli(token=TOKEN, server_url=api.url)]
    for obj in objects:
        assert TOKEN not in repr(obj) and TOKEN not in str(obj)
        for name, value in vars(obj).items():
            assert TOKEN not in repr(value), f"{type(obj).__name__}.{name}"
    assert "<set>" in repr(client)  # says that a token is set, without it
    # After calls (a success and an error), nothing reachable from the client holds the token but its holder.
    client.generate(model="ep", prompt="p", response_format="png")
    api.queue(echo_token_401)
    sec_raised(lambda: client.generate(model="ep", prompt="p"))
    sync.dedicated.image.generate(model="ep", prompt="p", response_format="png")
    for obj in objects:
        assert len(sec_token_holders(obj)) == 1, f"{type(obj).__name__} keeps the token in one place"
    holders = sec_token_holders(*objects)
    assert len(holders) == len(objects)
    sec_assert_absent(SEC_TOKEN_PIECES, sec_texts(objects, exempt=holders), "an object reachable from a client")


def test_secrets_downloads_never_carry_the_token_and_saved_files_do_not_hold_it(
    api: FakeFriendli, client: fi.Client, tmp_path: pathlib.Path
) -> None:
    def echo_headers_as_image(handler: Handler, seen: Seen) -> None:
        body = PNG + repr(seen.headers).encode()  # an image host that echoed whatever it was sent
        sec_write(handler, b"HTTP/1.1 200 OK\r\nContent-Type: image/png\r\nContent-Length: %d\r\n\r\n" % len(body)
                   + body)

    api.queue(ok_json({"data": [{"seed": 1, "response_format": "url", "url": api.url + "/files/x.png"}]}),
              echo_headers_as_image)
    path = client.generate(model="ep", prompt="p").data[0].save(tmp_path / "out")
    assert path.read_bytes().startswith(PNG) and b"user-agent" in path.read_bytes()
    assert TOKEN.encode() not in path.read_bytes()
    assert "authorization" not in api.requests[1].headers


# -- base_url: no user info, a valid port, no plain text off this machine ---------------------------------------


@pytest.mark.parametrize("userinfo", [f"user:{SEC_PASSWORD}@", f":{SEC_PASSWORD}@", f"{SEC_PASSWORD}@",
                                      f"user%40x:{SEC_PASSWORD}@"])
@pytest.mark.parametrize("how", ["Client", "FRIENDLI_BASE_URL", "SyncFriendli", "per-call-server_url"])
def test_base_url_user_info_is_refused_before_any_traffic_without_echoing_it(
    api: FakeFriendli, monkeypatch: pytest.MonkeyPatch, userinfo: str, how: str
) -> None:
    url = f"http://{userinfo}127.0.0.1:{api.server.server_port}"

    def call() -> None:
        if how == "Client":
            fi.Client(TOKEN, base_url=url).generate(model="ep", prompt="p")
        elif how == "FRIENDLI_BASE_URL":
            monkeypatch.setenv("FRIENDLI_BASE_URL", url)
            fi.Client(TOKEN).generate(model="ep", prompt="p")
        elif how == "SyncFriendli":
            fi.SyncFriendli(token=TOKEN, server_url=url).dedicated.image.generate(model="ep", prompt="p")
        else:
            friendli = fi.SyncFriendli(token=TOKEN, server_url=api.url)
            friendli.dedicated.image.generate(model="ep", prompt="p", server_url=url)

    err = sec_raised(call)
    assert isinstance(err, fi.FriendliValidationError) and "user info" in str(err)
    sec_assert_absent([SEC_PASSWORD], sec_error_texts(err, frames=False), "the error of a base_url with a password")
    assert api.requests == []


@pytest.mark.parametrize("url", [
    pytest.param(f"https://user:{SEC_PASSWORD}@api.friendli.invalid", id="plain-user-info"),
    pytest.param(f"https://user:{SEC_PASSWORD}@api.friendli.invalid?q=1", id="user-info-and-a-query"),
    pytest.param(f"https://user:{SEC_PASSWORD}@h:99999", id="user-info-and-a-bad-port"),
    pytest.param(f"ftp://user:{SEC_PASSWORD}@h", id="user-info-and-a-bad-scheme"),
    pytest.param(f"https://user:{SEC_PASSWORD}@h/a b", id="user-info-and-a-space"),
    pytest.param(f"https://user:{SEC_PASSWORD}@h\u00e9", id="user-info-and-not-ascii"),
    pytest.param(f"https://user:{SEC_PASSWORD}@[::1", id="user-info-and-a-broken-ipv6-host"),
    pytest.param(f"https://user:{SEC_PASSWORD}@h#frag", id="user-info-and-a-fragment"),
    pytest.param(f"https://user:{SEC_PASSWORD[:4]}/{SEC_PASSWORD[4:]}@h", id="a-password-with-a-slash"),
])
def test_base_url_password_appears_in_no_refusal(url: str) -> None:
    err = sec_raised(lambda: fi.Client(TOKEN, base_url=url))
    assert isinstance(err, fi.FriendliValidationError)
    sec_assert_absent([SEC_PASSWORD[4:]], sec_error_texts(err, frames=False), "the refusal of a base_url")


@pytest.mark.parametrize("port, accepted", [(0, False), (65536, False), (70000, False), (99999999, False),
                                            (1, True), (65535, True)])
def test_base_url_port_must_be_within_1_to_65535(api: FakeFriendli, port: int, accepted: bool) -> None:
    url = f"https://api.friendli.invalid:{port}"
    if accepted:
        assert fi.Client(TOKEN, base_url=url).base_url == url
        return
    with pytest.raises(fi.FriendliValidationError, match="base_url"):
        fi.Client(TOKEN, base_url=url)
    with pytest.raises(fi.FriendliValidationError, match="base_url"):  # a call's server_url: refused before sending
        fi.SyncFriendli(token=TOKEN, server_url=api.url).dedicated.image.generate(
            model="ep", prompt="p", server_url=f"http://127.0.0.1:{port}")
    assert api.requests == []


@pytest.mark.parametrize("url, target, insecure, accepted", [
    ("http://api.friendli.ai", "dedicated", False, False),
    ("HTTP://api.friendli.ai", "dedicated", False, False),
    ("http://10.0.0.5:8000", "dedicated", False, False),
    ("http://10.0.0.5:8000", "dedicated", True, False),  # the opt-in is for containers only
    ("http://localhost.example.com", "dedicated", False, False),
    ("http://127.0.0.1.example.com", "dedicated", False, False),
    ("http://10.0.0.5:8000", "container", False, False),
    ("http://10.0.0.5:8000", "container", True, True),
    ("http://gpu-box.internal:8000", "container", True, True),
    ("http://127.0.0.1:9", "dedicated", False, True),
    ("http://127.0.0.2:9", "dedicated", False, True),
    ("http://localhost:9", "dedicated", False, True),
    ("http://[::1]:9", "dedicated", False, True),
    ("http://127.0.0.1:9", "container", False, True),
    ("http://[::1]:9", "container", False, True),
    ("https://api.friendli.ai", "dedicated", False, True),
    ("https://10.0.0.5:8443", "dedicated", False, True),
    ("https://10.0.0.5:8443", "container", False, True),
], ids=lambda v: str(v))
def test_plain_http_is_refused_off_this_machine_unless_a_container_opts_in(
    url: str, target: str, insecure: bool, accepted: bool
) -> None:
    make = lambda: fi.Client(TOKEN, base_url=url, target=target, allow_insecure_http=insecure)  # noqa: E731
    if accepted:
        assert make().base_url == url
    else:
        err = sec_raised(make)
        assert isinstance(err, fi.FriendliValidationError) and "https://" in str(err)


def test_plain_http_off_this_machine_is_refused_before_connecting(api: FakeFriendli) -> None:
    # 0.0.0.0 is not loopback, yet connecting to it reaches this machine: had the client let it
    # through, the local server would have seen the request.
    url = f"http://0.0.0.0:{api.server.server_port}"
    calls: List[Callable[[], Any]] = [
        lambda: fi.Client(TOKEN, base_url=url).generate(model="ep", prompt="p"),
        lambda: fi.SyncFriendli(token=TOKEN, server_url=url).dedicated.image.generate(model="ep", prompt="p"),
        lambda: fi.SyncFriendli(token=TOKEN, server_url=api.url).dedicated.image.generate(
            model="ep", prompt="p", server_url=url),
        lambda: fi.Client(TOKEN, base_url=url, target="container").generate(prompt="p"),
    ]
    for call in calls:
        assert isinstance(sec_raised(call), fi.FriendliValidationError)
    time.sleep(0.05)
    assert api.requests == []
    # The opt-in lets a container through (the same address: now the request arrives).
    fi.Client(base_url=url, target="container", allow_insecure_http=True).generate(prompt="p")
    assert [seen.path for seen in api.requests] == ["/v1/images/generations"]


# -- pre-signed image URLs: the query string is a credential ---------------------------------------------------


@pytest.mark.parametrize("scheme", ["http", "https"])
def test_secrets_a_presigned_urls_query_is_in_no_error_repr_or_log(
    scheme: str, api: FakeFriendli, fake_sleep: FakeSleep, caplog: pytest.LogCaptureFixture,
    request: pytest.FixtureRequest
) -> None:
    caplog.set_level(logging.DEBUG)
    options: Dict[str, Any] = {}
    host: Any = api
    if scheme == "https":
        host = request.getfixturevalue("sec_https")
        options["ssl_context"] = request.getfixturevalue("sec_trusting_context")
    client = fi.Client(TOKEN, base_url=api.url, sleep=fake_sleep, clock=fake_sleep.clock, **options)
    url = f"{host.url}/img.png?X-Amz-Signature={SEC_SIGNATURE}&X-Amz-Credential=AKIA"
    api.queue(ok_json({"data": [{"seed": 1, "response_format": "url", "url": url}]}))
    host.queue(Reply(503, {"detail": "busy"}), Reply(403, {"detail": "Request has expired"}))
    res = client.generate(model="ep", prompt="p")
    err = sec_raised(res.data[0].content)
    assert isinstance(err, fi.PermissionDeniedError) and err.attempts == 2  # retried once, then refused
    downloads = [seen for seen in host.requests if seen.method == "GET"]
    assert len(downloads) == 2 and SEC_SIGNATURE in downloads[0].path  # the URL was used as sent
    assert "/img.png" in str(err)  # the message still says which image
    sec_assert_absent([SEC_SIGNATURE], sec_error_texts(err, frames=False), "the download error")
    sec_assert_absent([SEC_SIGNATURE], iter([repr(res), str(res), repr(res.data[0]), str(res.data)]), "a repr")
    sec_assert_logs_clean(caplog, [SEC_SIGNATURE])
    assert any("retrying" in record.getMessage() for record in caplog.records)  # the retry was logged


@pytest.mark.parametrize("url", [
    pytest.param("http://127.0.0.1:{closed}/img.png?X-Amz-Signature={sig}", id="connection-refused"),
    pytest.param("http://127.0.0.1:{closed}/img.png?X-Amz-Signature={sig}\u00e9", id="not-ascii"),
    pytest.param("ftp://files.example/img.png?X-Amz-Signature={sig}", id="not-http"),
    pytest.param("http://127.0.0.1:{closed}/img.png?X-Amz-Signature={sig} x", id="a-space-in-the-query"),
    pytest.param("http://127.0.0.1:{closed}/img.png?X-Amz-Signature={sig}\r\nX-Injected: 1", id="a-line-break"),
])
def test_secrets_a_presigned_urls_query_is_in_no_connection_error(url: str, api: FakeFriendli) -> None:
    client = fi.Client(TOKEN, base_url=api.url, retries=SEC_NO_RETRIES)
    sent = url.format(closed=sec_closed_port(), sig=SEC_SIGNATURE)
    api.queue(ok_json({"data": [{"seed": 1, "response_format": "url", "url": sent}]}))
    result = client.generate(model="ep", prompt="p")
    assert result.data[0].url == sent  # kept as sent
    err = sec_raised(result.data[0].content)
    assert isinstance(err, fi.FriendliError), repr(err)
    sec_assert_absent([SEC_SIGNATURE], sec_error_texts(err, frames=False), "the error of a download")
    assert SEC_SIGNATURE not in repr(result)


SEC_UNPARSABLE_URL = "http://[::1/img.png?X-Amz-Signature=" + SEC_SIGNATURE  # urlsplit: "Invalid IPv6 URL"


def test_secrets_repr_of_an_image_url_urlsplit_cannot_parse_works_and_hides_the_query(
    api: FakeFriendli, client: fi.Client
) -> None:
    api.queue(ok_json({"data": [{"seed": 1, "response_format": "url", "url": SEC_UNPARSABLE_URL}]}))
    res = client.generate(model="ep", prompt="p")
    assert res.data[0].url == SEC_UNPARSABLE_URL  # kept as sent
    assert SEC_SIGNATURE not in repr(res) and SEC_SIGNATURE not in repr(res.data[0])


@pytest.mark.parametrize("use", ["content", "data_uri", "save"])
def test_secrets_using_an_image_url_urlsplit_cannot_parse_is_a_friendli_error_without_the_query(
    use: str, api: FakeFriendli, client: fi.Client, fake_sleep: FakeSleep, tmp_path: pathlib.Path
) -> None:
    api.queue(ok_json({"data": [{"seed": 1, "response_format": "url", "url": SEC_UNPARSABLE_URL}]}))
    image = client.generate(model="ep", prompt="p").data[0]
    err = sec_raised(lambda: image.save(tmp_path / "x") if use == "save" else getattr(image, use)())
    assert isinstance(err, fi.FriendliError), repr(err)
    assert err.attempts == 0 and fake_sleep.calls == []  # refused before any download: it never gets better
    sec_assert_absent([SEC_SIGNATURE], sec_error_texts(err, frames=False), "the error")
    assert list(tmp_path.iterdir()) == []


def test_secrets_an_image_url_urlsplit_cannot_parse_is_an_invalid_response(api: FakeFriendli,
                                                                           client: fi.Client) -> None:
    api.queue(ok_json({"data": [{"seed": 1, "response_format": "url", "url": SEC_UNPARSABLE_URL}]}))
    err = sec_raised(client.generate(model="ep", prompt="p").data[0].content)
    assert isinstance(err, fi.InvalidResponseError), repr(err)


# -- TLS: certificates made here by the openssl command -----------------------------------------------------------


@dataclass
class SecTlsFiles:
    ca: pathlib.Path  # a private CA (self-signed), trusted by no system store
    leaf: Tuple[pathlib.Path, pathlib.Path]  # cert and key signed by ca, for IP:127.0.0.1 and DNS:localhost
    other: Tuple[pathlib.Path, pathlib.Path]  # signed by ca, for DNS:elsewhere.invalid only
    self_signed: Tuple[pathlib.Path, pathlib.Path]  # its own issuer, for IP:127.0.0.1 and DNS:localhost


def sec_openssl(openssl: str, *args: str) -> None:
    subprocess.run([openssl, *args], check=True, capture_output=True, timeout=60)


@pytest.fixture(scope="module")
def sec_tls_files(tmp_path_factory: pytest.TempPathFactory) -> SecTlsFiles:
    """Certificates with the extensions strict verification (Python 3.13's default) asks for."""
    openssl = shutil.which("openssl")
    if openssl is None:
        pytest.skip("the openssl command is not installed")
    folder = tmp_path_factory.mktemp("sec-tls")
    key = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes"]
    files = SecTlsFiles(folder / "ca.pem", (folder / "leaf.pem", folder / "leaf.key"),
                        (folder / "other.pem", folder / "other.key"), (folder / "self.pem", folder / "self.key"))
    try:
        sec_openssl(openssl, "req", "-x509", *key, "-keyout", str(folder / "ca.key"), "-out", str(files.ca),
                    "-days", "2", "-subj", "/CN=friendli-image test CA",
                    "-addext", "basicConstraints=critical,CA:TRUE", "-addext", "keyUsage=critical,keyCertSign,cRLSign")
        for (cert, cert_key), names, serial in ((files.leaf, "IP:127.0.0.1,DNS:localhost", "2"),
                                                (files.other, "DNS:elsewhere.invalid", "3")):
            csr, ext = cert.with_suffix(".csr"), cert.with_suffix(".ext")
            ext.write_text(f"subjectAltName={names}\nbasicConstraints=critical,CA:FALSE\n"
                           "keyUsage=critical,digitalSignature\nextendedKeyUsage=serverAuth\n"
                           "authorityKeyIdentifier=keyid\nsubjectKeyIdentifier=hash\n")
            sec_openssl(openssl, "req", *key, "-keyout", str(cert_key), "-out", str(csr), "-subj", "/CN=test server")
            sec_openssl(openssl, "x509", "-req", "-in", str(csr), "-CA", str(files.ca), "-CAkey",
                        str(folder / "ca.key"), "-set_serial", serial, "-days", "2", "-out", str(cert),
                        "-extfile", str(ext))
        sec_openssl(openssl, "req", "-x509", *key, "-keyout", str(files.self_signed[1]), "-out",
                    str(files.self_signed[0]), "-days", "2", "-subj", "/CN=friendli-image self-signed",
                    "-addext", "subjectAltName=IP:127.0.0.1,DNS:localhost",
                    "-addext", "basicConstraints=critical,CA:TRUE",
                    "-addext", "keyUsage=critical,digitalSignature,keyCertSign",
                    "-addext", "extendedKeyUsage=serverAuth")
    except (OSError, subprocess.SubprocessError) as exc:
        pytest.skip(f"openssl could not make the test certificates: {exc}")
    return files


class SecTlsServer(FakeServer):
    """FakeServer speaking TLS: each accepted connection is wrapped in its own thread (a client that
    aborts the handshake holds up no one), and counted."""

    api: "SecTlsFriendli"

    def get_request(self) -> Tuple[socket.socket, Any]:
        sock, address = super().get_request()
        with self.api.lock:
            self.api.connections += 1
        return sock, address

    def finish_request(self, request: Any, client_address: Any) -> None:
        request.settimeout(5)
        tls = self.api.context.wrap_socket(request, server_side=True)
        try:
            super().finish_request(tls, client_address)
        finally:
            tls.close()

    def handle_error(self, request: Any, client_address: Any) -> None:
        if not isinstance(sys.exc_info()[1], OSError):  # refused handshakes are what the tests provoke
            super().handle_error(request, client_address)


class SecTlsFriendli(FakeFriendli):
    """FakeFriendli over https; ``context`` (the certificate it shows) can be switched between tests."""

    scheme = "https"

    def __init__(self, context: ssl.SSLContext) -> None:
        self.context, self.connections = context, 0
        super().__init__(SecTlsServer)

    def reset(self) -> None:
        super().reset()
        self.connections = 0


def sec_server_context(cert: Tuple[pathlib.Path, pathlib.Path]) -> ssl.SSLContext:
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(str(cert[0]), str(cert[1]))
    return context


@pytest.fixture(scope="module")
def sec_tls_server(sec_tls_files: SecTlsFiles) -> Iterator[SecTlsFriendli]:
    server = SecTlsFriendli(sec_server_context(sec_tls_files.leaf))
    yield server
    server.close()


@pytest.fixture
def sec_https(sec_tls_server: SecTlsFriendli, sec_tls_files: SecTlsFiles) -> SecTlsFriendli:
    """The module's https FakeFriendli, reset, showing the CA-signed certificate for 127.0.0.1/localhost."""
    sec_tls_server.reset()
    sec_tls_server.context = sec_server_context(sec_tls_files.leaf)
    return sec_tls_server


@pytest.fixture
def sec_trusting_context(sec_tls_files: SecTlsFiles) -> ssl.SSLContext:
    return ssl.create_default_context(cafile=str(sec_tls_files.ca))


@pytest.mark.parametrize("certificate", ["self_signed", "leaf"], ids=["self-signed", "signed-by-a-private-ca"])
def test_tls_an_untrusted_server_is_rejected_by_default_and_not_retried(
    certificate: str, sec_https: SecTlsFriendli, sec_tls_files: SecTlsFiles, fake_sleep: FakeSleep
) -> None:
    sec_https.context = sec_server_context(getattr(sec_tls_files, certificate))
    client = fi.Client(TOKEN, base_url=sec_https.url, sleep=fake_sleep, clock=fake_sleep.clock)  # default retries
    err = sec_raised(lambda: client.generate(model="ep", prompt="p", response_format="png"))
    assert type(err) is fi.APIConnectionError and "certificate" in str(err)
    assert "ssl_context" in str(err)  # says what to do
    assert err.attempts == 1 and fake_sleep.calls == [] and sec_https.connections == 1
    assert sec_https.requests == []  # the token never crossed an unverified connection
    sec_assert_absent(SEC_TOKEN_PIECES, sec_error_texts(err, exempt=sec_token_holders(client)), "a TLS error")


@pytest.mark.parametrize("certificate, cafile", [("self_signed", "self_signed"), ("leaf", "ca")],
                         ids=["self-signed-trusted-itself", "private-ca-trusted"])
@pytest.mark.parametrize("host", ["127.0.0.1", "localhost"])
def test_tls_a_server_is_accepted_with_a_context_trusting_its_certificate(
    certificate: str, cafile: str, host: str, sec_https: SecTlsFriendli, sec_tls_files: SecTlsFiles
) -> None:
    sec_https.context = sec_server_context(getattr(sec_tls_files, certificate))
    trusted = getattr(sec_tls_files, cafile)
    context = ssl.create_default_context(cafile=str(trusted[0] if isinstance(trusted, tuple) else trusted))
    url = sec_https.url.replace("127.0.0.1", host)
    res = fi.Client(TOKEN, base_url=url, ssl_context=context).generate(model="ep", prompt="p", response_format="png")
    assert res.data[0].content() == PNG
    assert [seen.headers["authorization"] for seen in sec_https.requests] == [f"Bearer {TOKEN}"]


def test_tls_a_trusted_certificate_for_another_host_name_is_rejected(
    sec_https: SecTlsFriendli, sec_tls_files: SecTlsFiles, sec_trusting_context: ssl.SSLContext,
    fake_sleep: FakeSleep
) -> None:
    sec_https.context = sec_server_context(sec_tls_files.other)  # signed by the trusted CA, for elsewhere.invalid
    client = fi.Client(TOKEN, base_url=sec_https.url, ssl_context=sec_trusting_context, sleep=fake_sleep,
                       clock=fake_sleep.clock)
    err = sec_raised(lambda: client.generate(model="ep", prompt="p"))
    assert type(err) is fi.APIConnectionError and "certificate" in str(err)
    assert err.attempts == 1 and sec_https.connections == 1 and sec_https.requests == []


@pytest.mark.parametrize("trusting", [True, False], ids=["context-trusts-the-host", "default-context"])
def test_tls_image_downloads_use_the_clients_ssl_context(
    trusting: bool, api: FakeFriendli, sec_https: SecTlsFriendli, sec_trusting_context: ssl.SSLContext,
    fake_sleep: FakeSleep
) -> None:
    options: Dict[str, Any] = {"ssl_context": sec_trusting_context} if trusting else {}
    client = fi.Client(TOKEN, base_url=api.url, sleep=fake_sleep, clock=fake_sleep.clock, **options)
    api.queue(ok_json({"data": [{"seed": 1, "response_format": "url", "url": sec_https.url + "/files/image.png"}]}))
    image = client.generate(model="ep", prompt="p").data[0]
    if trusting:
        assert image.content() == PNG
        assert "authorization" not in sec_https.requests[0].headers
    else:
        err = sec_raised(image.content)
        assert type(err) is fi.APIConnectionError and "certificate" in str(err) and sec_https.connections == 1


def _sec_insecure(verify_mode: ssl.VerifyMode, check_hostname: bool) -> ssl.SSLContext:
    context = ssl.create_default_context()
    context.check_hostname = check_hostname
    context.verify_mode = verify_mode
    return context


@pytest.mark.parametrize("make, accepted", [
    pytest.param(lambda: _sec_insecure(ssl.CERT_NONE, False), False, id="CERT_NONE"),
    pytest.param(lambda: _sec_insecure(ssl.CERT_REQUIRED, False), False, id="check_hostname-False"),
    pytest.param(lambda: _sec_insecure(ssl.CERT_OPTIONAL, True), False, id="CERT_OPTIONAL"),
    pytest.param(lambda: "verify", False, id="not-a-context"),
    pytest.param(lambda: ssl.create_default_context(), True, id="default-context"),
    pytest.param(lambda: ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT), True, id="tls-client-context"),
])
@pytest.mark.parametrize("how", ["Client", "SyncFriendli", "AsyncClient"])
def test_tls_a_context_that_does_not_verify_is_refused_at_construction(
    make: Callable[[], Any], accepted: bool, how: str
) -> None:
    def build() -> Any:
        if how == "Client":
            return fi.Client(TOKEN, ssl_context=make())
        if how == "SyncFriendli":
            return fi.SyncFriendli(token=TOKEN, ssl_context=make())
        return fi.AsyncClient(TOKEN, ssl_context=make())

    if accepted:
        assert build() is not None
    else:
        err = sec_raised(build)
        assert isinstance(err, fi.FriendliValidationError) and "ssl_context" in str(err)


# -- proxies: the token never goes through one in clear text ------------------------------------------------------


class SecProxyHandler(socketserver.StreamRequestHandler):
    """A forward proxy for loopback targets: absolute-URI http requests and CONNECT tunnels."""

    server: "SecProxy"

    def handle(self) -> None:
        line = self.rfile.readline(65537).decode("latin-1")
        headers: List[str] = []
        while True:
            header = self.rfile.readline(65537).decode("latin-1")
            if header in ("\r\n", "\n", ""):
                break
            headers.append(header.rstrip("\r\n"))
        try:
            method, target, _version = line.split()
        except ValueError:
            return
        proxy = self.server
        with proxy.lock:
            proxy.seen.append((method, target))
            proxy.seen_headers.append(headers)
        if method == "CONNECT":
            self.tunnel(target)
        else:
            self.forward(method, target, headers)

    def tunnel(self, target: str) -> None:
        proxy = self.server
        host, _, port = target.rpartition(":")
        if proxy.connect_status != 200 or host not in ("127.0.0.1", "localhost"):
            status = proxy.connect_status if proxy.connect_status != 200 else 403
            self.wfile.write(b"HTTP/1.1 %d Refused\r\nProxy-Authenticate: Basic realm=\"p\"\r\n"
                             b"Content-Length: 0\r\n\r\n" % status)
            return
        with socket.create_connection((host, int(port)), timeout=10) as upstream:
            try:
                for byte in b"HTTP/1.1 200 Connection established\r\n\r\n":
                    self.wfile.write(bytes([byte]))
                    self.wfile.flush()
                    time.sleep(proxy.connect_trickle)
            except OSError:
                return
            self.pipe(upstream)

    def pipe(self, upstream: socket.socket) -> None:
        pending = self.rfile.peek(0) if hasattr(self.rfile, "peek") else b""
        if pending:
            upstream.sendall(self.rfile.read(len(pending)))
        with selectors.DefaultSelector() as selector:
            selector.register(self.connection, selectors.EVENT_READ, upstream)
            selector.register(upstream, selectors.EVENT_READ, self.connection)
            while True:
                events = selector.select(timeout=10)
                if not events:
                    return
                for key, _ in events:
                    try:
                        data = key.fileobj.recv(65536)  # type: ignore[union-attr]
                        if not data:
                            return
                        key.data.sendall(data)
                    except OSError:
                        return

    def forward(self, method: str, target: str, headers: List[str]) -> None:
        proxy = self.server
        parts = urllib.parse.urlsplit(target)
        if proxy.forward_status is not None or parts.hostname not in ("127.0.0.1", "localhost") or not parts.port:
            status = proxy.forward_status or 403
            self.wfile.write(b"HTTP/1.1 %d Proxy Says No\r\nProxy-Authenticate: Basic realm=\"p\"\r\n"
                             b"Content-Type: text/plain\r\nContent-Length: 2\r\n\r\nno" % status)
            return
        kept, length = [], 0
        for header in headers:
            name, _, value = header.partition(":")
            if name.strip().lower() == "content-length":
                length = int(value)
            if name.strip().lower() not in ("connection", "proxy-connection"):
                kept.append(header)
        body = self.rfile.read(length) if length else b""
        path = urllib.parse.urlunsplit(("", "", parts.path or "/", parts.query, ""))
        request = f"{method} {path} HTTP/1.1\r\n" + "\r\n".join(kept + ["Connection: close"]) + "\r\n\r\n"
        with socket.create_connection((parts.hostname, parts.port), timeout=10) as upstream:
            upstream.sendall(request.encode("latin-1") + body)
            while True:
                data = upstream.recv(65536)
                if not data:
                    break
                self.connection.sendall(data)


class SecProxy(socketserver.ThreadingTCPServer):
    """A threaded loopback proxy recording each request line (``seen``) and its headers."""

    daemon_threads = True
    allow_reuse_address = True

    def __init__(self) -> None:
        super().__init__(("127.0.0.1", 0), SecProxyHandler)
        self.lock = threading.Lock()
        self.reset()
        self.thread = threading.Thread(target=self.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
        self.thread.start()

    def reset(self) -> None:
        self.seen: List[Tuple[str, str]] = []
        self.seen_headers: List[List[str]] = []
        self.connect_status = 200  # the answer to CONNECT (200: tunnel)
        self.connect_trickle = 0.0  # seconds between the bytes of a 200 answer to CONNECT
        self.forward_status: Optional[int] = None  # answer absolute-URI requests with this instead of forwarding

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}"

    def connects(self) -> int:
        return sum(1 for method, _ in self.seen if method == "CONNECT")

    def handle_error(self, request: Any, client_address: Any) -> None:
        pass  # clients hang up on purpose (timeouts)

    def close(self) -> None:
        self.shutdown()
        self.server_close()


sec_proxy_server = pytest.fixture(scope="module", name="sec_proxy_server")(served(SecProxy))


@pytest.fixture
def sec_proxy(sec_proxy_server: SecProxy) -> SecProxy:
    sec_proxy_server.reset()
    return sec_proxy_server


@pytest.mark.parametrize("variable", ["HTTP_PROXY", "http_proxy"])
@pytest.mark.parametrize("credential", ["token", "token-callable", "authorization-header", "container-token"])
def test_proxy_a_request_carrying_the_token_over_plain_http_goes_direct(
    variable: str, credential: str, api: FakeFriendli, sec_proxy: SecProxy, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(variable, sec_proxy.url)  # before the client: urllib reads the environment then
    headers: Optional[Dict[str, str]] = None
    if credential == "token":
        client = fi.Client(TOKEN, base_url=api.url, retries=SEC_NO_RETRIES)
    elif credential == "token-callable":
        client = fi.Client(lambda: TOKEN, base_url=api.url, retries=SEC_NO_RETRIES)
    elif credential == "authorization-header":
        client = fi.Client(base_url=api.url, retries=SEC_NO_RETRIES)
        headers = {"Authorization": f"Bearer {TOKEN}"}
    else:
        client = fi.Client(TOKEN, base_url=api.url, target="container", retries=SEC_NO_RETRIES)
    if client.target == "container":
        client.generate(prompt="p")
    else:
        client.generate(model="ep", prompt="p", response_format="png", http_headers=headers)
    assert sec_proxy.seen == []  # the proxy saw nothing, not even a connection's request line
    assert api.requests[0].headers["authorization"] == f"Bearer {TOKEN}"


@pytest.mark.parametrize("no_proxy", [None, "127.0.0.1"], ids=["via-proxy", "NO_PROXY-bypasses"])
def test_proxy_an_http_image_download_without_the_token_may_use_the_proxy(
    no_proxy: Optional[str], api: FakeFriendli, sec_proxy: SecProxy, monkeypatch: pytest.MonkeyPatch,
    fake_sleep: FakeSleep
) -> None:
    monkeypatch.setenv("HTTP_PROXY", sec_proxy.url)
    if no_proxy is not None:
        monkeypatch.setenv("NO_PROXY", no_proxy)
    client = fi.Client(TOKEN, base_url=api.url, sleep=fake_sleep, clock=fake_sleep.clock)
    res = client.generate(model="ep", prompt="p")  # a url item on the api's own /files
    assert res.data[0].content() == PNG
    image_url = res.data[0].url
    assert image_url is not None
    if no_proxy is None:
        assert sec_proxy.seen == [("GET", image_url)]  # only the download, which carries no token
        assert not any(h.lower().startswith("authorization") for h in sec_proxy.seen_headers[0])
    else:
        assert sec_proxy.seen == []
    assert [seen.method for seen in api.requests] == ["POST", "GET"]
    assert "authorization" not in api.requests[1].headers


@pytest.mark.parametrize("status, retried", [(407, False), (403, True)])
def test_proxy_an_http_proxys_407_is_never_retried(
    status: int, retried: bool, api: FakeFriendli, sec_proxy: SecProxy, monkeypatch: pytest.MonkeyPatch,
    fake_sleep: FakeSleep
) -> None:
    monkeypatch.setenv("HTTP_PROXY", sec_proxy.url)
    sec_proxy.forward_status = status
    # Every 4xx is retried by this policy, yet a proxy asking for credentials never gets them by waiting.
    policy = fi.RetryConfig("backoff", fi.BackoffStrategy(1, 1, 1, 60000, jitter_ms=0), status_codes_override=["4XX"],
                            max_retries=1)
    client = fi.Client(TOKEN, base_url=api.url, retries=policy, sleep=fake_sleep, clock=fake_sleep.clock)
    image = client.generate(model="ep", prompt="p").data[0]
    err = sec_raised(image.content)
    assert isinstance(err, fi.APIStatusError) and err.status_code == status
    assert len(sec_proxy.seen) == (2 if retried else 1) == err.attempts
    assert [seen.method for seen in api.requests] == ["POST"]  # the API call went direct


@pytest.mark.parametrize("variable", ["HTTPS_PROXY", "https_proxy"])
def test_proxy_https_tunnels_through_https_proxy_and_the_proxy_sees_no_token(
    variable: str, sec_https: SecTlsFriendli, sec_trusting_context: ssl.SSLContext, sec_proxy: SecProxy,
    monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(variable, sec_proxy.url)
    client = fi.Client(TOKEN, base_url=sec_https.url, ssl_context=sec_trusting_context)
    res = client.generate(model="ep", prompt="p", response_format="png")
    assert res.data[0].content() == PNG
    assert sec_proxy.seen == [("CONNECT", sec_https.url[len("https://"):])]
    sec_assert_absent(SEC_TOKEN_PIECES, iter(sec_proxy.seen_headers[0]), "the CONNECT request")
    assert sec_https.requests[0].headers["authorization"] == f"Bearer {TOKEN}"  # inside the tunnel


@pytest.mark.parametrize("variable, value", [("NO_PROXY", "127.0.0.1"), ("no_proxy", "localhost,127.0.0.1"),
                                             ("NO_PROXY", "*")])
def test_proxy_no_proxy_bypasses_the_https_proxy(
    variable: str, value: str, sec_https: SecTlsFriendli, sec_trusting_context: ssl.SSLContext,
    sec_proxy: SecProxy, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("HTTPS_PROXY", sec_proxy.url)
    monkeypatch.setenv(variable, value)
    client = fi.Client(TOKEN, base_url=sec_https.url, ssl_context=sec_trusting_context)
    assert client.generate(model="ep", prompt="p", response_format="png").data
    assert sec_proxy.seen == [] and len(sec_https.requests) == 1


@pytest.mark.parametrize("status, connects", [(407, 1), (502, 2)], ids=["407-not-retried", "502-retried"])
def test_proxy_a_refused_tunnel_is_a_connection_error_and_407_is_not_retried(
    status: int, connects: int, sec_https: SecTlsFriendli, sec_trusting_context: ssl.SSLContext,
    sec_proxy: SecProxy, monkeypatch: pytest.MonkeyPatch, fake_sleep: FakeSleep
) -> None:
    monkeypatch.setenv("HTTPS_PROXY", sec_proxy.url)
    sec_proxy.connect_status = status
    policy = fi.RetryConfig("backoff", fi.BackoffStrategy(1, 1, 1, 60000, jitter_ms=0), max_retries=1)
    client = fi.Client(TOKEN, base_url=sec_https.url, ssl_context=sec_trusting_context, retries=policy,
                       sleep=fake_sleep, clock=fake_sleep.clock)
    started = time.monotonic()
    err = sec_raised(lambda: client.generate(model="ep", prompt="p"))
    assert type(err) is fi.APIConnectionError and str(status) in str(err)
    assert sec_proxy.connects() == connects == err.attempts and sec_https.connections == 0
    assert time.monotonic() - started < MARGIN
    sec_assert_absent(SEC_TOKEN_PIECES, sec_error_texts(err, exempt=sec_token_holders(client)), "a proxy error")


def test_proxy_a_407_on_connect_is_not_retried_by_the_default_policy(
    sec_https: SecTlsFriendli, sec_trusting_context: ssl.SSLContext, sec_proxy: SecProxy,
    monkeypatch: pytest.MonkeyPatch, fake_sleep: FakeSleep
) -> None:
    monkeypatch.setenv("HTTPS_PROXY", sec_proxy.url)
    sec_proxy.connect_status = 407
    client = fi.Client(TOKEN, base_url=sec_https.url, ssl_context=sec_trusting_context, sleep=fake_sleep,
                       clock=fake_sleep.clock)
    err = sec_raised(lambda: client.generate(model="ep", prompt="p"))
    assert type(err) is fi.APIConnectionError and err.attempts == 1
    assert sec_proxy.connects() == 1 and fake_sleep.calls == []


def test_proxy_a_refused_tunnel_is_not_tried_again_at_the_proxys_next_address(
    sec_https: SecTlsFriendli, sec_trusting_context: ssl.SSLContext, sec_proxy: SecProxy,
    monkeypatch: pytest.MonkeyPatch, fake_sleep: FakeSleep
) -> None:
    """The proxy's name has two addresses: the first answers CONNECT with 407, the second refuses connections.

    Catches the 407 taken for that address's failure: the next address's refusal, which is retried, would
    hide it, and the call would retry what never fixes itself."""
    rt_resolve_to(monkeypatch, "proxy.localhost", ["127.0.0.1", "127.0.0.2"])
    monkeypatch.setenv("HTTPS_PROXY", f"http://proxy.localhost:{urllib.parse.urlsplit(sec_proxy.url).port}")
    sec_proxy.connect_status = 407
    client = fi.Client(TOKEN, base_url=sec_https.url, ssl_context=sec_trusting_context, sleep=fake_sleep,
                       clock=fake_sleep.clock)
    err = sec_raised(lambda: client.generate(model="ep", prompt="p"))
    assert type(err) is fi.APIConnectionError and "407" in str(err) and err.attempts == 1
    assert sec_proxy.connects() == 1 and fake_sleep.calls == []


def test_clients_share_one_default_tls_context(sec_https: SecTlsFriendli, monkeypatch: pytest.MonkeyPatch) -> None:
    """Three SDK-facade calls (a client each) to an https server the default CA store does not trust.

    Catches a TLS context made for every client or call: each loads the CA certificates, about 15 ms."""
    made: List[ssl.SSLContext] = []
    create = ssl.create_default_context

    def counted(*args: Any, **kwargs: Any) -> ssl.SSLContext:
        made.append(create(*args, **kwargs))
        return made[-1]

    monkeypatch.setattr(ssl, "create_default_context", counted)
    friendli = fi.SyncFriendli(token=TOKEN, server_url=sec_https.url)
    for _ in range(3):
        err = sec_raised(lambda: friendli.dedicated.image.generate(model="ep", prompt="p", retries=None))
        assert isinstance(err, fi.APIConnectionError) and "certificate" in str(err)
    assert len(made) <= 1


def test_proxy_a_proxy_trickling_its_connect_answer_does_not_stretch_an_attempt(
    sec_https: SecTlsFriendli, sec_trusting_context: ssl.SSLContext, sec_proxy: SecProxy,
    monkeypatch: pytest.MonkeyPatch
) -> None:
    """41 bytes 0.1 s apart (4 s in all), each well within the 0.3 s timeout: the attempt ends at 0.3 s."""
    monkeypatch.setenv("HTTPS_PROXY", sec_proxy.url)
    sec_proxy.connect_trickle = 0.1
    client = fi.Client(TOKEN, base_url=sec_https.url, ssl_context=sec_trusting_context, timeout=0.3,
                       retries=SEC_NO_RETRIES)
    started = time.monotonic()
    err = sec_raised(lambda: client.generate(model="ep", prompt="p"))
    elapsed = time.monotonic() - started
    assert isinstance(err, fi.APITimeoutError) and err.attempts == 1 and sec_proxy.connects() == 1
    assert elapsed < 0.3 + 1.0


# -- the response fuzzer ---------------------------------------------------------------------------------------

SEC_FUZZ_TIMEOUT = 2.0
SEC_FUZZ_SEED = 20240601
_SEC_REASONS = [b"OK", b"", b"Whatever", b"\xff\xfe", b"Too Many Requests", b"x" * 300]
_SEC_ODD_VALUES: List[Any] = [None, True, False, 0, -1, 2**70, 1.5, float("nan"), float("inf"), "", "x", "A===", "====",
                              "iVBORw0KGgo=", "http://", "ftp://x/y", [], {}, [None], {"b64_json": None}, [[[[]]]]]


def sec_fuzz_valid_json(rng: random.Random, api_url: str) -> Any:
    if rng.random() < 0.2:
        return {"image": PNG_B64}  # a Friendli Container's answer
    items = []
    for i in range(rng.randint(1, 3)):
        item: Dict[str, Any] = {"seed": rng.randint(0, 2**32), "response_format": rng.choice(["png", "url", "jpeg"])}
        if rng.random() < 0.7:
            item["b64_json"] = PNG_B64
        else:
            item["url"] = api_url + "/files/image.png?sig=" + str(i)
        items.append(item)
    return {"data": items}


def sec_fuzz_mutate_structure(rng: random.Random, doc: Any) -> Any:
    """Replace one random node of a JSON document with an odd value."""
    if isinstance(doc, dict) and doc and rng.random() < 0.8:
        key = rng.choice(sorted(doc))
        if rng.random() < 0.2:
            del doc[key]
        else:
            doc[key] = sec_fuzz_mutate_structure(rng, doc[key])
        return doc
    if isinstance(doc, list) and doc and rng.random() < 0.8:
        index = rng.randrange(len(doc))
        doc[index] = sec_fuzz_mutate_structure(rng, doc[index])
        return doc
    return rng.choice(_SEC_ODD_VALUES)


def sec_fuzz_mutate_bytes(rng: random.Random, data: bytes) -> bytes:
    buf = bytearray(data)
    for _ in range(rng.randint(1, 4)):
        if not buf:
            break
        op, pos = rng.random(), rng.randrange(len(buf))
        if op < 0.4:
            buf[pos] = rng.getrandbits(8)
        elif op < 0.6:
            del buf[pos:pos + rng.randint(1, 20)]
        elif op < 0.8:
            buf[pos:pos] = bytes(rng.getrandbits(8) for _ in range(rng.randint(1, 8)))
        else:
            del buf[pos:]
    return bytes(buf)


def sec_fuzz_body(rng: random.Random, status: int, api_url: str) -> bytes:
    pick = rng.random()
    if pick < 0.15:
        return bytes(rng.getrandbits(8) for _ in range(rng.randint(0, 300)))
    if pick < 0.2:
        return b""
    if pick < 0.23:
        depth = rng.choice([10, 1000, 50000])
        return b'{"data": ' + b"[" * depth + b"]" * depth + b"}"
    if 200 <= status < 300 or rng.random() < 0.3:
        doc = sec_fuzz_valid_json(rng, api_url)
    else:
        doc = {"detail": rng.choice(["nope", [{"loc": ["body"], "msg": "bad"}], {"message": "m"}, None, 5])}
    if pick < 0.55:
        doc = sec_fuzz_mutate_structure(rng, doc)
    data = json.dumps(doc).encode()
    return sec_fuzz_mutate_bytes(rng, data) if pick > 0.85 else data


def sec_fuzz_retry_after(rng: random.Random) -> str:
    return rng.choice([
        "0", "1", "-3", "0.2", "1e400", "nan", "", " ", "soon", "120",
        email.utils.formatdate(time.time() + rng.choice([-100, -5, 5, 30, 100]), usegmt=True),
        "Mon, 32 Foo 2020 99:99:99 GMT", "Wed, 21 Oct 2015 07:28:00 +9999", "\u00e9t\u00e9".encode().decode("latin-1"),
    ])


def sec_fuzz_response(rng: random.Random, api_url: str) -> bytes:
    """One random raw HTTP response: random statuses, garbage or (in)valid JSON, random headers,
    wrong lengths, broken chunking, truncation."""
    roll = rng.random()
    status = 200 if roll < 0.4 else rng.choice([429, 500, 502, 503, 504]) if roll < 0.55 else rng.randint(100, 599)
    body = sec_fuzz_body(rng, status, api_url)
    version = rng.choice([b"HTTP/1.1"] * 8 + [b"HTTP/1.0", b"HTTP/2", b"ICY", b"http/1.1"])
    status_text = str(status).encode() if rng.random() < 0.97 else rng.choice([b"abc", b"99", b"1000", b"", b"-200"])
    head = [version + b" " + status_text + b" " + rng.choice(_SEC_REASONS)]
    headers: List[Tuple[bytes, bytes]] = []
    chunked = rng.random() < 0.15
    length_mode = rng.random()
    if chunked:
        headers.append((b"Transfer-Encoding", rng.choice([b"chunked"] * 4 + [b"gzip, chunked", b"Chunked"])))
    if not chunked or rng.random() < 0.1:
        if length_mode < 0.7:
            headers.append((b"Content-Length", str(len(body)).encode()))
        elif length_mode < 0.9:
            wrong = rng.choice([len(body) + rng.randint(1, 50), max(0, len(body) - rng.randint(1, 50)), -1, 10**20])
            headers.append((b"Content-Length", str(wrong).encode()))
        elif length_mode < 0.95:
            headers.append((b"Content-Length", rng.choice([b"abc", b"5, 5", b"", b"0x10", b" 12 "])))
            if rng.random() < 0.5:
                headers.append((b"Content-Length", b"3"))
    headers.append((b"Content-Type", rng.choice([b"application/json", b"text/html", b"text/plain", b"", b"\xff"])))
    if rng.random() < 0.1:
        headers.append((b"Content-Encoding", rng.choice([b"gzip", b"deflate", b"br", b"identity", b"gzip, gzip"])))
    if rng.random() < 0.4:
        name = rng.choice([b"Retry-After", b"retry-after-ms", b"RETRY-AFTER"])
        headers.append((name, sec_fuzz_retry_after(rng).encode("latin-1")))
    if rng.random() < 0.2:
        request_id = bytes(rng.choice(b"abcXYZ019-_ \t\x01\xff") for _ in range(rng.randint(0, 40)))
        headers.append((b"X-Request-Id", request_id))
    if rng.random() < 0.1:
        headers.append((b"Location", rng.choice([b"/elsewhere", b"http://127.0.0.1:1/x", b"", b"\xff\xfe"])))
    if rng.random() < 0.05:
        headers += [(b"X-Many-%d" % i, b"v") for i in range(rng.choice([50, 150]))]
    if rng.random() < 0.03:
        headers.append((b"X-Long", b"a" * rng.choice([1000, 70000])))
    if rng.random() < 0.05:
        headers.append((b"Broken header line without colon", b""))
    if rng.random() < 0.05:
        headers.append((b"X-Folded", b"first\r\n  continued"))
    rng.shuffle(headers)
    for name, value in headers:
        head.append(name + b": " + value if value or rng.random() < 0.5 else name)
    if chunked:
        pieces = [body[i:i + 64] for i in range(0, len(body), 64)]
        payload = b"".join(b"%x\r\n%s\r\n" % (len(p), p) for p in pieces) + b"0\r\n\r\n"
        if rng.random() < 0.3:
            payload = sec_fuzz_mutate_bytes(rng, payload)
    else:
        payload = body
    raw = b"\r\n".join(head) + b"\r\n\r\n" + payload
    if rng.random() < 0.05:
        raw = b"HTTP/1.1 100 Continue\r\n\r\n" + raw
    if rng.random() < 0.03:
        raw = raw[: rng.randrange(len(raw) + 1)]
    return raw


class SecFuzzServer:
    """Makes a FakeFriendli answer every request (API calls and image downloads) with the next response
    of a seeded random stream, written raw to the socket."""

    def __init__(self, api: FakeFriendli, seed: int) -> None:
        self.rng = random.Random(seed)
        self.api = api
        self.lock = threading.Lock()
        self.served: List[bytes] = []
        api.default = self.respond  # type: ignore[method-assign, assignment]  # a Responder is fine here

    def respond(self, seen: Seen) -> Responder:
        with self.lock:
            raw = sec_fuzz_response(self.rng, self.api.url)
            self.served.append(raw)

        def write(handler: Handler, seen: Seen) -> None:
            try:
                sec_write(handler, raw)
            except OSError:
                pass

        return write


@pytest.fixture(scope="module")
def sec_fuzz_api() -> Iterator[FakeFriendli]:
    server = FakeFriendli()  # its own: the fuzzer replaces its default answers
    yield server
    server.close()


def sec_run_fuzz(api: FakeFriendli, count: int, seed: int, folder: pathlib.Path) -> List[str]:
    """Make ``count`` calls (and use each result's images) against random responses; return the
    sequence of outcomes.  Anything but a result or a FriendliError fails with the responses that
    caused it; so does a call outlasting its bound or an error showing the token."""
    api.reset()
    server = SecFuzzServer(api, seed)
    fake = FakeSleep()
    # One retry at most, so retry/Retry-After handling is exercised without unbounded calls.
    options: Dict[str, Any] = dict(timeout=SEC_FUZZ_TIMEOUT, max_response_bytes=64 * 1024, retries=SEC_ONE_RETRY,
                                   sleep=fake, clock=fake.clock)
    dedicated = fi.Client(TOKEN, base_url=api.url, **options)
    container = fi.Client(TOKEN, base_url=api.url, target="container", **options)
    holders = sec_token_holders(dedicated, container)
    outcomes: List[str] = []
    bound = 2 * SEC_FUZZ_TIMEOUT + MARGIN
    for n in range(count):
        first = len(server.served)
        started = time.monotonic()
        step = "generate"
        try:
            if n % 4:
                res = dedicated.generate(model="ep", prompt=f"fuzz {n}", response_format="png")
            else:
                res = container.generate(prompt=f"fuzz {n}", response_format="jpeg")
            assert isinstance(res, fi.ImageGenerationResult)
            repr(res)
            outcome = f"result/{len(res.data)}"
            for index, image in enumerate(res.data[:2]):
                for step in ("content", "data_uri", "save"):
                    try:
                        if step == "content":
                            assert isinstance(image.content(), bytes)
                        elif step == "data_uri":
                            assert image.data_uri().startswith("data:")
                        else:
                            assert image.save(folder / f"{n}-{index}").is_file()
                        outcome += f" {step}:ok"
                    except fi.FriendliError as exc:
                        outcome += f" {step}:{type(exc).__name__}"
        except fi.FriendliError as exc:
            sec_assert_absent([TOKEN], sec_texts([exc], exempt=holders), "a fuzzed error")
            outcome = type(exc).__name__
        except BaseException as exc:
            raise AssertionError(f"call {n} (seed {seed}), {step}: {type(exc).__name__}: {exc!r}\n"
                                 f"responses: {server.served[first:]!r}") from exc
        elapsed = time.monotonic() - started
        assert elapsed < bound, f"call {n} (seed {seed}) took {elapsed:.2f} s: {server.served[first:]!r}"
        outcomes.append(outcome)
    return outcomes


def test_fuzz_random_responses_end_in_a_result_or_a_friendli_error(sec_fuzz_api: FakeFriendli,
                                                                  tmp_path: pathlib.Path) -> None:
    count = int(os.environ.get("FRIENDLI_FUZZ_COUNT", "400"))  # about 0.4 s; run more by hand (above)
    outcomes = sec_run_fuzz(sec_fuzz_api, count, SEC_FUZZ_SEED, tmp_path)
    assert len(outcomes) == count
    if count >= 400:  # the generator reaches the interesting outcomes (else it would be testing little)
        kinds = {outcome.split("/")[0] for outcome in outcomes}
        text = " ".join(outcomes)
        for wanted in ("result", "InvalidResponseError", "APIConnectionError", "APIStatusError", "RateLimitError",
                       "InternalServerError"):
            assert wanted in kinds, sorted(kinds)
        for wanted in ("content:ok", "save:ok", "data_uri:ok", "content:InvalidResponseError"):
            assert wanted in text


def test_fuzz_the_same_seed_gives_the_same_outcomes(sec_fuzz_api: FakeFriendli, tmp_path: pathlib.Path) -> None:
    first = sec_run_fuzz(sec_fuzz_api, 30, 7, tmp_path / "a")
    assert sec_run_fuzz(sec_fuzz_api, 30, 7, tmp_path / "b") == first
    assert sec_run_fuzz(sec_fuzz_api, 30, 8, tmp_path / "c") != first  # the seed matters
    a, b = random.Random(5), random.Random(5)
    assert [sec_fuzz_response(a, "http://h") for _ in range(50)] == [sec_fuzz_response(b, "http://h")
                                                                     for _ in range(50)]


# -- schema-valid answers are all accepted ----------------------------------------------------------------------

SEC_SPEC_EXAMPLES: List[Tuple[str, str, Any]] = [  # (target, operation, the published spec's example)
    ("dedicated", "generate", {"data": [{"url": "(url-to-generated-image)", "seed": 123, "response_format": "url"}]}),
    ("dedicated", "edit", {"data": [{"url": "(url-to-edited-image)", "seed": 789, "response_format": "url"}]}),
    ("container", "generate", {"image": "<base64 encoded image>"}),
    ("container", "edit", {"image": "<base64 encoded image>"}),
]

_SEC_STRINGS = ["", "x", "(url-to-generated-image)", PNG_B64, "not base64 at all", "https://cdn.example/i.png?sig=1",
                "http://[::1", "\u00e9\u4e2d\U0001F600", "a\nb\tc\"\\", "data:image/png;base64," + PNG_B64, " " * 3]


def sec_schema_string(rng: random.Random) -> str:
    if rng.random() < 0.5:
        return rng.choice(_SEC_STRINGS)
    alphabet = "abcXYZ019+/=:._-?&% \u00e9\u4e2d\U0001F600\\\"\n"
    return "".join(rng.choice(alphabet) for _ in range(rng.randint(0, 40)))


def sec_schema_valid_answer(rng: random.Random, target: str) -> Any:
    """A random answer the published schema allows (extra properties included: it does not forbid them)."""
    extra = {"created": rng.randint(0, 2**40), "object": "list"} if rng.random() < 0.3 else {}
    if target == "container":
        return {"image": sec_schema_string(rng), **extra}
    items = []
    with_url = rng.random() < 0.5  # data is a list of UrlImageItem, or a list of B64ImageItem
    for _ in range(rng.choice([0, 1, 1, 2, 4])):
        item: Dict[str, Any] = {"seed": rng.choice([0, -1, 1, 2**31, 2**63, -(2**63), 10**30, rng.randint(0, 9999)]),
                                "response_format": rng.choice(fi.RESPONSE_FORMATS)}
        item["url" if with_url else "b64_json"] = sec_schema_string(rng)
        if rng.random() < 0.2:
            item["b64_json" if with_url else "url"] = sec_schema_string(rng)
        if rng.random() < 0.2:
            item["revised_prompt"] = sec_schema_string(rng)
        items.append(item)
    return {"data": items, **extra}


def test_fuzz_every_schema_valid_answer_is_accepted(api: FakeFriendli, fake_sleep: FakeSleep) -> None:
    rng = random.Random(SEC_FUZZ_SEED)
    cases = list(SEC_SPEC_EXAMPLES) + [(target, rng.choice(["generate", "edit"]), None)
                                       for target in ["dedicated", "container"] * 40]
    clients = {target: fi.Client(TOKEN, base_url=api.url, target=target, retries=SEC_NO_RETRIES, sleep=fake_sleep,
                                 clock=fake_sleep.clock) for target in ("dedicated", "container")}
    for target, operation, answer in cases:
        answer = answer if answer is not None else sec_schema_valid_answer(rng, target)
        api.queue(ok_json(copy.deepcopy(answer)))
        kwargs: Dict[str, Any] = {"prompt": "p"} if target == "container" else {"model": "ep", "prompt": "p"}
        if operation == "edit":
            kwargs["image"] = PNG
        try:
            res = getattr(clients[target], operation)(**kwargs)
        except fi.FriendliError as exc:
            raise AssertionError(f"a schema-valid {target} answer was refused: {answer!r}: {exc}") from exc
        if target == "container":
            assert [image.b64_json for image in res.data] == [answer["image"]]
        else:
            assert len(res.data) == len(answer["data"])
            for image, item in zip(res.data, answer["data"]):
                assert (image.seed, image.response_format) == (item["seed"], item["response_format"])
                assert (image.url, image.b64_json) == (item.get("url"), item.get("b64_json"))


# ===========================================================================
# Client
# ===========================================================================

GENERATIONS = "/dedicated/v1/images/generations"
EDITS = "/dedicated/v1/images/edits"
CONTAINER_GENERATIONS = "/v1/images/generations"
CONTAINER_EDITS = "/v1/images/edits"
PNG_DATA_URI = "data:image/png;base64," + PNG_B64
JPEG_DATA_URI = "data:image/jpeg;base64," + base64.b64encode(JPEG).decode()
IMAGE_URL = "https://cdn.example.com/in/cat.png?sig=abc"


def client_busy(count: int, **headers: str) -> List[Reply]:
    """``count`` answers of 503 Service Unavailable (retryable by default)."""
    return [Reply(503, {"detail": "busy"}, headers=dict(headers)) for _ in range(count)]


def client_ok() -> Reply:
    return Reply(200, {"data": [png_item()]})


def test_generate_sends_the_path_and_headers_the_api_expects(client: fi.Client, api: FakeFriendli) -> None:
    result = client.generate(model="ep-1", prompt="a red fox", response_format="png")
    assert result.data[0].content() == PNG
    (seen,) = api.requests
    assert (seen.method, seen.path) == ("POST", GENERATIONS)
    assert seen.headers["authorization"] == f"Bearer {TOKEN}"
    assert seen.headers["content-type"] == "application/json"
    assert seen.headers["accept"] == "application/json"
    python = f"python/{sys.version_info[0]}.{sys.version_info[1]}"
    assert seen.headers["user-agent"] == f"friendli-image/{fi.__version__} {python}"
    assert "x-friendli-team" not in seen.headers  # no team configured: none invented


def test_a_custom_user_agent_replaces_the_default(api: FakeFriendli) -> None:
    fi.Client(TOKEN, base_url=api.url, user_agent="my-app/2.1").generate(model="ep", prompt="x")
    assert api.requests[0].headers["user-agent"] == "my-app/2.1"


@pytest.mark.parametrize(
    "kwargs, expected",
    [
        pytest.param({"model": "ep-1"}, {"model": "ep-1", "prompt": "p", "num_inference_steps": 20},
                     id="defaults-send-steps-and-omit-none-fields"),
        pytest.param({"model": "ep-1:style", "num_inference_steps": 10},
                     {"model": "ep-1:style", "prompt": "p", "num_inference_steps": 10},
                     id="adapter-string-kept-and-steps-given"),
        pytest.param({"model": "ep-1", "guidance_scale": 7.5, "seed": 42, "response_format": "jpeg"},
                     {"model": "ep-1", "prompt": "p", "num_inference_steps": 20, "guidance_scale": 7.5,
                      "seed": 42, "response_format": "jpeg"},
                     id="given-fields-all-sent"),
        pytest.param({"model": "ep-1", "seed": 0}, {"model": "ep-1", "prompt": "p", "num_inference_steps": 20,
                                                     "seed": 0},
                     id="seed-zero-is-not-dropped-as-falsy"),
    ],
)
def test_generate_sends_the_json_body_the_api_expects(
    client: fi.Client, api: FakeFriendli, kwargs: Dict[str, Any], expected: Dict[str, Any]
) -> None:
    client.generate(prompt="p", **kwargs)
    assert api.requests[0].json == expected


def test_edit_posts_to_the_edits_path_with_the_image(client: fi.Client, api: FakeFriendli) -> None:
    result = client.edit(model="ep-1", prompt="make it blue", image=PNG, response_format="png")
    assert result.data[0].content() == PNG
    (seen,) = api.requests
    assert (seen.method, seen.path) == ("POST", EDITS)
    assert seen.headers["authorization"] == f"Bearer {TOKEN}"
    assert seen.json == {"model": "ep-1", "prompt": "make it blue", "num_inference_steps": 20,
                         "response_format": "png", "image": {"image": PNG_DATA_URI}}


def client_image_file(tmp_path: pathlib.Path, name: str = "in.png", data: bytes = PNG) -> pathlib.Path:
    path = tmp_path / name
    path.write_bytes(data)
    return path


@pytest.mark.parametrize(
    "make_input, expected",
    [
        pytest.param(lambda tmp: IMAGE_URL, {"image": IMAGE_URL}, id="url-kept-as-is"),
        pytest.param(lambda tmp: PNG_DATA_URI, {"image": PNG_DATA_URI}, id="data-uri-kept-as-is"),
        pytest.param(lambda tmp: PNG_B64, {"image": PNG_B64}, id="base64-text-kept-as-is"),
        pytest.param(lambda tmp: PNG, {"image": PNG_DATA_URI}, id="png-bytes-become-a-png-data-uri"),
        pytest.param(lambda tmp: JPEG, {"image": JPEG_DATA_URI}, id="jpeg-bytes-become-a-jpeg-data-uri"),
        pytest.param(lambda tmp: bytearray(PNG), {"image": PNG_DATA_URI}, id="bytearray-accepted"),
        pytest.param(lambda tmp: client_image_file(tmp), {"image": PNG_DATA_URI}, id="pathlib-path-read"),
        pytest.param(lambda tmp: str(client_image_file(tmp, "j.jpg", JPEG)), {"image": JPEG_DATA_URI},
                     id="str-path-read-not-sent-as-text"),
        pytest.param(lambda tmp: {"image": IMAGE_URL}, {"image": IMAGE_URL}, id="image-dict-unwrapped"),
        pytest.param(lambda tmp: [IMAGE_URL, PNG, client_image_file(tmp, "k.jpg", JPEG), {"image": PNG_B64}],
                     [{"image": IMAGE_URL}, {"image": PNG_DATA_URI}, {"image": JPEG_DATA_URI}, {"image": PNG_B64}],
                     id="list-of-mixed-inputs-keeps-order"),
    ],
)
def test_edit_accepts_every_documented_image_input(
    client: fi.Client, api: FakeFriendli, tmp_path: pathlib.Path,
    make_input: Callable[[pathlib.Path], Any], expected: Any,
) -> None:
    client.edit(model="ep-1", prompt="p", image=make_input(tmp_path))
    assert api.requests[0].json["image"] == expected


# -- configuration from arguments and the environment ---------------------------------------------


def test_default_base_url_is_the_public_api() -> None:
    assert fi.Client(TOKEN).base_url == fi.DEFAULT_BASE_URL == "https://api.friendli.ai"


@pytest.mark.parametrize(
    "env, kwargs, attribute, expected",
    [
        pytest.param({"FRIENDLI_BASE_URL": "https://gw.example.com/api"}, {}, "base_url",
                     "https://gw.example.com/api", id="base-url-from-environment"),
        pytest.param({"FRIENDLI_BASE_URL": "https://gw.example.com"}, {"base_url": "https://other.example.com"},
                     "base_url", "https://other.example.com", id="explicit-base-url-beats-environment"),
        pytest.param({"FRIENDLI_TEAM": "team-env"}, {}, "team", "team-env", id="team-from-environment"),
        pytest.param({"FRIENDLI_TEAM": "team-env"}, {"team": "team-arg"}, "team", "team-arg",
                     id="explicit-team-beats-environment"),
        pytest.param({}, {}, "team", None, id="no-team-anywhere-means-none"),
    ],
)
def test_base_url_and_team_come_from_arguments_then_environment(
    monkeypatch: pytest.MonkeyPatch, env: Dict[str, str], kwargs: Dict[str, Any], attribute: str, expected: Any
) -> None:
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    assert getattr(fi.Client(TOKEN, **kwargs), attribute) == expected


def test_token_and_base_url_are_read_from_the_environment(api: FakeFriendli, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FRIENDLI_TOKEN", TOKEN)
    monkeypatch.setenv("FRIENDLI_BASE_URL", api.url)
    monkeypatch.setenv("FRIENDLI_TEAM", "team-env")
    fi.Client().generate(model="ep", prompt="x")
    (seen,) = api.requests
    assert seen.headers["authorization"] == f"Bearer {TOKEN}"
    assert seen.headers["x-friendli-team"] == "team-env"


@pytest.mark.parametrize(
    "env_token, arg_token, succeeds",
    [
        pytest.param("fl-wrong-env", TOKEN, True, id="explicit-token-beats-a-wrong-environment-token"),
        pytest.param(TOKEN, "fl-wrong-arg", False, id="explicit-wrong-token-is-not-replaced-by-environment"),
    ],
)
def test_explicit_token_beats_the_environment(
    api: FakeFriendli, monkeypatch: pytest.MonkeyPatch, env_token: str, arg_token: str, succeeds: bool
) -> None:
    monkeypatch.setenv("FRIENDLI_TOKEN", env_token)
    client = fi.Client(arg_token, base_url=api.url)
    if succeeds:
        client.generate(model="ep", prompt="x")
    else:
        with pytest.raises(fi.AuthenticationError):
            client.generate(model="ep", prompt="x")
    assert api.requests[0].headers["authorization"] == f"Bearer {arg_token}"


@pytest.mark.parametrize("env_token", [None, "", "   "], ids=["unset", "empty", "blank"])
def test_no_token_is_refused_before_any_traffic(
    api: FakeFriendli, monkeypatch: pytest.MonkeyPatch, env_token: Optional[str]
) -> None:
    if env_token is not None:
        monkeypatch.setenv("FRIENDLI_TOKEN", env_token)
    with pytest.raises(fi.FriendliValidationError, match="FRIENDLI_TOKEN"):
        fi.Client(base_url=api.url).generate(model="ep", prompt="x")
    with pytest.raises(fi.FriendliValidationError, match="FRIENDLI_TOKEN"):
        fi.Client(base_url=api.url).edit(model="ep", prompt="x", image=PNG)
    assert api.requests == []


def test_a_token_callable_is_called_for_each_attempt(api: FakeFriendli, fake_sleep: FakeSleep) -> None:
    """A rotating secret: the retry uses the fresh token, not the one read when the call began."""
    tokens = iter(["fl-stale-token", TOKEN])
    calls: List[str] = []

    def token() -> str:
        calls.append("called")
        return next(tokens)

    api.queue(*client_busy(1))
    client = fi.Client(token, base_url=api.url, sleep=fake_sleep, clock=fake_sleep.clock)
    assert calls == []  # not read when the client is made
    client.generate(model="ep", prompt="x")
    assert [seen.headers["authorization"] for seen in api.requests] == ["Bearer fl-stale-token", f"Bearer {TOKEN}"]
    assert len(calls) == 2


# -- team and extra headers -------------------------------------------------------------------------


@pytest.mark.parametrize(
    "client_team, call_team, expected",
    [
        pytest.param("team-a", None, "team-a", id="client-team-sent"),
        pytest.param("team-a", "team-b", "team-b", id="per-call-team-overrides-client-team"),
        pytest.param(None, "team-b", "team-b", id="per-call-team-without-client-team"),
        pytest.param(None, None, None, id="no-team-no-header"),
    ],
)
@pytest.mark.parametrize("via", ["client", "sync-friendli"])
def test_team_is_sent_as_x_friendli_team(
    api: FakeFriendli, client_team: Optional[str], call_team: Optional[str], expected: Optional[str], via: str
) -> None:
    if via == "client":
        client: Any = fi.Client(TOKEN, base_url=api.url, team=client_team)
    else:  # the SDK facade: its constructor's x_friendli_team, then the call's
        client = fi.SyncFriendli(token=TOKEN, server_url=api.url, x_friendli_team=client_team).dedicated.image
    client.generate(model="ep", prompt="x", x_friendli_team=call_team)
    client.edit(model="ep", prompt="x", image=PNG, x_friendli_team=call_team)
    assert [seen.headers.get("x-friendli-team") for seen in api.requests] == [expected, expected]


def test_team_is_never_sent_to_a_container(api: FakeFriendli, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FRIENDLI_TEAM", "team-env")
    client = fi.Client(base_url=api.url, target="container", team="team-a")
    client.generate(prompt="x")
    client.generate(prompt="x", x_friendli_team="team-b")
    assert [seen.headers.get("x-friendli-team") for seen in api.requests] == [None, None]


def test_http_headers_are_added(client: fi.Client, api: FakeFriendli) -> None:
    client.generate(model="ep", prompt="x", http_headers={"X-Trace-Id": "trace-1", "X-Other": "2"})
    seen = api.requests[0]
    assert seen.headers["x-trace-id"] == "trace-1" and seen.headers["x-other"] == "2"
    assert seen.headers["authorization"] == f"Bearer {TOKEN}"  # added, not instead of the token


@pytest.mark.parametrize("name", ["Authorization", "authorization"])
@pytest.mark.parametrize("client_token", ["fl-client-token", None], ids=["client-has-token", "client-has-none"])
def test_an_own_authorization_header_replaces_the_token(
    api: FakeFriendli, name: str, client_token: Optional[str]
) -> None:
    client = fi.Client(client_token, base_url=api.url)
    client.generate(model="ep", prompt="x", http_headers={name: f"Bearer {TOKEN}"})
    (seen,) = api.requests
    assert seen.headers["authorization"] == f"Bearer {TOKEN}"
    assert "fl-client-token" not in json.dumps(seen.headers)


# -- send -----------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "request_factory, path",
    [
        pytest.param(lambda: fi.ImageGenerationRequest("ep-1", "a fox", seed=3), GENERATIONS, id="generation"),
        pytest.param(lambda: fi.ImageEditRequest("ep-1", "a fox", image=PNG), EDITS, id="edit"),
    ],
)
def test_send_sends_a_prebuilt_request(
    api: FakeFriendli, request_factory: Callable[[], fi.ImageGenerationRequest], path: str
) -> None:
    client = fi.Client(TOKEN, base_url=api.url, team="team-a")
    request = request_factory()
    result = client.send(request, http_headers={"X-Trace-Id": "t1"})
    assert len(result.data) == 1
    (seen,) = api.requests
    assert seen.path == path and json.loads(seen.body) == request.to_dict()
    assert seen.headers["authorization"] == f"Bearer {TOKEN}" and seen.headers["content-type"] == "application/json"
    assert seen.headers["x-friendli-team"] == "team-a" and seen.headers["x-trace-id"] == "t1"


@pytest.mark.parametrize(
    "target, request_factory",
    [
        pytest.param("dedicated", lambda: fi.ImageGenerationRequest(None, "x", target="container"),
                     id="container-generation-to-dedicated-client"),
        pytest.param("dedicated", lambda: fi.ImageEditRequest(None, "x", target="container", image=PNG),
                     id="container-edit-to-dedicated-client"),
        pytest.param("container", lambda: fi.ImageGenerationRequest("ep", "x"),
                     id="dedicated-generation-to-container-client"),
        pytest.param("container", lambda: {"model": "ep", "prompt": "x"}, id="a-plain-dict-is-not-a-request"),
    ],
)
def test_send_refuses_a_request_built_for_another_target(
    api: FakeFriendli, target: str, request_factory: Callable[[], Any]
) -> None:
    client = fi.Client(TOKEN, base_url=api.url, target=target)
    with pytest.raises(fi.FriendliValidationError, match=target):
        client.send(request_factory())
    assert api.requests == []


@pytest.mark.parametrize("field, value", [("prompt", "a \ud800 fox"), ("seed", object()),
                                          ("guidance_scale", float("nan")), ("prompt", DEEP)],
                         ids=["surrogate", "object", "nan", "nested-too-deep"])
def test_send_refuses_a_request_changed_after_validation(api: FakeFriendli, field: str, value: Any) -> None:
    request = fi.ImageGenerationRequest("ep", "a fox")
    setattr(request, field, value)  # dataclasses validate when built, not when a field is set
    with pytest.raises(fi.FriendliValidationError, match="build it again"):
        fi.Client(TOKEN, base_url=api.url).send(request)
    assert api.requests == []


# -- container target ------------------------------------------------------------------------------


def test_container_defaults_to_localhost_8000_and_ignores_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FRIENDLI_BASE_URL", "https://gw.example.com")
    monkeypatch.setenv("FRIENDLI_TEAM", "team-env")
    monkeypatch.setenv("FRIENDLI_TOKEN", TOKEN)
    container = fi.Client(target="container")
    assert container.base_url == fi.DEFAULT_CONTAINER_BASE_URL == "http://localhost:8000"
    assert container.team is None
    assert "token=None" in repr(container)


@pytest.mark.parametrize(
    "token, expected_authorization",
    [
        pytest.param(None, None, id="no-token-read-from-environment-none-sent"),
        pytest.param(TOKEN, f"Bearer {TOKEN}", id="a-given-token-is-sent"),
    ],
)
def test_container_sends_a_token_only_when_given(
    api: FakeFriendli, monkeypatch: pytest.MonkeyPatch, token: Optional[str], expected_authorization: Optional[str]
) -> None:
    monkeypatch.setenv("FRIENDLI_TOKEN", "fl-env-token-must-stay-home")
    client = fi.Client(token, base_url=api.url, target="container")
    client.generate(prompt="x")
    client.edit(prompt="x", image=PNG)
    assert [seen.path for seen in api.requests] == [CONTAINER_GENERATIONS, CONTAINER_EDITS]
    assert [seen.headers.get("authorization") for seen in api.requests] == [expected_authorization] * 2


@pytest.mark.parametrize(
    "kwargs, expected_format, expected_bytes",
    [
        pytest.param({}, "jpeg", JPEG, id="jpeg-when-none-asked"),
        pytest.param({"response_format": "jpeg", "seed": 42}, "jpeg", JPEG, id="jpeg-asked-with-seed"),
        pytest.param({"response_format": "raw", "seed": 7}, "raw", PNG, id="raw-asked-with-seed"),
    ],
)
def test_container_answer_becomes_one_image_with_the_request_seed_and_format(
    api: FakeFriendli, kwargs: Dict[str, Any], expected_format: str, expected_bytes: bytes
) -> None:
    result = fi.Client(base_url=api.url, target="container").generate(prompt="x", **kwargs)
    (image,) = result.data
    assert image.seed == kwargs.get("seed")
    assert image.response_format == expected_format
    assert image.content() == expected_bytes
    assert api.requests[0].json.get("response_format") == kwargs.get("response_format")


@pytest.mark.parametrize("fmt", ["png", "url", "jpg"])
def test_container_refuses_dedicated_only_formats_locally(api: FakeFriendli, fmt: str) -> None:
    with pytest.raises(fi.FriendliValidationError, match="response_format"):
        fi.Client(base_url=api.url, target="container").generate(prompt="x", response_format=fmt)
    assert api.requests == []


@pytest.mark.parametrize(
    "model, expected", [pytest.param(None, None, id="model-optional"), pytest.param("my-lora", "my-lora",
                                                                                    id="adapter-route-sent")]
)
def test_container_model_is_an_optional_adapter_route(api: FakeFriendli, model: Optional[str],
                                                      expected: Optional[str]) -> None:
    fi.Client(base_url=api.url, target="container").generate(prompt="x", model=model)
    assert api.requests[0].json.get("model") == expected
    assert ("model" in api.requests[0].json) == (expected is not None)


def test_dedicated_target_requires_a_model(client: fi.Client, api: FakeFriendli) -> None:
    with pytest.raises(fi.FriendliValidationError, match="model"):
        client.generate(prompt="x")
    assert api.requests == []


# -- module-level generate, context manager, repr ------------------------------------------------


def test_module_level_generate_uses_the_environment(api: FakeFriendli, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FRIENDLI_TOKEN", TOKEN)
    monkeypatch.setenv("FRIENDLI_BASE_URL", api.url)
    monkeypatch.setenv("FRIENDLI_TEAM", "team-env")
    result = fi.generate(model="ep", prompt="x", response_format="png")
    assert result.data[0].content() == PNG
    (seen,) = api.requests
    assert seen.path == GENERATIONS
    assert seen.headers["authorization"] == f"Bearer {TOKEN}" and seen.headers["x-friendli-team"] == "team-env"


def test_module_level_generate_without_a_token_is_refused(api: FakeFriendli, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FRIENDLI_BASE_URL", api.url)
    with pytest.raises(fi.FriendliValidationError, match="FRIENDLI_TOKEN"):
        fi.generate(model="ep", prompt="x")
    assert api.requests == []


def test_client_is_a_context_manager(api: FakeFriendli) -> None:
    with fi.Client(TOKEN, base_url=api.url) as client:
        assert isinstance(client, fi.Client)
        client.generate(model="ep", prompt="x")
    assert len(api.requests) == 1


@pytest.mark.parametrize(
    "make",
    [
        pytest.param(lambda url: fi.Client(TOKEN, base_url=url, team="team-a"), id="client-string-token"),
        pytest.param(lambda url: fi.Client(lambda: TOKEN, base_url=url, team="team-a"), id="client-callable-token"),
        pytest.param(lambda url: fi.AsyncClient(TOKEN, base_url=url, team="team-a"), id="async-client"),
    ],
)
def test_repr_shows_base_url_target_and_team_but_not_the_token(api: FakeFriendli, make: Callable[[str], Any]) -> None:
    text = repr(make(api.url))
    assert api.url in text and "dedicated" in text and "team-a" in text
    assert TOKEN not in text and "lambda" not in text


@pytest.mark.parametrize("make", [
    pytest.param(lambda url: fi.SyncFriendli(token=TOKEN, server_url=url), id="sync-friendli"),
    pytest.param(lambda url: fi.AsyncFriendli(token=TOKEN, server_url=url), id="async-friendli"),
])
def test_facade_repr_does_not_show_the_token(api: FakeFriendli, make: Callable[[str], Any]) -> None:
    text = repr(make(api.url))
    assert api.url in text and TOKEN not in text


# -- AsyncClient ----------------------------------------------------------------------------------


def test_async_client_generate_and_edit_work(api: FakeFriendli) -> None:
    async def main() -> Tuple[fi.ImageGenerationResult, fi.ImageGenerationResult]:
        async with fi.AsyncClient(TOKEN, base_url=api.url, team="team-a") as client:
            generated = await client.generate(model="ep", prompt="x", response_format="png")
            edited = await client.edit(model="ep", prompt="y", image=PNG, response_format="png")
            return generated, edited

    generated, edited = asyncio.run(main())
    assert generated.data[0].content() == PNG and edited.data[0].content() == PNG
    assert [seen.path for seen in api.requests] == [GENERATIONS, EDITS]
    assert {seen.headers["x-friendli-team"] for seen in api.requests} == {"team-a"}
    assert api.requests[1].json["image"] == {"image": PNG_DATA_URI}


def test_async_client_does_not_block_the_event_loop(api: FakeFriendli) -> None:
    api.queue(Reply(200, {"data": [png_item()]}, delay=0.3))

    async def main() -> int:
        ticks = 0
        done = asyncio.Event()

        async def ticker() -> None:
            nonlocal ticks
            while not done.is_set():
                ticks += 1
                await asyncio.sleep(0.01)

        task = asyncio.ensure_future(ticker())
        await fi.AsyncClient(TOKEN, base_url=api.url).generate(model="ep", prompt="x")
        done.set()
        await task
        return ticks

    assert asyncio.run(main()) >= 8  # ~30 expected; a blocked loop ticks once


def test_cancelling_an_async_call_stops_retries_during_the_real_retry_sleep(api: FakeFriendli) -> None:
    api.queue(*client_busy(20, **{"Retry-After": "5"}))
    executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="fi-cancel")
    client = fi.AsyncClient(TOKEN, base_url=api.url, timeout=5, executor=executor)

    async def main() -> None:
        # total_timeout bounds the worker if cancelling failed to stop it (the process would wait for it at exit)
        task = asyncio.ensure_future(client.generate(model="ep", prompt="x", total_timeout=12))
        for _ in range(300):
            if api.requests:
                break
            await asyncio.sleep(0.01)
        await asyncio.sleep(0.05)  # the 503 is read: the worker now sleeps 5 s before retrying
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task

    try:
        asyncio.run(main())
        assert len(api.requests) == 1
        # The worker thread is free again at once (the 5 s sleep was woken), so no retry can follow.
        executor.submit(lambda: None).result(timeout=MARGIN)
        time.sleep(0.3)
        assert len(api.requests) == 1
    finally:
        executor.shutdown(wait=False)


@pytest.mark.parametrize("method", ["generate", "edit"])
def test_async_client_refuses_unknown_keyword_arguments_like_the_sync_client(api: FakeFriendli, method: str) -> None:
    kwargs: Dict[str, Any] = {"model": "ep", "prompt": "x", "promt": "typo"}
    if method == "edit":
        kwargs["image"] = PNG
    with pytest.raises(TypeError, match="promt"):
        getattr(fi.Client(TOKEN, base_url=api.url), method)(**kwargs)
    with pytest.raises(TypeError, match="promt"):
        asyncio.run(getattr(fi.AsyncClient(TOKEN, base_url=api.url), method)(**kwargs))
    assert api.requests == []


def test_async_client_uses_the_executor_given(api: FakeFriendli) -> None:
    threads: List[str] = []

    def token() -> str:  # called in the thread that runs the attempt
        threads.append(threading.current_thread().name)
        return TOKEN

    with ThreadPoolExecutor(max_workers=1, thread_name_prefix="fi-given-executor") as executor:
        client = fi.AsyncClient(token, base_url=api.url, executor=executor)
        asyncio.run(client.generate(model="ep", prompt="x"))
        asyncio.run(client.edit(model="ep", prompt="x", image=PNG))
    assert len(threads) == 2 and all(name.startswith("fi-given-executor") for name in threads)


# ===========================================================================
# SDK-compatible facade
# ===========================================================================

SDK_PROMPT = "An orange Lamborghini driving down a hill road at night with a beautiful ocean view in the background."


def test_sync_friendli_mirrors_the_official_sdk_example(api: FakeFriendli) -> None:
    with fi.SyncFriendli(token=TOKEN, server_url=api.url) as friendli:
        res = friendli.dedicated.image.generate(model="(endpoint-id)", prompt=SDK_PROMPT, num_inference_steps=10)
    assert isinstance(res, fi.ImageGenerationResult) and res.data[0].content() == PNG  # downloads the URL
    (seen,) = [seen for seen in api.requests if seen.method == "POST"]
    assert seen.path == GENERATIONS and seen.headers["authorization"] == f"Bearer {TOKEN}"
    assert seen.json == {"model": "(endpoint-id)", "prompt": SDK_PROMPT, "num_inference_steps": 10}


@pytest.mark.parametrize("cls", [fi.SyncFriendli, fi.AsyncFriendli])
@pytest.mark.parametrize("option, sdk_name", [("timeout", "timeout_ms="), ("retries", "retry_config="),
                                              ("base_url", "server_url="), ("team", "x_friendli_team="),
                                              ("target", ".dedicated and .container")])
def test_the_facade_names_the_sdk_option_for_a_client_option_it_sets_itself(
    cls: type, option: str, sdk_name: str
) -> None:
    """Catches a raw TypeError ("got multiple values") or a container client serving .dedicated."""
    with pytest.raises(fi.FriendliValidationError, match=re.escape(f"use {sdk_name} as in the SDK, not {option}=")):
        cls(token=TOKEN, **{option: "container" if option == "target" else None})


@pytest.mark.parametrize("cls", [fi.SyncFriendli, fi.AsyncFriendli])
def test_the_facade_takes_its_options_by_keyword_only(cls: type) -> None:
    """The SDK's second positional parameter is server_idx, then server_url: catches SyncFriendli(token, 0, url)
    being read in another order than the SDK's."""
    with pytest.raises(TypeError):
        cls(TOKEN, "https://api.friendli.ai")
    assert cls(TOKEN, server_url="https://api.friendli.ai")  # the token may be positional, as in the SDK


def test_sync_friendli_edit_posts_to_edits(api: FakeFriendli) -> None:
    with fi.SyncFriendli(token=TOKEN, server_url=api.url) as friendli:
        friendli.dedicated.image.edit(model="ep", prompt="x", image=IMAGE_URL)
    assert api.requests[0].path == EDITS and api.requests[0].json["image"] == {"image": IMAGE_URL}


SDK_BUSY_ANSWERS = 4  # 503s queued before the server answers normally


@pytest.mark.parametrize(
    "constructor, call, attempts",
    [
        pytest.param({}, {}, SDK_BUSY_ANSWERS + 1, id="omitted-uses-default-policy-until-success"),
        pytest.param({}, {"retries": None}, 1, id="none-disables-retries"),
        pytest.param({}, {"retries": fi.RetryConfig("backoff", max_retries=2)}, 3, id="per-call-retry-config-used"),
        pytest.param({}, {"retries": fi.RetryConfig("none")}, 1, id="per-call-strategy-none"),
        pytest.param({"retry_config": fi.RetryConfig("none")}, {}, 1, id="constructor-retry-config-used"),
        pytest.param({"retry_config": fi.RetryConfig("backoff", max_retries=1)}, {}, 2,
                     id="constructor-max-retries-used"),
        pytest.param({"retry_config": fi.RetryConfig("backoff", max_retries=1)},
                     {"retries": fi.RetryConfig("backoff", max_retries=3)}, 4, id="per-call-beats-constructor"),
        pytest.param({"retry_config": fi.RetryConfig("backoff", max_retries=3)}, {"retries": None}, 1,
                     id="per-call-none-beats-constructor"),
        pytest.param({"retry_config": None}, {}, 1, id="constructor-none-disables-retries"),
        pytest.param({"retry_config": None}, {"retries": fi.RetryConfig("backoff", max_retries=2)}, 3,
                     id="per-call-beats-constructor-none"),
    ],
)
def test_sync_friendli_retries_follow_the_sdk_rules(
    api: FakeFriendli, fake_sleep: FakeSleep, constructor: Dict[str, Any], call: Dict[str, Any], attempts: int
) -> None:
    api.queue(*client_busy(SDK_BUSY_ANSWERS))
    friendli = fi.SyncFriendli(token=TOKEN, server_url=api.url, sleep=fake_sleep, clock=fake_sleep.clock,
                               **constructor)
    if attempts > SDK_BUSY_ANSWERS:
        assert friendli.dedicated.image.generate(model="ep", prompt="x", **call).data
    else:
        with pytest.raises(fi.InternalServerError) as info:
            friendli.dedicated.image.generate(model="ep", prompt="x", **call)
        assert info.value.attempts == attempts
    assert len(api.requests) == attempts
    assert len(fake_sleep.calls) == attempts - 1


def test_sync_friendli_default_policy_is_the_bounded_library_policy(api: FakeFriendli, fake_sleep: FakeSleep) -> None:
    """A 503 storm ends within DEFAULT_TOTAL_TIMEOUT (fake clock), not the SDK's one hour."""
    assert fi.DEFAULT_RETRY_CONFIG.backoff is not None
    assert fi.DEFAULT_RETRY_CONFIG.backoff.max_elapsed_time == fi.DEFAULT_TOTAL_TIMEOUT * 1000 < 3_600_000
    api.queue(*client_busy(80))
    with fi.SyncFriendli(token=TOKEN, server_url=api.url, sleep=fake_sleep, clock=fake_sleep.clock) as friendli:
        with pytest.raises(fi.InternalServerError) as info:
            friendli.dedicated.image.generate(model="ep", prompt="x")
    slept = sum(fake_sleep.calls)
    assert fi.DEFAULT_TOTAL_TIMEOUT - 61 < slept <= fi.DEFAULT_TOTAL_TIMEOUT  # used the budget, and no more
    assert info.value.attempts == len(api.requests) == len(fake_sleep.calls) + 1
    assert 8 <= info.value.attempts <= 25  # a one-hour budget would take ~70 attempts


SDK_SLOW_ANSWER = 0.2  # seconds the server waits; short timeouts are 0.08 s


@pytest.mark.parametrize(
    "constructor_ms, call_ms, times_out",
    [
        pytest.param(80, None, True, id="constructor-timeout-ms-applies"),
        pytest.param(None, 80, True, id="per-call-timeout-ms-applies"),
        pytest.param(80, 3000, False, id="per-call-timeout-ms-beats-constructor"),
        pytest.param(3000, None, False, id="constructor-timeout-ms-is-milliseconds-not-microseconds"),
    ],
)
def test_sync_friendli_timeout_ms(
    api: FakeFriendli, constructor_ms: Optional[int], call_ms: Optional[int], times_out: bool
) -> None:
    api.queue(Reply(200, {"data": [png_item()]}, delay=SDK_SLOW_ANSWER))
    friendli = fi.SyncFriendli(token=TOKEN, server_url=api.url, timeout_ms=constructor_ms)
    kwargs: Dict[str, Any] = {} if call_ms is None else {"timeout_ms": call_ms}
    if times_out:
        with pytest.raises(fi.APITimeoutError):
            friendli.dedicated.image.generate(model="ep", prompt="x", **kwargs)
    else:
        friendli.dedicated.image.generate(model="ep", prompt="x", **kwargs)
    assert len(api.requests) == 1


def test_sync_friendli_server_url_per_call(api: FakeFriendli) -> None:
    friendli = fi.SyncFriendli(token=TOKEN, server_url="https://unused.invalid")
    friendli.dedicated.image.generate(model="ep", prompt="x", server_url=api.url)
    friendli.dedicated.image.edit(model="ep", prompt="x", image=PNG, server_url=api.url)
    assert [seen.path for seen in api.requests] == [GENERATIONS, EDITS]
    assert {seen.headers["authorization"] for seen in api.requests} == {f"Bearer {TOKEN}"}


def test_sync_friendli_container_sends_no_token(api: FakeFriendli, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FRIENDLI_TOKEN", TOKEN)
    with fi.SyncFriendli(token=TOKEN, server_url="https://unused.invalid", x_friendli_team="team-c") as friendli:
        result = friendli.container.image.generate(server_url=api.url, prompt="a lighthouse")
        friendli.container.image.edit(server_url=api.url, prompt="winter", image=PNG)
    assert result.data[0].content() == JPEG
    assert [seen.path for seen in api.requests] == [CONTAINER_GENERATIONS, CONTAINER_EDITS]
    for seen in api.requests:
        assert "authorization" not in seen.headers and "x-friendli-team" not in seen.headers


def test_async_friendli_mirrors_the_sync_facade(api: FakeFriendli) -> None:
    async def main() -> Tuple[fi.ImageGenerationResult, fi.ImageGenerationResult, fi.ImageGenerationResult]:
        async with fi.AsyncFriendli(token=TOKEN, server_url=api.url, x_friendli_team="team-c") as friendli:
            generated = await friendli.dedicated.image.generate(
                model="(endpoint-id)", prompt=SDK_PROMPT, num_inference_steps=10
            )
            edited = await friendli.dedicated.image.edit(model="ep", prompt="x", image=PNG, timeout_ms=3000)
            container = await friendli.container.image.generate(server_url=api.url, prompt="y")
            return generated, edited, container

    generated, edited, container = asyncio.run(main())
    assert [seen.method for seen in api.requests] == ["POST"] * 3
    assert generated.data[0].url and edited.data[0].url and container.data[0].content() == JPEG
    assert [seen.path for seen in api.requests] == [GENERATIONS, EDITS, CONTAINER_GENERATIONS]
    assert [seen.headers.get("authorization") for seen in api.requests] == [f"Bearer {TOKEN}"] * 2 + [None]
    assert [seen.headers.get("x-friendli-team") for seen in api.requests] == ["team-c"] * 2 + [None]
    assert api.requests[0].json == {"model": "(endpoint-id)", "prompt": SDK_PROMPT, "num_inference_steps": 10}


@pytest.mark.parametrize(
    "call, attempts",
    [pytest.param({}, 2, id="omitted-retries"), pytest.param({"retries": None}, 1, id="none-disables-retries")],
)
def test_async_friendli_retries_follow_the_sdk_rules(
    api: FakeFriendli, fake_sleep: FakeSleep, call: Dict[str, Any], attempts: int
) -> None:
    api.queue(*client_busy(1))
    friendli = fi.AsyncFriendli(token=TOKEN, server_url=api.url, sleep=fake_sleep, clock=fake_sleep.clock)
    if attempts == 1:
        with pytest.raises(fi.InternalServerError):
            asyncio.run(friendli.dedicated.image.generate(model="ep", prompt="x", **call))
    else:
        asyncio.run(friendli.dedicated.image.generate(model="ep", prompt="x", **call))
    assert len(api.requests) == attempts


# ===========================================================================
# Packaging promises
# ===========================================================================

MODULE_PATH = pathlib.Path(fi.__file__).resolve()


def test_the_module_imports_only_the_standard_library() -> None:
    stdlib = getattr(sys, "stdlib_module_names", None)
    if stdlib is None:
        pytest.skip("sys.stdlib_module_names needs Python 3.10+")
    tree = ast.parse(MODULE_PATH.read_text(encoding="utf-8"))
    names: Set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.update(alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names.add(node.module.split(".")[0])
    assert {"json", "urllib", "ssl"} <= names  # the walk found the imports (also those inside functions)
    assert names - set(stdlib) - {"__future__"} == set()


PACKAGING_IMPORT_PROBE = textwrap.dedent(
    """
    import json, os, sys
    events = []

    def hook(event, args):
        if event.startswith(("socket.", "ssl.")):
            events.append(event)
        elif event == "open":
            path = args[0]
            if not (isinstance(path, str) and path.endswith((".py", ".pyc"))):
                events.append("open " + repr(path))

    sys.addaudithook(hook)
    import ssl
    contexts = []
    new_context = ssl.SSLContext.__new__

    def watched_new(cls, *args, **kwargs):
        contexts.append(cls.__name__)
        return new_context(cls, *args, **kwargs)

    ssl.SSLContext.__new__ = staticmethod(watched_new)
    reads = []

    class WatchedEnviron(dict):
        def __getitem__(self, key):
            reads.append(key)
            return dict.__getitem__(self, key)

        def get(self, key, default=None):
            reads.append(key)
            return dict.get(self, key, default)

        def __contains__(self, key):
            reads.append(key)
            return dict.__contains__(self, key)

        def copy(self):
            reads.append("<copy>")
            return dict.copy(self)

        def items(self):
            reads.append("<items>")
            return dict.items(self)

    real_environ = os.environ
    os.environ = WatchedEnviron(real_environ)
    before = set(sys.modules)
    import friendli_image
    os.environ = real_environ
    found = {"events": list(events), "contexts": list(contexts), "reads": list(reads),
             "modules": sorted(set(sys.modules) - before)}
    # Positive controls: each probe does see what it watches.
    os.environ = WatchedEnviron(real_environ)
    os.getenv("FRIENDLI_TOKEN")
    os.environ = real_environ
    ssl.create_default_context()
    import socket
    socket.socket().close()
    found["controls"] = {"reads": reads[len(found["reads"]):], "contexts": contexts[len(found["contexts"]):],
                         "events": [e for e in events[len(found["events"]):] if e.startswith("socket.")]}
    print(json.dumps(found))
    """
)


@pytest.fixture(scope="module")
def packaging_import_report() -> Dict[str, Any]:
    env = {key: value for key, value in os.environ.items() if not key.startswith("PYTHON")}
    done = subprocess.run(
        [sys.executable, "-S", "-B", "-c", PACKAGING_IMPORT_PROBE], cwd=str(MODULE_PATH.parent), env=env,
        capture_output=True, text=True, timeout=30,
    )
    assert done.returncode == 0, done.stderr
    report: Dict[str, Any] = json.loads(done.stdout)
    assert report["controls"]["reads"] == ["FRIENDLI_TOKEN"], "the environment probe does not work"
    assert report["controls"]["contexts"], "the SSL context probe does not work"
    assert "socket.__new__" in report["controls"]["events"], "the socket probe does not work"
    return report


def test_importing_reads_no_environment_variable(packaging_import_report: Dict[str, Any]) -> None:
    assert packaging_import_report["reads"] == []


def test_importing_opens_no_socket_and_no_file_but_code(packaging_import_report: Dict[str, Any]) -> None:
    assert packaging_import_report["events"] == []


def test_importing_creates_no_ssl_context(packaging_import_report: Dict[str, Any]) -> None:
    assert packaging_import_report["contexts"] == []


@pytest.mark.parametrize("heavy", ["asyncio", "argparse", "concurrent.futures"])
def test_importing_does_not_load_modules_only_some_calls_need(
    packaging_import_report: Dict[str, Any], heavy: str
) -> None:
    assert "friendli_image" in packaging_import_report["modules"]  # the probe saw the import
    assert heavy not in packaging_import_report["modules"]


def test_running_the_file_with_help_prints_usage(tmp_path: pathlib.Path) -> None:
    done = subprocess.run([sys.executable, str(MODULE_PATH), "--help"], cwd=str(tmp_path), capture_output=True,
                          text=True, timeout=30)
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith("usage: friendli-image") and "exit codes" in done.stdout
    assert list(tmp_path.iterdir()) == []  # --help writes nothing


# ===========================================================================
# README examples
# ===========================================================================

README_PATH = MODULE_PATH.parent / "README.md"
README_MARKERS = ("seed-example", "lambda-example")
"""Every ``<!-- test: NAME -->`` marker these tests read."""


def readme_block(name: str) -> str:
    """The python block that follows ``<!-- test: NAME -->`` in README.md; a missing marker fails the test."""
    text = README_PATH.read_text(encoding="utf-8")
    marker = f"<!-- test: {name} -->"
    if marker not in text:
        raise AssertionError(f"README.md has no {marker} marker")
    after = text.split(marker, 1)[1].lstrip()
    if not after.startswith("```python\n"):
        raise AssertionError(f"README.md: {marker} is not followed by a ```python block")
    return after[len("```python\n"):].split("```", 1)[0]


@pytest.mark.parametrize("name", README_MARKERS)
def test_every_readme_marker_the_tests_use_exists(name: str) -> None:
    assert readme_block(name).strip()


def test_readme_block_fails_for_a_missing_marker() -> None:
    with pytest.raises(AssertionError, match="no-such-example"):
        readme_block("no-such-example")


def test_readme_seed_example_runs(api: FakeFriendli, monkeypatch: pytest.MonkeyPatch,
                                  capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setenv("FRIENDLI_TOKEN", TOKEN)
    monkeypatch.setenv("FRIENDLI_BASE_URL", api.url)
    exec(compile(readme_block("seed-example"), "README.md", "exec"), {})
    printed = capsys.readouterr().out
    assert printed.startswith("ImageGenerationResult(data=[GeneratedImage(seed=1234, response_format='url', url=")
    assert TOKEN not in printed
    (seen,) = api.requests
    assert seen.json["model"] == "(endpoint-id)" and seen.json["num_inference_steps"] == 10


class ReadmeLambdaContext:
    """The part of AWS Lambda's context object the example uses."""

    def __init__(self, remaining_ms: int) -> None:
        self.remaining_ms = remaining_ms

    def get_remaining_time_in_millis(self) -> int:
        return self.remaining_ms


def test_readme_lambda_example_runs_and_respects_the_deadline(api: FakeFriendli,
                                                               monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FRIENDLI_TOKEN", TOKEN)
    monkeypatch.setenv("FRIENDLI_BASE_URL", api.url)
    monkeypatch.setenv("FRIENDLI_ENDPOINT_ID", "ep-lambda")
    module: Dict[str, Any] = {}
    exec(compile(readme_block("lambda-example"), "README.md", "exec"), module)
    handler = module["handler"]

    answer = handler({"prompt": "a cat"}, ReadmeLambdaContext(30_000))
    assert answer["statusCode"] == 200 and answer["isBase64Encoded"] is True
    assert base64.b64decode(answer["body"]) == PNG
    assert api.requests[-1].json == {"model": "ep-lambda", "prompt": "a cat", "num_inference_steps": 20,
                                     "response_format": "png"}

    # A 503 storm: the handler answers 502 within the invocation's budget (1.9 s left, 1.5 s kept back).
    api.queue(*client_busy(50))
    started = time.monotonic()
    answer = handler({"prompt": "a cat"}, ReadmeLambdaContext(1_900))
    assert time.monotonic() - started < 0.4 + 0.5
    assert answer["statusCode"] == 502 and "503" in json.loads(answer["body"])["error"]

    assert handler({"prompt": ""}, ReadmeLambdaContext(30_000))["statusCode"] == 400
    assert handler({"prompt": "x"}, ReadmeLambdaContext(1_000))["statusCode"] == 503


# ===========================================================================
# Command line
# ===========================================================================
# ``fi.main([...])`` in-process (stdout/stderr captured: never a terminal), and ``python friendli_image.py``
# in a subprocess where the process boundary matters: exit codes of the script, real SIGINTs, a pty.

CLI_MODULE = pathlib.Path(fi.__file__).resolve()
CLI_EDITS_PATH = "/dedicated/v1/images/edits"
CLI_SECRET = "fl-SECRET-on-the-command-line-77"
CLI_BUSY = Reply(503, {"detail": "busy"}, headers={"retry-after-ms": "1"})


@pytest.fixture
def cli_env(monkeypatch: pytest.MonkeyPatch, tmp_path: pathlib.Path) -> pathlib.Path:
    """FRIENDLI_TOKEN set and the current directory a fresh tmp_path (files land there)."""
    monkeypatch.setenv("FRIENDLI_TOKEN", TOKEN)
    monkeypatch.chdir(tmp_path)
    return tmp_path


def cli_main(capsys: pytest.CaptureFixture[str], argv: Sequence[str]) -> Tuple[int, str, str]:
    """``fi.main(argv)``; returns (exit code, stdout, stderr) after checking what no output may hold."""
    code = fi.main(list(argv))
    out, err = capsys.readouterr()
    assert TOKEN not in out + err and CLI_SECRET not in out + err
    assert "\r" not in out + err and "\x1b" not in out + err  # off a terminal: no progress line, no controls
    return code, out, err


def cli_run(api: FakeFriendli, capsys: pytest.CaptureFixture[str], *args: str) -> Tuple[int, str, str]:
    """``fi.main`` against the fake server."""
    return cli_main(capsys, ["--base-url", api.url, *args])


def cli_posted(api: FakeFriendli) -> List[Seen]:
    return [seen for seen in api.requests if seen.method == "POST"]


def cli_leftovers(folder: pathlib.Path) -> List[str]:
    """Temporary files an interrupted or failed write would leave behind."""
    return [p.name for p in folder.rglob("*") if p.name.endswith(".part")]


def cli_files(folder: pathlib.Path) -> List[str]:
    return sorted(str(p.relative_to(folder)) for p in folder.rglob("*") if p.is_file())


def cli_route(monkeypatch: pytest.MonkeyPatch, api: FakeFriendli, route: Callable[[Seen], Optional[Responder]]) -> None:
    """Answer each request with ``route(seen)``, or as the API would when it returns None."""
    normal = api.default

    def default(seen: Seen) -> Responder:
        answer = route(seen)
        return normal(seen) if answer is None else answer

    monkeypatch.setattr(api, "default", default)


def cli_prompt(seen: Seen) -> str:
    return str(seen.json.get("prompt", "")) if seen.method == "POST" else ""


def cli_dead_url() -> str:
    """A loopback URL where nothing listens (connections are refused at once)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    return f"http://127.0.0.1:{port}"


def cli_script_env(**extra: str) -> Dict[str, str]:
    """The environment of a child process: no proxies or Friendli settings of this machine, the test token."""
    drop = {"FRIENDLI_TOKEN", "FRIENDLI_TEAM", "FRIENDLI_BASE_URL", "HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY",
            "NO_PROXY"}
    env = {name: value for name, value in os.environ.items() if name.upper() not in drop}
    env.update(FRIENDLI_TOKEN=TOKEN, COLUMNS="80", PYTHONIOENCODING="utf-8", **extra)
    return env


def cli_script(args: Sequence[Union[str, bytes]], cwd: pathlib.Path) -> "subprocess.CompletedProcess[str]":
    """``python friendli_image.py ARGS`` with pipes for stdout and stderr."""
    done = subprocess.run([sys.executable, str(CLI_MODULE), *args], cwd=cwd, env=cli_script_env(),
                          stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=30)
    assert TOKEN not in done.stdout + done.stderr
    assert "\r" not in done.stdout + done.stderr and "\x1b" not in done.stdout + done.stderr
    return done


def cli_pty_run(argv: Sequence[str], cwd: pathlib.Path, timeout: float = 30.0,
                stdout_too: bool = False) -> Tuple[int, str, str]:
    """``python friendli_image.py ARGV`` with stderr (and with ``stdout_too`` stdout) on a pseudo-terminal;
    (exit code, terminal text, stdout)."""
    import pty  # POSIX only

    master, slave = pty.openpty()
    try:
        proc = subprocess.Popen([sys.executable, str(CLI_MODULE), *argv], cwd=cwd, env=cli_script_env(),
                                stdin=subprocess.DEVNULL, stdout=slave if stdout_too else subprocess.PIPE,
                                stderr=slave)
    finally:
        os.close(slave)
    chunks: List[bytes] = []
    deadline = time.monotonic() + timeout
    try:
        while time.monotonic() < deadline:
            if not select.select([master], [], [], 0.1)[0]:
                continue
            try:
                data = os.read(master, 65536)
            except OSError:  # EIO: the child closed the terminal (it exited)
                break
            if not data:
                break
            chunks.append(data)
        out = proc.communicate(timeout=max(1.0, deadline - time.monotonic()))[0] or b""
    finally:
        proc.kill()
        os.close(master)
    return proc.returncode, b"".join(chunks).decode("utf-8", "replace"), out.decode("utf-8", "replace")


def cli_message_starts(text: str) -> List[str]:
    """For every "friendli-image:" message, the few characters before it (to check it starts a line)."""
    return [text[max(0, m.start() - 4):m.start()] for m in re.finditer("friendli-image:", text)]


def cli_starts_a_line(before: str) -> bool:
    return before == "" or before.endswith(("\n", "\r\x1b[K"))


def cli_is_retry_line(line: str, label: str, delay: str, what: str, attempt: int, most: int) -> bool:
    """A retry message: which request (``label`` in a batch), what happened, the wait, "attempt n of at most m"."""
    pattern = (rf"friendli-image: {re.escape(label)}retrying\b.* in {re.escape(delay)} s\b.*{re.escape(what)}.*"
               rf"\(attempt {attempt} of at most {most}\)")
    return re.fullmatch(pattern, line) is not None


# -- output files: names, suffixes, never overwriting ----------------------------------------------------------


def test_cli_writes_one_image_to_the_output_file(api: FakeFriendli, cli_env: pathlib.Path, capsys: Any) -> None:
    code, out, err = cli_run(api, capsys, "--model", "ep-1:adapter-a", "An orange car", "-o", "car.png")
    assert code == 0
    assert (cli_env / "car.png").read_bytes() == PNG
    assert out == ""  # without --json stdout stays empty
    assert err == "friendli-image: saved car.png (seed 1234)\n"
    seen = cli_posted(api)[0]
    assert seen.path == API_GENERATIONS_PATH and seen.headers["authorization"] == f"Bearer {TOKEN}"
    assert seen.json == {"model": "ep-1:adapter-a", "prompt": "An orange car", "num_inference_steps": 20,
                         "response_format": "png"}
    assert cli_files(cli_env) == ["car.png"]


@pytest.mark.parametrize("fmt, name, data", [("png", "fox.png", PNG), ("jpeg", "fox.jpg", JPEG)], ids=["png", "jpeg"])
def test_cli_output_without_a_suffix_takes_it_from_the_bytes(
    api: FakeFriendli, cli_env: pathlib.Path, capsys: Any, fmt: str, name: str, data: bytes
) -> None:
    code, _, err = cli_run(api, capsys, "-m", "ep", "a fox", "--format", fmt, "-o", "fox")
    assert code == 0 and cli_files(cli_env) == [name]
    assert (cli_env / name).read_bytes() == data and f"saved {name}" in err


@pytest.mark.parametrize("prompt, name", [
    ("A Red Fox, at night! \U0001f98a /etc/passwd", "a-red-fox-at-night-etc-passwd-1234.png"),  # no path escapes
    ("\ud55c\uad6d\uc5b4 \U0001f98a", "image-1234.png"),  # nothing ASCII to name it after
    ("word " * 30, "word-word-word-word-word-word-word-word-1234.png"),  # at most 40 characters of words
], ids=["punctuation-and-slashes", "no-ascii-words", "long-prompt"])
def test_cli_without_output_the_file_is_named_after_the_prompt_and_seed(
    api: FakeFriendli, cli_env: pathlib.Path, capsys: Any, prompt: str, name: str
) -> None:
    code, _, err = cli_run(api, capsys, "-m", "ep", prompt)
    assert code == 0 and cli_files(cli_env) == [name]
    assert f"friendli-image: saved {name} (seed 1234)\n" == err


@pytest.mark.parametrize("output, names", [
    (["-o", "fox.png"], ["fox-2.png", "fox.png"]),
    ([], ["a-fox-1234.png", "a-fox-1235-2.png"]),
], ids=["output-file", "no-output"])
def test_cli_several_images_of_one_call_get_numbered_names(
    api: FakeFriendli, cli_env: pathlib.Path, capsys: Any, output: List[str], names: List[str]
) -> None:
    api.images_per_request = 2
    code, _, err = cli_run(api, capsys, "-m", "ep", "a fox", *output)
    assert code == 0 and cli_files(cli_env) == names  # the second image does not replace the first
    assert err.count("saved ") == 2


def test_cli_one_request_into_an_existing_directory(api: FakeFriendli, cli_env: pathlib.Path, capsys: Any) -> None:
    (cli_env / "out").mkdir()
    code, _, _ = cli_run(api, capsys, "-m", "ep", "a fox", "-o", "out", "--seed", "7")
    assert code == 0 and cli_files(cli_env) == [os.path.join("out", "7.png")]


@pytest.mark.parametrize("args", [
    ["a fox", "-o", "out/"], ["a fox", "-n", "2", "-o", "out/"], ["a fox", "-n", "2", "-o", "fox.png"],
], ids=["one-request", "batch", "batch-file-name"])
def test_cli_output_directory_that_does_not_exist_is_created_or_refused_before_sending(
    api: FakeFriendli, cli_env: pathlib.Path, capsys: Any, args: List[str]
) -> None:
    code, _, err = cli_run(api, capsys, "-m", "ep", *args)
    created = code == 0 and len(cli_files(cli_env)) == len(cli_posted(api)) >= 1
    refused = code == 2 and api.requests == []
    assert created or refused, err


def test_cli_batch_into_a_directory_names_files_by_index_and_seed(
    api: FakeFriendli, cli_env: pathlib.Path, capsys: Any
) -> None:
    (cli_env / "out").mkdir()
    code, _, _ = cli_run(api, capsys, "-m", "ep", "a fox", "-n", "3", "--seed", "100", "-o", "out", "--format", "jpeg")
    assert code == 0
    assert sorted(seen.json["seed"] for seen in cli_posted(api)) == [100, 101, 102]  # -n K with --seed: SEED, SEED+1
    assert cli_files(cli_env / "out") == ["001-100.jpg", "002-101.jpg", "003-102.jpg"]  # suffix from the bytes


def test_cli_without_seed_copies_send_no_seed(api: FakeFriendli, cli_env: pathlib.Path, capsys: Any) -> None:
    code, _, _ = cli_run(api, capsys, "-m", "ep", "a fox", "-n", "2", "--concurrency", "1")
    assert code == 0 and ["seed" in seen.json for seen in cli_posted(api)] == [False, False]
    assert cli_files(cli_env) == ["001-a-fox-1234.png", "002-a-fox-1234.png"]


def test_cli_an_existing_output_file_is_refused_before_any_traffic(
    api: FakeFriendli, cli_env: pathlib.Path, capsys: Any
) -> None:
    (cli_env / "car.png").write_bytes(b"precious")
    code, out, err = cli_run(api, capsys, "-m", "ep", "a car", "-o", "car.png")
    assert code == 2 and out == ""
    assert err == "friendli-image: error: car.png exists; pass --overwrite to replace it\n"
    assert (cli_env / "car.png").read_bytes() == b"precious" and api.requests == []

    code, _, _ = cli_run(api, capsys, "-m", "ep", "a car", "-o", "car.png", "--overwrite")
    assert code == 0 and (cli_env / "car.png").read_bytes() == PNG


def test_cli_several_requests_need_a_directory_not_a_file_name(
    api: FakeFriendli, cli_env: pathlib.Path, capsys: Any
) -> None:
    code, out, err = cli_run(api, capsys, "-m", "ep", "a fox", "-n", "2", "-o", "fox.png")
    assert code == 2 and out == "" and api.requests == []
    assert "-o fox.png names a file, but 2 requests will be made: give a directory" in err
    assert cli_files(cli_env) == []
    (cli_env / "shots.v2").mkdir()  # an existing directory is one, whatever its name looks like
    code, _, _ = cli_run(api, capsys, "-m", "ep", "a fox", "-n", "2", "-o", "shots.v2")
    assert code == 0 and cli_files(cli_env) == [os.path.join("shots.v2", "001-1234.png"),
                                                os.path.join("shots.v2", "002-1234.png")]


@pytest.mark.parametrize("overwrite", [False, True], ids=["kept", "overwrite"])
def test_cli_a_name_known_only_after_the_call_is_not_overwritten_either(
    api: FakeFriendli, cli_env: pathlib.Path, capsys: Any, overwrite: bool
) -> None:
    (cli_env / "car.png").write_bytes(b"precious")
    code, _, err = cli_run(api, capsys, "-m", "ep", "a car", "-o", "car", "--format", "url",
                           *(["--overwrite"] if overwrite else []))
    assert code == (0 if overwrite else 1)
    assert (cli_env / "car.png").read_bytes() == (PNG if overwrite else b"precious")
    assert ("car.png" in err and "exists" in err) is not overwrite
    assert cli_leftovers(cli_env) == []


def test_cli_a_batch_keeps_an_existing_file_and_saves_the_others(
    api: FakeFriendli, cli_env: pathlib.Path, capsys: Any
) -> None:
    (cli_env / "out").mkdir()
    (cli_env / "out" / "002-1234.png").write_bytes(b"old")  # its name is known only from the server's seed
    code, _, err = cli_run(api, capsys, "-m", "ep", "a fox", "-n", "3", "-o", "out", "--concurrency", "1")
    assert code == 5
    assert (cli_env / "out" / "002-1234.png").read_bytes() == b"old"
    assert (cli_env / "out" / "001-1234.png").read_bytes() == PNG
    assert (cli_env / "out" / "003-1234.png").read_bytes() == PNG
    assert err.count("002-1234.png") == 1 and "2 of 3 requests succeeded, 1 failed" in err
    assert "--overwrite" in err and cli_leftovers(cli_env) == []


@pytest.mark.parametrize("args, existing", [
    (["-m", "ep", "-n", "3", "--seed", "10", "-o", "out/"], os.path.join("out", "002-11.png")),  # seed and format
    (["-m", "ep", "--seed", "7", "-o", "out/"], os.path.join("out", "7.png")),
    (["-m", "ep", "--seed", "7"], "a-fox-7.png"),
    (["-m", "ep", "-o", "fox", "--format", "jpeg"], "fox.jpg"),  # -o FILE without a suffix: the format's
    (["--target", "container", "-o", "fox"], "fox.jpg"),  # a container's default format is jpeg
    (["--target", "container", "--seed", "7"], "a-fox-7.jpg"),
], ids=["batch", "directory", "default-name", "file-without-suffix", "container-file", "container-seed"])
def test_cli_a_name_known_before_sending_is_checked_before_sending(
    api: FakeFriendli, cli_env: pathlib.Path, capsys: Any, args: List[str], existing: str
) -> None:
    (cli_env / "out").mkdir()
    (cli_env / existing).write_bytes(b"old")
    code, _, err = cli_run(api, capsys, "a fox", *args)
    assert code == 2 and api.requests == [] and "--overwrite" in err
    assert (cli_env / existing).read_bytes() == b"old"


# -- every API parameter has a flag ------------------------------------------------------------------------------


def test_cli_without_flags_sends_the_documented_defaults(api: FakeFriendli, cli_env: pathlib.Path, capsys: Any) -> None:
    code, _, _ = cli_run(api, capsys, "-m", "ep", "a fox")
    assert code == 0
    seen = cli_posted(api)[0]
    assert seen.json == {"model": "ep", "prompt": "a fox", "num_inference_steps": 20, "response_format": "png"}
    assert "x-friendli-team" not in seen.headers


def test_cli_every_api_parameter_has_a_flag(api: FakeFriendli, cli_env: pathlib.Path, capsys: Any) -> None:
    (cli_env / "pose.png").write_bytes(PNG)
    code, _, _ = cli_run(
        api, capsys, "--model", "ep", "a fox", "--steps", "10", "--guidance-scale", "7.5", "--seed", "42",
        "--format", "jpeg", "--team", "my-team", "--control-image", "https://example.com/edge.png",
        "--control-image", "pose.png", "--controlnet-weight", "0.5", "--controlnet-weight", "1", "-o", "fox",
    )
    assert code == 0
    seen = cli_posted(api)[0]
    assert seen.headers["x-friendli-team"] == "my-team"
    body = seen.json
    assert body.pop("control_images") == [{"image": "https://example.com/edge.png"},
                                          {"image": "data:image/png;base64," + PNG_B64}]
    assert body == {"model": "ep", "prompt": "a fox", "num_inference_steps": 10, "guidance_scale": 7.5, "seed": 42,
                    "response_format": "jpeg", "controlnet_weights": [0.5, 1.0]}
    assert (cli_env / "fox.jpg").read_bytes() == JPEG


@pytest.mark.parametrize("steps", ["1", "50"], ids=["lowest", "highest"])
def test_cli_steps_at_the_limits_are_sent(api: FakeFriendli, cli_env: pathlib.Path, capsys: Any, steps: str) -> None:
    code, _, _ = cli_run(api, capsys, "-m", "ep", "a fox", "--steps", steps)
    assert code == 0 and cli_posted(api)[0].json["num_inference_steps"] == int(steps)


@pytest.mark.parametrize("flag", ["-m", "--model"])
def test_cli_short_m_is_the_model_flag(api: FakeFriendli, cli_env: pathlib.Path, capsys: Any, flag: str) -> None:
    code, _, _ = cli_run(api, capsys, flag, "ep:adapter", "a fox")
    assert code == 0 and cli_posted(api)[0].json["model"] == "ep:adapter"


@pytest.mark.parametrize("images, expected", [
    (["in.png"], {"image": "data:image/png;base64," + PNG_B64}),
    (["in.png", "https://example.com/b.jpg"], [{"image": "data:image/png;base64," + PNG_B64},
                                               {"image": "https://example.com/b.jpg"}]),
], ids=["one", "two"])
def test_cli_edit_image_sends_an_edit(
    api: FakeFriendli, cli_env: pathlib.Path, capsys: Any, images: List[str], expected: Any
) -> None:
    (cli_env / "in.png").write_bytes(PNG)
    args = [word for image in images for word in ("--edit-image", image)]
    code, _, _ = cli_run(api, capsys, "-m", "ep", "make it blue", *args, "-o", "out.png")
    assert code == 0 and (cli_env / "out.png").read_bytes() == PNG
    seen = cli_posted(api)[0]
    assert seen.path == CLI_EDITS_PATH and seen.json["image"] == expected


def test_cli_container_target(api: FakeFriendli, cli_env: pathlib.Path, capsys: Any,
                              monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("FRIENDLI_TOKEN")  # a container needs no token
    code, _, err = cli_run(api, capsys, "--target", "container", "a fox")
    assert code == 0 and (cli_env / "a-fox.jpg").read_bytes() == JPEG
    assert err == "friendli-image: saved a-fox.jpg\n"  # a container gives no seed
    seen = cli_posted(api)[0]
    assert seen.path == "/v1/images/generations" and "authorization" not in seen.headers
    assert seen.json == {"prompt": "a fox", "num_inference_steps": 20}


@pytest.mark.parametrize("allow", [False, True], ids=["refused", "allowed"])
def test_cli_allow_insecure_http_opens_plain_http_to_a_remote_container(
    api: FakeFriendli, cli_env: pathlib.Path, capsys: Any, allow: bool
) -> None:
    # 0.0.0.0 is no loopback address to the client, yet a connection to it reaches this machine.
    url = api.url.replace("127.0.0.1", "0.0.0.0")
    code, out, err = cli_main(capsys, ["--base-url", url, "--target", "container", "a fox",
                                       *(["--allow-insecure-http"] if allow else [])])
    if allow:
        assert code == 0 and cli_posted(api)[0].path == "/v1/images/generations"
    else:
        assert code == 2 and out == "" and "use https://" in err and api.requests == []


@pytest.mark.parametrize("team", [None, "env-team"], ids=["no-team", "team"])
def test_cli_reads_the_base_url_and_team_from_the_environment(
    api: FakeFriendli, cli_env: pathlib.Path, capsys: Any, monkeypatch: pytest.MonkeyPatch, team: Optional[str]
) -> None:
    monkeypatch.setenv("FRIENDLI_BASE_URL", api.url)
    if team:
        monkeypatch.setenv("FRIENDLI_TEAM", team)
    code, _, _ = cli_main(capsys, ["-m", "ep", "a fox"])  # no --base-url
    assert code == 0
    assert cli_posted(api)[0].headers.get("x-friendli-team") == team


# -- batches: --prompts, --concurrency ---------------------------------------------------------------------------


def test_cli_prompts_file_skips_comments_and_blank_lines(api: FakeFriendli, cli_env: pathlib.Path, capsys: Any) -> None:
    (cli_env / "prompts.txt").write_text("a red fox\n\n# a comment\n   \n  a blue whale  \n", encoding="utf-8")
    code, _, err = cli_run(api, capsys, "-m", "ep", "--prompts", "prompts.txt", "-n", "2", "--concurrency", "1")
    assert code == 0
    prompts = [seen.json["prompt"] for seen in cli_posted(api)]
    assert prompts == ["a red fox", "a red fox", "a blue whale", "a blue whale"]
    assert cli_files(cli_env) == ["001-a-red-fox-1234.png", "002-a-red-fox-1234.png", "003-a-blue-whale-1234.png",
                                  "004-a-blue-whale-1234.png", "prompts.txt"]
    assert err.count("saved ") == 4 and "4 of 4 requests succeeded, 0 failed in " in err


@pytest.mark.parametrize("n, sent", [(10_000, 1), (10_001, 0)], ids=["at-the-limit", "one-more"])
def test_cli_a_run_makes_at_most_ten_thousand_requests(
    api: FakeFriendli, cli_env: pathlib.Path, capsys: Any, n: int, sent: int
) -> None:
    """Catches a batch built without bound (a typo in -n could fill memory, and each request is billed).  At
    the limit the run starts; a refused token then stops it after one request."""
    api.queue(Reply(401, {"detail": "bad token"}))
    code, _, err = cli_run(api, capsys, "-m", "ep", "a fox", "-n", str(n), "--concurrency", "1")
    assert (code, len(api.requests)) == ((3, 1) if sent else (2, 0))
    assert ("10001 requests: at most 10000 in one run" in err) is not bool(sent)


@pytest.mark.parametrize("size, ok", [(1_000_000, True), (1_000_001, False)], ids=["a-million", "one-more"])
def test_cli_reads_at_most_a_million_characters_from_a_file(
    api: FakeFriendli, cli_env: pathlib.Path, capsys: Any, size: int, ok: bool
) -> None:
    """Catches an unbounded read (--prompts /dev/zero would fill memory).  A million characters are read (and
    hold more prompts than a run may make); one more is refused, before anything is sent."""
    (cli_env / "p.txt").write_text(("a fox\n" * size)[:size], encoding="utf-8")
    code, _, err = cli_run(api, capsys, "-m", "ep", "--prompts", "p.txt")
    assert code == 2 and api.requests == []
    assert ("requests: at most 10000 in one run" in err) is ok
    assert ("more than a million characters" in err) is not ok


@pytest.mark.parametrize("flag", ["--prompts", "--token-file"])
def test_cli_an_endless_file_or_a_path_with_a_nul_is_a_usage_error(
    api: FakeFriendli, cli_env: pathlib.Path, capsys: Any, flag: str
) -> None:
    for path, problem in (("/dev/zero", "more than a million characters"), ("a\0b", "cannot read")):
        if os.path.exists(path) or "\0" in path:
            prompt = ["a fox"] if flag == "--token-file" else []
            code, _, err = cli_run(api, capsys, "-m", "ep", *prompt, flag, path)
            assert code == 2 and problem in err and api.requests == []


def test_cli_a_worker_failing_unexpectedly_does_not_hang_the_run(
    api: FakeFriendli, cli_env: pathlib.Path, capsys: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """An error the command line does not expect (here from saving) is that request's failure, said once:
    catches the run waiting for ever for the worker it ended, or the other requests left undone."""

    def broken_save(self: Any, *args: Any, **kwargs: Any) -> Any:
        raise RuntimeError("the disk said no")

    monkeypatch.setattr(fi.GeneratedImage, "save", broken_save)
    finished: List[Tuple[int, str, str]] = []
    runner = threading.Thread(target=lambda: finished.append(
        cli_run(api, capsys, "-m", "ep", "a fox", "-n", "2", "--concurrency", "1", "-v")), daemon=True)
    runner.start()
    runner.join(10)
    (code, _, err), = finished
    assert code == 1 and len(api.requests) == 2
    assert err.count("error: #1 'a fox': saving: unexpected RuntimeError: the disk said no") == 1
    assert "2 failed" in err and "Traceback" in err and "broken_save" in err  # -v shows where it came from


def test_cli_prompts_from_stdin(api: FakeFriendli, cli_env: pathlib.Path, capsys: Any,
                                monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(sys, "stdin", io.StringIO("a red fox\n# skipped\na blue whale\n"))
    code, _, _ = cli_run(api, capsys, "-m", "ep", "--prompts", "-")
    assert code == 0
    assert cli_files(cli_env) == ["001-a-red-fox-1234.png", "002-a-blue-whale-1234.png"]


@pytest.mark.parametrize("concurrency, overlapping", [("1", False), ("3", True)], ids=["one-at-a-time", "three"])
def test_cli_concurrency_runs_requests_side_by_side(
    api: FakeFriendli, cli_env: pathlib.Path, capsys: Any, monkeypatch: pytest.MonkeyPatch,
    concurrency: str, overlapping: bool
) -> None:
    lock = threading.Lock()
    active, most = [0], [0]
    normal = api.default

    def counting(handler: Handler, seen: Seen) -> None:
        with lock:
            active[0] += 1
            most[0] = max(most[0], active[0])
        time.sleep(0.15)
        with lock:
            active[0] -= 1
        handler.send_reply(normal(seen))

    cli_route(monkeypatch, api, lambda seen: counting if seen.method == "POST" else None)
    started = time.monotonic()
    code, _, _ = cli_run(api, capsys, "-m", "ep", "a fox", "-n", "3", "--concurrency", concurrency)
    elapsed = time.monotonic() - started
    assert code == 0 and len(cli_files(cli_env)) == 3
    assert most[0] == (3 if overlapping else 1)
    assert (elapsed < 0.45) is overlapping  # three 0.15 s requests: side by side, or one after another


# -- never stuck: bounded by default, --total-timeout, --max-retries -----------------------------------------------


@pytest.mark.parametrize("url, args, reason", [
    ("dead", ["--max-retries", "0"], "Connection refused"),
    ("dead", ["--total-timeout", "0.3"], "Connection refused"),  # no retry fits in what is left
    ("https://nonexistent.invalid", [], "cannot resolve the host"),  # default flags: a DNS failure is not retried
], ids=["dead-server-no-retries", "dead-server-short-total-timeout", "bad-host-default-flags"])
def test_cli_unreachable_server_ends_at_once_with_one_line(
    cli_env: pathlib.Path, capsys: Any, url: str, args: List[str], reason: str
) -> None:
    started = time.monotonic()
    code, out, err = cli_main(capsys, ["--base-url", cli_dead_url() if url == "dead" else url, "-m", "ep", "a fox",
                                       *args])
    assert time.monotonic() - started < MARGIN
    assert code == 4 and out == ""
    assert err.count("\n") == 1 and err.startswith("friendli-image: error: ") and reason in err
    assert "APIConnectionError" in err and "retrying" not in err
    if "invalid" in url:
        assert "nonexistent.invalid" in err


@pytest.mark.parametrize("args, header, attempts", [
    (["--no-retries"], {"retry-after-ms": "1"}, 1),
    (["--max-retries", "0"], {"retry-after-ms": "1"}, 1),
    (["--max-retries", "1"], {"retry-after-ms": "1"}, 2),
    (["--max-retries", "2"], {"retry-after-ms": "1"}, 3),
    ([], {"Retry-After": "0.1"}, 4),  # the default: 3 retries, each after what the server asked for
], ids=["no-retries", "max-retries-0", "max-retries-1", "max-retries-2", "default-honours-retry-after"])
def test_cli_a_503_storm_ends_after_the_allowed_retries_each_reported(
    api: FakeFriendli, cli_env: pathlib.Path, capsys: Any, monkeypatch: pytest.MonkeyPatch,
    args: List[str], header: Dict[str, str], attempts: int
) -> None:
    cli_route(monkeypatch, api, lambda seen: Reply(503, {"detail": "busy"}, headers=header))
    started = time.monotonic()
    code, out, err = cli_run(api, capsys, "-m", "ep", "a fox", *args)  # no -v: retries are reported anyway
    elapsed = time.monotonic() - started
    assert code == 1 and out == "" and len(cli_posted(api)) == attempts
    lines = err.splitlines()
    delay = "0.1" if "Retry-After" in header else "0.0"
    assert len(lines) == attempts  # one line per retry, then the error
    for attempt, line in enumerate(lines[:-1], 2):
        assert cli_is_retry_line(line, "", delay, "503 Service Unavailable", attempt, attempts), line
        assert api.url + API_GENERATIONS_PATH in line  # which request
    assert lines[-1].startswith("friendli-image: error: ") and "InternalServerError: 503 Service Unavailable" in err
    assert (f"(after {attempts} attempts)" in lines[-1]) is (attempts > 1)
    assert elapsed < (0.1 * (attempts - 1) if "Retry-After" in header else 0) + MARGIN
    if "Retry-After" in header:
        assert elapsed >= 0.3  # the server's Retry-After was waited for


@pytest.mark.parametrize("args, waits", [([], False), (["--total-timeout", "61"], True)],
                         ids=["default-60-s", "total-timeout-61-s"])
def test_cli_a_retry_after_of_a_minute_ends_the_default_run_at_once(
    api: FakeFriendli, cli_env: pathlib.Path, capsys: Any, monkeypatch: pytest.MonkeyPatch, args: List[str],
    waits: bool
) -> None:
    """``Retry-After: 60`` leaves no time within the default 60 s per request, but does within 61 s (a run
    that announces the wait is stopped there with Ctrl-C, so the test never sleeps a minute).

    Catches the command line leaving the library's 300 s budget in place."""
    write = sys.stderr.write

    def interrupt_a_retry(text: str) -> int:
        count = write(text)
        if "retrying in" in text:
            signal.raise_signal(signal.SIGINT)
        return count

    monkeypatch.setattr(sys.stderr, "write", interrupt_a_retry)
    cli_route(monkeypatch, api, lambda seen: Reply(503, {"detail": "busy"}, headers={"Retry-After": "60"}))
    started = time.monotonic()
    code, out, err = cli_run(api, capsys, "-m", "ep", "a fox", *args)
    assert time.monotonic() - started < MARGIN and len(cli_posted(api)) == 1
    assert ("retrying in 60.0 s" in err) is waits and code == (130 if waits else 1)


def test_cli_default_retries_and_total_timeout_are_documented(capsys: Any) -> None:
    assert fi.main(["--help"]) == 0
    help_text = " ".join(capsys.readouterr().out.split())
    assert "--max-retries N retries per request (default: 3)" in help_text
    assert "--total-timeout S seconds per request, retries included (default: 60" in help_text


def test_cli_a_retry_in_a_batch_names_the_request(api: FakeFriendli, cli_env: pathlib.Path, capsys: Any,
                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    refused: List[str] = []

    def route(seen: Seen) -> Optional[Responder]:
        if "whale" in cli_prompt(seen) and not refused:
            refused.append("once")
            return CLI_BUSY
        return None

    cli_route(monkeypatch, api, route)
    (cli_env / "p.txt").write_text("a red fox\na blue whale\n", encoding="utf-8")
    code, _, err = cli_run(api, capsys, "-m", "ep", "--prompts", "p.txt")
    assert code == 0 and len(cli_posted(api)) == 3
    retries = [line for line in err.splitlines() if "retrying" in line]
    assert len(retries) == 1
    assert cli_is_retry_line(retries[0], "#2 'a blue whale': ", "0.0", "503 Service Unavailable", 2, 4), retries


@pytest.mark.parametrize("args, delay, code", [
    (["--total-timeout", "0.3"], None, 4),  # a server that never answers
    (["--total-timeout", "3"], 0.1, 0),  # a slow answer within the budget
    (["--timeout", "0.2", "--no-retries"], 2.0, 4),  # one attempt's limit
    (["--timeout", "2"], 0.1, 0),
], ids=["total-timeout-reached", "total-timeout-not-reached", "timeout-reached", "timeout-not-reached"])
def test_cli_timeouts_bound_a_request(
    api: FakeFriendli, cli_env: pathlib.Path, capsys: Any, monkeypatch: pytest.MonkeyPatch,
    args: List[str], delay: Optional[float], code: int
) -> None:
    cli_route(monkeypatch, api, lambda seen: None if seen.method != "POST" else
              never_answer if delay is None else Reply(200, {"data": [png_item(3)]}, delay=delay))
    limit = float(args[1])
    started = time.monotonic()
    got, _, err = cli_run(api, capsys, "-m", "ep", "a fox", *args)
    elapsed = time.monotonic() - started
    assert got == code
    if code:
        assert limit - 0.1 <= elapsed < limit + MARGIN
        assert err.count("\n") == 1 and err.startswith("friendli-image: error: ") and "APITimeoutError" in err
    else:
        assert err == "friendli-image: saved a-fox-3.png (seed 3)\n"


# -- each failure said once; exit codes --------------------------------------------------------------------------


@pytest.mark.parametrize("n, label", [(1, ""), (2, "#1 'a fox': ")], ids=["one-request", "batch-of-two"])
def test_cli_a_failure_names_its_request_only_in_a_batch(
    api: FakeFriendli, cli_env: pathlib.Path, capsys: Any, n: int, label: str
) -> None:
    api.queue(*[Reply(400, {"detail": "no"})] * n)
    code, _, err = cli_run(api, capsys, "-m", "ep", "a fox", "-n", str(n), "--concurrency", "1")
    errors = [line for line in err.splitlines() if line.startswith("friendli-image: error: ")]
    assert code == 1 and len(errors) == n
    assert errors[0].startswith(f"friendli-image: error: {label}BadRequestError: 400")


def cli_expired_url_route(api: FakeFriendli, word: str) -> Callable[[Seen], Optional[Responder]]:
    """Prompts containing ``word`` get a pre-signed URL whose download answers 403 (it expired)."""

    def route(seen: Seen) -> Optional[Responder]:
        if seen.method == "GET" and seen.path.startswith("/files/expired.png"):
            return Reply(403, {"detail": "Request has expired"})
        if word in cli_prompt(seen):
            item = {"seed": 9, "response_format": "url", "url": api.url + "/files/expired.png?sig=x-secret-sig"}
            return ok_json({"data": [item]})
        return None

    return route


@pytest.mark.parametrize("answer, args, code, what", [
    (None, [], 0, "saved a-fox-1234.png"),
    (Reply(500, {"detail": "boom"}), ["--no-retries"], 1, "InternalServerError: 500 Internal Server Error"),
    (Reply(400, {"detail": "bad"}), [], 1, "BadRequestError: 400"),
    (Reply(404, {"detail": "no such endpoint"}), [], 1, "NotFoundError: 404"),
    (validation_error(["body", "prompt"], "bad"), [], 1, "UnprocessableEntityError: 422"),
    (ok_json({"data": "nope"}), [], 1, "InvalidResponseError: unexpected response"),
    (None, ["-o", os.path.join("afile", "x.png")], 2, "cannot create"),  # refused before sending
    ("expired", ["--format", "url"], 1, "PermissionDeniedError: 403"),  # from the image host, not the API
    (Reply(401, {"detail": "Invalid token"}), [], 3, "AuthenticationError: 401"),
    (Reply(403, {"detail": "Not your team"}), [], 3, "PermissionDeniedError: 403"),
    (echo_token_401, [], 3, "AuthenticationError: 401"),  # the echoed token is redacted
    (close_without_answer, [], 4, "APIConnectionError"),
    (short_body, [], 4, "APIConnectionError"),
], ids=["ok", "500", "400", "404", "422", "invalid-200", "not-saved", "image-host-403", "401", "403",
        "401-echoing-the-token", "closed", "body-cut-short"])
def test_cli_exit_codes_of_a_single_request(
    api: FakeFriendli, cli_env: pathlib.Path, capsys: Any, monkeypatch: pytest.MonkeyPatch,
    answer: Any, args: List[str], code: int, what: str
) -> None:
    (cli_env / "afile").write_bytes(b"a file, not a directory")
    if answer == "expired":
        cli_route(monkeypatch, api, cli_expired_url_route(api, "fox"))
    elif answer is not None:
        api.queue(answer)
    got, out, err = cli_run(api, capsys, "-m", "ep", "a fox", *args)
    assert got == code and out == ""
    assert err.count("\n") == 1 and what in err  # said once, on one line
    assert err.startswith("friendli-image: saved " if code == 0 else "friendli-image: error: ")
    assert "x-secret-sig" not in err and "Traceback" not in err
    assert len(cli_posted(api)) == (0 if code == 2 else 1) and cli_leftovers(cli_env) == []


@pytest.mark.parametrize("argv, setup, message", [
    ([], {}, "give a PROMPT or --prompts FILE"),
    (["a fox"], {}, "--model ENDPOINT[:ADAPTER] is required"),
    (["-m", "ep", "a fox", "--prompts", "p.txt"], {"p.txt": b"x\n"}, "give a PROMPT or --prompts FILE (one of them)"),
    (["-m", "ep", "a fox", "--format", "gif"], {}, "invalid choice: 'gif'"),
    (["-m", "ep", "a fox", "--steps", "0"], {}, "num_inference_steps must be within [1, 50], got 0"),
    (["-m", "ep", "a fox", "--steps", "51"], {}, "num_inference_steps must be within [1, 50], got 51"),
    (["-m", "ep", "a fox", "--concurrency", "0"], {}, "-n and --concurrency must be at least 1"),
    (["-m", "ep", "a fox", "-n", "0"], {}, "-n and --concurrency must be at least 1"),
    (["-m", "ep", "a fox", "--max-retries", "-1"], {}, "--max-retries at least 0"),
    (["-m", "ep", "a fox", "--timeout", "nan"], {}, "--timeout and --total-timeout must be positive numbers"),
    (["-m", "ep", "a fox", "--timeout", "0"], {}, "--timeout and --total-timeout must be positive numbers"),
    (["-m", "ep", "a fox", "--total-timeout", "0"], {}, "--timeout and --total-timeout must be positive numbers"),
    (["-m", "ep", "a fox", "--seed", "abc"], {}, "'abc'"),
    (["-m", "a:b:c", "a fox"], {}, "'a:b:c'"),
    (["-m", "ep", "   "], {}, "prompt must be a non-empty string"),
    (["-m", "ep", "\udcff"], {}, "prompt is not valid Unicode"),  # a lone surrogate, as argv gives undecodable bytes
    (["-m", "ep", "a fox", "--controlnet-weight", "2"], {}, "controlnet_weights[0] must be within [0, 1]"),
    (["-m", "ep", "a fox", "--control-image", "no-such.png"], {}, "control_images[0]"),
    (["-m", "ep", "a fox", "--edit-image", "missing.png"], {}, "'missing.png'"),
    (["-m", "ep", "--prompts", "missing.txt"], {}, "cannot read --prompts 'missing.txt'"),
    (["-m", "ep", "--prompts", "p.txt"], {"p.txt": b"# only a comment\n\n"}, "--prompts 'p.txt' holds no prompt"),
    (["-m", "ep", "--prompts", "p.txt"], {"p.txt": b"caf\xe9\n"}, "cannot read --prompts 'p.txt'"),
    (["-m", "ep", "a fox", "--token-file", "missing"], {}, "cannot read --token-file 'missing'"),
    (["-m", "ep", "a fox", "--token-file", "."], {}, "cannot read --token-file '.'"),
    (["-m", "ep", "a fox", "--token-file", "t"], {"t": b"\xff\xfe\n"}, "cannot read --token-file 't'"),
    (["-m", "ep", "a fox", "--token-file", "t"], {"t": b"\n"}, "no API token"),
    (["-m", "ep", "a fox", "--base-url", "http://10.0.0.5:8000"], {}, "use https://"),
    (["-m", "ep", "a fox", "--team", "a b"], {}, "team must not contain whitespace"),
    (["-m", "ep", "a fox", "-o", "taken.png"], {"taken.png": b"old"}, "taken.png exists; pass --overwrite"),
], ids=["nothing", "no-model", "prompt-and-prompts", "format", "steps-0", "steps-51", "concurrency-0", "n-0",
        "max-retries-negative", "timeout-nan", "timeout-0", "total-timeout-0", "seed-not-int", "model-two-colons",
        "blank-prompt",
        "lone-surrogate", "controlnet-weight", "missing-control-image", "missing-edit-image", "missing-prompts",
        "empty-prompts", "prompts-not-utf8", "missing-token-file", "token-file-directory", "token-file-not-utf8",
        "empty-token-file", "plain-http-remote", "team-with-space", "output-exists"])
def test_cli_usage_errors_exit_2_and_send_nothing(
    api: FakeFriendli, cli_env: pathlib.Path, capsys: Any, argv: List[str], setup: Dict[str, bytes], message: str
) -> None:
    for name, data in setup.items():
        (cli_env / name).write_bytes(data)
    code, out, err = cli_run(api, capsys, *argv)
    assert code == 2 and out == ""
    assert message in err and "Traceback" not in err
    assert api.requests == []


def test_cli_no_token_is_a_usage_error(api: FakeFriendli, cli_env: pathlib.Path, capsys: Any,
                                       monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("FRIENDLI_TOKEN")
    code, _, err = cli_run(api, capsys, "-m", "ep", "a fox")
    assert code == 2 and "no API token: set FRIENDLI_TOKEN or use --token-file PATH" in err
    assert api.requests == []


def test_cli_each_failure_is_said_once_and_the_summary_counts_them(
    api: FakeFriendli, cli_env: pathlib.Path, capsys: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    cli_route(monkeypatch, api, lambda seen: Reply(500, {"detail": "model crashed"}) if "bad" in cli_prompt(seen)
              else close_without_answer if "cut" in cli_prompt(seen) else None)
    (cli_env / "p.txt").write_text("one\ntwo bad\nthree\nfour cut\n", encoding="utf-8")
    code, out, err = cli_run(api, capsys, "-m", "ep", "--prompts", "p.txt", "--no-retries")
    assert code == 5 and out == ""
    assert len(cli_posted(api)) == 4  # a failure does not stop the batch
    assert cli_files(cli_env) == ["001-one-1234.png", "003-three-1234.png", "p.txt"]
    lines = err.splitlines()
    bad = [line for line in lines if "'two bad'" in line]
    cut = [line for line in lines if "'four cut'" in line]
    assert bad == ["friendli-image: error: #2 'two bad': InternalServerError: 500 Internal Server Error from "
                   f"{api.url}{API_GENERATIONS_PATH}: model crashed"]
    assert len(cut) == 1 and cut[0].startswith("friendli-image: error: #4 'four cut': APIConnectionError: ")
    assert lines[-1].startswith("friendli-image: 2 of 4 requests succeeded, 2 failed in ")
    assert "Traceback" not in err


@pytest.mark.parametrize("answers, code", [
    ([Reply(400, {"detail": "no"})] * 2, 1),  # every request failed alike: that error's code
    ([close_without_answer] * 2, 4),
    ([Reply(400, {"detail": "no"})], 5),  # some failed
], ids=["all-api-errors", "all-network-errors", "some-failed"])
def test_cli_exit_code_of_a_batch(api: FakeFriendli, cli_env: pathlib.Path, capsys: Any,
                                  answers: List[Responder], code: int) -> None:
    api.queue(*answers)
    got, _, err = cli_run(api, capsys, "-m", "ep", "a fox", "-n", "2", "--concurrency", "1")
    assert got == code and err.count("error: ") == len(answers)


def test_cli_an_image_host_refusing_a_download_is_that_images_failure(
    api: FakeFriendli, cli_env: pathlib.Path, capsys: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    cli_route(monkeypatch, api, cli_expired_url_route(api, "two"))
    (cli_env / "p.txt").write_text("one\ntwo\nthree\n", encoding="utf-8")
    code, _, err = cli_run(api, capsys, "-m", "ep", "--prompts", "p.txt", "--concurrency", "1")
    assert code == 5  # not 3: the token was not refused
    assert len(cli_posted(api)) == 3  # the batch went on
    failures = [line for line in err.splitlines() if "error: " in line]
    assert len(failures) == 1 and failures[0].startswith("friendli-image: error: #2 'two': ")
    assert f"PermissionDeniedError: 403 Forbidden from {api.url}/files/expired.png: Request has expired" in failures[0]
    assert "x-secret-sig" not in err and "2 of 3 requests succeeded, 1 failed" in err


def test_cli_a_refused_token_stops_a_batch(api: FakeFriendli, cli_env: pathlib.Path, capsys: Any,
                                           monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FRIENDLI_TOKEN", "fl-wrong-token")
    _, out, err = cli_run(api, capsys, "-m", "ep", "a fox", "-n", "4", "--concurrency", "1", "--json")
    assert len(cli_posted(api)) == 1  # later prompts are not sent (the exit code is checked below)
    assert err.count("AuthenticationError: 401") == 1 and "3 not done" in err
    records = [json.loads(line) for line in out.splitlines()]  # --json: one record for each request, sent or not
    assert [(r["index"], r["ok"], r["error"]["type"]) for r in records] == [
        (1, False, "AuthenticationError"), (2, False, "NotDone"), (3, False, "NotDone"), (4, False, "NotDone")]
    assert records[1]["error"]["attempts"] == 0 and records[1]["error"]["status"] is None


def test_cli_a_refused_token_ends_a_batch_with_exit_3(api: FakeFriendli, cli_env: pathlib.Path, capsys: Any,
                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FRIENDLI_TOKEN", "fl-wrong-token")
    code, _, err = cli_run(api, capsys, "-m", "ep", "a fox", "-n", "6", "--concurrency", "1")
    assert code == 3 and len(cli_posted(api)) < 6  # the batch stopped
    assert " not done in " in err


def test_cli_an_answer_without_images_is_not_a_silent_success(
    api: FakeFriendli, cli_env: pathlib.Path, capsys: Any
) -> None:
    api.queue(ok_json({"data": []}))
    code, _, err = cli_run(api, capsys, "-m", "ep", "a fox", "-o", "fox.png")
    assert code == 1 and "error" in err


# -- --json ------------------------------------------------------------------------------------------------------


def test_cli_json_prints_one_object_per_request(api: FakeFriendli, cli_env: pathlib.Path, capsys: Any) -> None:
    code, out, err = cli_run(api, capsys, "-m", "ep", "a fox", "-n", "2", "--seed", "5", "--json", "--concurrency", "1")
    assert code == 0
    records = [json.loads(line) for line in out.splitlines()]
    assert records == [
        {"index": 1, "prompt": "a fox", "ok": True, "request_id": "req-1",
         "images": [{"path": "001-a-fox-5.png", "seed": 5, "format": "png"}]},
        {"index": 2, "prompt": "a fox", "ok": True, "request_id": "req-2",
         "images": [{"path": "002-a-fox-6.png", "seed": 6, "format": "png"}]},
    ]
    assert "saved" in err and "{" not in err  # people read stderr, programs read stdout


def test_cli_json_reports_failures_too(api: FakeFriendli, cli_env: pathlib.Path, capsys: Any,
                                       monkeypatch: pytest.MonkeyPatch) -> None:
    cli_route(monkeypatch, api, lambda seen: Reply(500, {"detail": "boom"}, headers={"X-Request-Id": "rq-9"})
              if "bad" in cli_prompt(seen) else close_without_answer if "cut" in cli_prompt(seen) else None)
    (cli_env / "p.txt").write_text("one\ntwo bad\nthree cut\n", encoding="utf-8")
    code, out, _ = cli_run(api, capsys, "-m", "ep", "--prompts", "p.txt", "--json", "--no-retries")
    assert code == 5
    records = sorted((json.loads(line) for line in out.splitlines()), key=lambda record: record["index"])
    assert len(records) == 3 == len(out.splitlines())  # stdout holds nothing else
    assert records[0]["ok"] is True and records[0]["images"][0]["path"] == "001-one-1234.png"
    bad, cut = records[1], records[2]
    assert set(bad) == set(cut) == {"index", "prompt", "ok", "error"}
    assert (bad["index"], bad["prompt"], bad["ok"]) == (2, "two bad", False)
    assert bad["error"] == {"type": "InternalServerError", "status": 500, "request_id": "rq-9", "attempts": 1,
                            "message": f"500 Internal Server Error from {api.url}{API_GENERATIONS_PATH}: boom "
                                       "[request id rq-9]"}
    assert (cut["index"], cut["prompt"], cut["ok"]) == (3, "three cut", False)
    assert cut["error"]["type"] == "APIConnectionError" and cut["error"]["status"] is None
    assert cut["error"]["request_id"] is None and cut["error"]["attempts"] == 1 and cut["error"]["message"]


def test_cli_json_counts_attempts_of_a_retried_failure(api: FakeFriendli, cli_env: pathlib.Path, capsys: Any) -> None:
    api.queue(CLI_BUSY, CLI_BUSY, CLI_BUSY)
    code, out, _ = cli_run(api, capsys, "-m", "ep", "a fox", "--json", "--max-retries", "2")
    assert code == 1
    (record,) = [json.loads(line) for line in out.splitlines()]
    assert record["error"]["attempts"] == 3 and record["error"]["status"] == 503


# -- shell habits -------------------------------------------------------------------------------------------------


def test_cli_version(capsys: Any) -> None:
    assert fi.main(["--version"]) == 0
    assert capsys.readouterr().out == f"friendli-image {fi.__version__}\n"


@pytest.mark.parametrize("argv, message", [
    (["--versoin"], "unknown option --versoin (did you mean --version?)"),
    (["--modle", "ep", "a fox"], "unknown option --modle (did you mean --model?)"),
    (["--modle=ep", "a fox"], "unknown option --modle (did you mean --model?)"),
    (["-m", "ep", "a fox", "--concurency", "2"], "unknown option --concurency (did you mean --concurrency?)"),
    (["-m", "ep", "a fox", "--zzzzzz"], "unknown option --zzzzzz"),
    (["-m", "ep", "a", "red", "fox"], "unexpected words: red fox"),
], ids=["versoin", "modle", "modle-equals", "concurency", "no-close-flag", "unquoted-words"])
def test_cli_unknown_flags_and_stray_words_are_named(
    api: FakeFriendli, cli_env: pathlib.Path, capsys: Any, argv: List[str], message: str
) -> None:
    code, out, err = cli_run(api, capsys, *argv)
    assert code == 2 and out == "" and message in err
    if "did you mean" not in message:
        assert "did you mean" not in err
    assert api.requests == []


@pytest.mark.parametrize("argv", [
    ["--token", CLI_SECRET], ["--token=" + CLI_SECRET], ["--token"], ["--tok", CLI_SECRET], ["--toke=" + CLI_SECRET],
    ["--token-fil", CLI_SECRET],
], ids=["token-space", "token-equals", "token-alone", "abbreviated", "abbreviated-equals", "misspelt-token-file"])
def test_cli_has_no_token_option_and_never_echoes_one(
    api: FakeFriendli, cli_env: pathlib.Path, capsys: Any, argv: List[str]
) -> None:
    code, out, err = cli_run(api, capsys, "-m", "ep", "a fox", *argv)  # cli_main asserts CLI_SECRET is not shown
    assert code == 2 and out == ""
    assert "there is no --token option" in err or "unknown option --tok" in err
    assert api.requests == []


def test_cli_help_fits_80_columns_and_lists_the_exit_codes(capsys: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("COLUMNS", "80")
    assert fi.main(["--help"]) == 0
    out = capsys.readouterr().out
    assert [line for line in out.splitlines() if len(line) > 80] == []
    for flag in ("--model", "--steps", "--guidance-scale", "--seed", "--format", "--control-image",
                 "--controlnet-weight", "--edit-image", "--prompts", "--concurrency", "--output", "--overwrite",
                 "--json", "--verbose", "--base-url", "--team", "--token-file", "--target",
                 "--allow-insecure-http", "--timeout", "--total-timeout", "--max-retries", "--no-retries"):
        assert flag in out
    codes = " ".join(out.split("exit codes:")[1].split("\n\n")[0].split())
    for expected in ("0 success", "1 API error or an image not saved", "2 usage error", "3 token refused",
                     "4 network error or timeout", "5 some requests of a batch failed", "130 interrupted"):
        assert expected in codes


# -- the token: --token-file, never shown -------------------------------------------------------------------------


@pytest.mark.parametrize("content", [TOKEN + "\n", "\ufeff" + TOKEN + "\r\n", "  " + TOKEN + "  \n"],
                         ids=["newline", "bom-crlf", "spaces"])
def test_cli_token_file_is_read_and_stripped(
    api: FakeFriendli, cli_env: pathlib.Path, capsys: Any, monkeypatch: pytest.MonkeyPatch, content: str
) -> None:
    monkeypatch.setenv("FRIENDLI_TOKEN", "fl-not-this-one")  # the file wins over the environment
    (cli_env / "token").write_bytes(content.encode("utf-8"))
    code, _, _ = cli_run(api, capsys, "-m", "ep", "a fox", "--token-file", "token", "-o", "fox.png")
    assert code == 0 and cli_posted(api)[0].headers["authorization"] == f"Bearer {TOKEN}"


@pytest.mark.parametrize("verbose", ["-v", "-vv"])
def test_cli_a_token_echoed_by_the_server_is_never_shown(
    api: FakeFriendli, cli_env: pathlib.Path, capsys: Any, verbose: str
) -> None:
    api.queue(echo_token_401)
    code, _, err = cli_run(api, capsys, "-m", "ep", "a fox", verbose, "--json")  # cli_main checks every output
    assert code == 3 and "AuthenticationError" in err


# -- verbosity ----------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("level", [logging.NOTSET, logging.WARNING])
def test_cli_leaves_logging_as_it_found_it(api: FakeFriendli, cli_env: pathlib.Path, capsys: Any, level: int) -> None:
    before = fi.logger.level
    fi.logger.setLevel(level)  # whatever an earlier test left, this one starts from a known level
    try:
        handlers = list(fi.logger.handlers)
        api.queue(Reply(503, {"detail": "busy"}, headers={"retry-after-ms": "1"}))
        code, _, err = cli_run(api, capsys, "-m", "ep", "a fox", "-o", "fox.png")
        assert code == 0 and "retrying in" in err  # the retry was reported through the module's logger
        assert fi.logger.handlers == handlers and fi.logger.level == level
    finally:
        fi.logger.setLevel(before)


@pytest.mark.parametrize("verbose, traceback", [([], False), (["-v"], True), (["--verbose"], True)],
                         ids=["quiet", "v", "verbose"])
def test_cli_v_shows_a_traceback_for_a_failure(
    api: FakeFriendli, cli_env: pathlib.Path, capsys: Any, verbose: List[str], traceback: bool
) -> None:
    api.queue(Reply(500, {"detail": "boom"}))
    code, _, err = cli_run(api, capsys, "-m", "ep", "a fox", "--no-retries", *verbose)
    assert code == 1
    assert ("Traceback (most recent call last)" in err) is traceback
    assert err.count("friendli-image: error: ") == 1  # the failure is still said once
    last = err.rstrip().splitlines()[-1]
    assert last.startswith("friendli-image: error: ") and "InternalServerError: 500" in last


# -- the program as users run it: script, exit codes, terminal, Ctrl-C ------------------------------------------


def test_cli_runs_as_a_script(api: FakeFriendli, tmp_path: pathlib.Path) -> None:
    done = cli_script(["--base-url", api.url, "--model", "ep", "an orange car", "--json"], tmp_path)
    assert done.returncode == 0, done.stderr
    record = json.loads(done.stdout)
    assert record == {"index": 1, "prompt": "an orange car", "ok": True, "request_id": "req-1",
                      "images": [{"path": "an-orange-car-1234.png", "seed": 1234, "format": "png"}]}
    assert (tmp_path / "an-orange-car-1234.png").read_bytes() == PNG
    assert done.stderr == "friendli-image: saved an-orange-car-1234.png (seed 1234)\n"  # a pipe: no progress line


def test_cli_json_records_reach_a_pipe_as_each_request_ends(
    api: FakeFriendli, tmp_path: pathlib.Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Catches records held in stdout's buffer until the program ends (a pipe is block-buffered)."""
    normal = api.default

    def second_slow(seen: Seen) -> Reply:
        reply = normal(seen)
        reply.delay = 0.0 if len(api.requests) == 1 else 0.3
        return reply

    monkeypatch.setattr(api, "default", second_slow)
    env = {name: value for name, value in cli_script_env().items() if name != "PYTHONUNBUFFERED"}  # as users run it
    proc = subprocess.Popen([sys.executable, str(CLI_MODULE), "--base-url", api.url, "-m", "ep", "a fox", "-n", "2",
                             "--concurrency", "1", "--json"], cwd=tmp_path, env=env,
                            stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    try:
        assert proc.stdout is not None
        first = json.loads(proc.stdout.readline())
        read_at = time.monotonic()
        proc.communicate(timeout=20)
        rest = time.monotonic() - read_at  # the second request (0.3 s) came after the first record
    finally:
        proc.kill()
    assert first["index"] == 1 and first["ok"] is True and rest > 0.2 and proc.returncode == 0


@pytest.mark.parametrize("args, code, text", [
    (["--version"], 0, f"friendli-image {fi.__version__}\n"),
    (["--model", "ep"], 2, "give a PROMPT or --prompts FILE"),
    (["--model", "ep", b"a \xff fox"], 2, "prompt is not valid Unicode"),  # bytes no encoding can decode
], ids=["version", "usage-error", "undecodable-argv"])
def test_cli_script_exit_codes(api: FakeFriendli, tmp_path: pathlib.Path, args: List[Union[str, bytes]], code: int,
                               text: str) -> None:
    done = cli_script(["--base-url", api.url, *args], tmp_path)
    assert done.returncode == code
    assert text in (done.stdout if code == 0 else done.stderr)
    assert api.requests == [] and list(tmp_path.iterdir()) == []


@pytest.fixture(scope="module")
def cli_terminal_runs(shared_api: FakeFriendli,
                      tmp_path_factory: pytest.TempPathFactory) -> Dict[str, Tuple[int, str, str, pathlib.Path]]:
    """Runs with stderr on a terminal, side by side: one slow image (0.8 s); a batch of three (one fails, one
    is retried once); and that batch with --json, stdout on the same terminal."""
    if sys.platform == "win32":
        pytest.skip("pseudo-terminals are POSIX")
    api = shared_api
    api.reset()
    normal = api.default
    lock = threading.Lock()
    retried: List[str] = []

    def route(seen: Seen) -> Responder:
        prompt = cli_prompt(seen)
        if "bad" in prompt:
            return Reply(400, {"detail": "no"}, delay=0.1)
        with lock:
            first = "three" in prompt and prompt not in retried
            if first:
                retried.append(prompt)
        if first:
            return Reply(503, {"detail": "busy"}, headers={"retry-after-ms": "100"})
        reply = normal(seen)
        reply.delay = 0.8 if "slow" in prompt else 0.1  # the status line is drawn every 0.25 s: "1 s" by 0.75 s
        return reply

    single, batch = tmp_path_factory.mktemp("cli-tty-single"), tmp_path_factory.mktemp("cli-tty-batch")
    json_batch = tmp_path_factory.mktemp("cli-tty-json")
    (batch / "p.txt").write_text("one\ntwo bad\nthree\n", encoding="utf-8")
    (json_batch / "p.txt").write_text("json one\njson two bad\njson three\n", encoding="utf-8")
    api.default = route  # type: ignore[method-assign,assignment]
    try:
        with ThreadPoolExecutor(3) as pool:
            one = pool.submit(cli_pty_run, ["--base-url", api.url, "-m", "ep", "a slow fox", "-o", "slow.png"], single)
            many = pool.submit(cli_pty_run, ["--base-url", api.url, "-m", "ep", "--prompts", "p.txt",
                                             "--concurrency", "1"], batch)
            json_many = pool.submit(cli_pty_run, ["--base-url", api.url, "-m", "ep", "--prompts", "p.txt", "--json",
                                                  "--concurrency", "1"], json_batch, stdout_too=True)
            runs = {"single": (*one.result(), single), "batch": (*many.result(), batch),
                    "json": (*json_many.result(), json_batch)}
    finally:
        del api.default
        api.reset()
    return runs


def test_cli_on_a_terminal_one_image_shows_how_long_it_has_waited(
    cli_terminal_runs: Dict[str, Tuple[int, str, str, pathlib.Path]]
) -> None:
    code, text, out, folder = cli_terminal_runs["single"]
    assert code == 0 and out == ""
    assert (folder / "slow.png").read_bytes() == PNG
    waiting = text.split("friendli-image: saved slow.png (seed 1234)")[0]  # shown while the request is out
    assert "\r\x1b[Kwaiting for the image: 0 s" in waiting and "\r\x1b[Kwaiting for the image: 1 s" in waiting
    assert text.endswith("\r\x1b[K")  # the status line is gone when the program ends
    assert TOKEN not in text


def test_cli_on_a_terminal_a_batch_shows_done_failed_left_elapsed_and_what_is_left(
    cli_terminal_runs: Dict[str, Tuple[int, str, str, pathlib.Path]]
) -> None:
    code, text, out, folder = cli_terminal_runs["batch"]
    assert code == 5 and out == ""
    status = re.findall(r"\r\x1b\[K(\d+)/3 done, (\d+) failed, (\d+) left, (\d+) s(?:, about (\d+) s to go)?", text)
    assert status, text
    done = [int(s[0]) for s in status]
    assert done == sorted(done) and done[0] == 0 and done[-1] == 3
    assert all(int(d) + int(left) == 3 for d, _, left, _, _ in status)
    assert ("3", "1", "0") in [s[:3] for s in status]
    assert any(s[4] for s in status if s[0] in ("1", "2"))  # an estimate once something is done and some is left
    assert not any(s[4] for s in status if s[0] == "3")  # nothing left: no estimate
    assert text.count("friendli-image: error: #2 'two bad': BadRequestError: 400") == 1
    assert text.count("friendli-image: #3 'three': retrying ") == 1
    assert "friendli-image: 2 of 3 requests succeeded, 1 failed in " in text
    assert cli_files(folder) == ["001-one-1234.png", "003-three-1234.png", "p.txt"]
    assert text.endswith("\r\x1b[K")


@pytest.mark.parametrize("run", ["single", "batch"])
def test_cli_on_a_terminal_messages_never_run_into_the_status_line(
    cli_terminal_runs: Dict[str, Tuple[int, str, str, pathlib.Path]], run: str
) -> None:
    text = cli_terminal_runs[run][1]
    starts = cli_message_starts(text)
    assert len(starts) >= (1 if run == "single" else 5)  # saved, error, retry, saved, summary
    assert [before for before in starts if not cli_starts_a_line(before)] == []
    drawn = [line for line in re.findall(r"\r\x1b\[K([^\r\n\x1b]*)", text) if not line.startswith("friendli-image:")]
    assert drawn and max(len(line) for line in drawn) <= 80  # the status line fits a terminal (wraps would pile up)


def test_cli_on_a_terminal_json_records_on_the_same_terminal_each_start_a_line(
    cli_terminal_runs: Dict[str, Tuple[int, str, str, pathlib.Path]]
) -> None:
    code, text, out, _ = cli_terminal_runs["json"]
    assert code == 5 and out == ""  # stdout was the terminal too
    records = [m.start() for m in re.finditer(r'\{"index": ', text)]
    assert len(records) == 3
    assert [text[max(0, at - 4):at] for at in records if not cli_starts_a_line(text[max(0, at - 4):at])] == []


@pytest.mark.skipif(sys.platform == "win32", reason="SIGINT to a child process is POSIX")
@pytest.mark.parametrize("twice", [False, True], ids=["once", "twice"])
def test_cli_ctrl_c_during_a_batch(api: FakeFriendli, tmp_path: pathlib.Path, monkeypatch: pytest.MonkeyPatch,
                                   twice: bool) -> None:
    """Ctrl-C: the requests in flight finish (their images kept) and no other is sent; a second Ctrl-C quits."""
    normal = api.default
    delay = 5.0 if twice else 0.4  # long enough that no request ends before the signal, even on a busy machine

    def slow(seen: Seen) -> Reply:
        reply = normal(seen)
        reply.delay = delay
        return reply

    monkeypatch.setattr(api, "default", slow)
    proc = subprocess.Popen([sys.executable, str(CLI_MODULE), "--base-url", api.url, "-m", "ep", "a fox", "-n", "4",
                             "--concurrency", "2"], cwd=tmp_path, env=cli_script_env(), stdin=subprocess.DEVNULL,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 20
        while len(api.requests) < 2 and time.monotonic() < deadline:
            time.sleep(0.01)
        assert len(api.requests) == 2, "the requests never arrived"
        proc.send_signal(signal.SIGINT)
        if twice:
            time.sleep(0.3)
            proc.send_signal(signal.SIGINT)
        quit_at = time.monotonic()
        out, err = proc.communicate(timeout=20)
        elapsed = time.monotonic() - quit_at
    finally:
        proc.kill()
    assert proc.returncode == 130, err
    assert out == "" and "Traceback" not in err and TOKEN not in err
    assert err.count("friendli-image: interrupted: waiting for the requests in flight") == 1
    assert len(api.requests) == 2  # the jobs not started were never sent
    if twice:
        assert elapsed < MARGIN  # not the 5 s the server takes
        assert cli_files(tmp_path) == []
    else:
        assert cli_files(tmp_path) == ["001-a-fox-1234.png", "002-a-fox-1234.png"]  # those in flight were kept
    assert cli_leftovers(tmp_path) == []


@pytest.mark.skipif(sys.platform == "win32", reason="SIGINT to this process is POSIX")
def test_cli_ctrl_c_while_the_workers_start_is_an_interrupted_run(
    api: FakeFriendli, cli_env: pathlib.Path, capsys: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A real SIGINT as the second request's thread starts: catches a KeyboardInterrupt escaping main(), and
    another request started after it."""
    started: List[int] = []

    class Thread(threading.Thread):
        def start(self) -> None:
            started.append(1)
            if len(started) == 2:  # Ctrl-C as the second request starts
                os.kill(os.getpid(), signal.SIGINT)
            super().start()

    monkeypatch.setattr(fi, "threading", types.SimpleNamespace(**{**vars(threading), "Thread": Thread}))
    code, _, err = cli_run(api, capsys, "-m", "ep", "a fox", "-n", "3", "--concurrency", "2")
    assert code == 130 and err.count("interrupted: waiting for the requests in flight") == 1
    assert len(started) == 2 and len(api.requests) <= 2 and "Traceback" not in err  # the third never started
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler  # put back as it was


@pytest.mark.skipif(sys.platform == "win32", reason="SIGINT to this process is POSIX")
def test_cli_a_request_stopped_by_ctrl_c_in_its_retry_sleep_is_not_done_not_failed(
    api: FakeFriendli, cli_env: pathlib.Path, capsys: Any
) -> None:
    """Catches the request cancelled by Ctrl-C reported as a failure ("the call ... was cancelled")."""
    api.queue(Reply(503, {"detail": "busy"}, headers={"retry-after-ms": "5000"}))

    def interrupt_when_asked() -> None:
        deadline = time.monotonic() + 5
        while not api.requests and time.monotonic() < deadline:
            time.sleep(0.01)
        time.sleep(0.1)  # into the retry sleep
        os.kill(os.getpid(), signal.SIGINT)

    threading.Thread(target=interrupt_when_asked, daemon=True).start()
    started = time.monotonic()
    code, out, err = cli_run(api, capsys, "-m", "ep", "a fox", "--json")
    assert code == 130 and time.monotonic() - started < 3  # the sleep woke at once
    assert json.loads(out)["error"]["type"] == "NotDone" and "error:" not in err and "cancelled" not in err
    assert len(api.requests) == 1


def test_cli_a_token_refused_mid_batch_is_exit_3(api: FakeFriendli, cli_env: pathlib.Path, capsys: Any,
                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    """The second of three requests gets a 401: catches exit 5 (some failed) where README promises 3."""
    cli_route(monkeypatch, api, lambda seen: Reply(401, {"detail": "bad token"}) if "two" in cli_prompt(seen) else None)
    (cli_env / "p.txt").write_text("one\ntwo\nthree\n", encoding="utf-8")
    code, _, err = cli_run(api, capsys, "-m", "ep", "--prompts", "p.txt", "--concurrency", "1")
    assert code == 3 and "1 of 3 requests succeeded, 1 failed, 1 not done" in err and len(api.requests) == 2


def test_cli_json_to_a_pipe_closed_early_goes_on_quietly(api: FakeFriendli, tmp_path: pathlib.Path,
                                                         monkeypatch: pytest.MonkeyPatch) -> None:
    """``--json | head -1``: catches a BrokenPipeError traceback (exit 1) and the requests in flight dropped."""
    normal, count = api.default, []

    def later_ones_slow(seen: Seen) -> Reply:
        reply = normal(seen)
        count.append(1)
        reply.delay = 0 if len(count) == 1 else 0.1  # the second record comes after the reader has gone
        return reply

    monkeypatch.setattr(api, "default", later_ones_slow)
    proc = subprocess.Popen([sys.executable, str(CLI_MODULE), "--base-url", api.url, "-m", "ep", "a fox", "-n", "3",
                             "--concurrency", "1", "--json", "-o", "out/"], cwd=tmp_path, env=cli_script_env(),
                            stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        assert proc.stdout is not None and proc.stderr is not None
        first = json.loads(proc.stdout.readline())
        proc.stdout.close()
        err = proc.stderr.read()
        proc.wait(20)
    finally:
        proc.kill()
    assert first["ok"] is True and proc.returncode == 0, err
    assert "Traceback" not in err and "Exception ignored" not in err and "3 of 3 requests succeeded" in err
    assert cli_files(tmp_path) == ["out/001-1234.png", "out/002-1234.png", "out/003-1234.png"]


def test_cli_an_image_saved_before_another_failed_is_reported(
    api: FakeFriendli, cli_env: pathlib.Path, capsys: Any
) -> None:
    """Two images, the second's file exists: catches the first written but not reported (a rerun then stops
    on it)."""
    api.queue(ok_json({"data": [png_item(seed=1), png_item(seed=2)]}))
    (cli_env / "car-2.png").write_bytes(b"old")
    code, out, err = cli_run(api, capsys, "-m", "ep", "a car", "-o", "car.png", "--json")
    assert code == 1 and (cli_env / "car.png").read_bytes() == PNG and (cli_env / "car-2.png").read_bytes() == b"old"
    assert "saved car.png (seed 1)" in err and "car-2.png" in err
    record = json.loads(out)
    assert record["ok"] is False and [image["path"] for image in record["images"]] == ["car.png"]


def test_cli_a_bom_on_standard_input_is_not_part_of_the_first_prompt(
    api: FakeFriendli, cli_env: pathlib.Path, capsys: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(sys, "stdin", io.StringIO("\ufeff# a comment\r\na fox\r\n"))
    code, _, _ = cli_run(api, capsys, "-m", "ep", "--prompts", "-")
    assert code == 0 and [cli_prompt(seen) for seen in api.requests] == ["a fox"]


@pytest.mark.parametrize("output, files", [
    ("run.v2/", ["run.v2/001-1234.png", "run.v2/002-1234.png"]),  # a directory, though its name has a suffix
    ("new/.", ["new/001-1234.png", "new/002-1234.png"]),
], ids=["dotted-directory", "ending-in-dot"])
def test_cli_output_naming_a_directory_by_its_end(api: FakeFriendli, cli_env: pathlib.Path, capsys: Any,
                                                  output: str, files: List[str]) -> None:
    code, _, err = cli_run(api, capsys, "-m", "ep", "a fox", "-n", "2", "-o", output)
    assert code == 0, err
    assert cli_files(cli_env) == files


def test_cli_one_request_into_a_path_ending_in_dot_is_a_directory(
    api: FakeFriendli, cli_env: pathlib.Path, capsys: Any
) -> None:
    """Catches "-o new/." saved as new.png, and "-o new/.." sent and then refused as a directory."""
    for output, expected in (("new/.", "new/1234.png"), ("new/..", "1234.png")):
        code, _, err = cli_run(api, capsys, "-m", "ep", "a fox", "-o", output)
        assert code == 0 and (cli_env / expected).read_bytes() == PNG, err


@pytest.mark.skipif(sys.platform == "win32" or os.geteuid() == 0, reason="root writes anywhere; POSIX modes")
def test_cli_a_directory_that_cannot_be_written_stops_the_run_before_sending(
    api: FakeFriendli, cli_env: pathlib.Path, capsys: Any
) -> None:
    (cli_env / "locked").mkdir()
    (cli_env / "locked").chmod(0o555)
    try:
        code, _, err = cli_run(api, capsys, "-m", "ep", "a fox", "-n", "3", "-o", "locked/")
    finally:
        (cli_env / "locked").chmod(0o755)
    assert code == 2 and api.requests == [] and "cannot write to the directory" in err


def test_cli_an_image_without_a_seed_into_a_directory_is_named_image(
    api: FakeFriendli, cli_env: pathlib.Path, capsys: Any
) -> None:
    api.queue(ok_json({"data": [{"b64_json": PNG_B64, "response_format": "png"}]}))
    code, _, err = cli_run(api, capsys, "-m", "ep", "a fox", "-o", "out/")
    assert code == 0 and (cli_env / "out" / "image.png").read_bytes() == PNG and "saved" in err


def test_cli_a_number_too_large_for_a_float_is_a_usage_error(
    api: FakeFriendli, cli_env: pathlib.Path, capsys: Any
) -> None:
    code, _, err = cli_run(api, capsys, "-m", "ep", "a fox", "--steps", "9" * 400)
    assert code == 2 and api.requests == [] and "num_inference_steps" in err and "Traceback" not in err


def test_cli_an_edit_refuses_controlnet_flags_before_sending(
    api: FakeFriendli, cli_env: pathlib.Path, capsys: Any
) -> None:
    (cli_env / "in.png").write_bytes(PNG)
    code, _, err = cli_run(api, capsys, "-m", "ep", "make it blue", "--edit-image", "in.png",
                           "--control-image", "in.png", "--controlnet-weight", "0.5")
    assert code == 2 and api.requests == [] and "not part of an image edit" in err


# -- edges of output names and exit codes ------------------------------------------------------------------------


def test_cli_a_prompt_of_exactly_40_characters_keeps_its_last_word(
    api: FakeFriendli, cli_env: pathlib.Path, capsys: Any
) -> None:
    prompt = "abcdefghij klmnopqrst uvwxyzabcd efghijk"  # words joined by '-': exactly 40 characters
    code, _, _ = cli_run(api, capsys, "-m", "ep", prompt, "--seed", "5")
    assert code == 0 and cli_files(cli_env) == ["abcdefghij-klmnopqrst-uvwxyzabcd-efghijk-5.png"]


def test_cli_all_failed_exits_with_the_first_requests_code(
    api: FakeFriendli, cli_env: pathlib.Path, capsys: Any
) -> None:
    api.queue(close_without_answer, Reply(400, {"detail": "bad"}))  # #1: a network error (4); #2: an API error (1)
    code, _, err = cli_run(api, capsys, "-m", "ep", "a fox", "-n", "2", "--concurrency", "1")
    assert code == 4 and "0 of 2 requests succeeded, 2 failed" in err


def test_cli_a_save_failing_for_another_reason_gets_no_overwrite_hint(
    api: FakeFriendli, cli_env: pathlib.Path, capsys: Any
) -> None:
    (cli_env / "out" / "1234.png").mkdir(parents=True)  # the name the server's seed gives is a directory
    code, _, err = cli_run(api, capsys, "-m", "ep", "a fox", "-o", "out/", "--overwrite")
    assert code == 1 and "cannot save the image" in err and "pass --overwrite" not in err


def test_cli_makes_nested_output_directories(api: FakeFriendli, cli_env: pathlib.Path, capsys: Any) -> None:
    code, _, _ = cli_run(api, capsys, "-m", "ep", "a fox", "--seed", "3", "-o", os.path.join("new", "sub") + os.sep)
    assert code == 0 and (cli_env / "new" / "sub" / "3.png").read_bytes() == PNG


def test_cli_a_broken_symlink_where_the_file_goes_is_refused_before_sending(
    api: FakeFriendli, cli_env: pathlib.Path, capsys: Any
) -> None:
    (cli_env / "a-fox-7.png").symlink_to(cli_env / "nowhere.png")
    code, _, err = cli_run(api, capsys, "-m", "ep", "a fox", "--seed", "7")
    assert code == 2 and api.requests == [] and "--overwrite" in err
