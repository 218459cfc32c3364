"""Tests for friendli_image, against a real local HTTP server that behaves like the Friendli API.

No urllib/http.client mocking: every fault is served on a real socket by ``FakeFriendli``.
Retry sleeps are injected (the ``client`` fixture) so the suite runs in seconds.

Sections: the fake server and fixtures; issue 2 (the core client); issue 3 (reliability and
security: fault matrix, fuzzer, secrets, transport security, concurrency); issue 4 (the command
line); issue 5 (edits, container, asyncio, conveniences).  Run the fuzzer longer by hand with
``python test_friendli_image.py --fuzz 50000 [--seed 7]``.
"""

from __future__ import annotations

import asyncio
import base64
import concurrent.futures
import copy
import dataclasses
import email.message
import email.utils
import gc
import io
import json
import logging
import os
import pathlib
import pickle
import random
import selectors
import shlex
import shutil
import signal
import socket
import socketserver
import ssl
import struct
import subprocess
import sys
import threading
import time
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


def test_token_team_and_base_url_come_from_the_environment(api: FakeFriendli, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FRIENDLI_TOKEN", TOKEN)
    monkeypatch.setenv("FRIENDLI_TEAM", "team-env")
    monkeypatch.setenv("FRIENDLI_BASE_URL", api.url + "/")
    client = fi.Client()
    assert client.base_url == api.url
    client.generate(model="ep", prompt="p")
    client.generate(model="ep", prompt="p", x_friendli_team="team-call")
    assert api.requests[0].headers["authorization"] == f"Bearer {TOKEN}"
    assert api.requests[0].headers["x-friendli-team"] == "team-env"
    assert api.requests[1].headers["x-friendli-team"] == "team-call"


def test_explicit_arguments_beat_the_environment(api: FakeFriendli, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FRIENDLI_TOKEN", "env-token")
    monkeypatch.setenv("FRIENDLI_BASE_URL", "https://example.invalid")
    client = fi.Client(TOKEN, base_url=api.url, team="team-arg")
    client.generate(model="ep", prompt="p")
    assert api.requests[0].headers["authorization"] == f"Bearer {TOKEN}"
    assert api.requests[0].headers["x-friendli-team"] == "team-arg"


def test_default_base_url_is_friendli() -> None:
    assert fi.Client(TOKEN).base_url == "https://api.friendli.ai" == fi.DEFAULT_BASE_URL


def test_token_callable_is_called_once_per_attempt(api: FakeFriendli, fake_sleep: FakeSleep) -> None:
    calls: List[int] = []

    def token() -> str:
        calls.append(1)
        return TOKEN

    client = fi.Client(token, base_url=api.url, sleep=fake_sleep, clock=fake_sleep.clock)
    api.queue(Reply(503, {"detail": "busy"}), Reply(503, {"detail": "busy"}))
    res = client.generate(model="ep", prompt="p")
    assert len(calls) == 3 == len(api.requests)
    assert res.data[0].content() == PNG


def test_a_failing_token_callable_is_a_friendli_error(api: FakeFriendli) -> None:
    def token() -> str:
        raise KeyError("secret-store-down")

    with pytest.raises(fi.FriendliError, match="token callable raised KeyError") as info:
        fi.Client(token, base_url=api.url).generate(model="ep", prompt="p")
    assert isinstance(info.value.__cause__, KeyError)
    assert api.requests == []


def test_control_images_accept_urls_data_uris_base64_paths_and_bytes(
    api: FakeFriendli, client: fi.Client, tmp_path: pathlib.Path
) -> None:
    path = tmp_path / "edge.png"
    path.write_bytes(PNG)
    data_uri = "data:image/png;base64," + PNG_B64
    client.generate(
        model="ep",
        prompt="p",
        control_images=["https://example.com/a.png", data_uri, PNG_B64, path, JPEG, str(path)],
        controlnet_weights=[0, 0.5, 1, 1.0, 0.25, 1],
    )
    body = api.requests[0].json
    assert body["control_images"] == [
        {"image": "https://example.com/a.png"},
        {"image": data_uri},
        {"image": PNG_B64},
        {"image": data_uri},
        {"image": "data:image/jpeg;base64," + base64.b64encode(JPEG).decode()},
        {"image": data_uri},
    ]
    assert body["controlnet_weights"] == [0, 0.5, 1, 1.0, 0.25, 1]


def test_module_level_generate_uses_the_environment(api: FakeFriendli, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FRIENDLI_TOKEN", TOKEN)
    monkeypatch.setenv("FRIENDLI_BASE_URL", api.url)
    res = fi.generate(model="ep", prompt="p", response_format="png", seed=7)
    assert res.data[0].seed == 7
    assert api.requests[0].json["seed"] == 7


# -- model strings -------------------------------------------------------------


@pytest.mark.parametrize(
    "text, endpoint, adapter",
    [("ep", "ep", None), ("ep-1:adapter_2", "ep-1", "adapter_2"), ("(endpoint-id)", "(endpoint-id)", None)],
)
def test_model_ref_parses_and_round_trips(text: str, endpoint: str, adapter: Optional[str]) -> None:
    ref = fi.ModelRef.parse(text)
    assert ref == fi.ModelRef(endpoint_id=endpoint, adapter_route=adapter)
    assert str(ref) == text
    assert fi.ModelRef.parse(ref) is ref


@pytest.mark.parametrize("text", ["", ":adapter", "ep:", "a:b:c", "ep id", "ep\t", "ep\x00", " ep", "ep:ad apt"])
def test_bad_model_strings_fail_before_any_traffic(api: FakeFriendli, client: fi.Client, text: str) -> None:
    with pytest.raises(fi.FriendliValidationError, match="model"):
        client.generate(model=text, prompt="p")
    assert api.requests == []


def test_generate_accepts_a_model_ref(api: FakeFriendli, client: fi.Client) -> None:
    client.generate(model=fi.ModelRef("ep", "ad"), prompt="p")
    assert api.requests[0].json["model"] == "ep:ad"


# -- input validation ------------------------------------------------------------

BAD_ARGUMENTS = [
    ({"prompt": ""}, "prompt"),
    ({"prompt": "   \n"}, "prompt"),
    ({"prompt": None}, "prompt"),
    ({"prompt": 42}, "prompt"),
    ({"num_inference_steps": 0}, "num_inference_steps"),
    ({"num_inference_steps": 51}, "num_inference_steps"),
    ({"num_inference_steps": 10.0}, "num_inference_steps"),
    ({"num_inference_steps": True}, "num_inference_steps"),
    ({"guidance_scale": float("nan")}, "guidance_scale"),
    ({"guidance_scale": float("inf")}, "guidance_scale"),
    ({"guidance_scale": "7"}, "guidance_scale"),
    ({"seed": True}, "seed"),
    ({"seed": 1.5}, "seed"),
    ({"seed": "1"}, "seed"),
    ({"response_format": "gif"}, "response_format"),
    ({"response_format": "PNG"}, "response_format"),
    ({"controlnet_weights": [1.5]}, "controlnet_weights"),
    ({"controlnet_weights": [float("nan")]}, "controlnet_weights"),
    ({"controlnet_weights": [-0.1]}, "controlnet_weights"),
    ({"controlnet_weights": [0.5, 0.5], "control_images": [PNG_B64]}, "controlnet_weights"),
    ({"control_images": "https://example.com/a.png"}, "control_images"),
    ({"control_images": ["not an image, not a file"]}, "control_images"),
    ({"control_images": [b"not an image"]}, "control_images"),
    ({"x_friendli_team": "bad team"}, "x_friendli_team"),
    ({"http_headers": {"X-Evil": "a\r\nInjected: 1"}}, "http_headers"),
]


@pytest.mark.parametrize("overrides, param", BAD_ARGUMENTS)
def test_invalid_arguments_fail_before_any_traffic(
    api: FakeFriendli, client: fi.Client, overrides: Dict[str, Any], param: str
) -> None:
    kwargs: Dict[str, Any] = {"model": "ep", "prompt": "a prompt", **overrides}
    with pytest.raises(fi.FriendliValidationError) as info:
        client.generate(**kwargs)
    assert isinstance(info.value, ValueError) and isinstance(info.value, fi.FriendliError)
    assert param in str(info.value)
    assert api.requests == []


def test_a_missing_token_names_friendli_token(api: FakeFriendli) -> None:
    for token in (None, ""):
        with pytest.raises(fi.FriendliValidationError, match="FRIENDLI_TOKEN"):
            fi.Client(token, base_url=api.url).generate(model="ep", prompt="p")
    assert api.requests == []


def test_a_token_with_whitespace_is_refused_without_echoing_it(api: FakeFriendli) -> None:
    with pytest.raises(fi.FriendliValidationError) as info:
        fi.Client("abc\ndef-SECRET", base_url=api.url).generate(model="ep", prompt="p")
    assert "SECRET" not in str(info.value)
    assert api.requests == []


def test_request_dataclass_builds_the_body() -> None:
    request = fi.ImageGenerationRequest(model="ep:ad", prompt="p", seed=3, controlnet_weights=[1])
    assert request.to_dict() == {"model": "ep:ad", "prompt": "p", "num_inference_steps": 20, "seed": 3,
                                 "controlnet_weights": [1]}
    assert json.loads(request.to_json()) == request.to_dict()
    with pytest.raises(fi.FriendliValidationError):
        fi.ImageGenerationRequest(model="ep", prompt="p", num_inference_steps=99)


# -- results ------------------------------------------------------------------------


def test_print_of_a_result_stays_short(api: FakeFriendli, client: fi.Client) -> None:
    big = base64.b64encode(make_png(extra=1024 * 1024)).decode()
    api.queue(Reply(200, {"data": [{"b64_json": big, "seed": 5, "response_format": "png"}]}))
    res = client.generate(model="ep", prompt="p", response_format="png")
    text = repr(res)
    assert len(text) < 300
    assert "seed=5" in text and f"({len(big)} chars)" in text
    assert res.data[0].b64_json == big  # the attribute itself is whole


def test_save_picks_the_suffix_from_the_bytes(api: FakeFriendli, client: fi.Client, tmp_path: pathlib.Path) -> None:
    png = client.generate(model="ep", prompt="p", response_format="png").data[0]
    jpg = client.generate(model="ep", prompt="p", response_format="jpeg").data[0]
    assert png.save(tmp_path / "car") == tmp_path / "car.png"
    assert jpg.save(tmp_path / "car") == tmp_path / "car.jpg"
    assert jpg.save(str(tmp_path / "named.jpeg")) == tmp_path / "named.jpeg"
    assert (tmp_path / "car.png").read_bytes() == PNG
    assert (tmp_path / "car.jpg").read_bytes() == JPEG
    assert sorted(p.name for p in tmp_path.iterdir()) == ["car.jpg", "car.png", "named.jpeg"]  # no temp files


def test_url_items_are_downloaded_without_the_token(api: FakeFriendli, client: fi.Client, tmp_path: pathlib.Path) -> None:
    res = client.generate(model="ep", prompt="p")  # response_format defaults to url on the server
    item = res.data[0]
    assert item.url is not None and item.url.startswith(api.url + "/files/") and item.b64_json is None
    assert item.save(tmp_path / "img") == tmp_path / "img.png"
    assert (tmp_path / "img.png").read_bytes() == PNG
    download = api.requests[-1]
    assert download.method == "GET" and download.path == "/files/image.png?sig=abc"
    assert "authorization" not in download.headers


# -- retry types -----------------------------------------------------------------------


def test_retry_types_take_the_sdks_positional_order() -> None:
    config = fi.RetryConfig("backoff", fi.BackoffStrategy(500, 60000, 1.5, 3600000), True)
    assert config.backoff is not None
    assert (config.backoff.initial_interval, config.backoff.max_interval) == (500, 60000)
    assert (config.backoff.exponent, config.backoff.max_elapsed_time) == (1.5, 3600000)
    assert config.retry_connection_errors is True and config.status_codes_override is None
    assert fi.DEFAULT_RETRY_CONFIG == config
    with pytest.raises(fi.FriendliValidationError):
        fi.RetryConfig("sometimes")


def test_strategy_none_makes_one_attempt(api: FakeFriendli, client: fi.Client, fake_sleep: FakeSleep) -> None:
    api.queue(Reply(503, {"detail": "busy"}))
    with pytest.raises(fi.InternalServerError) as info:
        client.generate(model="ep", prompt="p", retries=fi.RetryConfig("none"))
    assert info.value.attempts == 1 and "attempts" not in str(info.value)
    assert len(api.requests) == 1 and fake_sleep.calls == []


# -- errors -------------------------------------------------------------------------

STATUS_CLASSES = [
    (400, fi.BadRequestError),
    (401, fi.AuthenticationError),
    (403, fi.PermissionDeniedError),
    (404, fi.NotFoundError),
    (409, fi.APIStatusError),
    (418, fi.APIStatusError),
    (422, fi.UnprocessableEntityError),
    (429, fi.RateLimitError),
    (500, fi.InternalServerError),
    (501, fi.InternalServerError),
    (503, fi.InternalServerError),
    (599, fi.InternalServerError),
]


@pytest.mark.parametrize("status, cls", STATUS_CLASSES)
def test_each_status_maps_to_its_error_class(api: FakeFriendli, client: fi.Client, status: int, cls: type) -> None:
    api.queue(Reply(status, {"detail": f"server says {status}"}, headers={"X-Request-Id": "rid-9"}))
    with pytest.raises(fi.APIStatusError) as info:
        client.generate(model="ep", prompt="p", retries=fi.RetryConfig("none"))
    err = info.value
    assert type(err) is cls
    assert isinstance(err, fi.SDKError) and isinstance(err, fi.FriendliError)
    assert err.status_code == status
    assert err.message == f"server says {status}"
    assert json.loads(err.body) == {"detail": f"server says {status}"}
    assert err.request_id == "rid-9" and err.headers["x-request-id"] == "rid-9"
    assert str(status) in str(err) and "rid-9" in str(err) and f"server says {status}" in str(err)
    assert err.attempts == 1


@pytest.mark.parametrize(
    "body, expected",
    [
        (b'{"message": "from message"}', "from message"),
        (b'{"error": {"message": "nested", "type": "x"}}', "nested"),
        (b'{"error": "plain error"}', "plain error"),
        (b"<html>Bad Gateway</html>", "Bad Request"),  # not JSON: the reason phrase
    ],
)
def test_error_message_comes_from_the_json_body(
    api: FakeFriendli, client: fi.Client, body: bytes, expected: str
) -> None:
    api.queue(Reply(400, body=body))
    with pytest.raises(fi.BadRequestError) as info:
        client.generate(model="ep", prompt="p")
    assert info.value.message == expected
    assert info.value.body == body.decode()


def test_422_exposes_the_parsed_detail_list(api: FakeFriendli, client: fi.Client) -> None:
    detail = [{"loc": ["body", "prompt"], "msg": "Field required", "type": "missing"}]
    api.queue(Reply(422, {"detail": detail}))
    with pytest.raises(fi.UnprocessableEntityError) as info:
        client.generate(model="ep", prompt="p")
    assert info.value.errors == detail
    assert info.value.attempts == 1 and len(api.requests) == 1  # 422 is never retried


def test_error_bodies_are_capped(api: FakeFriendli, client: fi.Client) -> None:
    api.queue(Reply(400, body=b"x" * (1024 * 1024)))
    with pytest.raises(fi.BadRequestError) as info:
        client.generate(model="ep", prompt="p")
    assert 0 < len(info.value.body) <= 64 * 1024


@pytest.mark.parametrize(
    "reply, fragment",
    [
        (Reply(200, body=b"<html><body>Welcome to nginx</body></html>", content_type="text/html"), "not JSON"),
        (Reply(200, {"data": []}), "'data'"),
        (Reply(200, {"images": []}), "'data'"),
        (Reply(200, {"data": [{"seed": 1, "response_format": "png"}]}), "neither"),
        (Reply(200, {"data": [{"seed": 1, "response_format": "png", "b64_json": "!!notbase64!!"}]}), "base64"),
    ],
)
def test_a_2xx_that_is_not_the_documented_json_is_an_invalid_response(
    api: FakeFriendli, client: fi.Client, reply: Reply, fragment: str
) -> None:
    api.queue(reply)
    with pytest.raises(fi.InvalidResponseError, match=fragment) as info:
        client.generate(model="ep", prompt="p")
    assert info.value.status_code == 200
    assert len(api.requests) == 1  # not retried: the server did answer


def test_a_body_cut_short_is_a_retryable_connection_error(api: FakeFriendli, client: fi.Client) -> None:
    api.queue(short_body)
    res = client.generate(model="ep", prompt="p", response_format="png")
    assert res.data[0].content() == PNG and len(api.requests) == 2
    api.queue(short_body)
    with pytest.raises(fi.APIConnectionError, match="incomplete") as info:
        client.generate(model="ep", prompt="p", retries=fi.RetryConfig("none"))
    assert info.value.__cause__ is not None  # the http.client exception is chained, not leaked


def test_connection_refused_is_an_api_connection_error(fake_sleep: FakeSleep) -> None:
    with socket.socket() as probe:  # a port with nothing listening
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    client = fi.Client(TOKEN, base_url=f"http://127.0.0.1:{port}", sleep=fake_sleep, clock=fake_sleep.clock)
    retry = fi.RetryConfig("backoff", fi.BackoffStrategy(10, 100, 2, 60000, jitter_ms=0), True, max_retries=2)
    with pytest.raises(fi.APIConnectionError) as info:
        client.generate(model="ep", prompt="p", retries=retry)
    assert info.value.attempts == 3 and "after 3 attempts" in str(info.value)
    assert fake_sleep.calls == [0.01, 0.02]
    assert isinstance(info.value.__cause__, OSError)


def test_errors_survive_pickling() -> None:
    import pickle

    err = fi.RateLimitError("429 Too Many Requests: slow down", status_code=429, body="{}", request_id="r",
                            attempts=3)
    copy = pickle.loads(pickle.dumps(err))
    assert type(copy) is fi.RateLimitError and str(copy) == str(err) and copy.status_code == 429


# -- retries ---------------------------------------------------------------------------


def no_jitter(**overrides: Any) -> fi.RetryConfig:
    backoff: Dict[str, Any] = dict(initial_interval=500, max_interval=60000, exponent=1.5, max_elapsed_time=3600000,
                                   jitter_ms=0)
    backoff.update(overrides)
    return fi.RetryConfig("backoff", fi.BackoffStrategy(**backoff), True)


@pytest.mark.parametrize("status", [429, 500, 502, 503, 504])
def test_retryable_statuses_back_off_exponentially(
    api: FakeFriendli, client: fi.Client, fake_sleep: FakeSleep, status: int
) -> None:
    api.queue(Reply(status, {"detail": "x"}), Reply(status, {"detail": "x"}), Reply(status, {"detail": "x"}))
    res = client.generate(model="ep", prompt="p", response_format="png", retries=no_jitter())
    assert res.data[0].content() == PNG
    assert fake_sleep.calls == [0.5, 0.75, 1.125]
    assert len(api.requests) == 4


def test_default_jitter_is_up_to_one_second_and_sleeps_are_capped(
    api: FakeFriendli, client: fi.Client, fake_sleep: FakeSleep
) -> None:
    api.queue(*[Reply(503, {"detail": "x"}) for _ in range(8)])
    client.generate(model="ep", prompt="p", response_format="png")
    assert len(fake_sleep.calls) == 8
    for n, slept in enumerate(fake_sleep.calls[:3]):
        assert 0.5 * 1.5**n <= slept <= 0.5 * 1.5**n + 1.0
    fake_sleep.calls.clear()
    api.queue(*[Reply(503, {"detail": "x"}) for _ in range(6)])
    capped = fi.RetryConfig("backoff", fi.BackoffStrategy(500, 2000, 3, 3600000), True)
    client.generate(model="ep", prompt="p", response_format="png", retries=capped)
    assert max(fake_sleep.calls) <= 2.0 and fake_sleep.calls[-1] == 2.0


def test_non_retryable_statuses_are_not_retried(api: FakeFriendli, client: fi.Client, fake_sleep: FakeSleep) -> None:
    for status in (400, 401, 403, 404, 422):
        api.queue(Reply(status, {"detail": "no"}))
        with pytest.raises(fi.APIStatusError):
            client.generate(model="ep", prompt="p")
    assert len(api.requests) == 5 and fake_sleep.calls == []


def test_status_codes_override_replaces_the_retried_statuses(
    api: FakeFriendli, client: fi.Client, fake_sleep: FakeSleep
) -> None:
    config = fi.RetryConfig("backoff", fi.BackoffStrategy(10, 10, 1, 1000, jitter_ms=0), True, ["4XX"])
    api.queue(Reply(409, {"detail": "conflict"}), Reply(503, {"detail": "busy"}))
    with pytest.raises(fi.InternalServerError) as info:
        client.generate(model="ep", prompt="p", retries=config)
    assert info.value.attempts == 2 and len(api.requests) == 2


@pytest.mark.parametrize(
    "headers, expected",
    [
        ({"retry-after-ms": "250"}, 0.25),
        ({"Retry-After": "2"}, 2.0),
        ({"retry-after-ms": "1500", "Retry-After": "9"}, 1.5),
        ({"Retry-After": "0"}, 0.5),  # 0 falls back to backoff
        ({"Retry-After": "soon"}, 0.5),  # garbage falls back to backoff
        ({"retry-after-ms": "-5"}, 0.5),
    ],
)
def test_retry_after_headers_are_honoured(
    api: FakeFriendli, client: fi.Client, fake_sleep: FakeSleep, headers: Dict[str, str], expected: float
) -> None:
    api.queue(Reply(429, {"detail": "slow down"}, headers=headers))
    client.generate(model="ep", prompt="p", response_format="png", retries=no_jitter())
    assert fake_sleep.calls == [expected]


def test_retry_after_as_an_http_date(api: FakeFriendli, client: fi.Client, fake_sleep: FakeSleep) -> None:
    from email.utils import formatdate

    api.queue(Reply(429, {"detail": "slow down"}, headers={"Retry-After": formatdate(time.time() + 3, usegmt=True)}))
    client.generate(model="ep", prompt="p", response_format="png", retries=no_jitter())
    assert len(fake_sleep.calls) == 1 and 1.0 <= fake_sleep.calls[0] <= 3.0


def test_budget_ends_with_the_last_server_answer(api: FakeFriendli, client: fi.Client, fake_sleep: FakeSleep) -> None:
    api.queue(*[Reply(429, {"detail": "rate limited"}) for _ in range(100)])
    with pytest.raises(fi.RateLimitError) as info:
        client.generate(model="ep", prompt="p", total_timeout=10, retries=no_jitter())
    # 0.5 + 0.75 + 1.125 + 1.6875 + 2.53125 = 6.59 s of sleep; the next (3.8 s) would pass the budget.
    assert fake_sleep.calls == [0.5, 0.75, 1.125, 1.6875, 2.53125]
    assert info.value.attempts == 6 and "(after 6 attempts)" in str(info.value)
    assert sum(fake_sleep.calls) <= 10


def test_default_budget_is_max_elapsed_time(api: FakeFriendli, client: fi.Client, fake_sleep: FakeSleep) -> None:
    api.queue(*[Reply(503, {"detail": "down"}) for _ in range(500)])
    with pytest.raises(fi.InternalServerError) as info:
        client.generate(model="ep", prompt="p", retries=no_jitter(max_elapsed_time=120000))
    assert sum(fake_sleep.calls) <= 120 and info.value.attempts == len(fake_sleep.calls) + 1


def test_a_retry_after_beyond_the_budget_stops_at_once(
    api: FakeFriendli, client: fi.Client, fake_sleep: FakeSleep
) -> None:
    api.queue(Reply(429, {"detail": "come back in an hour"}, headers={"Retry-After": "3600"}))
    with pytest.raises(fi.RateLimitError) as info:
        client.generate(model="ep", prompt="p", total_timeout=30)
    assert fake_sleep.calls == [] and info.value.attempts == 1 and len(api.requests) == 1


def test_no_retry_starts_with_less_time_than_the_last_attempt_took(api: FakeFriendli) -> None:
    # Real clock: each 503 takes 0.3 s to arrive; the budget is 0.75 s, sleeps 10 ms.
    client = fi.Client(TOKEN, base_url=api.url)
    api.queue(*[Reply(503, {"detail": "slow"}, delay=0.3) for _ in range(5)])
    started = time.monotonic()
    with pytest.raises(fi.InternalServerError) as info:
        client.generate(model="ep", prompt="p", total_timeout=0.75, retries=no_jitter(initial_interval=10))
    assert info.value.attempts == 2  # a third would start with < 0.3 s left
    assert time.monotonic() - started < 0.75 + 0.5


def test_a_timeout_of_the_clients_own_making_reports_the_last_answer(api: FakeFriendli) -> None:
    client = fi.Client(TOKEN, base_url=api.url)
    api.queue(Reply(503, {"detail": "busy"}), Reply(200, {"data": []}, delay=2.0))
    started = time.monotonic()
    with pytest.raises(fi.InternalServerError) as info:
        client.generate(model="ep", prompt="p", total_timeout=0.5, retries=no_jitter(initial_interval=10))
    assert info.value.attempts == 2 and "(after 2 attempts)" in str(info.value)
    assert isinstance(info.value.__cause__, fi.APITimeoutError)
    assert time.monotonic() - started < 0.5 + 0.5


def test_a_plain_timeout_is_an_api_timeout_error(api: FakeFriendli) -> None:
    client = fi.Client(TOKEN, base_url=api.url, timeout=0.2, retries=fi.RetryConfig("none"))
    api.queue(Reply(200, {"data": []}, delay=2.0))
    started = time.monotonic()
    with pytest.raises(fi.APITimeoutError) as info:
        client.generate(model="ep", prompt="p")
    assert isinstance(info.value, fi.APIConnectionError) and info.value.attempts == 1
    assert time.monotonic() - started < 0.2 + 0.5


def test_retries_are_logged_without_the_token(
    api: FakeFriendli, client: fi.Client, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG, logger="friendli_image")
    api.queue(Reply(503, {"detail": "busy"}))
    client.generate(model="ep", prompt="p", response_format="png", retries=no_jitter())
    assert "retrying in 0.5 s after 503 (attempt 2/\u2026)" in caplog.text
    assert TOKEN not in caplog.text


# -- security defaults ---------------------------------------------------------------------


@pytest.mark.parametrize("status", [301, 302, 307, 308])
def test_redirects_on_the_api_call_are_not_followed(api: FakeFriendli, client: fi.Client, status: int) -> None:
    elsewhere = FakeFriendli()
    try:
        api.queue(Reply(status, body=b"", headers={"Location": elsewhere.url + "/dedicated/v1/images/generations"}))
        with pytest.raises(fi.APIStatusError, match="redirect") as info:
            client.generate(model="ep", prompt="p")
        assert info.value.status_code == status and type(info.value) is fi.APIStatusError
        assert elsewhere.requests == [] and len(api.requests) == 1
    finally:
        elsewhere.close()


@pytest.mark.parametrize("url", ["http://api.friendli.ai", "http://10.0.0.5:8000", "http://example.com/x"])
def test_plain_http_to_a_remote_host_is_refused(url: str) -> None:
    with pytest.raises(fi.FriendliValidationError, match="https://"):
        fi.Client(TOKEN, base_url=url)


@pytest.mark.parametrize("url", ["http://127.0.0.1:9", "http://localhost:9", "http://[::1]:9", "https://x.example"])
def test_loopback_http_and_any_https_are_accepted(url: str) -> None:
    assert fi.Client(TOKEN, base_url=url).base_url == url


@pytest.mark.parametrize("url", ["ftp://host", "api.friendli.ai", "https://", "https://host/?q=1"])
def test_malformed_base_urls_are_refused(url: str) -> None:
    with pytest.raises(fi.FriendliValidationError, match="base_url"):
        fi.Client(TOKEN, base_url=url)


def test_an_ssl_context_that_does_not_verify_is_refused() -> None:
    import ssl

    insecure = ssl.create_default_context()
    insecure.check_hostname = False
    insecure.verify_mode = ssl.CERT_NONE
    with pytest.raises(fi.FriendliValidationError, match="verify"):
        fi.Client(TOKEN, ssl_context=insecure)
    assert fi.Client(TOKEN, ssl_context=ssl.create_default_context())  # a verifying one is fine


def test_responses_over_the_cap_are_refused(api: FakeFriendli, fake_sleep: FakeSleep) -> None:
    client = fi.Client(TOKEN, base_url=api.url, max_response_bytes=1000, sleep=fake_sleep, clock=fake_sleep.clock)
    api.queue(Reply(200, {"data": [{"b64_json": "A" * 2000, "seed": 1}]}))
    with pytest.raises(fi.InvalidResponseError, match="limit"):
        client.generate(model="ep", prompt="p")
    assert len(api.requests) == 1


def test_repr_of_a_client_never_shows_the_token(api: FakeFriendli) -> None:
    client = fi.Client(TOKEN, base_url=api.url)
    assert TOKEN not in repr(client) and "<set>" in repr(client)
    assert TOKEN not in repr(vars(client))
    assert TOKEN not in repr(fi.SyncFriendli(token=TOKEN, server_url=api.url).__dict__)


def test_one_client_serves_many_threads(api: FakeFriendli) -> None:
    from concurrent.futures import ThreadPoolExecutor

    client = fi.Client(TOKEN, base_url=api.url)
    with ThreadPoolExecutor(8) as pool:
        results = list(pool.map(lambda n: client.generate(model="ep", prompt=f"p{n}", seed=n, response_format="png"),
                                range(40)))
    assert [r.data[0].seed for r in results] == list(range(40))
    assert sorted(s.json["prompt"] for s in api.requests) == sorted(f"p{n}" for n in range(40))


# -- the SDK facade ------------------------------------------------------------------------------


def test_sync_friendli_mirrors_the_sdk(api: FakeFriendli) -> None:
    with fi.SyncFriendli(token=TOKEN, server_url=api.url) as friendli:
        res = friendli.dedicated.image.generate(model="(endpoint-id)", num_inference_steps=10, prompt="car",
                                                response_format="png", x_friendli_team="team-1",
                                                http_headers={"X-Trace": "t1"})
    assert res.data[0].content() == PNG
    seen = api.requests[0]
    assert seen.json == {"model": "(endpoint-id)", "prompt": "car", "num_inference_steps": 10,
                         "response_format": "png"}
    assert seen.headers["x-friendli-team"] == "team-1" and seen.headers["x-trace"] == "t1"


def test_sync_friendli_retries_omitted_vs_none(api: FakeFriendli, fake_sleep: FakeSleep) -> None:
    friendli = fi.SyncFriendli(token=TOKEN, server_url=api.url, retry_config=no_jitter(),
                               sleep=fake_sleep, clock=fake_sleep.clock)
    api.queue(Reply(503, {"detail": "busy"}))
    friendli.dedicated.image.generate(model="ep", prompt="p")  # retries omitted: the client's policy
    assert len(api.requests) == 3 - 1 and fake_sleep.calls == [0.5]
    api.queue(Reply(503, {"detail": "busy"}))
    with pytest.raises(fi.SDKError) as info:
        friendli.dedicated.image.generate(model="ep", prompt="p", retries=None)  # None: no retries
    assert info.value.attempts == 1 and fake_sleep.calls == [0.5]


def test_sync_friendli_timeout_ms_and_server_url_per_call(api: FakeFriendli) -> None:
    other = FakeFriendli()
    try:
        friendli = fi.SyncFriendli(token=TOKEN, server_url=api.url, timeout_ms=5000)
        friendli.dedicated.image.generate(model="ep", prompt="p", server_url=other.url)
        assert len(other.requests) == 1 and api.requests == []
        other.queue(Reply(200, {"data": []}, delay=2.0))
        with pytest.raises(fi.APITimeoutError):
            friendli.dedicated.image.generate(model="ep", prompt="p", server_url=other.url, timeout_ms=200,
                                              retries=None)
    finally:
        other.close()


# -- packaging promises ---------------------------------------------------------------------------


@pytest.mark.skipif(sys.version_info < (3, 10), reason="sys.stdlib_module_names is 3.10+")
def test_importing_pulls_in_only_the_standard_library() -> None:
    import subprocess

    code = (
        "import sys; before = set(sys.modules); import friendli_image; "
        "new = {m.split('.')[0] for m in set(sys.modules) - before}; "
        "print(sorted(m for m in new if m not in sys.stdlib_module_names and m != 'friendli_image'))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                         cwd=pathlib.Path(fi.__file__).parent)
    assert out.stdout.strip() == "[]"


def test_source_imports_only_the_standard_library() -> None:
    import ast

    tree = ast.parse(pathlib.Path(fi.__file__).read_text(encoding="utf-8"))
    names: "set[str]" = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.update(alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
            names.add(node.module.split(".")[0])
    stdlib = getattr(sys, "stdlib_module_names", None)
    if stdlib is not None:
        assert names <= set(stdlib) | {"__future__"}
    assert not names & {"requests", "httpx", "pydantic", "urllib3", "friendli"}


# -- the README's examples run against the fake server -----------------------------------------


def readme_example(name: str) -> str:
    """The python block that follows ``<!-- test: NAME -->`` in README.md."""
    text = (pathlib.Path(__file__).parent / "README.md").read_text(encoding="utf-8")
    after = text.split(f"<!-- test: {name} -->", 1)[1]
    return after.split("```python\n", 1)[1].split("```", 1)[0]


def test_readme_seed_example_runs(api: FakeFriendli, monkeypatch: pytest.MonkeyPatch,
                                  capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setenv("FRIENDLI_TOKEN", TOKEN)
    monkeypatch.setenv("FRIENDLI_BASE_URL", api.url)
    exec(compile(readme_example("seed-example"), "README.md", "exec"), {})
    printed = capsys.readouterr().out
    assert printed.startswith("ImageGenerationResult(data=[GeneratedImage(seed=1234, response_format='url', url=")
    assert api.requests[0].json["model"] == "(endpoint-id)" and api.requests[0].json["num_inference_steps"] == 10


class FakeLambdaContext:
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
    exec(compile(readme_example("lambda-example"), "README.md", "exec"), module)
    handler = module["handler"]

    answer = handler({"prompt": "a cat"}, FakeLambdaContext(30_000))
    assert answer["statusCode"] == 200 and answer["isBase64Encoded"] is True
    assert base64.b64decode(answer["body"]) == PNG
    assert api.requests[-1].json == {"model": "ep-lambda", "prompt": "a cat", "num_inference_steps": 20,
                                     "response_format": "png"}

    # A 503 storm: the handler answers 502 before Lambda's limit (2.2 s left, 1.5 s kept back).
    api.queue(*[Reply(503, {"detail": "overloaded"}) for _ in range(50)])
    started = time.monotonic()
    answer = handler({"prompt": "a cat"}, FakeLambdaContext(2_200))
    assert time.monotonic() - started < 0.7 + 0.5
    assert answer["statusCode"] == 502 and "503" in json.loads(answer["body"])["error"]

    assert handler({"prompt": ""}, FakeLambdaContext(30_000))["statusCode"] == 400
    assert handler({"prompt": "x"}, FakeLambdaContext(1_000))["statusCode"] == 503


def test_allow_insecure_http_is_for_containers_only() -> None:
    with pytest.raises(fi.FriendliValidationError, match="https://"):
        fi.Client(TOKEN, base_url="http://gateway.internal", allow_insecure_http=True)
    container = fi.Client(base_url="http://gpu-box.internal:8000", target="container", allow_insecure_http=True)
    assert container.base_url == "http://gpu-box.internal:8000"
    with pytest.raises(fi.FriendliValidationError, match="allow_insecure_http=True"):
        fi.Client(base_url="http://gpu-box.internal:8000", target="container")


def test_importing_does_no_work_and_loads_only_what_a_call_needs() -> None:
    """No environment reads, no SSL context, and none of the modules only some callers need."""
    import subprocess

    code = (
        "import os, sys, ssl\n"
        "reads = []\n"
        "class Env(dict):\n"
        "    def get(self, *a): reads.append(a[0]); return super().get(*a)\n"
        "    def __getitem__(self, k): reads.append(k); return super().__getitem__(k)\n"
        "os.environ = Env(os.environ)\n"
        "made = []\n"
        "ssl.create_default_context = lambda *a, **k: made.append(1)\n"
        "import friendli_image\n"
        "lazy = ('logging', 'typing', 'argparse', 'asyncio', 'concurrent.futures', 'shlex')\n"
        "print(reads, made, [m for m in lazy if m in sys.modules])\n"
    )
    out = subprocess.run([sys.executable, "-S", "-c", code], capture_output=True, text=True, check=True,
                         cwd=pathlib.Path(fi.__file__).parent)
    assert out.stdout.strip() == "[] [] []"


def test_a_b64_image_is_decoded_once(api: FakeFriendli, client: fi.Client) -> None:
    res = client.generate(model="ep", prompt="p", response_format="png")
    image = res.data[0]
    first = image.content()
    assert first == PNG and image.content() == PNG
    assert "_decoded" not in vars(image)  # the bytes kept from validation were handed over, not kept
    image.b64_json = base64.b64encode(JPEG).decode()
    assert image.content() == JPEG  # a changed b64_json is decoded afresh


# ===========================================================================
# Issue 3: reliability and security -- a served fault matrix, a response fuzzer, secret-leak,
# transport-security and concurrency tests.
#
# Every fault is produced on a real socket by ``FakeFriendli`` (a responder writes raw bytes);
# nothing in urllib/http.client/socket is mocked.  Retry sleeps are faked unless a row needs real
# time (timeouts), and then the timeouts are a few tenths of a second.
#
# Run the fuzzer longer by hand::
#
#     python test_friendli_image.py --fuzz 50000 [--seed 7]
#     FRIENDLI_FUZZ_COUNT=50000 python -m pytest -q test_friendli_image.py -k fuzz
# ===========================================================================


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


# ---------------------------------------------------------------------------
# The fault matrix
# ---------------------------------------------------------------------------


def no_jitter_retries(initial_ms: int = 500, max_retries: Optional[int] = None) -> fi.RetryConfig:
    return fi.RetryConfig("backoff", fi.BackoffStrategy(initial_ms, 60000, 1.5, 3600000, jitter_ms=0), True,
                          max_retries=max_retries)


NO_RETRIES = fi.RetryConfig("none")
QUICK_RETRIES = no_jitter_retries(10)  # 10 ms, 15 ms, ... (real sleeps are harmless at this size)


@dataclasses.dataclass
class Env:
    """What a matrix row may use: the API, and a second server on another port (and host name)."""

    api: FakeFriendli
    sleep: FakeSleep
    refused_url: str
    other: FakeFriendli

    @property
    def other_url(self) -> str:  # another host name too, not only another port
        return f"http://localhost:{self.other.server.server_port}"


@dataclasses.dataclass
class Outcome:
    result: Optional[fi.ImageGenerationResult]
    error: Optional[BaseException]
    elapsed: float
    contents: List[bytes]


@dataclasses.dataclass
class Case:
    """One row of the matrix: what the server does, and what the call must do about it."""

    id: str
    script: Callable[[Env], Sequence[Responder]]
    expect: Optional[type]  # error class (exact), or None for success
    attempts: Optional[int]  # error: exact ``.attempts``; success: exact number of API requests
    retries: fi.RetryConfig = dataclasses.field(default_factory=lambda: QUICK_RETRIES)
    real_clock: bool = False  # the row needs real time (timeouts); sleeps stay fake unless real_sleep
    timeout: float = 5.0
    total_timeout: float = 10.0
    client_kwargs: Dict[str, Any] = dataclasses.field(default_factory=dict)
    base_url: Optional[Callable[[Env], str]] = None
    check: Optional[Callable[[Outcome, Env], None]] = None


def _queue(*responders: Responder) -> Callable[[Env], Sequence[Responder]]:
    return lambda env: responders


def _repeat(responder: Responder, n: int = 200) -> Callable[[Env], Sequence[Responder]]:
    return lambda env: [responder] * n


def _sleeps(expected: List[float]) -> Callable[[Outcome, Env], None]:
    def check(outcome: Outcome, env: Env) -> None:
        assert env.sleep.calls == expected

    return check


def _one_sleep_between(low: float, high: float) -> Callable[[Outcome, Env], None]:
    def check(outcome: Outcome, env: Env) -> None:
        assert len(env.sleep.calls) == 1 and low <= env.sleep.calls[0] <= high, env.sleep.calls

    return check


def _until_budget(outcome: Outcome, env: Env) -> None:
    """A storm that never ends: every attempt reached the server, the sleeps fit the budget."""
    err = outcome.error
    assert isinstance(err, fi.FriendliError) and err.attempts > 1
    assert f"(after {err.attempts} attempts)" in str(err)
    assert err.attempts == len(env.sleep.calls) + 1
    assert sum(env.sleep.calls) <= 10.0


def _requests_equal_attempts(outcome: Outcome, env: Env) -> None:
    err = outcome.error
    assert isinstance(err, fi.FriendliError)
    assert len(env.api.requests) == err.attempts
    if err.attempts > 1:
        assert f"(after {err.attempts} attempts)" in str(err)


def _seed_is_none(outcome: Outcome, env: Env) -> None:
    assert outcome.result is not None
    assert outcome.result.data[0].seed is None and outcome.contents == [PNG]


def _b64_preferred(outcome: Outcome, env: Env) -> None:
    assert outcome.contents == [PNG]
    assert env.other.requests == []  # the url was not fetched


def _redirect_not_followed(outcome: Outcome, env: Env) -> None:
    err = outcome.error
    assert isinstance(err, fi.APIStatusError) and "redirect" in str(err)
    assert env.other.requests == []  # the token never travelled to Location
    assert len(env.api.requests) == 1


def _download_redirect_followed(outcome: Outcome, env: Env) -> None:
    assert outcome.contents == [PNG]
    assert [s.path for s in env.api.requests] == [API_GENERATIONS_PATH, "/hop/image.png?sig=1"]
    assert [s.path for s in env.other.requests] == ["/files/image.png"]
    for seen in env.api.requests[1:] + env.other.requests:
        assert "authorization" not in seen.headers and "cookie" not in seen.headers


def _422_errors(outcome: Outcome, env: Env) -> None:
    err = outcome.error
    assert isinstance(err, fi.UnprocessableEntityError)
    assert err.errors == [{"loc": ["body", "prompt"], "msg": "Field required", "type": "missing"}]


def _status_is(code: int) -> Callable[[Outcome, Env], None]:
    def check(outcome: Outcome, env: Env) -> None:
        assert isinstance(outcome.error, fi.APIStatusError) and outcome.error.status_code == code
        assert len(env.api.requests) == outcome.error.attempts

    return check


def _retry_after_cases() -> List[Case]:
    r429 = lambda **h: Reply(429, {"detail": "slow down"}, headers=h)  # noqa: E731
    return [
        Case("429-retry-after-1", _queue(r429(**{"Retry-After": "1"})), None, 2,
             retries=no_jitter_retries(), check=_sleeps([1.0])),
        Case("429-retry-after-http-date",
             lambda env: [r429(**{"Retry-After": email.utils.formatdate(time.time() + 3, usegmt=True)})], None, 2,
             retries=no_jitter_retries(), check=_one_sleep_between(1.0, 3.0)),
        Case("429-retry-after-ms", _queue(r429(**{"retry-after-ms": "250"})), None, 2,
             retries=no_jitter_retries(), check=_sleeps([0.25])),
        Case("429-retry-after-beyond-budget-fails-fast", _queue(r429(**{"Retry-After": "60"})), fi.RateLimitError, 1,
             retries=no_jitter_retries(), check=_sleeps([])),
        Case("429-retry-after-garbage-backs-off", _queue(r429(**{"Retry-After": "soon, maybe"})), None, 2,
             retries=no_jitter_retries(), check=_sleeps([0.5])),
        Case("429-retry-after-date-out-of-range-backs-off",
             _queue(r429(**{"Retry-After": "Mon, 01 Jan 99999999999999999999 00:00:00 GMT"})), None, 2,
             retries=no_jitter_retries(), check=_sleeps([0.5])),
        Case("429-forever", _repeat(r429()), fi.RateLimitError, 6, retries=no_jitter_retries(), check=_until_budget),
    ]


def _storm_cases() -> List[Case]:
    cases = []
    for status in (500, 502, 503, 504):
        answer = Reply(status, {"detail": "overloaded"})
        cases.append(Case(f"{status}-storm-then-success-on-attempt-3", _queue(answer, answer), None, 3,
                          retries=no_jitter_retries(), check=_sleeps([0.5, 0.75])))
        cases.append(Case(f"{status}-storm-forever", _repeat(answer), fi.InternalServerError, 6,
                          retries=no_jitter_retries(), check=_until_budget))
    return cases


def _never_retried_cases() -> List[Case]:
    classes = {400: fi.BadRequestError, 401: fi.AuthenticationError, 403: fi.PermissionDeniedError,
               404: fi.NotFoundError}
    cases = [Case(f"{status}-not-retried", _queue(Reply(status, {"detail": "no"})), cls, 1, check=_status_is(status))
             for status, cls in classes.items()]
    detail = [{"loc": ["body", "prompt"], "msg": "Field required", "type": "missing"}]
    cases.append(Case("422-not-retried-errors-parsed", _queue(Reply(422, {"detail": detail})),
                      fi.UnprocessableEntityError, 1, check=_422_errors))
    return cases


def _connection_cases() -> List[Case]:
    cases = [
        Case("connection-refused", _queue(), fi.APIConnectionError, 1, retries=NO_RETRIES,
             base_url=lambda env: env.refused_url),
        Case("connection-refused-until-budget", _queue(), fi.APIConnectionError, 6, retries=no_jitter_retries(),
             base_url=lambda env: env.refused_url, check=_until_budget),
    ]
    faults: List[Tuple[str, Responder]] = [
        ("accepted-then-closed", close_without_answer),
        ("rst-mid-headers", rst_mid_headers),
        ("rst-mid-body", rst_mid_body),
        ("body-shorter-than-content-length", short_body),
        ("chunked-body-cut-off", chunked_cut_off),
    ]
    for name, fault in faults:
        cases.append(Case(name, _queue(fault), fi.APIConnectionError, 1, retries=NO_RETRIES,
                          check=_requests_equal_attempts))
        cases.append(Case(f"{name}-retried-then-success", _queue(fault), None, 2))
    slow = dict(real_clock=True, timeout=0.3)
    for name, fault in [("never-answers", never_answer), ("trickles-headers", trickle_headers),
                        ("trickles-body", trickle_body), ("a-byte-a-second", trickle_a_byte_a_second)]:
        cases.append(Case(name, _queue(fault), fi.APITimeoutError, 1, retries=NO_RETRIES, total_timeout=5.0,
                          check=_requests_equal_attempts, **slow))  # type: ignore[arg-type]
    cases += [
        Case("never-answers-retried-then-success", _queue(never_answer), None, 2, total_timeout=5.0,
             **slow),  # type: ignore[arg-type]
        # Real clock, 1 s budget, 0.3 s per attempt: 2 or 3 attempts depending on load; exact count checked
        # against the server's log instead.
        Case("trickles-until-budget", _repeat(trickle_body, 20), fi.APITimeoutError, None, total_timeout=1.0,
             check=_requests_equal_attempts, **slow),  # type: ignore[arg-type]
        # 503, then an attempt that the shrinking budget cuts short: the error is the server's last answer.
        Case("budget-ends-during-a-retry-reports-last-answer",
             _queue(Reply(503, {"detail": "busy"}), never_answer), fi.InternalServerError, 2,
             real_clock=True, timeout=5.0, total_timeout=0.6, check=_requests_equal_attempts),
    ]
    return cases


def _body_cases() -> List[Case]:
    invalid = fi.InvalidResponseError
    big = json.dumps({"data": [png_item()] * 100}).encode()
    return [
        Case("200-html", _queue(Reply(200, body=b"<html><body>Gateway says hi</body></html>",
                                      content_type="text/html")), invalid, 1),
        Case("200-text-plain", _queue(Reply(200, body=b"OK", content_type="text/plain")), invalid, 1),
        Case("200-text-plain-but-json-accepted", _queue(Reply(200, {"data": [png_item()]}, content_type="text/plain")),
             None, 1),
        Case("200-empty-body", _queue(Reply(200, body=b"")), invalid, 1),
        Case("200-malformed-json", _queue(Reply(200, body=b'{"data": [{"seed": 1,}]}')), invalid, 1),
        Case("200-not-utf8", _queue(Reply(200, body=b'{"data": "\xff\xfe"}')), invalid, 1),
        Case("200-deeply-nested-json", _queue(Reply(200, body=b"[" * 100000 + b"]" * 100000)), invalid, 1,
             client_kwargs={"max_response_bytes": 1 << 20}),
        Case("200-json-array", _queue(ok_json([png_item()])), invalid, 1),
        Case("200-data-null", _queue(ok_json({"data": None})), invalid, 1),
        Case("200-data-empty", _queue(ok_json({"data": []})), invalid, 1),
        Case("200-item-not-an-object", _queue(ok_json({"data": ["iVBOR"]})), invalid, 1),
        Case("200-item-missing-seed-accepted", _queue(ok_json({"data": [png_item(seed=None)]})), None, 1,
             check=_seed_is_none),
        Case("200-invalid-base64", _queue(ok_json({"data": [png_item(b64_json="not*base64!")]})), invalid, 1),
        Case("200-truncated-base64", _queue(ok_json({"data": [png_item(b64_json=PNG_B64[:-1])]})), invalid, 1),
        Case("200-both-url-and-b64-accepted-b64-preferred",
             lambda env: [ok_json({"data": [png_item(url=env.other_url + "/files/image.png")]})], None, 1,
             check=_b64_preferred),
        Case("200-neither-url-nor-b64", _queue(ok_json({"data": [{"seed": 1, "response_format": "png"}]})),
             invalid, 1),
        Case("200-url-not-http", _queue(ok_json({"data": [{"seed": 1, "url": "file:///etc/passwd"}]})), invalid, 1),
        Case("200-over-size-cap-content-length", _queue(Reply(200, body=big)), invalid, 1,
             client_kwargs={"max_response_bytes": 4096}),
        Case("200-over-size-cap-chunked", _queue(chunked_reply(big)), invalid, 1,
             client_kwargs={"max_response_bytes": 4096}),
        Case("200-chunked-within-cap-accepted", _queue(chunked_reply(json.dumps({"data": [png_item()]}).encode())),
             None, 1, client_kwargs={"max_response_bytes": 4096}),
        Case("200-content-length-far-beyond-cap", _queue(lying_content_length(10**15)), invalid, 1),
        # Under the cap, so allowed; the body is then cut short: a connection error, not a 200 MB allocation.
        Case("200-content-length-huge-body-short", _queue(lying_content_length(200 * 1024 * 1024)),
             fi.APIConnectionError, 1, retries=NO_RETRIES),
    ]


def _redirect_cases() -> List[Case]:
    cases = []
    for status in (301, 302, 307, 308):
        cases.append(Case(
            f"{status}-on-api-call-not-followed",
            lambda env, status=status: [Reply(status, body=b"", headers={"Location": env.other_url + API_GENERATIONS_PATH})],
            fi.APIStatusError, 1, check=_redirect_not_followed))
    cases.append(Case(
        "url-image-download-redirects-to-another-host",
        lambda env: [ok_json({"data": [{"seed": 1, "response_format": "url",
                                        "url": env.api.url + "/hop/image.png?sig=1"}]}),
                     Reply(302, body=b"", headers={"Location": env.other_url + "/files/image.png"})],
        None, 1, check=_download_redirect_followed))
    return cases


def _echo_cases() -> List[Case]:
    return [
        Case("401-echoing-the-token", _queue(echo_token_401), fi.AuthenticationError, 1),
        Case("422-echoing-the-token", _queue(echo_token_422), fi.UnprocessableEntityError, 1),
        Case("200-html-echoing-the-token", _queue(echo_token_html_200), fi.InvalidResponseError, 1),
        Case("200-json-echoing-the-token", _queue(echo_token_in_200_json_error), fi.InvalidResponseError, 1),
    ]


MATRIX: List[Case] = (_connection_cases() + _retry_after_cases() + _storm_cases() + _never_retried_cases()
                      + _body_cases() + _redirect_cases() + _echo_cases())
def _matrix_params() -> List[Any]:
    return [pytest.param(case, id=case.id) for case in MATRIX]


@pytest.fixture(scope="module")
def matrix_servers() -> Iterator[List[FakeFriendli]]:
    """Servers shared by the matrix rows (reset before each row): stopping a server costs a poll
    interval, which over a hundred rows is most of the group's time."""
    servers: List[FakeFriendli] = []
    yield servers
    for server in servers:
        server.close()


def _fresh(servers: List[FakeFriendli], index: int) -> FakeFriendli:
    while len(servers) <= index:
        servers.append(FakeFriendli())
    server = servers[index]
    with server.lock:
        server.requests.clear()
        server.script.clear()
        server.__dict__.pop("default", None)
    return server


@pytest.fixture
def env(matrix_servers: List[FakeFriendli]) -> Iterator[Env]:
    with socket.socket() as bound:  # bound but not listening: connecting is refused, and no one else gets the port
        bound.bind(("127.0.0.1", 0))
        yield Env(_fresh(matrix_servers, 0), FakeSleep(), f"http://127.0.0.1:{bound.getsockname()[1]}",
                  _fresh(matrix_servers, 1))


def run_case(case: Case, env: Env, save_to: Optional[pathlib.Path] = None) -> Outcome:
    env.api.queue(*case.script(env))
    kwargs: Dict[str, Any] = dict(timeout=case.timeout, sleep=env.sleep, **case.client_kwargs)
    if not case.real_clock:
        kwargs["clock"] = env.sleep.clock
    client = fi.Client(TOKEN, base_url=case.base_url(env) if case.base_url else env.api.url, **kwargs)
    result: Optional[fi.ImageGenerationResult] = None
    error: Optional[BaseException] = None
    contents: List[bytes] = []
    started = time.monotonic()
    try:
        result = client.generate(model="ep", prompt="a red fox", response_format="png", retries=case.retries,
                                 total_timeout=case.total_timeout)
        contents = [image.content() for image in result.data]
        if save_to is not None:
            result.save_all(save_to)
    except fi.FriendliError as exc:
        error = exc
    return Outcome(result, error, time.monotonic() - started, contents)


@pytest.mark.parametrize("case", _matrix_params())
def test_fault_matrix(case: Case, env: Env) -> None:
    outcome = run_case(case, env)
    if case.expect is None:
        assert outcome.error is None, f"expected success, got {outcome.error!r}"
        assert outcome.result is not None and outcome.contents and all(outcome.contents)
        if case.attempts is not None:
            assert len([s for s in env.api.requests if s.method == "POST"]) == case.attempts
    else:
        assert type(outcome.error) is case.expect, f"expected {case.expect.__name__}, got {outcome.error!r}"
        assert isinstance(outcome.error, fi.FriendliError)
        if case.attempts is not None:
            assert outcome.error.attempts == case.attempts
        assert outcome.error.__cause__ is None or isinstance(outcome.error.__cause__, BaseException)
    # The call ended within its budget (plus slack for a loaded machine); fake sleeps never passed it.
    assert outcome.elapsed < case.total_timeout + MARGIN
    assert sum(env.sleep.calls) <= case.total_timeout
    if case.real_clock:
        assert outcome.elapsed < (case.attempts or 4) * case.timeout + MARGIN
    if case.check is not None:
        case.check(outcome, env)


def test_a_lying_content_length_costs_no_memory(env: Env) -> None:
    """200 MB announced, 2 bytes sent: the client must not allocate the promise up front."""
    import tracemalloc

    env.api.queue(lying_content_length(200 * 1024 * 1024))
    client = fi.Client(TOKEN, base_url=env.api.url, retries=NO_RETRIES)
    tracemalloc.start()
    try:
        with pytest.raises(fi.APIConnectionError, match="incomplete"):
            client.generate(model="ep", prompt="p")
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 16 * 1024 * 1024


def test_422_errors_of_a_deeply_nested_body_is_an_empty_list(env: Env) -> None:
    depth = 30000  # deep enough for a RecursionError on every version, small enough for the 64 KiB error-body cap
    env.api.queue(Reply(422, body=b'{"detail": ' + b"[" * depth + b"]" * depth + b"}"))
    client = fi.Client(TOKEN, base_url=env.api.url)
    with pytest.raises(fi.UnprocessableEntityError) as info:
        client.generate(model="ep", prompt="p")
    assert info.value.errors == []


def test_the_matrix_covers_every_row_of_the_issue() -> None:
    ids = {case.id for case in MATRIX}
    assert len(ids) == len(MATRIX)
    for needed in ["connection-refused", "accepted-then-closed", "rst-mid-headers", "rst-mid-body",
                   "body-shorter-than-content-length", "chunked-body-cut-off", "never-answers", "a-byte-a-second",
                   "429-retry-after-1", "429-retry-after-http-date", "429-retry-after-ms",
                   "429-retry-after-beyond-budget-fails-fast", "429-retry-after-garbage-backs-off",
                   "500-storm-forever", "504-storm-then-success-on-attempt-3", "422-not-retried-errors-parsed",
                   "200-html", "200-text-plain", "200-empty-body", "200-malformed-json", "200-json-array",
                   "200-data-null", "200-item-missing-seed-accepted", "200-invalid-base64",
                   "200-both-url-and-b64-accepted-b64-preferred", "200-neither-url-nor-b64",
                   "200-over-size-cap-content-length", "308-on-api-call-not-followed",
                   "url-image-download-redirects-to-another-host"]:
        assert needed in ids


# ===========================================================================
# 3. Secrets never leak
# ===========================================================================


def texts_of(obj: Any, seen: Optional[Set[int]] = None) -> Iterator[str]:
    """str() and repr() of ``obj`` and of everything reachable from it that a user might print or log:
    an exception's chain (``__cause__``/``__context__``), a FriendliError's attributes, containers,
    headers, dataclasses (a result and its images)."""
    seen = set() if seen is None else seen
    if id(obj) in seen or obj is None:
        return
    seen.add(id(obj))
    if isinstance(obj, (bytes, bytearray)):
        yield bytes(obj).decode("latin-1")
        return
    yield str(obj)
    yield repr(obj)
    if isinstance(obj, str):
        return
    if isinstance(obj, BaseException):
        for linked in (obj.__cause__, obj.__context__):
            yield from texts_of(linked, seen)
        for arg in obj.args:
            yield from texts_of(arg, seen)
        if isinstance(obj, fi.FriendliError):
            for value in vars(obj).values():
                yield from texts_of(value, seen)
            for name in ("body", "message", "headers", "request_id", "errors"):
                yield from texts_of(getattr(obj, name, None), seen)
    elif isinstance(obj, email.message.Message):
        for name, value in obj.items():
            yield name
            yield str(value)
    elif isinstance(obj, dict):
        for key, value in obj.items():
            yield from texts_of(key, seen)
            yield from texts_of(value, seen)
    elif isinstance(obj, (list, tuple)):
        for value in obj:
            yield from texts_of(value, seen)
    elif dataclasses.is_dataclass(obj):
        for value in vars(obj).values():
            yield from texts_of(value, seen)


_TOKEN_PIECES = [TOKEN[i:i + 10] for i in range(len(TOKEN) - 9)]  # a cut-off quote leaks too


def assert_no_token(what: str, obj: Any) -> None:
    for text in texts_of(obj):
        for piece in _TOKEN_PIECES:
            assert piece not in text, f"(part of) the token leaked into {what}: {text[:300]!r}"


@pytest.mark.parametrize("case", _matrix_params())
def test_the_token_never_leaks(case: Case, env: Env, caplog: pytest.LogCaptureFixture,
                               tmp_path: pathlib.Path) -> None:
    caplog.set_level(logging.DEBUG)
    outcome = run_case(case, env, save_to=tmp_path)
    assert outcome.error is not None or outcome.result is not None
    assert_no_token("the error", outcome.error)
    assert_no_token("the result", outcome.result)
    for record in caplog.records:
        assert_no_token("a log record", [record.getMessage(), record.args, record.exc_text or ""])
    assert_no_token("the log", caplog.text)
    for path in tmp_path.rglob("*"):
        if path.is_file():
            assert_no_token(f"the saved file {path.name}", path.read_bytes())
    # Image hosts and redirect targets never receive it, in any form.
    for seen in [s for s in env.api.requests if s.method == "GET"] + env.other.requests:
        assert TOKEN not in repr(seen), f"the token was sent to {seen.path}"


def test_a_server_echoing_the_token_is_redacted_but_the_error_stays_useful(env: Env) -> None:
    outcome = run_case(next(c for c in MATRIX if c.id == "401-echoing-the-token"), env)
    err = outcome.error
    assert isinstance(err, fi.AuthenticationError) and err.status_code == 401
    assert "invalid credentials: Bearer [REDACTED]" in str(err)
    assert "[REDACTED]" in err.body and "[REDACTED]" in err.message
    assert err.headers.get("content-type") == "application/json"  # headers still case-insensitive
    assert "[REDACTED]" in err.headers.get("www-authenticate", "")
    assert TOKEN not in json.dumps(json.loads(err.body))


# ===========================================================================
# 2. Response fuzzer
# ===========================================================================

_REASONS = [b"OK", b"", b"Whatever", b"\xff\xfe", b"Too Many Requests", b"x" * 300]


def _fuzz_valid_json(rng: random.Random, api_url: str) -> Any:
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


_ODD_VALUES: List[Any] = [None, True, False, 0, -1, 2**70, 1.5, float("nan"), float("inf"), "", "x", "A===", "====",
                          "iVBORw0KGgo=", "http://", "ftp://x/y", [], {}, [None], {"b64_json": None}, [[[[]]]]]


def _fuzz_mutate_structure(rng: random.Random, doc: Any) -> Any:
    """Replace one random node of a JSON document with an odd value."""
    if isinstance(doc, dict) and doc and rng.random() < 0.8:
        key = rng.choice(sorted(doc))
        if rng.random() < 0.2:
            del doc[key]
        else:
            doc[key] = _fuzz_mutate_structure(rng, doc[key])
        return doc
    if isinstance(doc, list) and doc and rng.random() < 0.8:
        index = rng.randrange(len(doc))
        doc[index] = _fuzz_mutate_structure(rng, doc[index])
        return doc
    return rng.choice(_ODD_VALUES)


def _fuzz_mutate_bytes(rng: random.Random, data: bytes) -> bytes:
    buf = bytearray(data)
    for _ in range(rng.randint(1, 4)):
        if not buf:
            break
        op = rng.random()
        pos = rng.randrange(len(buf))
        if op < 0.4:
            buf[pos] = rng.getrandbits(8)
        elif op < 0.6:
            del buf[pos:pos + rng.randint(1, 20)]
        elif op < 0.8:
            buf[pos:pos] = bytes(rng.getrandbits(8) for _ in range(rng.randint(1, 8)))
        else:
            del buf[pos:]
    return bytes(buf)


def _fuzz_body(rng: random.Random, status: int, api_url: str) -> bytes:
    pick = rng.random()
    if pick < 0.15:
        return bytes(rng.getrandbits(8) for _ in range(rng.randint(0, 300)))
    if pick < 0.2:
        return b""
    if pick < 0.23:
        depth = rng.choice([10, 1000, 50000])
        return b'{"data": ' + b"[" * depth + b"]" * depth + b"}"
    if 200 <= status < 300 or rng.random() < 0.3:
        doc = _fuzz_valid_json(rng, api_url)
    else:
        doc = {"detail": rng.choice(["nope", [{"loc": ["body"], "msg": "bad"}], {"message": "m"}, None, 5])}
    if pick < 0.55:
        doc = _fuzz_mutate_structure(rng, doc)
    data = json.dumps(doc).encode()
    if pick > 0.85:
        data = _fuzz_mutate_bytes(rng, data)
    return data


def _fuzz_retry_after(rng: random.Random) -> str:
    return rng.choice([
        "0", "1", "-3", "0.2", "1e400", "nan", "", " ", "soon", "120",
        email.utils.formatdate(time.time() + rng.uniform(-100, 100), usegmt=True),
        "Mon, 32 Foo 2020 99:99:99 GMT", "Wed, 21 Oct 2015 07:28:00 +9999", "\u00e9t\u00e9".encode().decode("latin-1"),
    ])


def fuzz_response(rng: random.Random, api_url: str) -> Tuple[bytes, bool]:
    """One random raw HTTP response, and whether to end it with a RST instead of a FIN."""
    roll = rng.random()
    if roll < 0.4:
        status = 200
    elif roll < 0.55:
        status = rng.choice([429, 500, 502, 503, 504])
    else:
        status = rng.randint(100, 599)
    body = _fuzz_body(rng, status, api_url)
    version = rng.choice([b"HTTP/1.1"] * 8 + [b"HTTP/1.0", b"HTTP/2", b"ICY", b"http/1.1"])
    status_text = str(status).encode() if rng.random() < 0.97 else rng.choice([b"abc", b"99", b"1000", b"", b"-200"])
    head = [version + b" " + status_text + b" " + rng.choice(_REASONS)]
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
        # else: no length, read until close
    headers.append((b"Content-Type", rng.choice([b"application/json", b"text/html", b"text/plain", b"", b"\xff"])))
    if rng.random() < 0.4:
        name = rng.choice([b"Retry-After", b"retry-after-ms", b"RETRY-AFTER"])
        headers.append((name, _fuzz_retry_after(rng).encode("latin-1")))
    if rng.random() < 0.2:
        headers.append((b"X-Request-Id", bytes(rng.choice(b"abcXYZ019-_ \t\x01\xff") for _ in range(rng.randint(0, 40)))))
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
            payload = _fuzz_mutate_bytes(rng, payload)
    else:
        payload = body
    raw = b"\r\n".join(head) + b"\r\n\r\n" + payload
    if rng.random() < 0.05:
        raw = b"HTTP/1.1 100 Continue\r\n\r\n" + raw
    if rng.random() < 0.03:
        raw = raw[: rng.randrange(len(raw) + 1)]
    return raw, rng.random() < 0.05


class FuzzServer:
    """Serves an endless, seeded stream of random responses (one per request) from raw socket writes."""

    def __init__(self, api: FakeFriendli, seed: int) -> None:
        self.rng = random.Random(seed)
        self.api = api
        self.lock = threading.Lock()
        self.served: List[bytes] = []
        api.default = self.respond  # type: ignore[method-assign]

    def respond(self, seen: Seen) -> Responder:
        with self.lock:
            raw, rst = fuzz_response(self.rng, self.api.url)
            self.served.append(raw)

        def write(handler: Handler, seen: Seen) -> None:
            try:
                _write_raw(handler, raw)
                if rst:
                    _send_rst(handler)
            except OSError:
                pass

        return write


FUZZ_TIMEOUT = 2.0


def run_fuzz(count: int, seed: int, report: Optional[Callable[[str], None]] = None) -> Dict[str, int]:
    """Make ``count`` calls against random responses; return how each ended.  Raises AssertionError
    (with the responses that caused it) when a call ends in anything but a result or a FriendliError,
    or takes longer than its bound."""
    api = FakeFriendli()
    server = FuzzServer(api, seed)
    fake = FakeSleep()
    # One retry at most, so retry/Retry-After handling is exercised without unbounded calls.
    retries = fi.RetryConfig("backoff", fi.BackoffStrategy(1, 1, 1, 10000, jitter_ms=0), True, max_retries=1)
    options = dict(timeout=FUZZ_TIMEOUT, max_response_bytes=64 * 1024, retries=retries, sleep=fake, clock=fake.clock)
    dedicated = fi.Client(TOKEN, base_url=api.url, **options)  # type: ignore[arg-type]
    container = fi.Client(TOKEN, base_url=api.url, target="container", **options)  # type: ignore[arg-type]
    tally: Dict[str, int] = {}
    bound = 2 * FUZZ_TIMEOUT + MARGIN
    try:
        for n in range(count):
            first = len(server.served)
            started = time.monotonic()
            try:
                if n % 4:
                    res = dedicated.generate(model="ep", prompt=f"fuzz {n}", response_format="png")
                else:
                    res = container.generate(prompt=f"fuzz {n}", response_format="jpeg")
                assert isinstance(res, fi.ImageGenerationResult) and res.data
                for image in res.data:
                    assert image.url is not None or image.b64_json is not None
                    repr(image)
                    if image.b64_json is not None:
                        assert isinstance(image.content(), bytes)
                outcome = "result"
            except fi.FriendliError as exc:
                for text in texts_of(exc):  # every attribute (``.errors``, ``.headers``...) is usable
                    assert TOKEN not in text
                outcome = type(exc).__name__
            except BaseException as exc:
                raise AssertionError(f"call {n} (seed {seed}) raised {type(exc).__name__}: {exc!r}\n"
                                     f"responses: {server.served[first:]!r}") from exc
            elapsed = time.monotonic() - started
            assert elapsed < bound, f"call {n} (seed {seed}) took {elapsed:.2f} s: {server.served[first:]!r}"
            tally[outcome] = tally.get(outcome, 0) + 1
            if report is not None and (n + 1) % 1000 == 0:
                report(f"{n + 1} calls: {tally}")
    finally:
        api.close()
    return tally


def test_fuzzed_responses_end_in_a_result_or_a_friendli_error() -> None:
    count = int(os.environ.get("FRIENDLI_FUZZ_COUNT", "2000"))
    tally = run_fuzz(count, seed=20240601)
    assert sum(tally.values()) == count
    # The generator reaches the interesting outcomes (else it would be testing little).
    for outcome in ("result", "InvalidResponseError", "APIConnectionError", "APIStatusError", "RateLimitError",
                    "InternalServerError"):
        assert tally.get(outcome, 0) > 0, tally


def test_the_fuzzer_is_deterministic() -> None:
    a, b = random.Random(5), random.Random(5)
    assert [fuzz_response(a, "http://h") for _ in range(50)] == [fuzz_response(b, "http://h") for _ in range(50)]


# ===========================================================================
# 4. Transport security
# ===========================================================================


def test_plain_http_to_a_non_loopback_host_is_refused_before_connecting(api: FakeFriendli) -> None:
    # 0.0.0.0 is not loopback, yet connecting to it reaches this machine: had the client let it
    # through, the local server would see the request (and no traffic leaves the machine).
    port = api.server.server_port
    with pytest.raises(fi.FriendliValidationError, match="https://"):
        fi.Client(TOKEN, base_url=f"http://0.0.0.0:{port}").generate(model="ep", prompt="p")
    with pytest.raises(fi.FriendliValidationError, match="https://"):
        with fi.SyncFriendli(token=TOKEN, server_url=f"http://0.0.0.0:{port}") as friendli:
            friendli.dedicated.image.generate(model="ep", prompt="p")
    time.sleep(0.05)
    assert api.requests == []


@dataclasses.dataclass
class TlsFiles:
    cert: pathlib.Path  # self-signed, for IP:127.0.0.1 and DNS:localhost
    key: pathlib.Path
    other_cert: pathlib.Path  # self-signed, for DNS:elsewhere.invalid only
    other_key: pathlib.Path


def _self_signed(openssl: str, cert: pathlib.Path, key: pathlib.Path, names: str) -> None:
    command = [openssl, "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes",
               "-keyout", str(key), "-out", str(cert), "-days", "2", "-subj", "/CN=friendli-image test",
               "-addext", f"subjectAltName={names}"]
    subprocess.run(command, check=True, capture_output=True, timeout=60)


@pytest.fixture(scope="module")
def tls_files(tmp_path_factory: pytest.TempPathFactory) -> TlsFiles:
    """Self-signed certificates made now by the openssl command (the test skips without it)."""
    openssl = shutil.which("openssl")
    if openssl is None:
        pytest.skip("the openssl command is not installed")
    folder = tmp_path_factory.mktemp("tls")
    files = TlsFiles(folder / "cert.pem", folder / "key.pem", folder / "other.pem", folder / "other-key.pem")
    try:
        _self_signed(openssl, files.cert, files.key, "IP:127.0.0.1,DNS:localhost")
        _self_signed(openssl, files.other_cert, files.other_key, "DNS:elsewhere.invalid")
    except (OSError, subprocess.SubprocessError) as exc:
        pytest.skip(f"openssl could not make a test certificate: {exc}")
    return files


def https_friendli(cert: pathlib.Path, key: pathlib.Path) -> Tuple[FakeFriendli, str]:
    """A FakeFriendli that speaks HTTPS with this certificate; returns it and its https URL."""
    server = FakeFriendli()
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(str(cert), str(key))
    server.server.socket = context.wrap_socket(server.server.socket, server_side=True)
    return server, f"https://127.0.0.1:{server.server.server_port}"


@pytest.fixture
def https_api(tls_files: TlsFiles) -> Iterator[Tuple[FakeFriendli, str]]:
    server, url = https_friendli(tls_files.cert, tls_files.key)
    yield server, url
    server.close()


def test_a_self_signed_server_is_rejected_by_default_and_not_retried(
    https_api: Tuple[FakeFriendli, str], fake_sleep: FakeSleep
) -> None:
    server, url = https_api
    client = fi.Client(TOKEN, base_url=url, sleep=fake_sleep, clock=fake_sleep.clock)
    with pytest.raises(fi.APIConnectionError, match="certificate") as info:
        client.generate(model="ep", prompt="p", response_format="png")
    assert type(info.value) is fi.APIConnectionError and info.value.retryable is False
    assert info.value.attempts == 1 and fake_sleep.calls == []
    assert isinstance(info.value.__cause__, OSError)
    assert "ssl_context" in str(info.value)  # tells the user what to do
    assert server.requests == []  # the token never crossed an untrusted connection


def test_a_self_signed_server_is_accepted_with_a_context_trusting_it(
    https_api: Tuple[FakeFriendli, str], tls_files: TlsFiles
) -> None:
    server, url = https_api
    context = ssl.create_default_context(cafile=str(tls_files.cert))
    res = fi.Client(TOKEN, base_url=url, ssl_context=context).generate(model="ep", prompt="p", response_format="png")
    assert res.data[0].content() == PNG
    assert len(server.requests) == 1 and server.requests[0].headers["authorization"] == f"Bearer {TOKEN}"
    # localhost matches the certificate's DNS name as well
    localhost = url.replace("127.0.0.1", "localhost")
    assert fi.Client(TOKEN, base_url=localhost, ssl_context=context).generate(model="ep", prompt="p",
                                                                               response_format="png").data


def test_a_trusted_certificate_for_another_name_is_rejected(tls_files: TlsFiles, fake_sleep: FakeSleep) -> None:
    server, url = https_friendli(tls_files.other_cert, tls_files.other_key)
    try:
        context = ssl.create_default_context(cafile=str(tls_files.other_cert))  # trusted, but not for 127.0.0.1
        client = fi.Client(TOKEN, base_url=url, ssl_context=context, sleep=fake_sleep, clock=fake_sleep.clock)
        with pytest.raises(fi.APIConnectionError, match="certificate") as info:
            client.generate(model="ep", prompt="p")
        assert info.value.retryable is False and info.value.attempts == 1 and server.requests == []
    finally:
        server.close()


class _ProxyHandler(socketserver.StreamRequestHandler):
    """Forwards absolute-URI http requests and CONNECT tunnels (to loopback only), recording each."""

    server: "LocalProxy"

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
        with self.server.lock:
            self.server.seen.append((method, target))
        if method == "CONNECT":
            host, _, port = target.rpartition(":")
            if host not in ("127.0.0.1", "localhost"):
                self.wfile.write(b"HTTP/1.1 403 Forbidden\r\nContent-Length: 0\r\n\r\n")
                return
            with socket.create_connection((host, int(port)), timeout=10) as upstream:
                time.sleep(self.server.connect_delay)
                try:
                    for byte in b"HTTP/1.1 200 Connection established\r\n\r\n":
                        self.wfile.write(bytes([byte]))
                        self.wfile.flush()
                        time.sleep(self.server.connect_trickle)
                except OSError:
                    return
                self._pipe(upstream)
            return
        parts = urllib.parse.urlsplit(target)
        if parts.hostname not in ("127.0.0.1", "localhost") or not parts.port:
            self.wfile.write(b"HTTP/1.1 403 Forbidden\r\nContent-Length: 0\r\n\r\n")
            return
        length = 0
        kept = []
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

    def _pipe(self, upstream: socket.socket) -> None:
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
                    data = key.fileobj.recv(65536)  # type: ignore[union-attr]
                    if not data:
                        return
                    key.data.sendall(data)


class LocalProxy(socketserver.ThreadingTCPServer):
    daemon_threads = True
    allow_reuse_address = True

    def __init__(self) -> None:
        super().__init__(("127.0.0.1", 0), _ProxyHandler)
        self.seen: List[Tuple[str, str]] = []
        self.lock = threading.Lock()
        self.connect_delay = 0.0  # seconds before answering CONNECT
        self.connect_trickle = 0.0  # seconds between the bytes of that answer
        self.thread = threading.Thread(target=self.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
        self.thread.start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}"

    def close(self) -> None:
        self.shutdown()
        self.server_close()


@pytest.fixture
def proxy() -> Iterator[LocalProxy]:
    server = LocalProxy()
    yield server
    server.close()


def test_http_proxy_is_honoured_and_no_proxy_bypasses_it(
    api: FakeFriendli, proxy: LocalProxy, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("HTTP_PROXY", proxy.url)  # before the Client: urllib reads the environment then
    res = fi.Client(TOKEN, base_url=api.url).generate(model="ep", prompt="via proxy", response_format="png")
    assert res.data[0].content() == PNG
    assert proxy.seen == [("POST", api.url + API_GENERATIONS_PATH)]
    assert api.requests[0].json["prompt"] == "via proxy"

    monkeypatch.setenv("NO_PROXY", "localhost,127.0.0.1")
    fi.Client(TOKEN, base_url=api.url).generate(model="ep", prompt="direct", response_format="png")
    assert len(proxy.seen) == 1 and len(api.requests) == 2


def test_https_proxy_tunnels_and_no_proxy_bypasses_it(
    https_api: Tuple[FakeFriendli, str], tls_files: TlsFiles, proxy: LocalProxy, monkeypatch: pytest.MonkeyPatch
) -> None:
    server, url = https_api
    context = ssl.create_default_context(cafile=str(tls_files.cert))
    monkeypatch.setenv("HTTPS_PROXY", proxy.url)
    res = fi.Client(TOKEN, base_url=url, ssl_context=context).generate(model="ep", prompt="p", response_format="png")
    assert res.data[0].content() == PNG
    assert proxy.seen == [("CONNECT", url[len("https://"):])]  # the proxy saw only the tunnel, not the token
    assert server.requests[0].headers["authorization"] == f"Bearer {TOKEN}"

    monkeypatch.setenv("NO_PROXY", "127.0.0.1")
    fi.Client(TOKEN, base_url=url, ssl_context=context).generate(model="ep", prompt="p", response_format="png")
    assert len(proxy.seen) == 1 and len(server.requests) == 2


@pytest.mark.parametrize("slowness", ["trickled-connect-answer", "late-connect-answer"])
def test_a_slow_proxy_does_not_stretch_an_attempt(
    slowness: str, proxy: LocalProxy, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The attempt's deadline covers the proxy's answer to CONNECT and the TLS handshake after it.

    Trickled: 41 bytes 0.1 s apart, each within the 0.3 s socket timeout (4 s in all).  Late: the
    answer comes after 1.4 s of a 1.5 s attempt, then the server never answers the TLS handshake;
    the handshake must get the 0.1 s left, not a fresh 1.5 s.
    """
    with socket.socket() as silent:  # accepts connections (in the kernel) and never says anything
        silent.bind(("127.0.0.1", 0))
        silent.listen(8)
        if slowness == "trickled-connect-answer":
            proxy.connect_trickle, timeout = 0.1, 0.3
        else:
            proxy.connect_delay, timeout = 1.4, 1.5
        monkeypatch.setenv("HTTPS_PROXY", proxy.url)
        client = fi.Client(TOKEN, base_url=f"https://127.0.0.1:{silent.getsockname()[1]}", timeout=timeout,
                           retries=NO_RETRIES)
        started = time.monotonic()
        with pytest.raises(fi.APITimeoutError) as info:
            client.generate(model="ep", prompt="p")
        elapsed = time.monotonic() - started
    assert info.value.attempts == 1 and len(proxy.seen) == 1
    assert elapsed < timeout + 1.0


def test_a_proxy_that_refuses_the_tunnel_is_a_connection_error(
    proxy: LocalProxy, monkeypatch: pytest.MonkeyPatch, fake_sleep: FakeSleep
) -> None:
    monkeypatch.setenv("HTTPS_PROXY", proxy.url)
    client = fi.Client(TOKEN, base_url="https://api.friendli.invalid", sleep=fake_sleep, clock=fake_sleep.clock)
    with pytest.raises(fi.APIConnectionError) as info:
        client.generate(model="ep", prompt="p", retries=NO_RETRIES)
    assert proxy.seen == [("CONNECT", "api.friendli.invalid:443")]  # refused by our proxy; nothing went out
    assert TOKEN not in str(info.value)


# ===========================================================================
# 5. Concurrency
# ===========================================================================


class ThreadClock:
    """A fake sleep and clock for many threads: each thread has its own clock (so one call's retries
    never eat another call's budget); the record of sleeps is shared under a lock."""

    def __init__(self) -> None:
        self._local = threading.local()
        self._lock = threading.Lock()
        self.calls: List[float] = []

    def clock(self) -> float:
        return getattr(self._local, "now", 1000.0)

    def sleep(self, seconds: float) -> None:
        with self._lock:
            self.calls.append(seconds)
        self._local.now = self.clock() + seconds


def _injected_503(prompt: str, attempt: int) -> bool:
    """About 10 % of attempts fail; decided by (prompt, attempt), so independent of thread timing."""
    return random.Random(f"{prompt}/{attempt}").random() < 0.1


def test_one_client_many_threads_with_latency_and_503s(api: FakeFriendli) -> None:
    calls, threads = 1000, 32
    api.server.socket.listen(128)  # room for 32 simultaneous connects
    attempts: Dict[str, int] = {}
    lock = threading.Lock()

    def default(seen: Seen) -> Reply:
        body = seen.json
        prompt = body["prompt"]
        with lock:
            attempt = attempts[prompt] = attempts.get(prompt, 0) + 1
        time.sleep(random.uniform(0, 0.005))
        number = int(prompt.split()[-1])
        if (seen.headers.get("authorization") != f"Bearer {TOKEN}" or seen.headers.get("x-call") != str(number)
                or seen.headers.get("x-friendli-team") != f"team-{number % 7}" or body.get("seed") != number):
            return Reply(400, {"detail": "headers or body of another call"})
        if _injected_503(prompt, attempt):
            return Reply(503, {"detail": "injected"}, headers={"X-Request-Id": f"fail-{number}"})
        image = base64.b64encode(PNG + prompt.encode()).decode()
        return Reply(200, {"data": [{"seed": number, "response_format": "png", "b64_json": image}]},
                     headers={"X-Request-Id": f"req-{number}"})

    api.default = default  # type: ignore[method-assign]
    fake = ThreadClock()
    client = fi.Client(TOKEN, base_url=api.url, timeout=10, sleep=fake.sleep, clock=fake.clock)
    retry = no_jitter_retries(100)

    def one(number: int) -> Tuple[int, fi.ImageGenerationResult]:
        prompt = f"prompt {number}"
        return number, client.generate(model="ep", prompt=prompt, seed=number, response_format="png",
                                       retries=retry, x_friendli_team=f"team-{number % 7}",
                                       http_headers={"X-Call": str(number)})

    started = time.monotonic()
    with ThreadPoolExecutor(threads) as pool:
        outcomes = list(pool.map(one, range(calls)))
    elapsed = time.monotonic() - started

    for number, res in outcomes:
        assert res.request_id == f"req-{number}"
        assert len(res.data) == 1 and res.data[0].seed == number
        assert res.data[0].content() == PNG + f"prompt {number}".encode()
    assert len(attempts) == calls
    for prompt, count in attempts.items():  # each call retried exactly its own 503s, no more, no fewer
        failures = 0
        while _injected_503(prompt, failures + 1):
            failures += 1
        assert count == failures + 1, prompt
    total_503 = sum(attempts.values()) - calls
    assert 30 <= total_503 <= 250 and len(fake.calls) == total_503  # ~10 % injected, each slept once
    assert elapsed < 30  # generous; typically 2-4 s


def test_a_shared_client_keeps_per_call_budgets_apart(api: FakeFriendli) -> None:
    """A call that exhausts its budget does not shorten a concurrent call's budget (or vice versa)."""
    fake = ThreadClock()
    client = fi.Client(TOKEN, base_url=api.url, timeout=10, sleep=fake.sleep, clock=fake.clock)

    def default(seen: Seen) -> Reply:
        if seen.json["prompt"] == "doomed":
            return Reply(503, {"detail": "always"})
        return FakeFriendli.default(api, seen)

    api.default = default  # type: ignore[method-assign]

    def doomed() -> BaseException:
        with pytest.raises(fi.InternalServerError) as info:
            client.generate(model="ep", prompt="doomed", total_timeout=10, retries=no_jitter_retries())
        return info.value

    with ThreadPoolExecutor(8) as pool:
        failures = [pool.submit(doomed) for _ in range(4)]
        fine = [pool.submit(client.generate, model="ep", prompt="fine", response_format="png", total_timeout=10)
                for _ in range(20)]
        errors = [f.result() for f in failures]
        assert all(f.result().data[0].content() == PNG for f in fine)
    assert [e.attempts for e in errors] == [6] * 4  # each doomed call had its whole own budget


# ===========================================================================
# Manual entry point
# ===========================================================================


def fuzz_main(argv: Optional[Sequence[str]] = None) -> int:
    import argparse

    parser = argparse.ArgumentParser(description="Run the response fuzzer of friendli_image for longer.")
    parser.add_argument("--fuzz", type=int, default=20000, metavar="N", help="number of calls (default 20000)")
    parser.add_argument("--seed", type=int, default=None, help="random seed (default: a new one, printed)")
    args = parser.parse_args(argv)
    seed = args.seed if args.seed is not None else random.randrange(2**32)
    print(f"fuzzing {args.fuzz} calls, seed {seed}", flush=True)
    started = time.monotonic()
    tally = run_fuzz(args.fuzz, seed, report=lambda line: print(line, flush=True))
    print(f"done in {time.monotonic() - started:.1f} s: {tally}")
    return 0


# ===========================================================================
# Tests for the command line (issue 4): ``fi.main([...])`` and ``python friendli_image.py`` against FakeFriendli.
# ===========================================================================


MODULE = pathlib.Path(fi.__file__).resolve()
GENERATIONS = "/dedicated/v1/images/generations"


@pytest.fixture
def cli_env(monkeypatch: pytest.MonkeyPatch, tmp_path: pathlib.Path) -> pathlib.Path:
    """FRIENDLI_TOKEN set and the current directory a fresh tmp_path."""
    monkeypatch.setenv("FRIENDLI_TOKEN", TOKEN)
    monkeypatch.chdir(tmp_path)
    return tmp_path


def run_cli(api: FakeFriendli, capsys: pytest.CaptureFixture[str], *args: str) -> Tuple[int, str, str]:
    """``fi.main`` against the fake server; returns (exit code, stdout, stderr)."""
    code = fi.main(["--base-url", api.url, *args])
    out, err = capsys.readouterr()
    assert TOKEN not in out + err
    return code, out, err


def posted(api: FakeFriendli) -> List[Seen]:
    return [seen for seen in api.requests if seen.method == "POST"]


def leftovers(folder: pathlib.Path) -> List[str]:
    """Temporary files a write would leave behind if it were not atomic."""
    return [p.name for p in folder.rglob("*") if p.name.endswith(".part")]


def reject_prompts_containing(api: FakeFriendli, word: str, reply: Reply) -> None:
    """Make the server answer ``reply`` to generations whose prompt contains ``word``."""
    normal = api.default

    def default(seen: Seen) -> Reply:
        if seen.method == "POST" and word in seen.json.get("prompt", ""):
            return reply
        return normal(seen)

    api.default = default  # type: ignore[method-assign]


class TtyStream(io.StringIO):
    def isatty(self) -> bool:
        return True


# -- one image ------------------------------------------------------------------------------


def test_cli_generates_one_image_to_the_output_file(api: FakeFriendli, cli_env: pathlib.Path, capsys: Any) -> None:
    code, out, err = run_cli(api, capsys, "--model", "ep-1:adapter-a", "An orange car", "-o", "car.png")
    assert code == 0
    assert (cli_env / "car.png").read_bytes() == PNG
    assert out == ""  # without --json, stdout stays empty
    assert err == "saved car.png (seed 1234)\n"
    seen = posted(api)[0]
    assert seen.path == GENERATIONS and seen.headers["authorization"] == f"Bearer {TOKEN}"
    assert seen.json == {"model": "ep-1:adapter-a", "prompt": "An orange car", "num_inference_steps": 20,
                         "response_format": "png"}
    assert leftovers(cli_env) == []


def test_cli_every_api_parameter_has_a_flag(api: FakeFriendli, cli_env: pathlib.Path, capsys: Any) -> None:
    (cli_env / "pose.png").write_bytes(PNG)
    code, _, _ = run_cli(
        api, capsys, "--model", "ep", "a fox", "--steps", "10", "--guidance-scale", "7.5", "--seed", "42",
        "--format", "jpeg", "--team", "my-team", "--control-image", "https://example.com/edge.png",
        "--control-image", "pose.png", "--controlnet-weight", "0.5", "--controlnet-weight", "1", "-o", "fox",
    )
    assert code == 0
    seen = posted(api)[0]
    assert seen.headers["x-friendli-team"] == "my-team"
    body = seen.json
    assert body["control_images"][0] == {"image": "https://example.com/edge.png"}
    assert body["control_images"][1]["image"].startswith("data:image/png;base64,")
    del body["control_images"]
    assert body == {"model": "ep", "prompt": "a fox", "num_inference_steps": 10, "guidance_scale": 7.5, "seed": 42,
                    "response_format": "jpeg", "controlnet_weights": [0.5, 1.0]}
    assert (cli_env / "fox.jpg").read_bytes() == JPEG  # no suffix given: it comes from the bytes


def test_cli_url_images_are_downloaded(api: FakeFriendli, cli_env: pathlib.Path, capsys: Any) -> None:
    code, out, _ = run_cli(api, capsys, "--model", "ep", "a fox", "--format", "url", "-o", "fox", "--json")
    assert code == 0
    assert (cli_env / "fox.png").read_bytes() == PNG
    record = json.loads(out)
    assert record["url"].startswith(api.url + "/files/image.png") and record["format"] == "url"
    downloads = [seen for seen in api.requests if seen.method == "GET"]
    assert len(downloads) == 1 and "authorization" not in downloads[0].headers


def test_cli_without_output_names_the_file_after_the_prompt(
    api: FakeFriendli, cli_env: pathlib.Path, capsys: Any
) -> None:
    code, _, err = run_cli(api, capsys, "--model", "ep", "A Red Fox, at night! 🦊 /etc/passwd")
    assert code == 0
    assert sorted(p.name for p in cli_env.iterdir()) == ["a-red-fox-at-night-etc-passwd-1234.png"]
    assert "saved a-red-fox-at-night-etc-passwd-1234.png" in err


def test_cli_slug_is_safe_and_short() -> None:
    assert fi._cli_slug("../../x  y") == "x-y"
    assert fi._cli_slug("한국어 🦊") == "image"
    long = fi._cli_slug("word " * 50)
    assert len(long) <= 40 and long.startswith("word-word")


def test_cli_several_images_of_one_call_get_numbered_names(
    api: FakeFriendli, cli_env: pathlib.Path, capsys: Any
) -> None:
    api.images_per_request = 2
    code, _, _ = run_cli(api, capsys, "--model", "ep", "a fox", "-o", "fox.png")
    assert code == 0
    assert sorted(p.name for p in cli_env.iterdir()) == ["fox-2.png", "fox.png"]


def test_cli_output_into_an_existing_directory(api: FakeFriendli, cli_env: pathlib.Path, capsys: Any) -> None:
    (cli_env / "out").mkdir()
    code, _, _ = run_cli(api, capsys, "--model", "ep", "a fox", "-o", "out", "--seed", "7")
    assert code == 0
    assert [p.name for p in (cli_env / "out").iterdir()] == ["001-7.png"]


# -- never overwrite ------------------------------------------------------------------------


def test_cli_an_existing_file_is_not_overwritten(api: FakeFriendli, cli_env: pathlib.Path, capsys: Any) -> None:
    (cli_env / "car.png").write_bytes(b"precious")
    code, out, err = run_cli(api, capsys, "--model", "ep", "a car", "-o", "car.png")
    assert code == 2
    assert err == "friendli-image: error: car.png exists; pass --overwrite to replace it\n"
    assert (cli_env / "car.png").read_bytes() == b"precious"
    assert api.requests == []  # checked before any (paid) request

    code, _, _ = run_cli(api, capsys, "--model", "ep", "a car", "-o", "car.png", "--overwrite")
    assert code == 0 and (cli_env / "car.png").read_bytes() == PNG


def test_cli_a_name_known_only_after_the_call_is_not_overwritten_either(
    api: FakeFriendli, cli_env: pathlib.Path, capsys: Any
) -> None:
    (cli_env / "car.png").write_bytes(b"precious")
    code, _, err = run_cli(api, capsys, "--model", "ep", "a car", "-o", "car", "--format", "url")
    assert code == 1
    assert "car.png exists; pass --overwrite" in err
    assert (cli_env / "car.png").read_bytes() == b"precious"
    assert leftovers(cli_env) == []


def test_cli_output_that_names_a_file_is_refused_for_a_batch(
    api: FakeFriendli, cli_env: pathlib.Path, capsys: Any
) -> None:
    code, _, err = run_cli(api, capsys, "--model", "ep", "a fox", "--n", "2", "-o", "fox.png")
    assert code == 2 and "-o fox.png names a file, but 2 requests will be made" in err
    assert api.requests == [] and list(cli_env.iterdir()) == []


def test_cli_batch_checks_every_predictable_name_first(api: FakeFriendli, cli_env: pathlib.Path, capsys: Any) -> None:
    (cli_env / "out").mkdir()
    (cli_env / "out" / "002-11.png").write_bytes(b"old")
    code, _, err = run_cli(api, capsys, "--model", "ep", "a fox", "--n", "3", "--seed", "10", "-o", "out")
    assert code == 2 and "002-11.png exists" in err
    assert api.requests == []


# -- --json -----------------------------------------------------------------------------------


def test_cli_json_prints_one_object_per_image(api: FakeFriendli, cli_env: pathlib.Path, capsys: Any) -> None:
    code, out, err = run_cli(api, capsys, "--model", "ep", "a fox", "--n", "2", "--seed", "5", "-o", "out",
                             "--json", "--concurrency", "1")
    assert code == 0
    records = [json.loads(line) for line in out.splitlines()]
    assert records == [
        {"path": str(pathlib.Path("out", "001-5.png")), "seed": 5, "format": "png", "url": None,
         "request_id": "req-1", "index": 1, "prompt": "a fox"},
        {"path": str(pathlib.Path("out", "002-6.png")), "seed": 6, "format": "png", "url": None,
         "request_id": "req-2", "index": 2, "prompt": "a fox"},
    ]
    for record in records:
        assert pathlib.Path(record["path"]).read_bytes() == PNG
    assert "saved" in err and "{" not in err  # humans read stderr, scripts read stdout


# -- batches ----------------------------------------------------------------------------------


def test_cli_batch_from_a_prompts_file(api: FakeFriendli, cli_env: pathlib.Path, capsys: Any) -> None:
    (cli_env / "prompts.txt").write_text("a red fox\n\n# a comment\n  a blue whale  \n", encoding="utf-8")
    code, _, err = run_cli(api, capsys, "--model", "ep", "--prompts", "prompts.txt", "--n", "2", "-o", "out")
    assert code == 0
    assert sorted(seen.json["prompt"] for seen in posted(api)) == ["a blue whale", "a blue whale", "a red fox",
                                                                   "a red fox"]
    names = sorted(p.name for p in (cli_env / "out").iterdir())
    assert names == ["001-1234.png", "002-1234.png", "003-1234.png", "004-1234.png"]
    assert sum(line.startswith("saved out") for line in err.splitlines()) == 4  # one line per image (no tty)
    assert "4 image(s) saved in " in err


def test_cli_batch_without_output_names_files_after_index_and_prompt(
    api: FakeFriendli, cli_env: pathlib.Path, capsys: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(sys, "stdin", io.StringIO("a red fox\na blue whale\n"))
    code, _, _ = run_cli(api, capsys, "--model", "ep", "--prompts", "-")
    assert code == 0
    assert sorted(p.name for p in cli_env.iterdir()) == ["001-a-red-fox-1234.png", "002-a-blue-whale-1234.png"]


@pytest.mark.parametrize("concurrency, overlapping", [("1", False), ("4", True)])
def test_cli_concurrency_runs_requests_side_by_side(
    api: FakeFriendli, cli_env: pathlib.Path, capsys: Any, concurrency: str, overlapping: bool
) -> None:
    import threading

    normal = api.default
    lock = threading.Lock()
    active = [0]
    most = [0]

    def counting(handler: Any, seen: Seen) -> None:
        with lock:
            active[0] += 1
            most[0] = max(most[0], active[0])
        time.sleep(0.5)  # long enough for the other requests to arrive even on a loaded machine
        with lock:
            active[0] -= 1
        handler.send_reply(normal(seen))

    def default(seen: Seen) -> Any:
        return counting  # a responder that answers on the socket itself

    api.default = default  # type: ignore[method-assign]
    code, _, _ = run_cli(api, capsys, "--model", "ep", "a fox", "--n", "3", "-o", "out", "--concurrency", concurrency)
    assert code == 0 and len(list((cli_env / "out").iterdir())) == 3
    assert (most[0] > 1) is overlapping


def test_cli_directory_names_take_the_suffix_of_the_bytes(
    api: FakeFriendli, cli_env: pathlib.Path, capsys: Any
) -> None:
    code, _, _ = run_cli(api, capsys, "--model", "ep", "a fox", "--n", "2", "--format", "jpeg", "-o", "out")
    assert code == 0
    assert sorted(p.name for p in (cli_env / "out").iterdir()) == ["001-1234.jpg", "002-1234.jpg"]


def test_cli_seed_with_n_gives_each_copy_its_own_seed(api: FakeFriendli, cli_env: pathlib.Path, capsys: Any) -> None:
    code, _, _ = run_cli(api, capsys, "--model", "ep", "a fox", "-n", "3", "--seed", "100", "-o", "out")
    assert code == 0
    assert sorted(seen.json["seed"] for seen in posted(api)) == [100, 101, 102]
    assert sorted(p.name for p in (cli_env / "out").iterdir()) == ["001-100.png", "002-101.png", "003-102.png"]


def test_cli_a_failed_item_does_not_stop_the_batch(api: FakeFriendli, cli_env: pathlib.Path, capsys: Any) -> None:
    reject_prompts_containing(api, "bad", Reply(500, {"detail": "model crashed"}))
    (cli_env / "p.txt").write_text("one\ntwo bad\nthree\nfour\n", encoding="utf-8")
    code, _, err = run_cli(api, capsys, "--model", "ep", "--prompts", "p.txt", "-o", "out", "--no-retries")
    assert code == 5
    assert sorted(p.name for p in (cli_env / "out").iterdir()) == ["001-1234.png", "003-1234.png", "004-1234.png"]
    assert len(posted(api)) == 4  # no retry of the 500
    assert "friendli-image: error: #002 'two bad': InternalServerError: 500 Internal Server Error: model crashed" in err
    assert "3 image(s) saved, 1 of 4 request(s) failed in " in err
    assert "  #002 'two bad': InternalServerError: 500" in err  # the summary lists the failure
    assert "Traceback" not in err


def test_cli_a_batch_where_everything_failed_exits_with_the_errors_code(
    api: FakeFriendli, cli_env: pathlib.Path, capsys: Any
) -> None:
    api.queue(Reply(400, {"detail": "no"}), Reply(400, {"detail": "no"}))
    code, _, err = run_cli(api, capsys, "--model", "ep", "a fox", "--n", "2", "-o", "out")
    assert code == 1 and "BadRequestError: 400" in err
    assert not (cli_env / "out").exists()


def test_cli_bad_credentials_stop_a_batch(api: FakeFriendli, cli_env: pathlib.Path, capsys: Any,
                                          monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FRIENDLI_TOKEN", "fl-wrong")
    code, _, err = run_cli(api, capsys, "--model", "ep", "a fox", "--n", "5", "--concurrency", "1")
    assert code == 3
    assert len(posted(api)) == 1
    assert "AuthenticationError: 401" in err and "4 not sent" in err


def test_cli_progress_line_on_a_terminal(
    api: FakeFriendli, cli_env: pathlib.Path, capsys: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    reject_prompts_containing(api, "bad", Reply(400, {"detail": "no"}))
    (cli_env / "p.txt").write_text("one\nbad\nthree\n", encoding="utf-8")
    tty = TtyStream()
    monkeypatch.setattr(sys, "stderr", tty)
    code = fi.main(["--base-url", api.url, "--model", "ep", "--prompts", "p.txt", "-o", "out"])
    err = tty.getvalue()
    assert code == 5
    assert "\r\x1b[K3/3 done, 1 failed, " in err and " s/img" in err
    assert "saved " not in err  # the progress line replaces the per-image lines
    assert "friendli-image: error: #002 'bad': BadRequestError: 400" in err


# -- --dry-run -------------------------------------------------------------------------------------


def test_cli_dry_run_prints_curl_and_sends_nothing(api: FakeFriendli, cli_env: pathlib.Path, capsys: Any) -> None:
    prompt = "it's a \"quoted\" $HOME `fox`"
    code, out, err = run_cli(api, capsys, "--model", "ep:ad", prompt, "--seed", "3", "--team", "t1", "--dry-run")
    assert code == 0 and err == ""
    assert api.requests == [] and list(cli_env.iterdir()) == []
    words = shlex.split(out)
    assert words[:5] == ["curl", "-sS", "-X", "POST", api.url + GENERATIONS]
    headers = [words[i + 1] for i, word in enumerate(words) if word == "-H"]
    assert headers[0] == "Authorization: Bearer $FRIENDLI_TOKEN"  # expanded by the shell, never printed
    assert "X-Friendli-Team: t1" in headers and "Content-Type: application/json" in headers
    body = json.loads(words[words.index("--data-binary") + 1])
    assert body == {"model": "ep:ad", "prompt": prompt, "num_inference_steps": 20, "seed": 3,
                    "response_format": "png"}


@pytest.mark.skipif(shutil.which("curl") is None or shutil.which("sh") is None, reason="needs curl and sh")
def test_cli_dry_run_output_runs_as_is(api: FakeFriendli, cli_env: pathlib.Path, capsys: Any) -> None:
    code, out, _ = run_cli(api, capsys, "--model", "ep", "it's a fox", "--dry-run")
    assert code == 0
    done = subprocess.run(["sh", "-c", out], capture_output=True, text=True, timeout=30, env=dict(os.environ))
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["data"][0]["seed"] == 1234  # the fake server accepted the token and body
    assert posted(api)[0].json["prompt"] == "it's a fox"


def test_cli_dry_run_validates_everything(api: FakeFriendli, cli_env: pathlib.Path, capsys: Any,
                                          monkeypatch: pytest.MonkeyPatch) -> None:
    code, _, err = run_cli(api, capsys, "--model", "ep", "a fox", "--steps", "51", "--dry-run")
    assert code == 2 and "num_inference_steps must be within [1, 50], got 51" in err
    monkeypatch.delenv("FRIENDLI_TOKEN")
    code, _, err = run_cli(api, capsys, "--model", "ep", "a fox", "--dry-run")
    assert code == 2 and "FRIENDLI_TOKEN" in err
    assert api.requests == []


def test_cli_dry_run_of_a_batch_prints_one_command_per_request(
    api: FakeFriendli, cli_env: pathlib.Path, capsys: Any
) -> None:
    code, out, _ = run_cli(api, capsys, "--model", "ep", "a fox", "--n", "2", "--seed", "1", "--dry-run")
    assert code == 0
    commands = out.strip().split("\n\n")
    assert len(commands) == 2 and all(c.startswith("curl ") for c in commands)
    assert [json.loads(shlex.split(c)[-1])["seed"] for c in commands] == [1, 2]
    assert api.requests == []


# -- tokens ---------------------------------------------------------------------------------------


def test_cli_token_file(api: FakeFriendli, tmp_path: pathlib.Path, capsys: Any,
                        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    (tmp_path / "token").write_text(TOKEN + "\n", encoding="utf-8")
    code, _, _ = run_cli(api, capsys, "--model", "ep", "a fox", "--token-file", "token", "-o", "fox.png")
    assert code == 0 and posted(api)[0].headers["authorization"] == f"Bearer {TOKEN}"

    code, out, _ = run_cli(api, capsys, "--model", "ep", "a fox", "--token-file", "token", "--dry-run")
    assert code == 0 and '"Authorization: Bearer $(cat token)"' in out

    code, _, err = run_cli(api, capsys, "--model", "ep", "a fox", "--token-file", "missing")
    assert code == 2 and "cannot read --token-file 'missing'" in err
    assert len(api.requests) == 1


@pytest.mark.parametrize("flag", [["--token", TOKEN], ["--token=" + TOKEN], ["--tok", TOKEN], ["--token"]])
def test_cli_has_no_token_flag_and_never_echoes_one(
    api: FakeFriendli, cli_env: pathlib.Path, capsys: Any, flag: List[str]
) -> None:
    code, _, err = run_cli(api, capsys, "--model", "ep", "a fox", *flag)  # run_cli asserts TOKEN is not shown
    assert code == 2 and ("there is no --token option" in err or "unrecognized arguments: --tok ***" in err)
    assert api.requests == []


# -- exit codes and error lines ----------------------------------------------------------------


def test_cli_api_error_exits_1_with_the_error_class(api: FakeFriendli, cli_env: pathlib.Path, capsys: Any) -> None:
    api.queue(Reply(500, {"detail": "boom"}, headers={"X-Request-Id": "rq-9"}))
    code, out, err = run_cli(api, capsys, "--model", "ep", "a fox", "--no-retries")
    assert code == 1 and out == ""
    assert err == "friendli-image: error: InternalServerError: 500 Internal Server Error: boom [request id rq-9]\n"


@pytest.mark.parametrize("argv, message", [
    ([], "give a PROMPT or --prompts FILE"),
    (["--model", "ep"], "give a PROMPT or --prompts FILE"),
    (["a fox"], "--model ENDPOINT[:ADAPTER] is required"),
    (["--model", "ep", "a fox", "--prompts", "p.txt"], "not both"),
    (["--model", "ep", "a fox", "--format", "gif"], "invalid choice: 'gif'"),
    (["--model", "ep", "a fox", "--concurrency", "0"], "expected a whole number >= 1, got '0'"),
    (["--model", "ep", "a fox", "--timeout", "nan"], "expected a positive number of seconds, got 'nan'"),
    (["--model", "ep", "a fox", "--max-retries", "2", "--no-retries"], "not allowed with argument"),
])
def test_cli_usage_errors_return_2(api: FakeFriendli, cli_env: pathlib.Path, capsys: Any, argv: List[str],
                                   message: str) -> None:
    code, out, err = run_cli(api, capsys, *argv)
    assert code == 2 and out == ""
    assert err.startswith("usage: friendli-image") and message in err
    assert api.requests == []


@pytest.mark.parametrize("argv, message", [
    (["--model", "a:b:c", "a fox"], "one ':' at most"),
    (["--model", "ep", "   "], "prompt must be a non-empty string"),
    (["--model", "ep", "a fox", "--controlnet-weight", "2"], "controlnet_weights[0] must be within [0, 1]"),
    (["--model", "ep", "a fox", "--control-image", "no-such-file.png"], "control_images[0]"),
    (["--model", "ep", "a fox", "--prompts", "missing.txt"], "not both"),
    (["--model", "ep", "--prompts", "missing.txt"], "cannot read --prompts 'missing.txt'"),
])
def test_cli_validation_errors_return_2_before_any_traffic(
    api: FakeFriendli, cli_env: pathlib.Path, capsys: Any, argv: List[str], message: str
) -> None:
    code, _, err = run_cli(api, capsys, *argv)
    assert code == 2 and message in err
    assert api.requests == []


def test_cli_plain_http_to_a_remote_host_is_a_validation_error(cli_env: pathlib.Path, capsys: Any) -> None:
    code = fi.main(["--base-url", "http://10.0.0.5:8000", "--model", "ep", "a fox"])
    assert code == 2 and "use https://" in capsys.readouterr().err


@pytest.mark.parametrize("status, cls", [(401, "AuthenticationError"), (403, "PermissionDeniedError")])
def test_cli_auth_errors_exit_3(api: FakeFriendli, cli_env: pathlib.Path, capsys: Any, status: int, cls: str) -> None:
    api.queue(Reply(status, {"detail": "denied"}))
    code, _, err = run_cli(api, capsys, "--model", "ep", "a fox")
    assert code == 3 and err == f"friendli-image: error: {cls}: {status} {'Unauthorized' if status == 401 else 'Forbidden'}: denied\n"


def test_cli_a_timeout_exits_4(api: FakeFriendli, cli_env: pathlib.Path, capsys: Any) -> None:
    api.queue(Reply(200, {"data": []}, delay=3.0))
    started = time.monotonic()
    code, _, err = run_cli(api, capsys, "--model", "ep", "a fox", "--timeout", "0.2", "--no-retries")
    assert code == 4 and err.startswith("friendli-image: error: APITimeoutError: timed out")
    assert time.monotonic() - started < 0.2 + 1.5


def test_cli_total_timeout_bounds_the_request(api: FakeFriendli, cli_env: pathlib.Path, capsys: Any) -> None:
    api.queue(Reply(200, {"data": []}, delay=3.0))
    started = time.monotonic()
    code, _, err = run_cli(api, capsys, "--model", "ep", "a fox", "--total-timeout", "0.3")
    assert code == 4 and "APITimeoutError" in err
    assert time.monotonic() - started < 0.3 + 1.5


def test_cli_connection_refused_exits_4(cli_env: pathlib.Path, capsys: Any) -> None:
    closed = FakeFriendli()
    url = closed.url
    closed.close()
    code = fi.main(["--base-url", url, "--model", "ep", "a fox", "--no-retries"])
    err = capsys.readouterr().err
    assert code == 4 and err.startswith("friendli-image: error: APIConnectionError: ")
    assert "Connection refused" in err
    assert err.count("\n") == 1


def test_cli_max_retries(api: FakeFriendli, cli_env: pathlib.Path, capsys: Any) -> None:
    busy = Reply(503, {"detail": "busy"}, headers={"retry-after-ms": "1"})
    api.queue(busy, busy, busy)
    code, _, err = run_cli(api, capsys, "--model", "ep", "a fox", "--max-retries", "1")
    assert code == 1 and "(after 2 attempts)" in err
    assert len(posted(api)) == 2


# -- verbosity ------------------------------------------------------------------------------------------


def test_cli_v_shows_each_retry(api: FakeFriendli, cli_env: pathlib.Path, capsys: Any) -> None:
    api.queue(Reply(503, {"detail": "busy"}, headers={"retry-after-ms": "1"}))
    code, _, err = run_cli(api, capsys, "--model", "ep", "a fox", "-v", "--max-retries", "3", "-o", "fox.png")
    assert code == 0
    assert err.splitlines() == ["retrying in 0.0 s after 503 (attempt 2/4)", "saved fox.png (seed 1234)"]
    assert fi.logger.handlers == [] and fi.logger.level == 0  # main leaves logging as it found it


def test_cli_without_v_retries_are_silent(api: FakeFriendli, cli_env: pathlib.Path, capsys: Any) -> None:
    api.queue(Reply(503, {"detail": "busy"}, headers={"retry-after-ms": "1"}))
    code, _, err = run_cli(api, capsys, "--model", "ep", "a fox", "-o", "fox.png")
    assert code == 0 and "retrying" not in err


def test_cli_vv_shows_the_debug_log_and_tracebacks(api: FakeFriendli, cli_env: pathlib.Path, capsys: Any) -> None:
    code, _, err = run_cli(api, capsys, "--model", "ep", "a fox", "-vv", "-o", "fox.png")
    assert code == 0 and f"POST {api.url}{GENERATIONS} -> 200 in " in err
    api.queue(Reply(500, {"detail": "boom"}))
    code, _, err = run_cli(api, capsys, "--model", "ep", "a fox", "-vv", "--no-retries")
    assert code == 1 and "Traceback (most recent call last)" in err
    assert err.rstrip().splitlines()[-1].startswith("friendli-image: error: InternalServerError: 500")


# -- Ctrl-C -----------------------------------------------------------------------------------------------


def interrupt_after_first_report(monkeypatch: pytest.MonkeyPatch) -> None:
    """Ctrl-C arrives right after the first finished job has been reported."""
    record = fi._CliReporter.record
    calls = []

    def record_then_interrupt(self: Any, job: Any, outcome: Any) -> bool:
        stop = record(self, job, outcome)
        calls.append(job)
        if len(calls) == 1:
            raise KeyboardInterrupt
        return stop

    monkeypatch.setattr(fi._CliReporter, "record", record_then_interrupt)


def test_cli_ctrl_c_in_a_sequential_batch(api: FakeFriendli, cli_env: pathlib.Path, capsys: Any,
                                          monkeypatch: pytest.MonkeyPatch) -> None:
    interrupt_after_first_report(monkeypatch)
    code, _, err = run_cli(api, capsys, "--model", "ep", "a fox", "--n", "4", "--concurrency", "1", "-o", "out")
    assert code == 130
    assert [p.name for p in (cli_env / "out").iterdir()] == ["001-1234.png"]
    assert len(posted(api)) == 1
    assert "1 image(s) saved, 3 not sent in " in err and err.endswith("friendli-image: interrupted\n")


def test_cli_ctrl_c_in_a_concurrent_batch(api: FakeFriendli, cli_env: pathlib.Path, capsys: Any,
                                          monkeypatch: pytest.MonkeyPatch) -> None:
    interrupt_after_first_report(monkeypatch)
    normal = api.default

    def slow(seen: Seen) -> Reply:
        reply = normal(seen)
        reply.delay = 0.2
        return reply

    api.default = slow  # type: ignore[method-assign]
    code, _, err = run_cli(api, capsys, "--model", "ep", "a fox", "--n", "8", "--concurrency", "2", "-o", "out")
    assert code == 130
    files = sorted((cli_env / "out").iterdir())
    sent = len(posted(api))
    assert 1 <= len(files) == sent < 8  # jobs not started were cancelled; those in flight finished and were kept
    assert all(p.read_bytes() == PNG for p in files) and leftovers(cli_env) == []
    assert f"{len(files)} image(s) saved, {8 - sent} not sent in " in err
    assert "Traceback" not in err and err.endswith("friendli-image: interrupted\n")
    time.sleep(0.5)
    assert len(posted(api)) == sent  # nothing was started after main returned


@pytest.mark.skipif(sys.platform == "win32", reason="SIGINT to a child process is POSIX")
def test_cli_real_ctrl_c_stops_at_once(api: FakeFriendli, tmp_path: pathlib.Path) -> None:
    api.queue(Reply(200, {"data": []}, delay=10.0))
    env = dict(os.environ, FRIENDLI_TOKEN=TOKEN)
    proc = subprocess.Popen([sys.executable, str(MODULE), "--base-url", api.url, "--model", "ep", "a fox"],
                            cwd=tmp_path, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 30
        while not api.requests and time.monotonic() < deadline:
            time.sleep(0.02)
        assert api.requests, "the request never arrived"
        started = time.monotonic()
        proc.send_signal(signal.SIGINT)
        out, err = proc.communicate(timeout=30)
    finally:
        proc.kill()
    assert proc.returncode == 130
    assert time.monotonic() - started < 5.0  # not the 10 s the server would take
    assert err == "friendli-image: interrupted\n" and out == ""
    assert list(tmp_path.iterdir()) == []


# -- other targets and operations ---------------------------------------------------------------------------


def test_cli_edit_image(api: FakeFriendli, cli_env: pathlib.Path, capsys: Any) -> None:
    (cli_env / "in.png").write_bytes(PNG)
    code, _, _ = run_cli(api, capsys, "--model", "ep", "make it blue", "--edit-image", "in.png", "-o", "out.png")
    assert code == 0 and (cli_env / "out.png").read_bytes() == PNG
    seen = posted(api)[0]
    assert seen.path == "/dedicated/v1/images/edits"
    assert seen.json["image"]["image"].startswith("data:image/png;base64,")


def test_cli_container_target(api: FakeFriendli, cli_env: pathlib.Path, capsys: Any) -> None:
    code, _, _ = run_cli(api, capsys, "--target", "container", "a fox", "-o", "fox")
    assert code == 0 and (cli_env / "fox.jpg").read_bytes() == JPEG
    seen = posted(api)[0]
    assert seen.path == "/v1/images/generations" and "authorization" not in seen.headers


# -- the program as users run it -------------------------------------------------------------------------


def test_cli_runs_as_a_script(api: FakeFriendli, tmp_path: pathlib.Path) -> None:
    env = dict(os.environ, FRIENDLI_TOKEN=TOKEN)  # clean_environment removed proxies and other FRIENDLI_*
    done = subprocess.run(
        [sys.executable, str(MODULE), "--base-url", api.url, "--model", "ep", "an orange car", "--json"],
        cwd=tmp_path, env=env, capture_output=True, text=True, timeout=60,
    )
    assert done.returncode == 0, done.stderr
    record = json.loads(done.stdout)
    assert record["path"] == "an-orange-car-1234.png" and record["seed"] == 1234 and record["request_id"] == "req-1"
    assert (tmp_path / record["path"]).read_bytes() == PNG
    assert done.stderr == "saved an-orange-car-1234.png (seed 1234)\n"


def test_cli_script_exit_code_for_usage_errors(tmp_path: pathlib.Path) -> None:
    done = subprocess.run([sys.executable, str(MODULE), "--model", "ep"], cwd=tmp_path, capture_output=True,
                          text=True, timeout=60)
    assert done.returncode == 2 and "give a PROMPT or --prompts FILE" in done.stderr


def test_cli_help_fits_80_columns(capsys: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("COLUMNS", "80")
    assert fi.main(["--help"]) == 0
    out = capsys.readouterr().out
    assert out.startswith("usage: friendli-image --model ENDPOINT[:ADAPTER]")
    for flag in ("--steps", "--guidance-scale", "--seed", "--format", "--team", "--base-url", "--timeout",
                 "--total-timeout", "--max-retries", "--no-retries", "--control-image", "--controlnet-weight",
                 "--token-file", "--json", "--prompts", "--concurrency", "--n K", "--dry-run", "--overwrite"):
        assert flag in out
    for code in ("0 ", "1 ", "2 ", "3 ", "4 ", "5 ", "130 "):
        assert f"\n  {code}" in out.split("exit codes:")[1]
    too_long = [line for line in out.splitlines() if len(line) > 80]
    assert too_long == []


def test_cli_importing_the_module_does_not_import_argparse_or_futures() -> None:
    code = "import sys, friendli_image; print([m for m in ('argparse', 'concurrent.futures') if m in sys.modules])"
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                          cwd=MODULE.parent)
    assert done.stdout.strip() == "[]"


# ===========================================================================
# Issue 5: image edits, Friendli Container targets, asyncio, and result conveniences.
#
# Like the main suite, every test talks to ``FakeFriendli``, a real HTTP server on 127.0.0.1;
# nothing in urllib/http.client/socket is mocked.  Retry sleeps are faked (``client`` fixture)
# except in the asyncio tests, which need real threads and real (short) sleeps.
# ===========================================================================


GIF = b"GIF89a\x01\x00\x01\x00\x80\x00\x00\xff\xff\xff\x00\x00\x00!\xf9\x04\x01\x00\x00\x00\x00,\x00\x00\x00\x00\x01\x00\x01\x00\x00\x02\x02D\x01\x00;"
WEBP = b"RIFF" + struct.pack("<I", 26) + b"WEBPVP8 " + struct.pack("<I", 14) + b"\x30\x01\x00\x9d\x01\x2a" + b"\x00" * 8
JPEG_B64 = base64.b64encode(JPEG).decode()
PNG_URI = "data:image/png;base64," + PNG_B64
JPEG_URI = "data:image/jpeg;base64," + JPEG_B64
LIMIT = fi.MAX_INPUT_IMAGE_BYTES


def edit_body(image: Any, **extra: Any) -> Dict[str, Any]:
    """The JSON a Dedicated edit with model "ep" and prompt "p" must send."""
    return {"model": "ep", "prompt": "p", "num_inference_steps": 20, **extra, "image": image}


def is_image_input(value: Any) -> bool:
    """The spec's ImageInput: an object with exactly one string field, ``image``."""
    return isinstance(value, dict) and set(value) == {"image"} and isinstance(value["image"], str)


def check_edit_schema(api: FakeFriendli) -> None:
    """Make ``api`` answer 422 to an edit whose ``image`` is not ImageInput | ImageInput[] (the spec)."""
    plain = api.default

    def default(seen: Seen) -> Reply:
        if seen.method == "POST" and seen.path.endswith("/images/edits"):
            image = seen.json.get("image")
            if not (is_image_input(image) or (isinstance(image, list) and image and all(map(is_image_input, image)))):
                return Reply(422, {"detail": [{"loc": ["body", "image"], "msg": "bad ImageInput", "type": "x"}]})
        return plain(seen)

    api.default = default  # type: ignore[method-assign]


def add_latency(api: FakeFriendli, seconds: float) -> None:
    """Make every unscripted answer of ``api`` take ``seconds``."""
    plain = api.default

    def default(seen: Seen) -> Reply:
        return dataclasses.replace(plain(seen), delay=seconds)

    api.default = default  # type: ignore[method-assign]


def closed_port() -> int:
    """A loopback port nobody listens on."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


# ===========================================================================
# 1. Image edits (Dedicated)
# ===========================================================================


@pytest.fixture
def image_file(tmp_path: pathlib.Path) -> pathlib.Path:
    path = tmp_path / "photo.jpeg"
    path.write_bytes(JPEG)
    return path


@pytest.mark.parametrize(
    "kind",
    ["url", "data_uri", "raw_base64", "bytes", "bytearray", "path", "str_path", "image_input_dict"],
)
def test_edit_sends_one_input_as_an_image_input_object(
    api: FakeFriendli, client: fi.Client, image_file: pathlib.Path, kind: str
) -> None:
    check_edit_schema(api)
    given, sent = {
        "url": ("https://example.com/cat.png?x=1", "https://example.com/cat.png?x=1"),
        "data_uri": (PNG_URI, PNG_URI),
        "raw_base64": (PNG_B64, PNG_B64),
        "bytes": (PNG, PNG_URI),
        "bytearray": (bytearray(PNG), PNG_URI),
        "path": (image_file, JPEG_URI),
        "str_path": (str(image_file), JPEG_URI),
        "image_input_dict": ({"image": image_file}, JPEG_URI),
    }[kind]
    res = client.edit(model="ep", prompt="p", image=given, response_format="png")
    seen = api.requests[0]
    assert seen.method == "POST" and seen.path == "/dedicated/v1/images/edits"
    assert seen.headers["authorization"] == f"Bearer {TOKEN}"
    assert seen.json == edit_body({"image": sent}, response_format="png")
    assert len(res.data) == 1 and res.data[0].content() == PNG and res.request_id == "req-1"


def test_edit_sends_a_list_of_mixed_inputs_as_a_list_of_image_input_objects(
    api: FakeFriendli, client: fi.Client, image_file: pathlib.Path
) -> None:
    check_edit_schema(api)
    images = ["https://example.com/a.png", PNG_URI, PNG_B64, PNG, image_file, str(image_file), {"image": GIF}]
    client.edit(model="ep:adapter", prompt="p", image=images, seed=9, guidance_scale=3.5)
    assert api.requests[0].json == {
        "model": "ep:adapter",
        "prompt": "p",
        "num_inference_steps": 20,
        "guidance_scale": 3.5,
        "seed": 9,
        "image": [
            {"image": "https://example.com/a.png"},
            {"image": PNG_URI},
            {"image": PNG_B64},
            {"image": PNG_URI},
            {"image": JPEG_URI},
            {"image": JPEG_URI},
            {"image": "data:image/gif;base64," + base64.b64encode(GIF).decode()},
        ],
    }
    client.edit(model="ep", prompt="p", image=(PNG,))  # a tuple is a list too; one item stays a list
    assert api.requests[1].json["image"] == [{"image": PNG_URI}]


@pytest.mark.parametrize("data, kind", [(PNG, "png"), (JPEG, "jpeg"), (WEBP, "webp"), (GIF, "gif")])
def test_the_image_type_is_sniffed_from_the_bytes(
    api: FakeFriendli, client: fi.Client, tmp_path: pathlib.Path, data: bytes, kind: str
) -> None:
    unnamed = tmp_path / "no-suffix"  # the name says nothing; the bytes do
    unnamed.write_bytes(data)
    client.edit(model="ep", prompt="p", image=[data, unnamed])
    expected = f"data:image/{kind};base64," + base64.b64encode(data).decode()
    assert api.requests[0].json["image"] == [{"image": expected}, {"image": expected}]


def sparse_file(path: pathlib.Path, size: int) -> pathlib.Path:
    """A PNG-headed file of ``size`` bytes that takes no disk space (and no time) to make."""
    with open(path, "wb") as fh:
        fh.write(PNG[:16])
        fh.truncate(size)
    return path


@pytest.mark.parametrize("as_str", [False, True])
def test_a_file_over_50_mib_is_refused_before_sending(
    api: FakeFriendli, client: fi.Client, tmp_path: pathlib.Path, as_str: bool
) -> None:
    path = sparse_file(tmp_path / "huge.png", LIMIT + 1)
    image: Any = str(path) if as_str else path
    with pytest.raises(fi.FriendliValidationError, match=r"over the API's limit .*50 MiB") as info:
        client.edit(model="ep", prompt="p", image=[PNG, image])
    assert "image[1]" in str(info.value) and str(LIMIT + 1) in str(info.value)
    with pytest.raises(fi.FriendliValidationError, match="50 MiB"):
        client.generate(model="ep", prompt="p", control_images=[image])
    assert api.requests == []


def test_bytes_over_50_mib_are_refused_before_sending(api: FakeFriendli, client: fi.Client) -> None:
    huge = PNG[:16] + bytes(LIMIT + 1 - 16)
    with pytest.raises(fi.FriendliValidationError, match=f"image is {LIMIT + 1} bytes, over the API's limit"):
        client.edit(model="ep", prompt="p", image=huge)
    with pytest.raises(fi.FriendliValidationError, match="50 MiB"):
        client.edit(model="ep", prompt="p", image=memoryview(huge))
    del huge
    assert api.requests == []


def test_base64_text_over_50_mib_is_refused_before_sending(api: FakeFriendli, client: fi.Client) -> None:
    huge = "A" * ((LIMIT // 3 + 1) * 4)  # decodes to LIMIT + 1..3 bytes
    with pytest.raises(fi.FriendliValidationError, match="over the API's limit"):
        client.edit(model="ep", prompt="p", image=huge)
    del huge
    assert api.requests == []


def test_base64_of_exactly_the_limit_is_not_refused_for_its_padding() -> None:
    # 4 characters carry 3 bytes; "==" padding must not count as image bytes.
    assert fi._base64_size(base64.b64encode(b"x" * 4).decode()) == 4
    assert fi._base64_size(base64.b64encode(b"x" * 5).decode()) == 5
    assert fi._base64_size(base64.b64encode(b"x" * 6).decode()) == 6


@pytest.mark.parametrize(
    "image, message",
    [
        (b"hello, this is text", "cannot tell the image type of these bytes"),
        (b"", "cannot tell the image type"),
        ("not an image, not a file", "is not a URL, a data: URI, base64 text, or an existing file"),
        ("definitely not an image", "is base64 text but not of a PNG, JPEG, GIF, WebP, TIFF or BMP image"),
        ("photos/cats1", "pass a 'data:image/...;base64,' URI to choose the type yourself"),
        ("no-such-file.png", "is not a URL, a data: URI, base64 text, or an existing file"),
        (pathlib.Path("/nonexistent/dir/x.png"), "cannot read"),
        ("data:image/png;base64,@@@@", "not a valid 'data:<type>;base64,<data>' URI"),
        ("data:image/png," + PNG_B64, "not a valid 'data:<type>;base64,<data>' URI"),
        ("https://example.com/a b.png", "URL contains whitespace"),
        (42, "must be a URL, data: URI, base64 string, bytes or a file path"),
        ([], "image must not be an empty list"),
        (None, "image is required"),
    ],
)
def test_bad_inputs_are_refused_with_a_clear_message(
    api: FakeFriendli, client: fi.Client, image: Any, message: str
) -> None:
    with pytest.raises(fi.FriendliValidationError) as info:
        client.edit(model="ep", prompt="p", image=image)
    assert message in str(info.value)
    assert api.requests == []


def test_unknown_file_contents_are_refused_and_say_how_to_choose_the_type(
    api: FakeFriendli, client: fi.Client, tmp_path: pathlib.Path
) -> None:
    notes = tmp_path / "notes.png"  # a misleading suffix does not help
    notes.write_text("shopping list")
    with pytest.raises(fi.FriendliValidationError) as info:
        client.edit(model="ep", prompt="p", image=[PNG, notes])
    text = str(info.value)
    assert text.startswith("image[1]: cannot tell the image type")
    assert "PNG, JPEG, GIF, WebP" in text and "data:image/...;base64," in text
    assert api.requests == []


@pytest.mark.parametrize(
    "overrides, param",
    [
        ({"model": None}, "model is required"),
        ({"model": "a:b:c"}, "model"),
        ({"prompt": " "}, "prompt"),
        ({"num_inference_steps": 0}, "num_inference_steps"),
        ({"guidance_scale": float("nan")}, "guidance_scale"),
        ({"seed": True}, "seed"),
        ({"response_format": "gif"}, "response_format"),
        ({"x_friendli_team": "a team"}, "x_friendli_team"),
    ],
)
def test_edit_validates_like_generate(api: FakeFriendli, client: fi.Client, overrides: Dict[str, Any], param: str) -> None:
    kwargs: Dict[str, Any] = {"model": "ep", "prompt": "p", "image": PNG, **overrides}
    with pytest.raises(fi.FriendliValidationError, match=param):
        client.edit(**kwargs)
    assert api.requests == []


def test_edit_takes_no_control_net_fields(client: fi.Client) -> None:
    with pytest.raises(TypeError):
        client.edit(model="ep", prompt="p", image=PNG, control_images=[PNG])  # type: ignore[call-arg]
    with pytest.raises(fi.FriendliValidationError, match="not part of an image edit"):
        fi.ImageEditRequest(model="ep", prompt="p", image=PNG, control_images=[PNG])


def test_edit_has_the_same_retries_and_errors_as_generate(
    api: FakeFriendli, client: fi.Client, fake_sleep: FakeSleep
) -> None:
    api.queue(Reply(503, {"detail": "busy"}, headers={"retry-after-ms": "250"}), Reply(429, {"detail": "slow down"}))
    res = client.edit(model="ep", prompt="p", image=PNG, response_format="png")
    assert res.data[0].content() == PNG
    assert len(api.requests) == 3 and fake_sleep.calls[0] == 0.25
    assert api.requests[0].body == api.requests[2].body  # the very same request, re-sent

    api.queue(Reply(422, {"detail": [{"loc": ["body", "image"], "msg": "unsupported format", "type": "value_error"}]}))
    with pytest.raises(fi.UnprocessableEntityError) as info:
        client.edit(model="ep", prompt="p", image=PNG)
    assert info.value.errors[0]["msg"] == "unsupported format" and info.value.attempts == 1

    with pytest.raises(fi.AuthenticationError):
        fi.Client("fl-wrong", base_url=api.url).edit(model="ep", prompt="p", image=PNG)


def test_image_edit_request_builds_the_body() -> None:
    one = fi.ImageEditRequest(model="ep", prompt="p", image="https://example.com/a.png", seed=1)
    assert one.to_dict() == edit_body({"image": "https://example.com/a.png"}, seed=1)
    many = fi.ImageEditRequest(model="ep", prompt="p", image=[PNG, JPEG_B64])
    assert many.to_dict() == edit_body([{"image": PNG_URI}, {"image": JPEG_B64}])
    assert json.loads(many.to_json()) == many.to_dict()
    container = fi.ImageEditRequest(model=None, prompt="p", image=PNG, target="container", response_format="raw")
    assert container.to_dict() == {"prompt": "p", "num_inference_steps": 20, "response_format": "raw",
                                   "image": {"image": PNG_URI}}


def test_sync_friendli_dedicated_edit_mirrors_the_client(
    api: FakeFriendli, client: fi.Client, image_file: pathlib.Path
) -> None:
    client.edit(model="ep", prompt="p", image=[image_file, PNG], seed=3, response_format="jpeg")
    with fi.SyncFriendli(token=TOKEN, server_url=api.url) as friendli:
        res = friendli.dedicated.image.edit(
            model="ep", prompt="p", image=[image_file, PNG], seed=3, response_format="jpeg", timeout_ms=5000
        )
        assert res.data[0].content() == JPEG and res.data[0].seed == 3
        api.queue(Reply(503, {"detail": "busy"}))
        with pytest.raises(fi.InternalServerError) as info:
            friendli.dedicated.image.edit(model="ep", prompt="p", image=PNG, retries=None)
        assert info.value.attempts == 1
    assert [s.path for s in api.requests] == ["/dedicated/v1/images/edits"] * 3
    assert api.requests[0].body == api.requests[1].body
    assert api.requests[1].headers["authorization"] == f"Bearer {TOKEN}"


# ===========================================================================
# 2. Friendli Container
# ===========================================================================


def test_container_generate_and_edit_use_the_container_paths_and_schema(api: FakeFriendli) -> None:
    container = fi.Client(base_url=api.url, target="container")
    gen = container.generate(prompt="a fox", model="my-adapter", seed=5, num_inference_steps=10, guidance_scale=0.0)
    seen = api.requests[0]
    assert (seen.method, seen.path) == ("POST", "/v1/images/generations")
    assert seen.json == {"model": "my-adapter", "prompt": "a fox", "num_inference_steps": 10, "guidance_scale": 0.0,
                         "seed": 5}
    assert "authorization" not in seen.headers and "x-friendli-team" not in seen.headers
    assert isinstance(gen, fi.ImageGenerationResult) and len(gen.data) == 1
    assert gen.data[0] == fi.GeneratedImage(seed=5, response_format="jpeg", b64_json=JPEG_B64)
    assert gen.data[0].content() == JPEG

    edit = container.edit(prompt="add a hat", image=PNG, response_format="raw")
    seen = api.requests[1]
    assert (seen.method, seen.path) == ("POST", "/v1/images/edits")
    assert seen.json == {"prompt": "add a hat", "num_inference_steps": 20, "response_format": "raw",
                         "image": {"image": PNG_URI}}
    assert "authorization" not in seen.headers
    assert len(edit.data) == 1 and edit.data[0].seed is None and edit.data[0].response_format == "raw"
    assert edit.data[0].content() == PNG
    assert len(api.requests) == 2  # b64 answers need no download


def test_container_targets_ignore_the_friendli_environment(api: FakeFriendli, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FRIENDLI_TOKEN", TOKEN)
    monkeypatch.setenv("FRIENDLI_TEAM", "team-env")
    monkeypatch.setenv("FRIENDLI_BASE_URL", "https://api.example.invalid")
    assert fi.Client(target="container").base_url == fi.DEFAULT_CONTAINER_BASE_URL == "http://localhost:8000"
    fi.Client(base_url=api.url, target="container").generate(prompt="p", x_friendli_team="team-call")
    assert "authorization" not in api.requests[0].headers
    assert "x-friendli-team" not in api.requests[0].headers


def test_a_token_passed_explicitly_is_sent_to_a_container(api: FakeFriendli) -> None:
    fi.Client(TOKEN, base_url=api.url, target="container").edit(prompt="p", image="https://example.com/a.png")
    assert api.requests[0].headers["authorization"] == f"Bearer {TOKEN}"
    tokens = iter(["rotated-1", "rotated-2"])
    fi.Client(lambda: next(tokens), base_url=api.url, target="container").generate(prompt="p")
    assert api.requests[1].headers["authorization"] == "Bearer rotated-1"


@pytest.mark.parametrize("fmt", ["url", "png", "jpg", "JPEG", ""])
def test_container_response_format_is_raw_or_jpeg(api: FakeFriendli, fmt: str) -> None:
    container = fi.Client(base_url=api.url, target="container")
    for call in (lambda: container.generate(prompt="p", response_format=fmt),
                 lambda: container.edit(prompt="p", image=PNG, response_format=fmt)):
        with pytest.raises(fi.FriendliValidationError) as info:
            call()
        assert "response_format must be one of raw, jpeg for a container target" in str(info.value)
    assert api.requests == []


def test_dedicated_response_formats_are_not_narrowed_by_the_container_ones(api: FakeFriendli, client: fi.Client) -> None:
    for fmt in ("url", "raw", "png", "jpeg", "jpg"):
        client.generate(model="ep", prompt="p", response_format=fmt)
    assert [s.json["response_format"] for s in api.requests if s.method == "POST"] == ["url", "raw", "png", "jpeg",
                                                                                       "jpg"]


@pytest.mark.parametrize(
    "answer",
    [
        {"data": [{"b64_json": PNG_B64, "seed": 1, "response_format": "png"}]},  # a Dedicated answer
        {"image": "not base64!"},
        {"image": ""},
        {"image": 12},
        ["image"],
    ],
)
def test_container_answers_off_the_schema_are_invalid_responses(api: FakeFriendli, answer: Any) -> None:
    api.queue(Reply(200, answer))
    with pytest.raises(fi.InvalidResponseError, match="unexpected response"):
        fi.Client(base_url=api.url, target="container").generate(prompt="p")


def test_container_errors_and_retries_go_through_the_same_transport(api: FakeFriendli, fake_sleep: FakeSleep) -> None:
    container = fi.Client(base_url=api.url, target="container", sleep=fake_sleep, clock=fake_sleep.clock)
    api.queue(Reply(503, {"detail": "warming up"}, headers={"retry-after-ms": "1500"}))
    assert container.generate(prompt="p").data[0].content() == JPEG
    assert fake_sleep.calls == [1.5] and len(api.requests) == 2
    api.queue(Reply(422, {"detail": [{"loc": ["body", "prompt"], "msg": "too long", "type": "x"}]}))
    with pytest.raises(fi.UnprocessableEntityError, match="too long"):
        container.edit(prompt="p", image=PNG)


def test_a_container_result_prints_short_and_converts_to_a_dict(api: FakeFriendli) -> None:
    big = base64.b64encode(make_png(extra=1024 * 1024)).decode()
    api.queue(Reply(200, {"image": big}))
    res = fi.Client(base_url=api.url, target="container").generate(prompt="p", seed=11, response_format="raw")
    text = str(res)
    assert len(text) < 300 and "seed=11" in text and f"({len(big)} chars)" in text
    assert dataclasses.asdict(res) == {
        "data": [{"seed": 11, "response_format": "raw", "url": None, "b64_json": big}],
        "request_id": None,
    }
    assert json.loads(json.dumps(dataclasses.asdict(res)))["data"][0]["b64_json"] == big


@pytest.mark.parametrize("url", ["http://gpu-box:8000", "http://10.1.2.3:8000", "http://gpu-box.corp.example"])
def test_plain_http_to_a_container_off_this_machine_needs_an_explicit_opt_in(url: str) -> None:
    # Construction only: nothing here may connect anywhere but 127.0.0.1.
    with pytest.raises(fi.FriendliValidationError) as info:
        fi.Client(base_url=url, target="container")
    message = str(info.value)
    assert "http://" in message and "https://" in message and "allow_insecure_http=True" in message
    assert fi.Client(base_url=url, target="container", allow_insecure_http=True).base_url == url
    with fi.SyncFriendli() as friendli, pytest.raises(fi.FriendliValidationError, match="allow_insecure_http=True"):
        friendli.container.image.generate(server_url=url, prompt="p")


@pytest.mark.parametrize("url", ["http://localhost:8000", "http://127.0.0.1:8000", "http://[::1]:8000",
                                 "https://gpu-box:8443"])
def test_loopback_or_https_containers_need_no_opt_in(url: str) -> None:
    assert fi.Client(base_url=url, target="container").base_url == url


def test_sync_friendli_container_image_generate_and_edit(api: FakeFriendli, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FRIENDLI_TOKEN", TOKEN)
    with fi.SyncFriendli() as friendli:
        gen = friendli.container.image.generate(server_url=api.url, prompt="p", seed=4)
        edit = friendli.container.image.edit(
            server_url=api.url, prompt="p", image=["https://example.com/a.png", PNG], model="adapter-1",
            response_format="raw",
        )
        api.queue(Reply(503, {"detail": "busy"}))
        with pytest.raises(fi.InternalServerError) as info:
            friendli.container.image.generate(server_url=api.url, prompt="p", retries=None)
    assert info.value.attempts == 1
    assert gen.data[0].seed == 4 and gen.data[0].content() == JPEG
    assert edit.data[0].seed is None and edit.data[0].content() == PNG
    assert [s.path for s in api.requests] == ["/v1/images/generations", "/v1/images/edits", "/v1/images/generations"]
    assert api.requests[1].json == {"model": "adapter-1", "prompt": "p", "num_inference_steps": 20,
                                    "response_format": "raw",
                                    "image": [{"image": "https://example.com/a.png"}, {"image": PNG_URI}]}
    # Like the official SDK, whose container operations declare no security: no token goes to a container.
    assert all("authorization" not in s.headers for s in api.requests)


# ===========================================================================
# 3. asyncio
# ===========================================================================


class Ticker:
    """A coroutine that ticks every 5 ms and records the largest gap: a blocked loop shows up here."""

    def __init__(self) -> None:
        self.max_gap = 0.0
        self.ticks = 0
        self._stop = False

    async def run(self) -> None:
        last = time.perf_counter()
        while not self._stop:
            await asyncio.sleep(0.005)
            now = time.perf_counter()
            self.max_gap = max(self.max_gap, now - last)
            self.ticks += 1
            last = now

    def stop(self) -> None:
        self._stop = True


async def wait_for(condition: Callable[[], bool], limit: float = 10.0) -> None:
    deadline = time.monotonic() + limit
    while not condition():
        assert time.monotonic() < deadline, "condition not met in time"
        await asyncio.sleep(0.005)


def test_async_client_runs_concurrent_calls_without_blocking_the_loop(api: FakeFriendli) -> None:
    latency, calls = 0.3, 20
    add_latency(api, latency)
    # The first answers are 503s: their retry sleeps (real ones) must not block the loop either.
    api.queue(*[Reply(503, {"detail": "busy"}, headers={"retry-after-ms": "100"}, delay=latency)] * 4)

    async def scenario() -> List[fi.ImageGenerationResult]:
        ticker = Ticker()
        tick_task = asyncio.ensure_future(ticker.run())
        async with fi.AsyncClient(TOKEN, base_url=api.url) as aclient:
            results = await asyncio.gather(
                *[aclient.generate(model="ep", prompt=f"p{i}", seed=i, response_format="png") for i in range(calls)]
            )
        ticker.stop()
        await tick_task
        assert ticker.ticks > 10
        assert ticker.max_gap < 1.0, f"the event loop was blocked for {ticker.max_gap:.2f} s"
        return results

    started = time.perf_counter()
    results = asyncio.run(scenario())
    elapsed = time.perf_counter() - started
    assert [r.data[0].seed for r in results] == list(range(calls))
    assert all(r.data[0].content() == PNG for r in results)
    assert len(api.requests) == calls + 4
    serial = (calls + 4) * latency  # 7.2 s if the calls ran one after another
    assert elapsed < serial - 2.0, f"{calls} calls took {elapsed:.2f} s: they did not overlap"


def test_async_client_uses_run_in_executor_without_to_thread(
    api: FakeFriendli, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The Python 3.8 path (no asyncio.to_thread), and a caller-supplied executor."""
    monkeypatch.delattr(asyncio, "to_thread", raising=False)
    threads: List[str] = []

    def token() -> str:
        threads.append(threading.current_thread().name)
        return TOKEN

    async def scenario(executor: Optional[concurrent.futures.Executor]) -> List[fi.ImageGenerationResult]:
        aclient = fi.AsyncClient(token, base_url=api.url, executor=executor)
        return await asyncio.gather(*[aclient.edit(model="ep", prompt="p", image=PNG, seed=i) for i in range(5)])

    assert [r.data[0].seed for r in asyncio.run(scenario(None))] == list(range(5))
    assert len(threads) == 5 and threading.main_thread().name not in threads
    with concurrent.futures.ThreadPoolExecutor(3, thread_name_prefix="beyond-pool") as pool:
        assert len(asyncio.run(scenario(pool))) == 5
    assert len(threads) == 10 and all(name.startswith("beyond-pool") for name in threads[5:])


def collect_loop_trouble(loop_errors: List[Dict[str, Any]]) -> None:
    asyncio.get_running_loop().set_exception_handler(lambda loop, context: loop_errors.append(context))


@pytest.mark.parametrize("own_executor", [False, True])
def test_cancelling_an_awaiting_task_abandons_the_call_cleanly(
    api: FakeFriendli, caplog: pytest.LogCaptureFixture, own_executor: bool
) -> None:
    api.default = lambda seen: Reply(503, {"detail": "busy"}, headers={"retry-after-ms": "100"})  # type: ignore
    loop_errors: List[Dict[str, Any]] = []
    pool = concurrent.futures.ThreadPoolExecutor(1) if own_executor else None

    async def scenario() -> int:
        collect_loop_trouble(loop_errors)
        aclient = fi.AsyncClient(TOKEN, base_url=api.url, executor=pool)
        # total_timeout bounds the damage if cancellation did not stop the worker.
        task = asyncio.ensure_future(aclient.generate(model="ep", prompt="p", total_timeout=20))
        await wait_for(lambda: len(api.requests) >= 3)  # it is retrying: 503, sleep 0.1 s, 503, ...
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        at_cancel = len(api.requests)
        await asyncio.sleep(0.8)  # eight retry intervals
        return at_cancel

    caplog.set_level(logging.WARNING)
    started = time.perf_counter()
    at_cancel = asyncio.run(scenario())
    took = time.perf_counter() - started
    gc.collect()
    assert len(api.requests) <= at_cancel + 1, "the worker kept retrying after the task was cancelled"
    assert took < 8.0  # asyncio.run waits for the default executor's threads (3.9+): they must have ended
    if pool is not None:
        assert pool.submit(lambda: "free").result(timeout=5) == "free"  # the worker thread is free again
        pool.shutdown()
    assert loop_errors == []
    assert [r for r in caplog.records if r.name in ("asyncio", "concurrent.futures") or r.levelno >= logging.ERROR] == []
    assert "never retrieved" not in caplog.text


def test_a_call_cancelled_before_a_worker_picks_it_up_never_runs(api: FakeFriendli) -> None:
    pool = concurrent.futures.ThreadPoolExecutor(1)
    release = threading.Event()
    pool.submit(release.wait, 10)  # the only worker is busy

    async def scenario() -> None:
        aclient = fi.AsyncClient(TOKEN, base_url=api.url, executor=pool)
        task = asyncio.ensure_future(aclient.generate(model="ep", prompt="p"))
        await asyncio.sleep(0.05)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task

    asyncio.run(scenario())
    release.set()
    pool.shutdown(wait=True)
    assert api.requests == []


def test_async_errors_keep_their_types_and_arguments_are_checked(api: FakeFriendli) -> None:
    async def scenario() -> None:
        aclient = fi.AsyncClient(TOKEN, base_url=api.url, retries=fi.RetryConfig("none"))
        with pytest.raises(fi.FriendliValidationError, match="prompt"):
            await aclient.generate(model="ep", prompt=" ")
        with pytest.raises(TypeError, match="prompt"):
            await aclient.generate(model="ep")
        with pytest.raises(TypeError, match="bogus"):
            await aclient.edit(model="ep", prompt="p", image=PNG, bogus=1)
        api.queue(Reply(404, {"detail": "no such endpoint"}))
        with pytest.raises(fi.NotFoundError, match="no such endpoint"):
            await aclient.edit(model="ep", prompt="p", image=PNG)

    asyncio.run(scenario())
    assert len(api.requests) == 1


def test_async_client_talks_to_a_container_without_a_model(api: FakeFriendli) -> None:
    async def scenario() -> fi.ImageGenerationResult:
        async with fi.AsyncClient(base_url=api.url, target="container") as aclient:
            return await aclient.edit(prompt="p", image=PNG, seed=2)

    res = asyncio.run(scenario())
    assert res.data[0].seed == 2 and res.data[0].content() == JPEG
    assert api.requests[0].path == "/v1/images/edits" and "model" not in api.requests[0].json


def test_async_friendli_mirrors_the_sdks_async_facade(api: FakeFriendli) -> None:
    async def scenario() -> List[fi.ImageGenerationResult]:
        async with fi.AsyncFriendli(token=TOKEN, server_url=api.url) as friendli:
            gen = await friendli.dedicated.image.generate(model="ep", prompt="p", num_inference_steps=10,
                                                          response_format="png")
            edit = await friendli.dedicated.image.edit(model="ep", prompt="p", image=PNG, response_format="jpeg")
            container = await friendli.container.image.generate(server_url=api.url, prompt="p", seed=8)
            api.queue(Reply(503, {"detail": "busy"}))
            with pytest.raises(fi.InternalServerError) as info:
                await friendli.dedicated.image.generate(model="ep", prompt="p", retries=None)
            assert info.value.attempts == 1
            return [gen, edit, container]

    gen, edit, container = asyncio.run(scenario())
    assert gen.data[0].content() == PNG and edit.data[0].content() == JPEG and container.data[0].seed == 8
    assert [s.path for s in api.requests] == ["/dedicated/v1/images/generations", "/dedicated/v1/images/edits",
                                              "/v1/images/generations", "/dedicated/v1/images/generations"]
    assert api.requests[0].json == {"model": "ep", "prompt": "p", "num_inference_steps": 10, "response_format": "png"}
    assert "authorization" not in api.requests[2].headers


# ===========================================================================
# 4. Conveniences
# ===========================================================================


def test_save_all_names_and_writes_every_image(api: FakeFriendli, client: fi.Client, tmp_path: pathlib.Path) -> None:
    api.images_per_request = 3
    res = client.generate(model="ep", prompt="p", response_format="png")
    folder = tmp_path / "out" / "nested"  # created when missing
    paths = res.save_all(folder)
    assert paths == [folder / "image-0.png", folder / "image-1.png", folder / "image-2.png"]
    assert all(p.read_bytes() == PNG for p in paths)
    jpegs = client.generate(model="ep", prompt="p", response_format="jpeg").save_all(str(folder), prefix="car")
    assert [p.name for p in jpegs] == ["car-0.jpg", "car-1.jpg", "car-2.jpg"]
    assert sorted(p.name for p in folder.iterdir()) == sorted(p.name for p in paths + jpegs)  # no temp files left


def test_save_all_downloads_url_items(api: FakeFriendli, client: fi.Client, tmp_path: pathlib.Path) -> None:
    api.images_per_request = 2
    paths = client.generate(model="ep", prompt="p").save_all(tmp_path)
    assert [p.name for p in paths] == ["image-0.png", "image-1.png"]
    downloads = [s for s in api.requests if s.method == "GET"]
    assert len(downloads) == 2 and all("authorization" not in s.headers for s in downloads)


@pytest.mark.parametrize("prefix", ["", "../escape", "a/b", "a\\b"])
def test_save_all_refuses_a_prefix_with_a_directory_part(client: fi.Client, tmp_path: pathlib.Path, prefix: str) -> None:
    res = fi.ImageGenerationResult([fi.GeneratedImage(seed=1, response_format="png", b64_json=PNG_B64)])
    with pytest.raises(fi.FriendliValidationError, match="prefix"):
        res.save_all(tmp_path / "d", prefix=prefix)
    assert not (tmp_path / "escape-0.png").exists()


def lambda_handler(event: Dict[str, Any], client: fi.Client) -> Dict[str, Any]:
    """What an AWS Lambda behind API Gateway returns: images embedded as data: URIs in a JSON body."""
    res = client.generate(model="ep", prompt=event["prompt"], response_format=event.get("format"))
    return {
        "statusCode": 200,
        "headers": {"Content-Type": "application/json"},
        "body": json.dumps({"images": [image.data_uri() for image in res.data], "request_id": res.request_id}),
    }


@pytest.mark.parametrize("fmt, uri", [("png", PNG_URI), ("jpeg", JPEG_URI), (None, PNG_URI)])
def test_data_uri_for_b64_and_url_items_in_a_lambda_response(
    api: FakeFriendli, client: fi.Client, fmt: Optional[str], uri: str
) -> None:
    response = lambda_handler({"prompt": "a red fox", "format": fmt}, client)  # None: the server answers a url
    body = json.loads(response["body"])
    assert body["images"] == [uri]
    header, _, payload = body["images"][0].partition(",")
    assert base64.b64decode(payload) == (JPEG if fmt == "jpeg" else PNG)
    if fmt is None:
        assert api.requests[-1].method == "GET" and "authorization" not in api.requests[-1].headers


def test_data_uri_of_base64_with_line_breaks_and_of_unknown_bytes() -> None:
    wrapped = base64.encodebytes(make_png(extra=300)).decode()  # MIME style, a newline every 76 characters
    assert "\n" in wrapped
    assert fi.GeneratedImage(1, "png", b64_json=wrapped).data_uri() == (
        "data:image/png;base64," + base64.b64encode(make_png(extra=300)).decode()
    )
    raw = base64.b64encode(b"\x00\x01\x02 raw pixels").decode()
    assert fi.GeneratedImage(None, "raw", b64_json=raw).data_uri() == "data:application/octet-stream;base64," + raw
    with pytest.raises(fi.InvalidResponseError):
        fi.GeneratedImage(1, "png", b64_json="!!not base64!!").data_uri()


def test_content_of_a_url_item_follows_a_redirect_to_another_server_without_auth(
    api: FakeFriendli, client: fi.Client
) -> None:
    other = FakeFriendli()
    try:
        other.files["/cdn/moved.png"] = make_png(3, 3)
        item = client.generate(model="ep", prompt="p").data[0]
        api.queue(Reply(302, body=b"", headers={"Location": other.url + "/cdn/moved.png?sig=xyz"}))
        assert item.content() == make_png(3, 3)
        first, moved = api.requests[-1], other.requests[0]
        assert first.method == "GET" and first.path == "/files/image.png?sig=abc"
        assert moved.method == "GET" and moved.path == "/cdn/moved.png?sig=xyz"
        assert "authorization" not in first.headers and "authorization" not in moved.headers
    finally:
        other.close()


def test_content_of_a_url_item_retries_with_the_clients_policy(
    api: FakeFriendli, client: fi.Client, fake_sleep: FakeSleep
) -> None:
    item = client.generate(model="ep", prompt="p").data[0]
    api.queue(Reply(503, {"detail": "busy"}, headers={"retry-after-ms": "750"}), Reply(502, {"detail": "gateway"}))
    assert item.content() == PNG
    assert [s.method for s in api.requests] == ["POST", "GET", "GET", "GET"]
    assert fake_sleep.calls[0] == 0.75 and len(fake_sleep.calls) == 2

    no_retries = fi.Client(TOKEN, base_url=api.url, retries=fi.RetryConfig("none"), sleep=fake_sleep)
    once = no_retries.generate(model="ep", prompt="p").data[0]
    api.queue(Reply(503, {"detail": "busy"}))
    with pytest.raises(fi.InternalServerError) as info:
        once.content()
    assert info.value.attempts == 1 and len(fake_sleep.calls) == 2


def stream_without_length(size: int) -> Callable[[Handler, Seen], None]:
    """Answer 200 with ``size`` bytes and no Content-Length (the end is the connection closing)."""

    def respond(handler: Handler, seen: Seen) -> None:
        handler.wfile.write(b"HTTP/1.1 200 OK\r\nContent-Type: image/png\r\nConnection: close\r\n\r\n")
        try:
            handler.wfile.write(PNG[:16] + bytes(size - 16))
        except OSError:
            pass  # the client stopped reading at its cap
        handler.close_connection = True

    return respond


def test_content_of_a_url_item_applies_the_size_cap(api: FakeFriendli, fake_sleep: FakeSleep) -> None:
    capped = fi.Client(TOKEN, base_url=api.url, max_response_bytes=4096, sleep=fake_sleep, clock=fake_sleep.clock)
    api.files["/files/image.png"] = make_png(extra=8192)
    item = capped.generate(model="ep", prompt="p").data[0]
    with pytest.raises(fi.InvalidResponseError, match="max_response_bytes"):
        item.content()
    api.queue(stream_without_length(64 * 1024))
    with pytest.raises(fi.InvalidResponseError, match="max_response_bytes"):
        item.content()
    assert len([s for s in api.requests if s.method == "GET"]) == 2  # a too-large answer is not retried
    api.files["/files/image.png"] = make_png(extra=1000)
    assert item.content() == make_png(extra=1000)


def test_content_of_a_url_item_uses_the_clients_timeout(api: FakeFriendli) -> None:
    quick = fi.Client(TOKEN, base_url=api.url, timeout=0.2, retries=fi.RetryConfig("none"))
    item = quick.generate(model="ep", prompt="p").data[0]
    api.queue(Reply(200, body=PNG, content_type="image/png", delay=1.5))
    started = time.monotonic()
    with pytest.raises(fi.APITimeoutError):
        item.content()
    assert time.monotonic() - started < 0.2 + 1.0


def test_results_survive_asdict_copy_and_pickle(api: FakeFriendli, fake_sleep: FakeSleep) -> None:
    capped = fi.Client(TOKEN, base_url=api.url, max_response_bytes=4096, retries=fi.RetryConfig("none"),
                       sleep=fake_sleep, clock=fake_sleep.clock)
    res = capped.generate(model="ep", prompt="p")
    assert dataclasses.asdict(res) == {
        "data": [{"seed": 1234, "response_format": "url", "url": f"{api.url}/files/image.png?sig=abc",
                  "b64_json": None}],
        "request_id": "req-1",
    }
    # Make the client's transport hold an SSL context (an https download that cannot connect).
    api.queue(Reply(200, {"data": [{"seed": 1, "response_format": "url",
                                    "url": f"https://127.0.0.1:{closed_port()}/x.png"}]}))
    https_item = capped.generate(model="ep", prompt="p").data[0]
    with pytest.raises(fi.APIConnectionError):
        https_item.content()
    for clone in (copy.copy(res), copy.deepcopy(res), pickle.loads(pickle.dumps(res))):
        assert clone == res and clone is not res
    # A copy downloads through the same client (same size cap); an unpickled one with the defaults.
    api.files["/files/image.png"] = make_png(extra=8192)
    with pytest.raises(fi.InvalidResponseError, match="max_response_bytes"):
        copy.deepcopy(res).data[0].content()
    assert pickle.loads(pickle.dumps(res)).data[0].content() == make_png(extra=8192)


# ===========================================================================
# The README's examples for issue 5 run against the fake server
# ===========================================================================


def readme_block(name: str) -> str:
    """The python block after ``<!-- test: NAME -->`` in README.md (skipped until that section is merged)."""
    text = (pathlib.Path(__file__).parent / "README.md").read_text(encoding="utf-8")
    if f"<!-- test: {name} -->" not in text:
        pytest.skip(f"README.md has no {name!r} example yet")
    return readme_example(name)


@pytest.fixture
def readme_env(api: FakeFriendli, monkeypatch: pytest.MonkeyPatch, tmp_path: pathlib.Path) -> pathlib.Path:
    """The environment the README's examples assume, with the fake server as the API; cwd = tmp_path."""
    monkeypatch.setenv("FRIENDLI_TOKEN", TOKEN)
    monkeypatch.setenv("FRIENDLI_BASE_URL", api.url)
    monkeypatch.chdir(tmp_path)
    return tmp_path


def test_readme_edit_example_runs(api: FakeFriendli, readme_env: pathlib.Path) -> None:
    code = readme_block("edit-example")
    (readme_env / "street.jpg").write_bytes(JPEG)
    (readme_env / "sofa.png").write_bytes(PNG)
    exec(compile(code, "README.md", "exec"), {})
    assert (readme_env / "edited" / "image-0.png").read_bytes() == PNG
    first, second = api.requests[0], api.requests[1]
    assert first.path == second.path == "/dedicated/v1/images/edits"
    assert first.json["image"] == {"image": JPEG_URI} and first.json["response_format"] == "png"
    assert second.json["image"] == [{"image": "https://example.com/cat.png"}, {"image": PNG_URI}]
    assert second.json["model"] == "my-endpoint-id:my-adapter" and second.json["seed"] == 7


def test_readme_container_example_runs(api: FakeFriendli, readme_env: pathlib.Path) -> None:
    code = readme_block("container-example")
    assert "http://localhost:8000" in code
    exec(compile(code.replace("http://localhost:8000", api.url), "README.md", "exec"), {})
    assert (readme_env / "lighthouse.jpg").read_bytes() == JPEG
    assert (readme_env / "winter.png").read_bytes() == PNG
    assert [s.path for s in api.requests] == ["/v1/images/generations", "/v1/images/edits"]
    assert api.requests[1].json == {"model": "winter-lora", "prompt": "Make it a winter night",
                                    "num_inference_steps": 20, "response_format": "raw",
                                    "image": {"image": JPEG_URI}}
    assert all("authorization" not in s.headers for s in api.requests)  # FRIENDLI_TOKEN is set, and unused


def test_readme_asyncio_example_runs(api: FakeFriendli, readme_env: pathlib.Path) -> None:
    exec(compile(readme_block("asyncio-example"), "README.md", "exec"), {})
    for name in ("a-red-fox.png", "a-blue-whale.png", "a-green-parrot.png"):
        assert (readme_env / name).read_bytes() == PNG
    assert sorted(s.path for s in api.requests) == ["/dedicated/v1/images/edits"] + [
        "/dedicated/v1/images/generations"] * 3
    assert api.requests[-1].json["image"] == {"image": PNG_URI}


def test_readme_data_uri_example_runs(api: FakeFriendli, readme_env: pathlib.Path) -> None:
    module: Dict[str, Any] = {}
    exec(compile(readme_block("data-uri-example"), "README.md", "exec"), module)
    answer = module["handler"]({"prompt": "a red fox"}, None)
    assert answer["statusCode"] == 200
    assert json.loads(answer["body"]) == {"images": [PNG_URI]}
    assert api.requests[-1].method == "GET" and "authorization" not in api.requests[-1].headers


if __name__ == "__main__":
    sys.exit(fuzz_main())


# ===========================================================================
# Found in review: inputs HTTP cannot carry, retry settings, header case, echoed tokens.
# ===========================================================================


@pytest.mark.parametrize(
    "make",
    [
        lambda url: fi.Client(TOKEN, base_url=url, team="\ud300"),
        lambda url: fi.Client(TOKEN, base_url=url, user_agent="ua\r\nX-Evil: 1"),
        lambda url: fi.Client(TOKEN, base_url=url + "/a path"),
        lambda url: fi.Client(TOKEN, base_url=url + "/caf\u00e9"),
    ],
)
def test_values_http_cannot_carry_are_refused_when_the_client_is_built(api: FakeFriendli, make: Any) -> None:
    with pytest.raises(fi.FriendliValidationError):
        make(api.url)
    assert api.requests == []


@pytest.mark.parametrize(
    "token, kwargs",
    [
        ("\ufeff" + TOKEN, {}),  # a byte-order mark from an editor
        (TOKEN + "\u00e9", {}),
        (TOKEN, {"x_friendli_team": "\ud300"}),
        (TOKEN, {"http_headers": {"X-Note": "\u2713"}}),
        (TOKEN, {"http_headers": {"X-Note": "a\x00b"}}),
    ],
)
def test_values_http_cannot_carry_fail_before_traffic_and_are_not_retried(
    api: FakeFriendli, fake_sleep: FakeSleep, token: str, kwargs: Dict[str, Any]
) -> None:
    client = fi.Client(token, base_url=api.url, sleep=fake_sleep, clock=fake_sleep.clock)
    with pytest.raises(fi.FriendliValidationError) as info:
        client.generate(model="ep", prompt="p", **kwargs)
    assert TOKEN not in str(info.value) and info.value.attempts == 1
    assert api.requests == [] and fake_sleep.calls == []


def test_cli_token_file_with_a_byte_order_mark(api: FakeFriendli, tmp_path: pathlib.Path,
                                                capsys: pytest.CaptureFixture[str],
                                                monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    (tmp_path / "token").write_text("\ufeff" + TOKEN + "\r\n", encoding="utf-8")
    code, _, _ = run_cli(api, capsys, "--model", "ep", "a fox", "--token-file", "token", "-o", "fox.png")
    assert code == 0 and posted(api)[0].headers["authorization"] == f"Bearer {TOKEN}"


def test_backoff_never_overflows() -> None:
    for exponent in (1.5, 2):
        backoff = fi.BackoffStrategy(500, 1000, exponent, 3600000, jitter_ms=0)
        assert backoff.delay(5000) == 1.0 and backoff.delay(0) == 0.5


@pytest.mark.parametrize(
    "make",
    [
        lambda: fi.RetryConfig("backoff", status_codes_override=503),  # type: ignore[arg-type]
        lambda: fi.RetryConfig("backoff", status_codes_override="5XX"),
        lambda: fi.RetryConfig("backoff", status_codes_override=[True]),
        lambda: fi.RetryConfig("backoff", status_codes_override=["5YY"]),
        lambda: fi.RetryConfig("backoff", backoff={"initial_interval": 1}),  # type: ignore[arg-type]
        lambda: fi.RetryConfig("backoff", retry_connection_errors="yes"),  # type: ignore[arg-type]
        lambda: fi.BackoffStrategy(500, 1000, 1.5, 3600000, jitter_ms=-500),
        lambda: fi.BackoffStrategy(500, 1000, 1.5, 0),
        lambda: fi.BackoffStrategy(-1, 1000, 1.5, 1000),
    ],
)
def test_retry_settings_are_validated_when_built(make: Callable[[], Any]) -> None:
    with pytest.raises(fi.FriendliValidationError):
        make()


def test_status_patterns_match_digit_by_digit() -> None:
    config = fi.RetryConfig("backoff", status_codes_override=["50X", 429, "4xx"])
    assert [config.retries_status(s) for s in (500, 503, 510, 429, 404, 302)] == [True, True, False, True, True,
                                                                                   False]


def test_an_authorization_header_of_any_case_replaces_the_token(api: FakeFriendli, client: fi.Client) -> None:
    api.queue(Reply(200, {"data": [{"url": api.url + "/files/image.png", "seed": 1}]}))
    client.generate(model="ep", prompt="p", http_headers={"authorization": "Basic b3RoZXI="})
    assert api.requests[0].headers["authorization"] == "Basic b3RoZXI="


def test_a_token_echoed_in_a_broken_status_line_is_redacted(api: FakeFriendli, client: fi.Client) -> None:
    def echo_status_line(handler: Handler, seen: Seen) -> None:
        handler.wfile.write(f"Authorization: {seen.headers['authorization']}\r\n\r\n".encode())
        handler.wfile.flush()

    api.queue(echo_status_line)
    with pytest.raises(fi.APIConnectionError) as info:
        client.generate(model="ep", prompt="p", retries=fi.RetryConfig("none"))
    assert TOKEN not in str(info.value) and "[REDACTED]" in str(info.value)


@pytest.mark.parametrize("cap", [0, -1, 1.5, "1000", True])
def test_max_response_bytes_must_be_a_positive_int(cap: Any) -> None:
    with pytest.raises(fi.FriendliValidationError, match="max_response_bytes"):
        fi.Client(TOKEN, max_response_bytes=cap)
