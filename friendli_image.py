"""friendli_image: a one-file, standard-library-only client for Friendli image APIs.

Generate (and edit) images on Friendli Dedicated Endpoints, or on a Friendli
Container you run yourself, from any CPython 3.8+ with nothing but this file::

    import friendli_image as fi

    client = fi.Client()                        # token from FRIENDLI_TOKEN
    res = client.generate(model="my-endpoint-id", prompt="a red fox", response_format="png")
    res.data[0].save("fox.png")

The module reads top to bottom: public constants, errors, data types, the retry
policy, the transport (the one request path), the client, the facade that mirrors
the official ``friendli`` SDK, and the command line.  Importing it does nothing
but define names: no environment reads, no SSL context, no network.
"""

from __future__ import annotations

import base64
import binascii
import contextlib
import dataclasses
import email.message
import email.utils
import functools
import http.client
import io
import ipaddress
import json
import math
import os
import pathlib
import random
import re
import socket
import ssl
import stat
import sys
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
import zlib
from types import SimpleNamespace
from typing import Any, Callable, Dict, List, Mapping, Optional, Sequence, Tuple, Type, TypeVar, Union

__version__ = "1.0.0"

__all__ = [
    "APIConnectionError", "APIStatusError", "APITimeoutError", "AsyncClient", "AsyncFriendli",
    "AuthenticationError", "BackoffStrategy", "BadRequestError", "CONTAINER_RESPONSE_FORMATS", "Client",
    "DEFAULT_BASE_URL", "DEFAULT_CONTAINER_BASE_URL", "DEFAULT_MAX_RESPONSE_BYTES", "DEFAULT_RETRY_CONFIG",
    "DEFAULT_TIMEOUT", "DEFAULT_TOTAL_TIMEOUT", "FriendliError", "FriendliValidationError", "GeneratedImage",
    "ImageEditRequest", "ImageGenerationRequest", "ImageGenerationResult", "ImageInput", "ImageSaveError",
    "InternalServerError", "InvalidResponseError", "MAX_INPUT_IMAGE_BYTES", "MAX_RETRY_AFTER",
    "NotFoundError", "PermissionDeniedError", "RESPONSE_FORMATS", "RETRYABLE_STATUS_CODES", "RateLimitError",
    "RetryConfig", "SDKError", "StrPath", "SyncFriendli", "TARGETS", "UnprocessableEntityError", "generate",
    "logger", "main",
]

# Public constants =========================================================

DEFAULT_BASE_URL = "https://api.friendli.ai"
"""Where Dedicated Endpoints live; ``FRIENDLI_BASE_URL`` or ``base_url=`` override it."""

DEFAULT_CONTAINER_BASE_URL = "http://localhost:8000"
"""Where a Friendli Container listens by default (the published spec's server)."""

DEFAULT_TIMEOUT = 60.0
"""Seconds one attempt may take, from connecting to the last byte of the response."""

DEFAULT_TOTAL_TIMEOUT = 300.0
"""Seconds a whole call may take, retries and sleeps included: room for slow generations and a few
retries, well inside AWS Lambda's hard 15-minute limit, so no default call waits silently for long."""

MAX_RETRY_AFTER = 60.0
"""Longest ``Retry-After`` the client waits for; a longer one ends the call at once with that
answer's error (which carries ``retry_after``), as well-known clients do."""

DEFAULT_MAX_RESPONSE_BYTES = 256 * 1024 * 1024
"""Largest response body accepted; a larger one raises :class:`InvalidResponseError`."""

MAX_INPUT_IMAGE_BYTES = 50 * 1024 * 1024
"""Largest input image the API accepts (documented limit); larger inputs are refused locally."""

RESPONSE_FORMATS = ("url", "raw", "png", "jpeg", "jpg")
"""``response_format`` values a Dedicated Endpoint accepts."""

CONTAINER_RESPONSE_FORMATS = ("raw", "jpeg")
"""``response_format`` values a Friendli Container accepts."""

RETRYABLE_STATUS_CODES = (429, 500, 502, 503, 504)
"""Statuses retried by default (the published spec's ``x-speakeasy-retries``)."""

TARGETS = ("dedicated", "container")
"""Kinds of deployment a :class:`Client` can talk to."""


def __getattr__(name: str) -> Any:
    """``logger``: the module's :mod:`logging` logger, ``"friendli_image"`` (retries at INFO; never a token or
    a URL's query).  Made on first use: importing logging costs a cold start about 3 ms (see README)."""
    if name == "logger":
        import logging

        return logging.getLogger("friendli_image")
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


_API_PATHS = {"dedicated": "/dedicated/v1/images/", "container": "/v1/images/"}  # + "generations" or "edits"
_ERROR_BODY_LIMIT = 64 * 1024  # bytes of an error body kept for messages and ``.body``
_MAX_REDIRECTS = 10  # image downloads only; API calls never follow redirects

# Errors ===================================================================


class FriendliError(Exception):
    """Base class of every error this module raises; ``attempts`` is how many HTTP attempts the call
    made (0 when none was: a validation error, say; "(after N attempts)" ends the message when over 1),
    ``request_id`` the server's ``X-Request-Id``."""

    def __init__(self, message: str, *, attempts: int = 0, request_id: Optional[str] = None) -> None:
        super().__init__(f"{message} (after {attempts} attempts)" if attempts > 1 else message)
        self.attempts = attempts
        self.request_id = request_id


class FriendliValidationError(FriendliError, ValueError):
    """An argument is invalid; raised before any network traffic."""


class APIStatusError(FriendliError):
    """The server answered with a status that is not success: ``status_code``; ``message``, the server's
    own text (``detail``/``message``/``error`` of a JSON body, else the HTTP reason); ``body`` (at most
    64 KiB); ``headers``; ``request_id``; ``retry_after``, the seconds it asked to wait (None if unsaid)."""

    def __init__(self, message: str, *, status_code: int = 0, body: str = "",
                 headers: Optional[email.message.Message] = None, server_message: str = "",
                 retry_after: Optional[float] = None, attempts: int = 1, request_id: Optional[str] = None) -> None:
        super().__init__(message, attempts=attempts, request_id=request_id)
        self.status_code = status_code
        self.body = body
        self.headers = headers if headers is not None else email.message.Message()
        self.message = server_message or message
        self.retry_after = retry_after


SDKError = APIStatusError
"""The official SDK's name for :class:`APIStatusError`."""


class BadRequestError(APIStatusError):
    """400 Bad Request."""


class AuthenticationError(APIStatusError):
    """401 Unauthorized: the token is missing, wrong or expired."""


class PermissionDeniedError(APIStatusError):
    """403 Forbidden: the token may not use this endpoint or team (or an image URL expired)."""


class NotFoundError(APIStatusError):
    """404 Not Found: usually a wrong endpoint id or adapter route."""


class UnprocessableEntityError(APIStatusError):
    """422 Unprocessable Entity; ``errors`` is the server's parsed ``detail`` list."""

    @property
    def errors(self) -> List[Any]:
        """The ``detail`` list of the 422 body (``[]`` when there is none)."""
        try:
            detail = json.loads(self.body).get("detail")
        except (ValueError, TypeError, AttributeError, RecursionError):
            return []
        return detail if isinstance(detail, list) else []


class RateLimitError(APIStatusError):
    """429 Too Many Requests."""


class InternalServerError(APIStatusError):
    """Any 5xx status."""


class APIConnectionError(FriendliError):
    """No complete answer arrived (DNS, refused, reset, TLS, a proxy, a body cut short); ``sent`` is True
    when the whole request had gone out, so the server may have acted on it (and billed a generation)."""

    def __init__(self, message: str, *, sent: bool = False, attempts: int = 1) -> None:
        super().__init__(message, attempts=attempts)
        self.sent = sent


class APITimeoutError(APIConnectionError):
    """An attempt, or the whole call's ``total_timeout``, ran out of time."""


class InvalidResponseError(FriendliError):
    """A 2xx answer that breaks the API's schema or is too large, or a field unusable where it is used."""

    def __init__(self, message: str, *, status_code: Optional[int] = None, attempts: int = 0,
                 request_id: Optional[str] = None) -> None:
        super().__init__(message, attempts=attempts, request_id=request_id)
        self.status_code = status_code


class ImageSaveError(FriendliError, OSError):
    """An image could not be written; also an :class:`OSError` (``errno``, ``filename`` set)."""

    def __init__(self, message: str, errno: Optional[int] = None, filename: Optional[str] = None) -> None:
        super().__init__(message)
        self.errno, self.filename = errno, filename

    def __str__(self) -> str:  # the message, not OSError's "[Errno N] ..." form
        return str(self.args[0])

    def __reduce__(self) -> Any:
        return type(self), (self.args[0], self.errno, self.filename), self.__dict__


_STATUS_ERRORS: Dict[int, Type[APIStatusError]] = {400: BadRequestError, 401: AuthenticationError,
    403: PermissionDeniedError, 404: NotFoundError, 422: UnprocessableEntityError, 429: RateLimitError}


# Data types ===============================================================

if sys.version_info >= (3, 9):
    StrPath = Union[str, os.PathLike[str]]
    """A file path: a string or an ``os.PathLike``."""
else:  # os.PathLike cannot be subscripted at run time before 3.9 (typing.get_type_hints evaluates it)
    StrPath = Union[str, os.PathLike]

ImageInput = Union[str, bytes, bytearray, memoryview, StrPath, Mapping[str, Any]]
"""An input image: a URL, a ``data:`` URI, base64 text, bytes, a file path, or ``{"image": ...}``."""

_IMAGE_SIGNATURES = ((b"\x89PNG\r\n\x1a\n", "png"), (b"\xff\xd8\xff", "jpeg"), (b"GIF87a", "gif"), (b"GIF89a", "gif"),
                     (b"II*\x00", "tiff"), (b"MM\x00*", "tiff"), (b"BM", "bmp"))
_SUFFIXES = {"png": ".png", "jpeg": ".jpg", "gif": ".gif", "webp": ".webp", "tiff": ".tiff", "bmp": ".bmp"}


def _image_type(data: bytes) -> Optional[str]:
    for signature, kind in _IMAGE_SIGNATURES:
        if data.startswith(signature):
            return kind
    return "webp" if data[:4] == b"RIFF" and data[8:12] == b"WEBP" else None


def _short(value: Any) -> str:
    try:
        text = repr(value)
    except RecursionError:  # nested too deeply to show
        text = f"a deeply nested {type(value).__name__}"
    return text if len(text) <= 60 else text[:59] + "\u2026"


def _check_text(value: Any, param: str, *, identifier: bool = False) -> str:
    """A non-empty string UTF-8 can encode; an ``identifier`` is printable and has no spaces."""
    if not isinstance(value, str) or not value.strip():
        raise FriendliValidationError(f"{param} must be a non-empty string, got {_short(value)}")
    if not value.isascii() and any("\ud800" <= char <= "\udfff" for char in value):  # a lone surrogate
        raise FriendliValidationError(f"{param} is not valid Unicode (UTF-8 cannot encode it): {_short(value)}")
    if identifier and (" " in value or not value.isprintable()):  # other whitespace is not printable
        raise FriendliValidationError(f"{param} must not contain whitespace or control characters, got {_short(value)}")
    return value


def _check_header_value(value: Any, param: str) -> str:
    if not isinstance(value, str) or re.search(r"[^\t\x20-\x7e\x80-\xff]", value):
        raise FriendliValidationError(f"{param} is not a valid HTTP header value (latin-1 text, no line breaks)")
    return value


def _check_number(value: Any, param: str, low: Optional[float] = None, high: Optional[float] = None, *,
                  whole: bool = False) -> float:
    """A finite number (an int when ``whole``; never a bool) within ``[low, high]``, as a float."""
    kinds = (int,) if whole else (int, float)
    if isinstance(value, bool) or not isinstance(value, kinds) or not abs(value) <= sys.float_info.max:  # NaN too
        kind = "an int that a float can hold" if whole else "a finite number"
        raise FriendliValidationError(f"{param} must be {kind}, got {_short(value)}")
    number = float(value)
    if (low is not None and number < low) or (high is not None and number > high):
        bounds = f">= {low:g}" if high is None else f"<= {high:g}" if low is None else f"within [{low:g}, {high:g}]"
        raise FriendliValidationError(f"{param} must be {bounds}, got {_short(value)}")
    return number


def _check_timeout(value: Any, param: str) -> float:
    if _check_number(value, param, 0, 1e9) == 0:  # at most about 31 years: sockets and sleeps take no more
        raise FriendliValidationError(f"{param} must be positive, got {value!r}")
    return float(value)


def _decode_base64(text: str) -> bytes:
    """Strictly decode standard base64 (whitespace between groups allowed); b"" when it is not valid or empty."""
    compact = "".join(text.split()) if text.isascii() else ""
    try:
        data = binascii.a2b_base64(compact) if len(compact) % 4 == 0 else b""
    except binascii.Error:
        return b""
    return data if len(data) == len(compact) // 4 * 3 - compact[-2:].count("=") else b""  # a2b skips stray characters


def _check_path(value: Any, param: str) -> pathlib.Path:
    """A file system path given as text or an ``os.PathLike`` of text the file system can encode, without NUL."""
    try:
        name = os.fspath(value) if isinstance(value, (str, os.PathLike)) else None
        encoded = os.fsencode(name) if isinstance(name, str) else b""
    except Exception:  # a lone surrogate (UnicodeError), or an os.PathLike whose __fspath__ fails
        name, encoded = None, b""
    if not isinstance(name, str) or not encoded or b"\0" in encoded:
        raise FriendliValidationError(f"{param} must be a file path (str or os.PathLike), got {_short(value)}")
    return pathlib.Path(name)


def _is_http_url(url: Any) -> bool:
    """Whether ``url`` is an http(s) URL with a host and a valid port, and no whitespace or control character."""
    try:
        parts = urllib.parse.urlsplit(url)
        return parts.scheme in ("http", "https") and bool(parts.hostname) and parts.port != 0 and (
            url.isprintable() and " " not in url)
    except (ValueError, TypeError, AttributeError):  # a port out of range or not a number, brackets unclosed; not text
        return False


def _check_size(size: int, param: str) -> None:
    if size > MAX_INPUT_IMAGE_BYTES:
        raise FriendliValidationError(f"{param}: the image is over the API's limit of 50 MiB ({size} bytes)")


def _bytes_to_data_uri(data: bytes, param: str) -> str:
    _check_size(len(data), param)
    kind = _image_type(data)
    if kind is None:
        raise FriendliValidationError(f"{param}: cannot tell the image type of these bytes (PNG, JPEG, GIF, WebP, "
                                      "TIFF or BMP expected); pass a 'data:image/...;base64,' URI to choose it")
    return f"data:image/{kind};base64," + base64.b64encode(data).decode("ascii")


def _read_image_file(path: StrPath, param: str) -> bytes:
    """Read a regular file of at most 50 MiB: the limit holds for what is read, whatever ``stat`` says."""
    name = str(_check_path(path, param))
    try:
        fd = os.open(name, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0))  # opening a FIFO must not block
        with open(fd, "rb") as file:
            if not stat.S_ISREG(os.fstat(fd).st_mode):
                raise FriendliValidationError(f"{param}: {name!r} is not a regular file")
            return file.read(MAX_INPUT_IMAGE_BYTES + 1)
    except OSError as exc:
        problem = f"{param}: cannot read {name!r}: {exc.strerror or type(exc).__name__}"
    raise FriendliValidationError(problem)


def _encode_image(value: Any, param: str) -> str:
    """One input image as the API takes it: a URL, a data URI or base64 text (files and bytes encoded)."""
    if isinstance(value, Mapping) and "image" in value:
        value = value["image"]
    if isinstance(value, os.PathLike):
        value = _read_image_file(value, param)
    if isinstance(value, (bytes, bytearray, memoryview)):
        return _bytes_to_data_uri(bytes(value), param)
    text = _check_text(value, param)
    if text[:8].lower().startswith(("http://", "https://")):
        if not _is_http_url(_check_text(text, f"{param} (a URL)", identifier=True)):
            raise FriendliValidationError(f"{param} is not a usable URL (a host, a port in 1-65535): "
                                          f"{_short(_redact_url(text))}")
        return text
    is_data_uri = text[:5].lower() == "data:"
    if not is_data_uri and len(text) < 4096 and "\n" not in text and os.path.isfile(text):
        return _bytes_to_data_uri(_read_image_file(text, param), param)
    header, _, encoded = text.partition(",") if is_data_uri else ("", "", text)
    decoded = _decode_base64(encoded) if header.endswith(";base64") or not is_data_uri else b""
    _check_size(len(decoded), param)
    if is_data_uri and not decoded:
        raise FriendliValidationError(f"{param}: not a valid 'data:<type>;base64,<data>' URI: {_short(text)}")
    if not is_data_uri and _image_type(decoded) is None:  # words and mistyped paths are base64 too
        raise FriendliValidationError(f"{param} is not a URL, a data: URI, an existing file, or base64 text of a "
                                      f"PNG/JPEG/GIF/WebP/TIFF/BMP image: {_short(text)}")
    return text


def _image_list(value: Any, param: str) -> List[str]:
    if isinstance(value, (str, bytes, bytearray, Mapping)) or not isinstance(value, Sequence) or not value:
        raise FriendliValidationError(f"{param} must be a non-empty list of images, got {_short(value)}")
    return [_encode_image(image, f"{param}[{i}]") for i, image in enumerate(value)]


@dataclasses.dataclass
class ImageGenerationRequest:
    """The JSON body of an image generation, validated when constructed; input images become the strings
    the API takes.  ``target`` is ``"dedicated"`` (``model`` required: ``ENDPOINT[:ADAPTER]``) or
    ``"container"`` (``model`` an optional adapter route, ``response_format`` ``raw`` or ``jpeg``)."""

    model: Optional[str]
    prompt: str
    num_inference_steps: int = 20
    guidance_scale: Optional[float] = None
    seed: Optional[int] = None
    response_format: Optional[str] = None
    control_images: Optional[Sequence[ImageInput]] = None
    controlnet_weights: Optional[Sequence[float]] = None
    target: str = "dedicated"

    def __post_init__(self) -> None:
        if self.target not in TARGETS:
            raise FriendliValidationError(f"target must be one of {TARGETS}, got {_short(self.target)}")
        if self.target == "dedicated":
            if self.model is None:
                raise FriendliValidationError("model is required: pass model='endpoint-id' or 'endpoint-id:adapter'")
            parts = _check_text(self.model, "model", identifier=True).split(":")
            if len(parts) > 2 or not all(parts):
                raise FriendliValidationError(f"model must be 'endpoint-id' or 'endpoint-id:adapter-route', "
                                              f"got {_short(self.model)}")
        elif self.model is not None:
            _check_text(self.model, "model (adapter route)", identifier=True)
        _check_text(self.prompt, "prompt")
        _check_number(self.num_inference_steps, "num_inference_steps", 1, 50, whole=True)
        if self.guidance_scale is not None:
            _check_number(self.guidance_scale, "guidance_scale")
        if self.seed is not None:
            _check_number(self.seed, "seed", whole=True)
        formats = RESPONSE_FORMATS if self.target == "dedicated" else CONTAINER_RESPONSE_FORMATS
        if self.response_format is not None and self.response_format not in formats:
            raise FriendliValidationError(f"response_format must be one of {', '.join(formats)} for a {self.target} "
                                          f"target, got {_short(self.response_format)}")
        if self.control_images is not None:
            self.control_images = _image_list(self.control_images, "control_images")
        weights = self.controlnet_weights
        if weights is not None:
            if isinstance(weights, (str, bytes)) or not isinstance(weights, Sequence):
                raise FriendliValidationError(f"controlnet_weights must be a list of numbers, got {_short(weights)}")
            for i, weight in enumerate(weights):
                _check_number(weight, f"controlnet_weights[{i}]", 0, 1)
            self.controlnet_weights = list(weights)
            if self.control_images is not None and len(weights) != len(self.control_images):
                raise FriendliValidationError(f"controlnet_weights has {len(weights)} values, control_images "
                                              f"{len(self.control_images)}: they must be as many")

    def to_dict(self) -> Dict[str, Any]:
        """The JSON body as a dict; ``None`` fields are left out."""
        body = {name: value for name, value in vars(self).items() if value is not None and name != "target"}
        for name in body.keys() & {"control_images", "image"}:
            images = body[name]
            body[name] = [{"image": i} for i in images] if isinstance(images, list) else {"image": images}
        return body

    def to_json(self) -> bytes:
        """The JSON body, UTF-8 encoded."""
        return json.dumps(self.to_dict(), ensure_ascii=False, allow_nan=False).encode("utf-8")


@dataclasses.dataclass
class ImageEditRequest(ImageGenerationRequest):
    """The JSON body of an image edit: a generation request plus ``image``, one input or a list."""

    image: Optional[Union[ImageInput, Sequence[ImageInput]]] = None

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.control_images is not None or self.controlnet_weights is not None:
            raise FriendliValidationError("control_images and controlnet_weights are not part of an image edit")
        if self.image is None:
            raise FriendliValidationError("image is required for an edit")
        if isinstance(self.image, (list, tuple)):
            self.image = _image_list(self.image, "image")
        else:
            self.image = _encode_image(self.image, "image")


@dataclasses.dataclass(repr=False)
class GeneratedImage:
    """One image of a result: ``b64_json`` holds it, or ``url`` says where to fetch it.  The fields are as
    the server sent them; :meth:`content`, :meth:`save` and :meth:`data_uri` check the one they use and
    raise :class:`InvalidResponseError` naming it when it is unusable."""

    seed: Optional[int]
    response_format: Optional[str]
    url: Optional[str] = None
    b64_json: Optional[str] = None

    def __post_init__(self) -> None:
        # Not fields: where the image came from (for messages) and the transport that downloads ``url``.
        self._field = "image"
        self._transport: Optional[_Transport] = None

    def __getstate__(self) -> Dict[str, Any]:
        return {**self.__dict__, "_transport": None}  # a copy or pickle downloads with default settings

    def __repr__(self) -> str:
        parts = [f"seed={self.seed!r}", f"response_format={self.response_format!r}"]
        if self.url is not None:
            parts.append(f"url={_redact_url(self.url)!r}")
        if self.b64_json is not None:
            b64 = self.b64_json
            long = isinstance(b64, str) and len(b64) > 48
            parts.append(f"b64_json='{b64[:32]}\u2026' ({len(b64)} chars)" if long else f"b64_json={_short(b64)}")
        return f"GeneratedImage({', '.join(parts)})"

    def content(self) -> bytes:
        """The image bytes: ``b64_json`` decoded, or ``url`` downloaded (no token sent, redirects
        followed, with the client's timeout, retry policy and response size cap)."""
        if self.b64_json is not None:
            data = _decode_base64(self.b64_json) if isinstance(self.b64_json, str) else b""
            if not data:
                raise InvalidResponseError(f"{self._field}.b64_json is not valid base64")
            return data
        if self.url is None:
            raise InvalidResponseError(f"{self._field} has neither 'url' nor 'b64_json'")
        if not (_is_http_url(self.url) and self.url.isascii()):  # what urllib can send; or not text (built by hand)
            raise InvalidResponseError(f"{self._field}.url is not an http(s) URL: {_short(_redact_url(self.url))}")
        data = (self._transport or _Transport()).download(self.url)
        if not data:
            raise InvalidResponseError(f"{self._field}.url gave an empty body, not an image")
        return data

    def save(self, path: StrPath, *, overwrite: bool = True) -> pathlib.Path:
        """Write the image to ``path`` and return the path written.

        A path without a suffix gets ``.png``/``.jpg``/... from the image's bytes.  The file appears whole or
        not at all (written beside it, then renamed over it: a reader of the old file keeps the old file).
        ``overwrite=False`` refuses an existing file.  Failures raise :class:`ImageSaveError`, also an ``OSError``.
        """
        target = _check_path(path, "path")  # before a download
        if os.path.basename(os.fspath(path)) in ("", ".", ".."):  # "out/", "/", "out/.": pathlib would drop the end
            raise FriendliValidationError(f"path must name a file, not a directory, got {_short(path)}")
        if not isinstance(overwrite, bool):
            raise FriendliValidationError(f"overwrite must be a bool, got {_short(overwrite)}")
        data = self.content()
        if not target.suffix:
            target = target.with_name(target.name + _SUFFIXES.get(_image_type(data) or "", ".bin"))
        temporary = target.with_name(f".friendli-{os.urandom(6).hex()}.part")  # short: any legal name fits
        try:
            with open(temporary, "xb") as file:
                file.write(data)
            (os.replace if overwrite else os.link)(temporary, target)  # a link is made only where no file is
            return target
        except OSError as exc:
            failure = ImageSaveError(f"cannot save the image to {str(target)!r}: {exc.strerror or exc}", exc.errno,
                                     str(target))
        finally:
            try:
                os.unlink(temporary)  # left after a link or a failure
            except OSError:
                pass
        raise failure

    def data_uri(self) -> str:
        """The image as a ``data:image/<type>;base64,...`` URI (``application/octet-stream`` when unknown)."""
        data = self.content()
        kind = _image_type(data)
        encoded = "".join(self.b64_json.split()) if self.b64_json is not None else base64.b64encode(data).decode()
        return f"data:{'image/' + kind if kind else 'application/octet-stream'};base64,{encoded}"


@dataclasses.dataclass
class ImageGenerationResult:
    """What a generate or edit call returns: the images (possibly none) and the server's request id."""

    data: List[GeneratedImage]
    request_id: Optional[str] = None

    def save_all(self, directory: StrPath, prefix: str = "image") -> List[pathlib.Path]:
        """Save every image as ``directory/<prefix>-<index>.<ext>``, creating the directory; return the paths."""
        if not isinstance(prefix, str) or not prefix or "/" in prefix or "\\" in prefix:
            raise FriendliValidationError(f"prefix must be a file name without a directory part, got {_short(prefix)}")
        folder = _check_path("." if directory == "" else directory, "directory")
        try:
            folder.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            failure = ImageSaveError(f"cannot create the directory {str(folder)!r}: {exc.strerror or exc}",
                                     exc.errno, str(folder))
        else:
            return [image.save(folder / f"{prefix}-{index}") for index, image in enumerate(self.data)]
        raise failure


def _parse_result(answer: _Outcome, attempts: int, request: ImageGenerationRequest, transport: Optional[_Transport]
                  ) -> ImageGenerationResult:
    """A 2xx answer's result, values kept as sent (checked where used); a body off the schema: InvalidResponseError."""
    request_id = answer.headers.get("x-request-id")
    try:
        images = _images_in(answer, request)  # its frame, holding the body, is gone with the exception
    except (ValueError, RecursionError) as exc:  # UnicodeDecodeError and JSONDecodeError are ValueErrors
        kind = answer.headers.get("content-type")
        problem = str(exc) if type(exc) is ValueError else "the body is not UTF-8 JSON" + (f" ({kind})" if kind else "")
    else:
        for image in images:
            image._transport = transport
        return ImageGenerationResult(images, request_id)
    raise InvalidResponseError(f"unexpected response: {problem}", status_code=answer.status, attempts=attempts,
                               request_id=request_id)


def _images_in(answer: _Outcome, request: ImageGenerationRequest) -> List[GeneratedImage]:
    text = answer.body.decode("utf-8")
    answer.body = b""  # released before parsing: keeps peak memory low on big responses
    payload = json.loads(text)
    if not isinstance(payload, dict):
        raise ValueError(f"expected a JSON object, got {type(payload).__name__}")
    if request.target == "container":  # the answer is the image alone
        if not isinstance(payload.get("image"), str):
            raise ValueError("'image' is missing or not a string")
        return [GeneratedImage(request.seed, request.response_format or "jpeg", b64_json=payload["image"])]
    items = payload.get("data")
    if not isinstance(items, list):
        raise ValueError("'data' is missing or not a list")
    images = []
    for index, item in enumerate(items):
        if not isinstance(item, dict):
            raise ValueError(f"data[{index}] is not an object")
        if isinstance(item.get("seed"), float) and item["seed"].is_integer():  # 1.0 is an integer to JSON Schema
            item["seed"] = int(item["seed"])
        for name, kind in (("seed", int), ("response_format", str), ("url", str), ("b64_json", str)):
            if item.get(name) is not None and (not isinstance(item[name], kind) or isinstance(item[name], bool)):
                raise ValueError(f"data[{index}].{name} is not a{'n integer' if kind is int else ' string'}")
        images.append(GeneratedImage(item.get("seed"), item.get("response_format") or request.response_format,
                                     item.get("url"), item.get("b64_json")))
        images[-1]._field = f"data[{index}]"
    return images


# Retry policy =============================================================


@dataclasses.dataclass
class BackoffStrategy:
    """Exponential backoff in milliseconds, with the official SDK's field names: retry ``n`` (from 0)
    sleeps ``initial_interval * exponent**n`` plus a jitter of up to ``jitter_ms`` (1000 when None), at
    most ``max_interval``; ``max_elapsed_time`` bounds the whole call (the default ``total_timeout``)."""

    initial_interval: int
    max_interval: int
    exponent: float
    max_elapsed_time: int
    jitter_ms: Optional[int] = None

    def __post_init__(self) -> None:
        for name in ("initial_interval", "max_interval", "exponent", "jitter_ms"):
            if getattr(self, name) is not None or name != "jitter_ms":
                _check_number(getattr(self, name), f"BackoffStrategy.{name}", 0)
        _check_timeout(self.max_elapsed_time, "BackoffStrategy.max_elapsed_time")

    def delay(self, retry_index: int) -> float:
        """Seconds to sleep before retry number ``retry_index`` (0 for the first retry)."""
        jitter = random.uniform(0, 1000.0 if self.jitter_ms is None else float(self.jitter_ms))
        try:
            millis = float(self.initial_interval) * float(self.exponent) ** retry_index
        except OverflowError:  # thousands of retries in: the cap applies anyway
            millis = math.inf
        return min(millis + jitter, float(self.max_interval)) / 1000.0


_DEFAULT_BACKOFF = BackoffStrategy(500, 60000, 1.5, int(DEFAULT_TOTAL_TIMEOUT * 1000))


@dataclasses.dataclass
class RetryConfig:
    """When to retry; ``strategy`` is ``"backoff"`` or ``"none"`` (the SDK's names and order).

    ``status_codes_override`` replaces the retried statuses (ints, or patterns like ``"5XX"``; never
    407); ``max_retries`` caps the retries.  ``retry_connection_errors`` retries failures before the
    whole request was sent (nothing was billed).  ``retry_read_errors`` also retries a call that failed
    after it was sent and before a status arrived: off by default, as the server may already have
    generated, and billed, the image."""

    strategy: str
    backoff: Optional[BackoffStrategy] = None
    retry_connection_errors: bool = True
    status_codes_override: Optional[Sequence[Union[int, str]]] = None
    max_retries: Optional[int] = None
    retry_read_errors: bool = False

    def __post_init__(self) -> None:
        if self.strategy not in ("backoff", "none"):
            raise FriendliValidationError(f"RetryConfig.strategy must be 'backoff' or 'none', "
                                          f"got {_short(self.strategy)}")
        if self.strategy == "backoff" and self.backoff is None:
            self.backoff = _DEFAULT_BACKOFF
        if self.backoff is not None and not isinstance(self.backoff, BackoffStrategy):
            raise FriendliValidationError(f"RetryConfig.backoff must be a BackoffStrategy, got {_short(self.backoff)}")
        for name in ("retry_connection_errors", "retry_read_errors"):
            if not isinstance(getattr(self, name), bool):
                raise FriendliValidationError(f"RetryConfig.{name} must be a bool, got {_short(getattr(self, name))}")
        codes = self.status_codes_override
        if codes is not None and (isinstance(codes, (str, bytes)) or not isinstance(codes, Sequence) or not all(
                (isinstance(code, str) or hasattr(code, "__index__"))  # an int, numpy's too; never a nested list
                and re.fullmatch(r"[1-5][0-9X]{2}", str(code).upper()) for code in codes)):  # str(True) matches none
            raise FriendliValidationError("RetryConfig.status_codes_override must list statuses or patterns like "
                                          f"'5XX', got {_short(codes)}")
        if self.max_retries is not None:
            _check_number(self.max_retries, "RetryConfig.max_retries", 0, whole=True)

    def retries_status(self, status: int) -> bool:
        """Whether an answer with this status is retried."""
        codes = RETRYABLE_STATUS_CODES if self.status_codes_override is None else self.status_codes_override
        return status != 407 and any(all(want in ("X", got) for want, got in zip(str(code).upper(), str(status)))
                                     for code in codes)


DEFAULT_RETRY_CONFIG = RetryConfig("backoff", _DEFAULT_BACKOFF)
"""Back off 0.5 s x1.5 (+ up to 1 s jitter, at most 60 s) on 429/500/502/503/504 and unsent requests, for
up to :data:`DEFAULT_TOTAL_TIMEOUT` in all: the SDK's policy, bounded instead of one hour."""


def _retry_after(headers: email.message.Message) -> Optional[float]:
    """Seconds asked to wait (``retry-after-ms``, else ``Retry-After``); None if unsaid, unreadable or not positive."""
    try:
        if headers.get("retry-after-ms") is not None:
            seconds = float(headers["retry-after-ms"]) / 1000.0
        elif re.fullmatch(r"\s*\d+(\.\d+)?\s*", headers.get("retry-after") or "x"):
            seconds = float(headers["retry-after"])
        else:
            seconds = email.utils.parsedate_to_datetime(headers["retry-after"]).timestamp() - time.time()
    except (TypeError, ValueError, IndexError, OverflowError):
        return None
    return seconds if math.isfinite(seconds) and seconds > 0 else None


def _retry_delay(policy: RetryConfig, outcome: _Outcome, retry_index: int, idempotent: bool) -> Optional[float]:
    """Seconds to wait before retrying ``outcome``, or None: only what cannot be served twice is retried (a
    status the policy names, a failure before the request was sent; after it, a download or on request)."""
    if policy.strategy != "backoff" or (policy.max_retries is not None and retry_index >= policy.max_retries):
        return None
    allowed = policy.retry_read_errors or idempotent if outcome.sent else policy.retry_connection_errors
    if outcome.error is None:  # an answer
        if not policy.retries_status(outcome.status):
            return None
        asked = _retry_after(outcome.headers)
        if asked is not None:
            return asked if asked <= MAX_RETRY_AFTER else None
    elif not (outcome.retryable and allowed):
        return None
    return (policy.backoff or _DEFAULT_BACKOFF).delay(retry_index)


# Transport: the one request path ==========================================


class _Secret:
    """Holds a token (or a callable returning one) so that no repr, log, pickle or traceback local shows it."""

    def __init__(self, value: Union[str, Callable[[], str]]) -> None:
        self._value = value
        if not callable(value):
            self()  # a bad token is refused when the client is made

    def __call__(self, attempts: int = 0) -> str:  # a token callable too: the SDK facade hands its _Secret to Client
        """The token, checked; a callable is called (once per attempt, for rotating secrets).  ``attempts``, how
        many the call has made, goes into the error when there is no usable token."""
        value, error = self._value, None  # type: Any, Optional[FriendliError]
        try:
            value = value() if callable(value) else value
        except Exception as exc:  # its message may quote anything: only the type is kept
            error = FriendliError(f"the token callable raised {type(exc).__name__}", attempts=attempts)
        if error is None and (not isinstance(value, str) or not value.strip()):
            error = FriendliValidationError("no API token: set FRIENDLI_TOKEN or pass token= (a string or a callable)",
                                            attempts=attempts)
        elif error is None and (not (value.isascii() and value.isprintable()) or " " in value):
            error = FriendliValidationError("the API token must be printable ASCII without whitespace", attempts=attempts)
        if error is not None:
            value = None  # a traceback keeps this frame's locals: not a malformed token among them
            raise error
        return str(value)

    def __reduce__(self) -> Any:
        raise TypeError("a client holding an API token cannot be pickled or copied: make one where it is used")

    def __repr__(self) -> str:
        return "<token>"


@dataclasses.dataclass(repr=False, eq=False)  # made on every call: only the __init__ is needed
class _Outcome:
    """What one attempt ended with: an answer (``status`` set) or a failure (``error`` set), in safe words."""

    url: str
    status: int = 0
    reason: str = ""
    headers: email.message.Message = dataclasses.field(default_factory=email.message.Message)
    body: Union[bytes, bytearray] = b""
    error: Optional[Type[FriendliError]] = None
    message: str = ""
    sent: bool = False  # the whole request went out: the server may have acted on it
    retryable: bool = False  # a failure worth another attempt (answers are judged by their status)


class _Deadline:
    """The end of one attempt: every blocking step (connect, a proxy's CONNECT, the TLS handshake, each send and
    read) gets only the time left, so a peer trickling bytes cannot stretch it as a per-read socket timeout would;
    and the most bytes it may read, whatever http.client makes of the framing."""

    def __init__(self, seconds: float, max_bytes: int) -> None:
        self.seconds, self.at, self.sent, self.bytes_left = seconds, time.monotonic() + seconds, False, max_bytes

    def left(self) -> float:
        seconds = self.at - time.monotonic()
        if seconds <= 0:
            raise socket.timeout("timed out")
        return seconds


class _TimedReader(io.RawIOBase):
    """A connection's socket as an answer is read from it, each read bounded by the time left."""

    def __init__(self, sock: socket.socket, deadline: _Deadline) -> None:
        super().__init__()
        self.sock, self.stream, self.deadline = sock, sock.makefile("rb", buffering=0), deadline

    def makefile(self, mode: str) -> io.BufferedReader:  # what HTTPResponse reads an answer from
        return io.BufferedReader(self)

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> Optional[int]:
        self.sock.settimeout(self.deadline.left())
        count = self.stream.readinto(buffer)
        self.deadline.bytes_left -= count or 0
        if self.deadline.bytes_left < 0:  # e.g. a chunk size of -1, which http.client reads as "to the end"
            raise ValueError("more bytes than the response may have")
        return count

    def close(self) -> None:
        self.stream.close()  # the socket itself closes once its connection has let go of it too
        super().close()


class _Connection(http.client.HTTPConnection):
    """A connection bounded by its request's deadline, every answer (a proxy's to CONNECT too) read within it; for
    https it does the TLS handshake itself, for the URL's host (through a proxy's tunnel too), within the deadline."""

    def __init__(self, host: str, *, request: Any, **kwargs: Any) -> None:
        self.tls = request.tls() if request.type == "https" else None  # "https" also through a proxy's tunnel
        self.default_port = 443 if self.tls else 80  # read by HTTPConnection.__init__ and by a proxy tunnel
        super().__init__(host, **kwargs)
        self.deadline, self.tls_host = request.deadline, urllib.parse.urlsplit(request.full_url).hostname or ""
        self.spoke = False  # something was sent: a failure from here on is not the address's
        self.cut_off: Optional[OSError] = None  # the server stopped reading the request: it may have answered early

    def response_class(  # type: ignore[override]  # HTTPConnection makes every answer, a CONNECT's too, here
        self, sock: socket.socket, *args: Any, **kwargs: Any
    ) -> http.client.HTTPResponse:
        return http.client.HTTPResponse(_TimedReader(sock, self.deadline), *args, **kwargs)  # type: ignore[arg-type]

    def connect(self) -> None:
        # socket.create_connection would give every address of a name the whole timeout, one after another:
        # here each address tried gets an equal share of the time left.
        name, addresses = self.host, socket.getaddrinfo(self.host, self.port, type=socket.SOCK_STREAM)
        for index, (*_, address) in enumerate(addresses):
            self.host = socket.getnameinfo(address, socket.NI_NUMERICHOST | socket.NI_NUMERICSERV)[0]
            self.timeout = self.deadline.left() / (len(addresses) - index)
            try:
                super().connect()  # TCP to this address, and a proxy's CONNECT when tunnelling
                break
            except OSError:  # the next address, unless a proxy was reached and refused the tunnel
                if self.spoke or index == len(addresses) - 1:
                    raise
            finally:
                self.host = name
        if self.tls is not None:
            self.sock.settimeout(self.deadline.left())  # bounds the whole handshake
            self.sock = self.tls.wrap_socket(self.sock, server_hostname=self.tls_host)

    def send(self, data: Any) -> None:
        if self.cut_off is not None:  # the rest of a request the server stopped reading
            return
        if self.sock is None:
            self.connect()
        self.sock.settimeout(self.deadline.left())  # bounds a whole sendall
        self.spoke = True
        try:
            super().send(data)
        except (BrokenPipeError, ConnectionResetError, ssl.SSLEOFError) as exc:  # e.g. a 413 before the body was read
            self.cut_off = exc.with_traceback(None)  # not the frames that sent the request (its headers)

    def getresponse(self) -> http.client.HTTPResponse:
        cut_off, self.cut_off = self.cut_off, None
        self.deadline.sent = cut_off is None  # called once the whole request was written, or cut off
        try:
            return super().getresponse()
        except (OSError, http.client.HTTPException):
            if cut_off is None:
                raise
        raise cut_off  # no early answer to read: the request was not sent


class _Handler(urllib.request.AbstractHTTPHandler):
    """Opens http and https URLs with a :class:`_Connection` made from the request."""

    def http_open(self, req: Any) -> http.client.HTTPResponse:
        return self.do_open(_Connection, req, request=req)  # type: ignore[arg-type]

    https_open = http_open
    http_request = https_request = urllib.request.AbstractHTTPHandler.do_request_


@functools.lru_cache(maxsize=None)
def _default_ssl_context() -> ssl.SSLContext:
    """The context for https of every client given none: made on first use (loading the CA certificates takes
    milliseconds), then shared, as a context may be by any number of connections and threads."""
    return ssl.create_default_context()


class _Transport:
    """The one request path (generate, edit, image download): retries, deadlines, a size cap, error mapping."""

    def __init__(
        self, *, timeout: float = DEFAULT_TIMEOUT, retries: Optional[RetryConfig] = None,
        ssl_context: Optional[ssl.SSLContext] = None, user_agent: Optional[str] = None,
        max_response_bytes: int = DEFAULT_MAX_RESPONSE_BYTES, sleep: Optional[Callable[[float], Any]] = None,
        clock: Optional[Callable[[], float]] = None,
    ) -> None:
        verifies = isinstance(ssl_context, ssl.SSLContext) and ssl_context.verify_mode == ssl.CERT_REQUIRED
        if ssl_context is not None and not (verifies and ssl_context.check_hostname):
            raise FriendliValidationError("ssl_context must verify certificates and host names (CERT_REQUIRED, "
                                          "check_hostname); for a private CA use create_default_context(cafile=...)")
        self.timeout, self.retries = _check_timeout(timeout, "timeout"), _check_retries(retries) or DEFAULT_RETRY_CONFIG
        _check_number(max_response_bytes, "max_response_bytes", 1, whole=True)
        self.max_response_bytes = max_response_bytes
        agent = f"friendli-image/{__version__} python/{sys.version_info[0]}.{sys.version_info[1]}"
        self.user_agent = agent if user_agent is None else _check_header_value(_check_text(user_agent, "user_agent"),
                                                                                "user_agent")
        for name, function in (("sleep", sleep), ("clock", clock)):
            if function is not None and not callable(function):
                raise FriendliValidationError(f"{name} must be a function (or None), got {_short(function)}")
        self.sleep, self.clock, self._ssl_context = sleep, clock or time.monotonic, ssl_context
        # No redirect or error handler: every status comes back as it is.  ProxyHandler(None) reads
        # HTTP(S)_PROXY and NO_PROXY; a request carrying credentials over plain http goes ``direct``.
        self.proxied, self.direct = urllib.request.OpenerDirector(), urllib.request.OpenerDirector()
        for opener, proxies in ((self.proxied, None), (self.direct, {})):
            opener.add_handler(urllib.request.ProxyHandler(proxies))
            opener.add_handler(_Handler(debuglevel=0))  # http.client's debug output would print the token

    def ssl_context(self) -> ssl.SSLContext:
        return self._ssl_context or _default_ssl_context()

    def request(
        self, method: str, url: str, *, headers: Dict[str, str], body: Optional[bytes] = None,
        token: Optional[_Secret] = None, cancel: Optional[threading.Event] = None,
        retries: Optional[RetryConfig] = None, timeout: Optional[float] = None, total_timeout: Optional[float] = None,
    ) -> Tuple[_Outcome, int]:
        """Send until a 2xx (returned with the attempt count), a final error, or the end of the budget:
        ``total_timeout``, else the policy's ``max_elapsed_time``, else one attempt."""
        policy = _check_retries(retries) or self.retries
        per_attempt = self.timeout if timeout is None else _check_timeout(timeout, "timeout")
        elapsed_ms = (policy.backoff or _DEFAULT_BACKOFF).max_elapsed_time
        budget = per_attempt if policy.strategy == "none" else elapsed_ms / 1000
        budget = budget if total_timeout is None else _check_timeout(total_timeout, "total_timeout")
        deadline, last_answer, attempt = self.clock() + budget, None, 0
        while not (cancel and cancel.is_set()):
            attempt += 1
            seconds = min(per_attempt, deadline - self.clock())
            outcome = self._attempt(method, url, body, headers, token, seconds, attempt - 1)
            if outcome.error is None and 200 <= outcome.status < 300:
                return outcome, attempt
            last_answer = outcome if outcome.error is None else last_answer
            delay = _retry_delay(policy, outcome, attempt - 1, idempotent=method == "GET")
            if delay is None or delay >= deadline - self.clock() or (cancel and cancel.is_set()):
                if outcome.error is APITimeoutError and last_answer and seconds < per_attempt:
                    outcome = last_answer  # the budget, not the server, cut this attempt short: say why
                raise _error(outcome, attempt)
            import logging  # here: a call that never retries never pays for importing it

            limit = "" if policy.max_retries is None else f" of at most {policy.max_retries + 1}"
            logging.getLogger("friendli_image").info("retrying in %.1f s after %s (attempt %d%s)", delay,
                                                     _describe(outcome), attempt + 1, limit)
            if self.sleep is None and cancel is not None:
                cancel.wait(delay)  # wakes at once when the caller gives up
            else:
                (self.sleep or time.sleep)(delay)
        raise FriendliError(f"the call to {_redact_url(url)} was cancelled", attempts=attempt)

    def _attempt(self, method: str, url: str, body: Optional[bytes], headers: Dict[str, str],
                 token: Optional[_Secret], seconds: float, made: int) -> _Outcome:
        """One exchange within ``seconds`` (redirects followed for GET).  The token is read here and gone when
        this returns; failures are described, not raised, so no traceback keeps the frames that held it."""
        if seconds <= 0:
            return _Outcome(url, error=APITimeoutError, message="total_timeout ran out", retryable=True)
        secret = token(made) if token is not None else ""  # ``made``: the attempts before this one
        own = [value for name, value in headers.items() if name.lower() == "authorization"]  # the caller's, if any
        credentials = [secret, *own, *(value.partition(" ")[2] for value in own)]  # what no answer may echo back
        secrets = _secrets(url, *credentials)
        # Room for headers and chunk framing beyond the largest body accepted (the body's own cap is in _read).
        deadline = _Deadline(seconds, self.max_response_bytes * 17 // 16 + (1 << 20))
        stopped: Optional[BaseException] = None
        try:
            for _hop in range(_MAX_REDIRECTS + 1):
                request = urllib.request.Request(url, data=body, headers=headers, method=method)
                request.deadline, request.tls = deadline, self.ssl_context  # type: ignore  # read by _Connection
                if secret:
                    request.add_unredirected_header("Authorization", "Bearer " + secret)
                direct = request.type == "http" and request.has_header("Authorization")  # the token or the caller's
                response = (self.direct if direct else self.proxied).open(request, timeout=seconds)
                while 100 <= response.status < 200 and response.status != 101:  # 102, 103: an interim answer
                    stream, response.fp = response.fp, None  # the next answer reads on; this one must not close it
                    response = http.client.HTTPResponse(SimpleNamespace(makefile=lambda mode: stream),  # type: ignore
                                                        method=method)
                    response.begin()
                outcome = self._read(response, url, secrets)
                location = outcome.headers.get("location")
                if method != "GET" or outcome.status not in (301, 302, 303, 307, 308) or not location:
                    break
                url = urllib.parse.urljoin(url, location)
                if not (_is_http_url(url) and url.isascii()):
                    outcome = _Outcome(url, error=APIConnectionError, message="a redirect to a URL that cannot be sent")
                    break
                secrets, deadline.sent = _secrets(url, *credentials), False  # the next hop's, not sent yet
            else:
                outcome = _Outcome(url, error=APIConnectionError, message=f"more than {_MAX_REDIRECTS} redirects")
        except Exception as exc:  # urllib, http.client, socket, ssl: described without the token or a query
            outcome = _describe_exception(exc, url, secrets, deadline)
        except BaseException as exc:  # Ctrl-C, or a signal handler's SystemExit: raised again below
            stopped = exc
        secret, credentials, secrets, request = "", [], [], None  # type: ignore[assignment]  # nothing secret left
        if stopped is not None:  # without its traceback and chain, whose frames (urllib's) held the token
            stopped.__context__ = stopped.__cause__ = None
            raise stopped.with_traceback(None)
        return outcome

    def _read(self, response: http.client.HTTPResponse, url: str, secrets: Sequence[str]) -> _Outcome:
        """Read an answer within the size cap, decode an unasked-for gzip/deflate 2xx body, redact what is secret."""
        status, headers = response.status, response.headers  # type: int, email.message.Message
        ok = 200 <= status < 300
        limit = self.max_response_bytes if ok else _ERROR_BODY_LIMIT
        cap = limit if ok else limit + 6 * max(map(len, secrets), default=0)  # a secret echoed across the cut,
        # even as JSON escapes, is redacted whole
        if any(_redact(str(value), secrets) != str(value) for value in headers.values()):
            headers = email.message.Message()
            for name, value in response.headers.items():
                headers[name] = _redact(value, secrets)
        invalid = functools.partial(_Outcome, url, status, headers=headers, error=InvalidResponseError, sent=True)
        too_large = f"response body is over the limit of {limit} bytes (max_response_bytes)"
        with response:
            length = response.length
            if ok and length is not None and length > limit:
                return invalid(message=too_large)
            body: Union[bytes, bytearray] = bytearray()  # grows as bytes come: a Content-Length is only a promise
            try:
                while len(body) <= cap:
                    chunk = response.read(min(1 << 20, cap + 1 - len(body)))  # never past a Content-Length
                    if not chunk:
                        break
                    body += chunk
            except (OSError, http.client.HTTPException):
                if ok:
                    raise
            # An error answer cut short is still its status (a 503 is retried); a success must be whole.
            if ok and length is not None and len(body) < min(length, limit + 1):
                raise http.client.IncompleteRead(b"", length - len(body))
        if len(body) > limit and ok:
            return invalid(message=too_large)
        encoding = ", ".join(headers.get_all("content-encoding", [])).strip().lower() or "identity"
        transfer = ", ".join(headers.get_all("transfer-encoding", [])).strip().lower()
        if ok and transfer not in ("", "chunked", "identity"):  # http.client undoes chunked only: the rest is framing
            return invalid(message=f"a body with transfer-encoding {transfer!r} cannot be read")
        if ok and encoding != "identity":  # never asked for (no Accept-Encoding is sent): decode or refuse
            decoder = zlib.decompressobj(47)  # gzip or zlib-wrapped deflate, told apart by their header
            try:
                body = decoder.decompress(body, limit + 1) if encoding in ("gzip", "x-gzip", "deflate") else b""
            except zlib.error:
                body = b""
            if len(body) > limit or not decoder.eof or decoder.unused_data:  # a second gzip member too
                return invalid(message=too_large if len(body) > limit else f"{encoding!r} body cannot be decoded")
        if not ok:  # an error body is cut, not refused, and quoted in messages: no secret in it
            body = _redact(body.decode("utf-8", "replace"), secrets).encode("utf-8")[:limit]
        return _Outcome(url, status, _redact(response.reason or "", secrets), headers, body, sent=True)

    def download(self, url: str) -> bytes:
        """GET an image URL: no token, redirects followed, the client's timeout, retries and size cap."""
        return bytes(self.request("GET", url, headers=_headers(self.user_agent, "*/*"))[0].body)


def _check_retries(retries: Any) -> Optional[RetryConfig]:
    if retries is not None and not isinstance(retries, RetryConfig):
        raise FriendliValidationError(f"retries must be a RetryConfig (or None), got {_short(retries)}")
    return retries


def _headers(user_agent: str, accept: str, team: Optional[str] = None, extra: Optional[Mapping[str, str]] = None
             ) -> Dict[str, str]:
    """The one place request headers are built (the token is added only as the request is sent)."""
    headers = {"User-Agent": user_agent, "Accept": accept}
    if accept == "application/json":
        headers["Content-Type"] = "application/json"
    if team is not None:
        team = _check_text(team, "x_friendli_team", identifier=True)
        headers["X-Friendli-Team"] = _check_header_value(team, "x_friendli_team")
    if extra is not None and not callable(getattr(extra, "items", None)):  # its type only: it may hold a token
        raise FriendliValidationError(f"http_headers must be a mapping of header names to values, got a value of "
                                      f"type {type(extra).__name__}")
    for name, value in (extra or {}).items():
        if not isinstance(name, str) or not re.fullmatch(r"[!#$%&'*+.^_`|~0-9A-Za-z-]+", name):
            raise FriendliValidationError(f"http_headers: invalid header name {_short(name)}")
        headers[name] = _check_header_value(value, f"http_headers: the value of {name!r}")
    return headers


def _secrets(url: str, *credentials: str) -> List[str]:
    """What an answer must not echo back: the ``credentials`` sent, and the values of a pre-signed URL's query
    (short ones are not secret, and would blank out common words); the longest first, so none hides another."""
    values = [part.partition("=")[2] for part in urllib.parse.urlsplit(url).query.split("&")]
    found = [*credentials, *(value for raw in values for value in (raw, urllib.parse.unquote(raw)) if len(value) >= 8)]
    return sorted(set(filter(None, found)), key=len, reverse=True)


def _redact(text: str, secrets: Sequence[str]) -> str:
    """``text`` without ``secrets``, also where JSON escapes spell them (servers and proxies sometimes echo a
    request back, and JSON may write any character as ``\\u0041``, and / as ``\\/``)."""
    for secret in secrets:
        text = text.replace(secret, "[REDACTED]")
        if "\\" not in text:  # no escape to spell it with: the common case, on every answer's headers
            continue
        pattern = ""
        for char in secret:  # the character itself, its \uXXXX escape, or a backslash before / " or \
            after_backslash = "|\\\\" + re.escape(char) if char in '/"\\' else ""
            pattern += f"(?:{re.escape(char)}|\\\\u(?i:{ord(char):04x}){after_backslash})"
        text = re.sub(pattern, "[REDACTED]", text)
    return text


def _redact_url(url: str) -> str:
    """A URL without user info, query or fragment (pre-signed image URLs carry credentials there)."""
    try:
        parts = urllib.parse.urlsplit(url)
        return urllib.parse.urlunsplit((parts.scheme, parts.netloc.rpartition("@")[2], parts.path, "", ""))
    except (ValueError, TypeError, AttributeError):  # e.g. "http://[::1" from a server; not text
        return "<a URL that cannot be parsed>"


def _describe(outcome: _Outcome) -> str:
    if outcome.error is None:
        return f"{outcome.status} {outcome.reason} from {_redact_url(outcome.url)}".replace("  ", " ")
    return f"{outcome.message} ({_redact_url(outcome.url)})"


def _describe_exception(exc: Exception, url: str, secrets: Sequence[str], deadline: _Deadline) -> _Outcome:
    """A urllib/http.client/socket/ssl exception as a failure, in safe words (token and query removed)."""
    reason: BaseException = exc
    while isinstance(reason, urllib.error.URLError) and isinstance(reason.reason, BaseException):
        reason = reason.reason
    failure = functools.partial(_Outcome, url, error=APIConnectionError, sent=deadline.sent)
    detail = f"{type(reason).__name__}: {_redact(str(reason), secrets)}"
    if deadline.bytes_left < 0:
        return failure(error=InvalidResponseError, message="the response is larger than max_response_bytes allows")
    tunnel = re.match(r"Tunnel connection failed: (\d{3})", str(reason))
    if isinstance(reason, (socket.timeout, TimeoutError)):
        return failure(error=APITimeoutError, retryable=True, message=f"timed out after {deadline.seconds:.3g} s")
    if isinstance(reason, ssl.SSLCertVerificationError):
        return failure(message=f"TLS certificate not verified ({reason.verify_message}); for a "
                       "private CA pass ssl_context=ssl.create_default_context(cafile=...)")
    if isinstance(reason, (http.client.IncompleteRead, http.client.RemoteDisconnected)):
        return failure(retryable=True, message="the connection closed with the answer incomplete")
    if tunnel:  # the proxy refused the tunnel; a 4xx (407: proxy credentials missing) never fixes itself
        return failure(retryable=tunnel.group(1)[0] != "4", message=f"the proxy refused the tunnel: {detail}")
    if isinstance(reason, socket.gaierror):  # a name that does not exist stays so; a DNS hiccup may pass
        gone = reason.errno in (getattr(socket, "EAI_NONAME", None), getattr(socket, "EAI_NODATA", None))
        return failure(retryable=not gone, message=f"cannot resolve the host: {detail}")
    if isinstance(reason, (http.client.InvalidURL, urllib.error.URLError)) or (  # URLError: urllib's own refusal
            isinstance(reason, ValueError) and not deadline.sent):  # (no host, unknown scheme), never a network's
        return failure(message=f"the URL cannot be sent ({type(reason).__name__})")  # its text may quote the query
    if isinstance(reason, ValueError):  # http.client reading a malformed answer
        return failure(message=f"the answer cannot be read ({type(reason).__name__})")
    retryable = isinstance(reason, (OSError, http.client.HTTPException))
    return failure(retryable=retryable, message=f"connection failed: {detail}")


def _error(outcome: _Outcome, attempts: int) -> FriendliError:
    """The error an outcome ends a call with, built once and complete."""
    if outcome.error is not None and issubclass(outcome.error, APIConnectionError):
        return outcome.error(_describe(outcome), sent=outcome.sent, attempts=attempts)
    request_id = outcome.headers.get("x-request-id")
    if outcome.error is not None:
        return InvalidResponseError(outcome.message, status_code=outcome.status or None, attempts=attempts,
                                    request_id=request_id)
    text, server_message = outcome.body.decode("utf-8", "replace"), ""
    try:
        payload = json.loads(text)
    except (ValueError, RecursionError):
        payload = None
    for key in ("detail", "message", "error") if isinstance(payload, dict) else ():
        value = payload[key].get("message", payload[key]) if isinstance(payload.get(key), dict) else payload.get(key)
        if value:
            server_message = value if isinstance(value, str) else json.dumps(value)
            break
    server_message = server_message.encode("utf-8", "replace").decode("utf-8")  # a lone surrogate from a JSON escape
    summary = re.sub(r"[\x00-\x1f\x7f]+", " ", server_message or text.strip()[:200]).strip()  # one plain line
    message = f"{_describe(outcome)}: {summary or outcome.reason}"
    if outcome.status in (301, 302, 303, 307, 308):
        message += " (API calls follow no redirect, so the token never goes elsewhere: check base_url)"
    message += f" [request id {request_id}]" if request_id else ""
    error = _STATUS_ERRORS.get(outcome.status, InternalServerError if 500 <= outcome.status <= 599 else APIStatusError)
    return error(message, status_code=outcome.status, body=text, headers=outcome.headers, request_id=request_id,
                 server_message=server_message or outcome.reason, retry_after=_retry_after(outcome.headers),
                 attempts=attempts)


# Client ===================================================================


def _check_base_url(value: Any, target: str, allow_insecure_http: bool) -> str:
    """A base URL the token may go to: http(s), no user info, a port in 1-65535, no clear text off this host."""
    if isinstance(value, str) and "@" in value:  # refused before any message could quote a password
        raise FriendliValidationError("base_url must not contain user info (user:password@); pass token= instead")
    url = _check_text(value, "base_url", identifier=True)
    if not (_is_http_url(url) and url.isascii()):
        raise FriendliValidationError(f"base_url must look like https://host[:port][/path] (ASCII, port 1-65535), "
                                      f"got {_short(_redact_url(url))}")
    if "?" in url or "#" in url:  # an empty one too: the API path would follow it
        raise FriendliValidationError(f"base_url must not have a query or fragment, got {_short(_redact_url(url))}")
    parts = urllib.parse.urlsplit(url)
    host = parts.hostname or ""
    try:
        loopback = host == "localhost" or host.endswith(".localhost") or ipaddress.ip_address(host).is_loopback
    except ValueError:  # a name, not an address
        loopback = False
    if parts.scheme == "http" and not loopback and (target == "dedicated" or not allow_insecure_http):
        raise FriendliValidationError(f"refusing plain http:// to {host!r}: use https:// (plain http is allowed only "
                                      "for loopback hosts, or a Friendli Container with allow_insecure_http=True)")
    return url.rstrip("/")


_C = TypeVar("_C")


class _Closable:
    """``with``/``async with`` support: nothing to release, as no connection is kept open."""

    def __enter__(self: _C) -> _C:
        return self

    def __exit__(self, *exc_info: Any) -> None:
        self.close()

    async def __aenter__(self: _C) -> _C:
        return self

    async def __aexit__(self, *exc_info: Any) -> None:
        self.close()

    def close(self) -> None:
        """Nothing to release (no connection is kept open); present for ``with``."""


class Client(_Closable):
    """A thread-safe client for Friendli image APIs.

    ``token`` is a string or a zero-argument callable returning one (called once per attempt, for
    rotating secrets); it defaults to ``FRIENDLI_TOKEN``.  ``team`` defaults to ``FRIENDLI_TEAM`` and
    ``base_url`` to ``FRIENDLI_BASE_URL`` or ``https://api.friendli.ai``.  ``timeout`` bounds each
    attempt; ``retries`` is the default :class:`RetryConfig` (:data:`DEFAULT_RETRY_CONFIG`).

    ``target="container"`` talks to a Friendli Container instead (default ``http://localhost:8000``;
    no token unless one is passed; no environment reads).  Plain ``http://`` is refused unless the host
    is loopback, or the target is a container and ``allow_insecure_http=True``.  ``sleep`` and
    ``clock`` replace the retry sleep and the monotonic clock (tests).
    """

    def __init__(
        self, token: Optional[Union[str, Callable[[], str]]] = None, *, base_url: Optional[str] = None,
        team: Optional[str] = None, timeout: float = DEFAULT_TIMEOUT, retries: Optional[RetryConfig] = None,
        ssl_context: Optional[ssl.SSLContext] = None, user_agent: Optional[str] = None, target: str = "dedicated",
        allow_insecure_http: bool = False, max_response_bytes: int = DEFAULT_MAX_RESPONSE_BYTES,
        sleep: Optional[Callable[[float], Any]] = None, clock: Optional[Callable[[], float]] = None,
    ) -> None:
        if target not in TARGETS:
            raise FriendliValidationError(f"target must be one of {TARGETS}, got {_short(target)}")
        if target == "dedicated":
            token = token if token is not None else os.environ.get("FRIENDLI_TOKEN")
            team = team if team is not None else (os.environ.get("FRIENDLI_TEAM") or None)
            base_url = base_url if base_url is not None else os.environ.get("FRIENDLI_BASE_URL") or DEFAULT_BASE_URL
        if not isinstance(allow_insecure_http, bool):
            raise FriendliValidationError(f"allow_insecure_http must be a bool, got {_short(allow_insecure_http)}")
        self.target = target
        self.base_url = _check_base_url(DEFAULT_CONTAINER_BASE_URL if base_url is None else base_url, target,
                                        allow_insecure_http)
        self.team = None if team is None else _check_header_value(_check_text(team, "team", identifier=True), "team")
        self._token = token if isinstance(token, _Secret) else _Secret(token) if token else None
        self._transport = _Transport(timeout=timeout, retries=retries, ssl_context=ssl_context, user_agent=user_agent,
                                     max_response_bytes=max_response_bytes, sleep=sleep, clock=clock)

    def __repr__(self) -> str:
        token = "<set>" if self._token else None
        return f"Client(base_url={self.base_url!r}, target={self.target!r}, team={self.team!r}, token={token})"

    def generate(
        self, *, model: Optional[str] = None, prompt: str, num_inference_steps: int = 20,
        guidance_scale: Optional[float] = None, seed: Optional[int] = None, response_format: Optional[str] = None,
        control_images: Optional[Sequence[ImageInput]] = None, controlnet_weights: Optional[Sequence[float]] = None,
        x_friendli_team: Optional[str] = None, retries: Optional[RetryConfig] = None, timeout: Optional[float] = None,
        total_timeout: Optional[float] = None, http_headers: Optional[Mapping[str, str]] = None,
        cancel: Optional[threading.Event] = None,
    ) -> ImageGenerationResult:
        """Generate image(s) from a prompt; ``model`` is ``"endpoint-id"`` or ``"endpoint-id:adapter-route"``
        (optional for a container); the call options are those of :meth:`send`."""
        request = ImageGenerationRequest(model, prompt, num_inference_steps, guidance_scale, seed, response_format,
                                         control_images, controlnet_weights, self.target)
        return self.send(request, x_friendli_team=x_friendli_team, retries=retries, timeout=timeout,
                         total_timeout=total_timeout, http_headers=http_headers, cancel=cancel)

    def edit(
        self, *, model: Optional[str] = None, prompt: str,
        image: Union[ImageInput, Sequence[ImageInput]], num_inference_steps: int = 20,
        guidance_scale: Optional[float] = None, seed: Optional[int] = None, response_format: Optional[str] = None,
        x_friendli_team: Optional[str] = None, retries: Optional[RetryConfig] = None, timeout: Optional[float] = None,
        total_timeout: Optional[float] = None, http_headers: Optional[Mapping[str, str]] = None,
        cancel: Optional[threading.Event] = None,
    ) -> ImageGenerationResult:
        """Edit image(s) as a prompt says; ``image`` is one input or a list (see :data:`ImageInput`); files
        are read (at most 50 MiB each) and sent as ``data:image/<type>;base64,...``."""
        request = ImageEditRequest(model, prompt, num_inference_steps, guidance_scale, seed, response_format,
                                   target=self.target, image=image)
        return self.send(request, x_friendli_team=x_friendli_team, retries=retries, timeout=timeout,
                         total_timeout=total_timeout, http_headers=http_headers, cancel=cancel)

    def send(
        self, request: ImageGenerationRequest, *, x_friendli_team: Optional[str] = None,
        retries: Optional[RetryConfig] = None, timeout: Optional[float] = None, total_timeout: Optional[float] = None,
        http_headers: Optional[Mapping[str, str]] = None, cancel: Optional[threading.Event] = None,
    ) -> ImageGenerationResult:
        """Send a generation or edit request (the one path :meth:`generate` and :meth:`edit` take).

        ``retries``, ``timeout`` (seconds per attempt), ``total_timeout`` (seconds for the whole call,
        sleeps included) and ``x_friendli_team`` override the client's; ``http_headers`` adds headers (an
        ``Authorization`` replaces the token); setting ``cancel`` stops retrying and wakes a retry sleep."""
        if cancel is not None and not isinstance(cancel, threading.Event):
            raise FriendliValidationError(f"cancel must be a threading.Event (or None), got {_short(cancel)}")
        if not isinstance(request, ImageGenerationRequest) or request.target != self.target:
            raise FriendliValidationError(f"request must be an ImageGenerationRequest or ImageEditRequest for "
                                          f"{self.target!r}")
        team = (x_friendli_team if x_friendli_team is not None else self.team) if self.target == "dedicated" else None
        headers = _headers(self._transport.user_agent, "application/json", team, http_headers)
        own_authorization = any(name.lower() == "authorization" for name in headers)
        if self._token is None and self.target == "dedicated" and not own_authorization:
            raise FriendliValidationError("no API token: set FRIENDLI_TOKEN or pass token= (a string or a callable)")
        try:
            body = request.to_json()
        except (ValueError, TypeError, RecursionError) as exc:  # a field changed after validation
            problem = f"the request cannot be sent as JSON ({type(exc).__name__}): build it again to validate it"
        else:
            operation = "edits" if isinstance(request, ImageEditRequest) else "generations"
            url = self.base_url + _API_PATHS[self.target] + operation
            answer, attempts = self._transport.request("POST", url, body=body, headers=headers, retries=retries,
                                                       token=None if own_authorization else self._token,
                                                       timeout=timeout, total_timeout=total_timeout, cancel=cancel)
            return _parse_result(answer, attempts, request, self._transport)
        raise FriendliValidationError(problem)


def generate(**kwargs: Any) -> ImageGenerationResult:
    """One-liner: ``Client().generate(**kwargs)`` (token from ``FRIENDLI_TOKEN``)."""
    return Client().generate(**kwargs)


async def _in_thread(method: Callable[..., ImageGenerationResult], kwargs: Dict[str, Any], executor: Any = None
                     ) -> ImageGenerationResult:
    """Await ``method(**kwargs)`` run in a worker thread; cancelling the task stops its retries."""
    import asyncio  # here, not at the top: it costs more to import than the rest of the module

    cancel = kwargs.setdefault("cancel", threading.Event())
    try:
        return await asyncio.get_running_loop().run_in_executor(executor, functools.partial(method, **kwargs))
    except asyncio.CancelledError:
        cancel.set()
        raise


class AsyncClient(_Closable):
    """:class:`Client` for asyncio: ``generate`` and ``edit`` as coroutines, same arguments, run in a worker
    thread (the loop's default executor, or ``executor``).  Cancelling the awaiting task stops further
    attempts and wakes a retry sleep; an attempt in flight ends within its timeout."""

    def __init__(self, token: Optional[Union[str, Callable[[], str]]] = None, *, executor: Any = None,
                 **client_options: Any) -> None:
        if executor is not None and not callable(getattr(executor, "submit", None)):
            raise FriendliValidationError(f"executor must be a concurrent.futures.Executor, got {_short(executor)}")
        self._client, self._executor = Client(token, **client_options), executor

    def __repr__(self) -> str:
        return "Async" + repr(self._client)

    async def generate(self, **kwargs: Any) -> ImageGenerationResult:
        """Await :meth:`Client.generate` (same keyword arguments)."""
        return await _in_thread(self._client.generate, kwargs, self._executor)

    async def edit(self, **kwargs: Any) -> ImageGenerationResult:
        """Await :meth:`Client.edit` (same keyword arguments)."""
        return await _in_thread(self._client.edit, kwargs, self._executor)


# SDK-compatible facade ====================================================


class _ImageOperations:
    """``friendli.dedicated.image`` / ``friendli.container.image`` with the SDK's keyword names."""

    def __init__(self, owner: SyncFriendli, target: str) -> None:
        self._owner, self._target = owner, target

    def _method(self, operation: str, params: Dict[str, Any]) -> Callable[..., ImageGenerationResult]:
        """The client method for a call; the SDK-only names in ``params`` are translated in place."""
        if "retries" in params and params["retries"] is None:  # as in the SDK: None means no retries (omitted:
            params["retries"] = RetryConfig("none")  # the client's policy)
        timeout_ms = params.pop("timeout_ms", None)
        if timeout_ms is not None:
            params["timeout"] = _check_number(timeout_ms, "timeout_ms") / 1000.0
        client = self._owner._client_for(self._target, params.pop("server_url", None))
        return client.edit if operation == "edit" else client.generate

    def generate(self, **params: Any) -> ImageGenerationResult:
        """Generate image(s) with the SDK's keyword names (``model``, ``prompt``, ``num_inference_steps``, ...,
        ``x_friendli_team``, ``retries``, ``server_url``, ``timeout_ms``, ``http_headers``)."""
        return self._method("generate", params)(**params)

    def edit(self, **params: Any) -> ImageGenerationResult:
        """Edit image(s): as :meth:`generate` plus ``image``, without the ControlNet fields."""
        return self._method("edit", params)(**params)


class _AsyncImageOperations(_ImageOperations):
    async def generate(self, **params: Any) -> ImageGenerationResult:  # type: ignore[override]
        """Await the synchronous facade's generate (same keyword arguments)."""
        return await _in_thread(self._method("generate", params), params)

    async def edit(self, **params: Any) -> ImageGenerationResult:  # type: ignore[override]
        """Await the synchronous facade's edit (same keyword arguments)."""
        return await _in_thread(self._method("edit", params), params)


class SyncFriendli(_Closable):
    """Drop-in for the official SDK's ``SyncFriendli`` image operations:
    ``with SyncFriendli(token=...) as friendli: friendli.dedicated.image.generate(...)``.

    A call's ``retries`` omitted uses ``retry_config`` (:data:`DEFAULT_RETRY_CONFIG`, bounded unlike the
    SDK's one-hour budget); ``None``, there or as a call's ``retries``, disables retries, as in the SDK.
    Options after ``token`` are keyword-only (the SDK's positional order has options this facade lacks).
    ``container.image`` talks to ``http://localhost:8000`` unless a call passes ``server_url``, and sends
    no token (the SDK sends its token there too)."""

    _operations = _ImageOperations

    def __init__(
        self, token: Optional[Union[str, Callable[[], str]]] = None, *, server_url: Optional[str] = None,
        retry_config: Optional[RetryConfig] = DEFAULT_RETRY_CONFIG, timeout_ms: Optional[int] = None,
        x_friendli_team: Optional[str] = None, allow_insecure_http: bool = False, **client_options: Any,
    ) -> None:
        self._token, self._team, self._server_url = (_Secret(token) if token else None), x_friendli_team, server_url
        timeout = DEFAULT_TIMEOUT if timeout_ms is None else _check_number(timeout_ms, "timeout_ms") / 1000.0
        sdk_names = {"timeout": "timeout_ms=", "retries": "retry_config=", "base_url": "server_url=",
                     "team": "x_friendli_team=", "target": ".dedicated and .container"}
        for name in sorted(client_options.keys() & sdk_names):
            raise FriendliValidationError(f"{type(self).__name__}: use {sdk_names[name]} as in the SDK, not {name}=")
        retries = RetryConfig("none") if retry_config is None else retry_config
        self._options = dict(retries=retries, timeout=timeout, allow_insecure_http=allow_insecure_http, **client_options)
        self._client_for("dedicated", None)  # bad arguments fail now, as in the SDK
        self.dedicated = SimpleNamespace(image=self._operations(self, "dedicated"))
        self.container = SimpleNamespace(image=self._operations(self, "container"))

    def _client_for(self, target: str, server_url: Optional[str]) -> Client:
        """A client for one call (cheap to make: it holds no connection); a container gets neither token nor
        team, as from the SDK."""
        if target != "dedicated":
            return Client(base_url=server_url, target=target, **self._options)
        server_url = self._server_url if server_url is None else server_url
        return Client(self._token, base_url=server_url, team=self._team, **self._options)

    def __repr__(self) -> str:
        return f"{type(self).__name__}(server_url={self._client_for('dedicated', None).base_url!r})"


class AsyncFriendli(SyncFriendli):
    """The SDK's async facade: ``async with AsyncFriendli(...) as f: await f.dedicated.image.generate(...)``."""

    _operations = _AsyncImageOperations


# Command line =============================================================

_EXIT_API, _EXIT_USAGE, _EXIT_AUTH, _EXIT_NETWORK, _EXIT_PARTIAL, _EXIT_INTERRUPTED = 1, 2, 3, 4, 5, 130

_CLI_EPILOG = """\
environment: FRIENDLI_TOKEN, the API token (or --token-file: no --token option,
  which would show in shell history and ps); FRIENDLI_TEAM; FRIENDLI_BASE_URL

output files: -o FILE (one request), -o DIR/ (DIR/[<index>-]<seed>.<ext>), or
  by default ./[<index>-]<words-of-the-prompt>-<seed>.<ext> (an <index> only
  in batches); an existing file is never replaced unless --overwrite is given.

exit codes:
  0 success   1 API error or an image not saved   2 usage error (nothing sent)
  3 token refused (401/403 from the API; a batch stops)   4 network error or
  timeout   5 some requests of a batch failed   130 interrupted (Ctrl-C)
"""


class _CliJob:
    def __init__(self, index: int, request: ImageGenerationRequest) -> None:
        self.index, self.request, self.label = index, request, f"#{index} {request.prompt[:40]!r}"


def main(argv: Optional[Sequence[str]] = None) -> int:
    """Run the command line (``friendli-image``, ``python friendli_image.py``); return the exit code (a usage
    error prints why and returns 2, no SystemExit; ``--help`` lists every exit code)."""
    try:
        args = _cli_arguments(argv)
    except SystemExit as exc:  # --help, --version (0) or a usage error (2): argparse said why
        return exc.code if isinstance(exc.code, int) else _EXIT_USAGE
    try:
        client, jobs = _cli_client(args), _cli_jobs(args)
        _cli_check_outputs(args, jobs)
    except FriendliError as exc:
        print(f"friendli-image: error: {_cli_describe(exc)}", file=sys.stderr)
        return _EXIT_USAGE
    except KeyboardInterrupt:  # e.g. while --prompts - waits for standard input: nothing was sent
        return _EXIT_INTERRUPTED
    reporter = _CliReporter(args, len(jobs))
    try:
        return _cli_run(args, client, jobs, reporter)
    finally:
        reporter.close()


def _cli_arguments(argv: Optional[Sequence[str]]) -> Any:
    """Parse and cross-check the command line; SystemExit(2) after argparse's message on a usage error."""
    import argparse
    import difflib

    parser = argparse.ArgumentParser(
        prog="friendli-image", description="Generate images on a Friendli Dedicated Endpoint (or Container).",
        epilog=_CLI_EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter, allow_abbrev=False,
    )
    flags: List[str] = []

    def option(*names: str, **kwargs: Any) -> None:
        flags.extend(name for name in names if name.startswith("--"))
        parser.add_argument(*names, **kwargs)

    parser.add_argument("prompt", nargs="?", metavar="PROMPT", help="what the image should show")
    option("--version", action="version", version=f"%(prog)s {__version__}")
    option("-m", "--model", metavar="ENDPOINT[:ADAPTER]", help="endpoint id, optionally with an adapter route")
    option("--steps", type=int, default=20, metavar="N", help="num_inference_steps, 1-50 (default: 20)")
    option("--guidance-scale", type=float, metavar="X", help="how closely to follow the prompt")
    option("--seed", type=int, help="random seed (with -n K: SEED, SEED+1, ...)")
    option("--format", choices=RESPONSE_FORMATS, help="response_format (default: png; container: jpeg)")
    option("--control-image", action="append", metavar="PATH_OR_URL", help="ControlNet input (repeatable)")
    option("--controlnet-weight", action="append", type=float, metavar="W", help="weight of each --control-image")
    option("--edit-image", action="append", metavar="PATH_OR_URL", help="edit this image (repeatable)")
    option("--prompts", metavar="FILE", help="one prompt per line ('-': stdin; blank and # lines skipped)")
    option("-n", "--n", type=int, default=1, metavar="K", help="images per prompt, one request each")
    option("--concurrency", type=int, default=4, metavar="N", help="requests at a time (default: 4)")
    option("-o", "--output", metavar="PATH", help="file for one request, directory for several")
    option("--overwrite", action="store_true", help="replace existing files")
    option("--json", action="store_true", help="print one JSON object per request on stdout")
    option("-v", "--verbose", action="store_true", help="show a traceback with each failure")
    option("--base-url", metavar="URL", help="API base URL (default: $FRIENDLI_BASE_URL or the Friendli API)")
    option("--team", help="team id sent as X-Friendli-Team")
    option("--token-file", metavar="PATH", help="read the API token from this file")
    option("--target", choices=TARGETS, default="dedicated", help="dedicated (default) or container")
    option("--allow-insecure-http", action="store_true", help="allow http:// to a container that is not loopback")
    option("--timeout", type=float, default=DEFAULT_TIMEOUT, metavar="S", help="seconds per attempt (default: 60)")
    option("--total-timeout", type=float, metavar="S",
           help="seconds per request, retries included (default: 60, or --timeout if longer)")
    option("--max-retries", type=int, default=3, metavar="N", help="retries per request (default: 3)")
    option("--no-retries", action="store_const", const=0, dest="max_retries", help="same as --max-retries 0")
    parser.add_argument("--token", nargs="?", const="", help=argparse.SUPPRESS)  # refused below, never echoed
    args, extra = parser.parse_known_args(argv)
    unknown = [word.partition("=")[0] for word in extra if word.startswith("-")]
    if unknown:
        close = difflib.get_close_matches(unknown[0], flags, n=1)
        parser.error(f"unknown option {unknown[0]}" + (f" (did you mean {close[0]}?)" if close else ""))
    if extra:
        parser.error(f"unexpected words: {' '.join(extra)} (quote a PROMPT that has spaces)")
    if args.token is not None:
        parser.error("there is no --token option (it would show in shell history and ps): "
                     "set FRIENDLI_TOKEN or use --token-file PATH")
    if min(args.n, args.concurrency) < 1 or args.max_retries < 0:  # the library checks the others before sending
        parser.error("-n and --concurrency must be at least 1, --max-retries at least 0")
    if not args.timeout > 0 or not (args.total_timeout is None or args.total_timeout > 0):  # nan is not > 0
        parser.error("--timeout and --total-timeout must be positive numbers of seconds")
    if (args.prompt is None) == (args.prompts is None):
        parser.error("give a PROMPT or --prompts FILE (one of them)")
    if args.model is None and args.target == "dedicated":
        parser.error("--model ENDPOINT[:ADAPTER] is required")
    return args


def _cli_read(path: str, what: str) -> str:
    """A text file (``-``: standard input) of at most a million characters, more than any token or list of
    prompts needs (``/dev/zero`` is endless); one that cannot be read is a usage error."""
    try:
        with contextlib.nullcontext(sys.stdin) if path == "-" else open(path, encoding="utf-8") as file:
            text = file.read(1_000_001)
        text = text[1:] if text.startswith("\ufeff") else text  # a byte order mark is not part of the text
        if len(text) > 1_000_000:
            raise ValueError("more than a million characters")
        return text
    except (OSError, ValueError) as exc:  # a UnicodeDecodeError, or a NUL in the path, is a ValueError
        problem = f"cannot read {what} {path!r}: {getattr(exc, 'strerror', None) or exc}"
    raise FriendliValidationError(problem)


def _cli_client(args: Any) -> Client:
    """The client the flags describe; the token is read and checked here, before any traffic."""
    token = os.environ.get("FRIENDLI_TOKEN") if args.target == "dedicated" else None
    token = _cli_read(args.token_file, "--token-file").strip() if args.token_file is not None else token
    if not token and args.target == "dedicated":
        raise FriendliValidationError("no API token: set FRIENDLI_TOKEN or use --token-file PATH")
    return Client(
        token or None, base_url=args.base_url, team=args.team, timeout=args.timeout, target=args.target,
        retries=RetryConfig("backoff", max_retries=args.max_retries), allow_insecure_http=args.allow_insecure_http,
    )


def _cli_jobs(args: Any) -> List[_CliJob]:
    """One validated request per prompt and copy (``-n``); input images are read once."""
    prompts = [args.prompt]
    if args.prompts is not None:
        lines = [line.strip() for line in _cli_read(args.prompts, "--prompts").splitlines()]
        prompts = [line for line in lines if line and not line.startswith("#")]
        if not prompts:
            raise FriendliValidationError(f"--prompts {args.prompts!r} holds no prompt")
    if len(prompts) * args.n > 10_000:  # each is billed; a list of millions would also fill memory
        raise FriendliValidationError(f"{len(prompts) * args.n} requests: at most 10000 in one run")
    fields: Dict[str, Any] = dict(
        model=args.model, num_inference_steps=args.steps, guidance_scale=args.guidance_scale, target=args.target,
        response_format=args.format or ("png" if args.target == "dedicated" else None),
        control_images=args.control_image, controlnet_weights=args.controlnet_weight,  # an edit refuses them
    )
    if args.edit_image:
        image = args.edit_image if len(args.edit_image) > 1 else args.edit_image[0]
        first: ImageGenerationRequest = ImageEditRequest(prompt=prompts[0], image=image, **fields)
    else:
        first = ImageGenerationRequest(prompt=prompts[0], **fields)
    seeds = [None if args.seed is None else args.seed + copy for copy in range(args.n)]
    requests = [dataclasses.replace(first, prompt=prompt, seed=seed) for prompt in prompts for seed in seeds]
    output = args.output  # the file it names, for one request and no directory:
    one_file = output and len(requests) == 1 and os.path.basename(output) not in ("", ".", "..") and (
        not os.path.isdir(output))
    args.file = pathlib.Path(output) if one_file else None
    return [_CliJob(index, request) for index, request in enumerate(requests, 1)]


def _cli_check_outputs(args: Any, jobs: List[_CliJob]) -> None:
    """Before any traffic (an image is billed even if it cannot be saved): the output directory exists
    or is made, and no file whose name is known already would be replaced without --overwrite."""
    if len(jobs) > 1 and args.output and pathlib.Path(args.output).suffix and not os.path.isdir(args.output) and (
            os.path.basename(args.output) not in ("", ".", "..")):  # "run.v2/" names a directory
        raise FriendliValidationError(f"-o {args.output} names a file, but {len(jobs)} requests will be made: "
                                      "give a directory (e.g. -o out/)")
    folder = _cli_path(args, jobs[0], len(jobs), 0, None).parent  # -o's directory
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise FriendliValidationError(f"cannot create a directory for {args.output!r}: {exc.strerror or exc}") from None
    if not os.access(folder, os.W_OK | os.X_OK):
        raise FriendliValidationError(f"cannot write to the directory {str(folder)!r}")
    suffixes = {"png": ".png", "jpeg": ".jpg", "jpg": ".jpg"}  # the format asked for names the file before the call
    for job in jobs if not args.overwrite else ():
        path = _cli_path(args, job, len(jobs), 0, job.request.seed)
        suffix = suffixes.get(job.request.response_format or ("jpeg" if args.target == "container" else ""))
        if not path.suffix and suffix and (job.request.seed is not None or args.file):
            path = path.with_name(path.name + suffix)  # else the server's seed, or the image's bytes, name it
        if path.suffix and os.path.lexists(path):
            raise FriendliValidationError(f"{path} exists; pass --overwrite to replace it")


def _cli_path(args: Any, job: _CliJob, jobs: int, number: int, seed: Optional[int]) -> pathlib.Path:
    """Where image ``number`` of a job goes; without a suffix, saving adds one from the image's bytes."""
    extra, file = [str(number + 1)] if number else [], args.file
    if isinstance(file, pathlib.Path):
        return file.with_name("-".join([file.stem] + extra) + file.suffix)
    words = "-".join("".join(c if c.isascii() and c.isalnum() else " " for c in job.request.prompt.lower()).split())
    slug = words if len(words) <= 40 else words[:41].rpartition("-")[0] or words[:40]  # cut between words
    parts = ([f"{job.index:03d}"] if jobs > 1 else []) + ([] if args.output is not None else [slug or "image"])
    parts += ([str(seed)] if seed is not None else []) + extra
    return pathlib.Path(args.output or ".") / ("-".join(parts) or "image")


def _cli_run(args: Any, client: Client, jobs: List[_CliJob], reporter: _CliReporter) -> int:
    """Run each job in a thread of its own, ``--concurrency`` at a time, reporting each once as it ends; return the
    exit code.  The first Ctrl-C only asks to stop (nothing is cut short); daemon threads let a second one quit."""
    import queue
    import signal

    total_timeout = max(60.0, args.timeout) if args.total_timeout is None else args.total_timeout
    stop, interrupted = threading.Event(), threading.Event()
    results: queue.Queue[Tuple[_CliJob, List[Tuple[pathlib.Path, GeneratedImage]], Any, str]] = queue.Queue()

    def run(job: _CliJob) -> None:
        reporter.local.job = job  # so that retry messages name their request
        phase, saved, outcome = "request", [], None  # type: str, List[Tuple[pathlib.Path, GeneratedImage]], Any
        try:
            result = client.send(job.request, total_timeout=total_timeout, cancel=stop)
            phase, outcome = "image", result.request_id
            if not result.data:
                raise FriendliError("the API answered with no image")
            for n, image in enumerate(result.data):
                saved.append((image.save(_cli_path(args, job, len(jobs), n, image.seed), overwrite=args.overwrite),
                              image))
        except Exception as exc:  # a bug, not the API, is that request's failure too (its cause shown by -v)
            outcome = exc if isinstance(exc, FriendliError) else FriendliError(f"unexpected {type(exc).__name__}: {exc}")
            if outcome is not exc:
                outcome.__cause__ = exc
            if phase == "request" and isinstance(outcome, (AuthenticationError, PermissionDeniedError)):
                stop.set()  # the API refused the token: no other request can succeed
            elif phase == "request" and type(outcome) is FriendliError and stop.is_set():
                phase = "cancelled"  # stopped before it ended: not done, rather than failed
        results.put((job, saved, outcome, phase))

    def on_interrupt(signum: int, frame: Any) -> None:
        if interrupted.is_set():
            raise KeyboardInterrupt  # the second Ctrl-C: quit now
        interrupted.set()
        stop.set()

    in_main_thread = threading.current_thread() is threading.main_thread()  # where signal handlers may be set
    previous = signal.signal(signal.SIGINT, on_interrupt) if in_main_thread else None
    waiting, running, announced = list(reversed(jobs)), 0, False
    try:
        while running or (waiting and not stop.is_set()):
            if interrupted.is_set() and not announced:
                reporter.say("interrupted: waiting for the requests in flight (Ctrl-C again to quit)")
                announced = True
            if waiting and running < args.concurrency and not stop.is_set():
                threading.Thread(target=run, args=(waiting.pop(),), daemon=True).start()
                running += 1
            else:
                try:
                    reporter.record(*results.get(timeout=0.25))
                    running -= 1
                except queue.Empty:
                    reporter.draw()
    except KeyboardInterrupt:  # the second Ctrl-C (or one raised where no handler could be set)
        interrupted.set()
    finally:
        if in_main_thread:
            signal.signal(signal.SIGINT, signal.SIG_IGN)  # the summary is printed whole
    try:
        code = reporter.finish(jobs)
    finally:
        if in_main_thread:
            signal.signal(signal.SIGINT, signal.SIG_DFL if previous is None else previous)  # None: not set by Python
    return _EXIT_INTERRUPTED if interrupted.is_set() else code


def _cli_describe(err: BaseException) -> str:
    plain = isinstance(err, FriendliValidationError) or type(err) in (FriendliError, ImageSaveError)
    hint = " (pass --overwrite to replace it)" if isinstance(err, ImageSaveError) and err.errno == 17 else ""
    return (str(err) if plain else f"{type(err).__name__}: {err}") + hint


class _CliReporter:
    """Reports a run: each result and retry once on stderr, a status line on a terminal, --json records on stdout."""

    def __init__(self, args: Any, total: int) -> None:
        import logging
        import shutil

        self.args, self.total, self.tty = args, total, sys.stderr.isatty() and os.environ.get("TERM") != "dumb"
        self.width = shutil.get_terminal_size().columns - 1  # the status line must fit on one row
        self.screen, self.local = threading.RLock(), threading.local()
        self.codes: Dict[int, int] = {}  # the exit code of each finished request, by index
        self.started, self.shown = time.monotonic(), False
        self.logger, self.handler = logging.getLogger("friendli_image"), logging.Handler(logging.INFO)
        self.handler.emit = self.retried  # type: ignore[method-assign]  # the module logs each retry at INFO
        self.level_before = self.logger.level
        self.logger.addHandler(self.handler)
        self.logger.setLevel(logging.INFO)
        self.draw()

    def close(self) -> None:
        self.clear()
        self.logger.removeHandler(self.handler)
        self.logger.setLevel(self.level_before)

    def retried(self, record: Any) -> None:
        job = getattr(self.local, "job", None)
        self.say((f"{job.label}: " if job is not None and self.total > 1 else "") + record.getMessage())

    def say(self, text: str, stream: Any = None) -> None:
        """Print a message, or a --json record on ``stream`` (maybe this terminal too), over the status line."""
        with self.screen:
            self.clear()
            self.emit(f"friendli-image: {text}" if stream is None else text, stream or sys.stderr)
            self.draw()

    def emit(self, text: str, stream: Any, end: str = "\n") -> None:
        """Write to a stream; one that fails (a closed pipe, a full disk) gets os.devnull from then on, and the run
        goes on with its images saved."""
        try:
            print(text, end=end, file=stream, flush=True)
        except OSError:
            os.dup2(os.open(os.devnull, os.O_WRONLY), stream.fileno())  # what is buffered cannot fail at exit either

    def clear(self) -> None:
        with self.screen:
            if self.shown:
                self.emit("\r\x1b[K", sys.stderr, end="")
                self.shown = False

    def draw(self) -> None:
        """On a terminal, (re)draw the status line: how long one image waits, or a batch's counts."""
        done, failed, elapsed = len(self.codes), sum(map(bool, self.codes.values())), time.monotonic() - self.started
        line = f"{done}/{self.total} done, {failed} failed, {self.total - done} left, {elapsed:.0f} s"
        line = f"waiting for the image: {elapsed:.0f} s" if self.total == 1 else line + (
            f", about {elapsed / done * (self.total - done):.0f} s to go" if 0 < done < self.total else "")
        with self.screen:
            if self.tty:  # one row, or clearing it would leave the rows it wrapped onto
                self.emit("\r\x1b[K" + line[:self.width], sys.stderr, end="")
                self.shown = True

    def record(self, job: _CliJob, saved: List[Tuple[pathlib.Path, GeneratedImage]], outcome: Any, phase: str
               ) -> None:
        """Report one request that ended, its images saved and its error or request id, and keep its exit code (0
        when it succeeded); one cancelled before it ended stays not done."""
        for path, image in saved:
            self.say(f"saved {path}" + ("" if image.seed is None else f" (seed {image.seed})"))
        images = [{"path": str(path), "seed": image.seed, "format": image.response_format} for path, image in saved]
        if phase == "cancelled":
            return
        if isinstance(outcome, FriendliError):
            code = _EXIT_NETWORK if isinstance(outcome, APIConnectionError) else _EXIT_API
            if phase == "request" and isinstance(outcome, (AuthenticationError, PermissionDeniedError)):
                code = _EXIT_AUTH  # an image host's 401/403 is that image's failure, not the token's
            self.codes[job.index] = code
            if self.args.verbose:
                import traceback

                self.say("".join(traceback.format_exception(type(outcome), outcome, outcome.__traceback__)).rstrip())
            where = (f"{job.label}: " if self.total > 1 else "") + ("saving: " if phase == "image" else "")
            self.say(f"error: {where}{_cli_describe(outcome)}")
            error = {"type": type(outcome).__name__, "status": getattr(outcome, "status_code", None),
                     "message": str(outcome), "request_id": outcome.request_id, "attempts": outcome.attempts}
            payload: Dict[str, Any] = {"ok": False, "error": error, **({"images": images} if images else {})}
        else:
            self.codes[job.index] = 0
            payload = {"ok": True, "request_id": outcome, "images": images}
        if self.args.json:
            self.say(json.dumps({"index": job.index, "prompt": job.request.prompt, **payload}), sys.stdout)

    def finish(self, jobs: List[_CliJob]) -> int:
        """Print a batch's summary (and, with --json, a record of each request not done); return the exit code."""
        failed = [self.codes[index] for index in sorted(self.codes) if self.codes[index]]
        unfinished = [job for job in jobs if job.index not in self.codes]  # not sent, or cut short by Ctrl-C
        for job in unfinished if self.args.json else ():
            error = {"type": "NotDone", "status": None, "message": "the run stopped before this request ended",
                     "request_id": None, "attempts": 0}
            self.say(json.dumps({"index": job.index, "prompt": job.request.prompt, "ok": False, "error": error}),
                     sys.stdout)
        if self.total > 1:
            left = f", {len(unfinished)} not done" if unfinished else ""
            self.say(f"{len(self.codes) - len(failed)} of {self.total} requests succeeded, {len(failed)} failed{left}"
                     f" in {time.monotonic() - self.started:.1f} s")
        if _EXIT_AUTH in failed:
            return _EXIT_AUTH  # the token was refused: the batch stopped there
        if failed and len(failed) == len(self.codes):
            return failed[0]  # all that ran failed: the first one says why
        return _EXIT_PARTIAL if failed or unfinished else 0


if __name__ == "__main__":
    sys.exit(main())
