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
