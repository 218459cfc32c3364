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
import dataclasses
import email.utils
import http.client
import io
import json
import math
import os
import pathlib
import random
import re
import socket
import ssl
import sys
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Mapping, Sequence

TYPE_CHECKING = False
if TYPE_CHECKING:  # annotations only: a plain call needs neither typing nor logging imported
    import logging
    from typing import Any, Callable, Dict, List, NoReturn, Optional, Tuple, TypeVar, Union

__version__ = "0.1.0"

__all__ = [
    "APIConnectionError",
    "APIStatusError",
    "APITimeoutError",
    "AsyncClient",
    "AsyncFriendli",
    "AuthenticationError",
    "BackoffStrategy",
    "BadRequestError",
    "Client",
    "DEFAULT_BASE_URL",
    "DEFAULT_CONTAINER_BASE_URL",
    "DEFAULT_MAX_RESPONSE_BYTES",
    "DEFAULT_RETRY_CONFIG",
    "DEFAULT_TIMEOUT",
    "FriendliError",
    "FriendliValidationError",
    "GeneratedImage",
    "ImageEditRequest",
    "ImageGenerationRequest",
    "ImageGenerationResult",
    "InternalServerError",
    "InvalidResponseError",
    "MAX_INPUT_IMAGE_BYTES",
    "ModelRef",
    "NotFoundError",
    "PermissionDeniedError",
    "RateLimitError",
    "RetryConfig",
    "SDKError",
    "SyncFriendli",
    "UnprocessableEntityError",
    "generate",
    "main",
]

# ===========================================================================
# Public constants
# ===========================================================================

DEFAULT_BASE_URL = "https://api.friendli.ai"
"""Where Dedicated Endpoints live; ``FRIENDLI_BASE_URL`` or ``base_url=`` override it."""

DEFAULT_CONTAINER_BASE_URL = "http://localhost:8000"
"""Where a Friendli Container listens by default (the published spec's server)."""

DEFAULT_TIMEOUT = 60.0
"""Seconds one attempt may take, from connecting to the last byte of the response."""

DEFAULT_MAX_RESPONSE_BYTES = 256 * 1024 * 1024
"""Largest response body accepted; a larger one raises :class:`InvalidResponseError`."""

MAX_INPUT_IMAGE_BYTES = 50 * 1024 * 1024
"""Largest input image the API accepts (documented limit); larger inputs are refused locally."""

RESPONSE_FORMATS = ("url", "raw", "png", "jpeg", "jpg")
"""``response_format`` values a Dedicated Endpoint accepts."""

CONTAINER_RESPONSE_FORMATS = ("raw", "jpeg")
"""``response_format`` values a Friendli Container accepts."""

RETRYABLE_STATUS_CODES = (429, 500, 502, 503, 504)
"""Statuses retried by default (the official SDK's ``x-speakeasy-retries``)."""

TARGETS = ("dedicated", "container")
"""Kinds of deployment a :class:`Client` can talk to."""

_API_PATHS = {
    ("dedicated", "generate"): "/dedicated/v1/images/generations",
    ("dedicated", "edit"): "/dedicated/v1/images/edits",
    ("container", "generate"): "/v1/images/generations",
    ("container", "edit"): "/v1/images/edits",
}
_ERROR_BODY_LIMIT = 64 * 1024  # bytes of an error body kept for messages and ``.body``
_MAX_REDIRECTS = 10  # for image downloads only; API calls never follow redirects
_REDIRECT_STATUSES = (301, 302, 303, 307, 308)


def __getattr__(name: str) -> Any:
    """``logger``: the module's ``logging`` logger, ``"friendli_image"`` (made on first use).

    Retries are logged at INFO and every exchange at DEBUG; tokens never appear.
    """
    if name == "logger":
        import logging

        return logging.getLogger("friendli_image")
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def _logger(level: int) -> Optional[logging.Logger]:
    """The module's logger if a record at ``level`` would be handled, else None.

    When the application never imported :mod:`logging`, nothing can be listening
    (the last-resort handler shows only warnings and above), so importing it is skipped.
    """
    module = sys.modules.get("logging")
    if module is None:
        return None
    log: logging.Logger = module.getLogger("friendli_image")
    return log if log.isEnabledFor(level) else None


# ===========================================================================
# Errors
# ===========================================================================


class FriendliError(Exception):
    """Base class of every error this module raises.

    ``attempts`` is how many HTTP attempts the call made before giving up; when it
    is over 1 the message ends with "(after N attempts)".
    """

    def __init__(self, message: str, *, attempts: int = 1) -> None:
        super().__init__(message)
        self._text = message
        self.attempts = attempts

    def __str__(self) -> str:
        if self.attempts > 1:
            return f"{self._text} (after {self.attempts} attempts)"
        return self._text

    def __reduce__(self) -> Any:
        # Keyword-only constructors do not survive the default pickling of exceptions.
        return (_rebuild_error, (type(self), self.args, self.__dict__))


def _rebuild_error(cls: "type[FriendliError]", args: Tuple[Any, ...], state: Dict[str, Any]) -> FriendliError:
    err = cls.__new__(cls)
    err.args = args
    err.__dict__.update(state)
    return err


class FriendliValidationError(FriendliError, ValueError):
    """An argument is invalid; raised before any network traffic."""


class APIStatusError(FriendliError):
    """The API answered with a status that is not success (any non-2xx).

    Attributes: ``status_code``; ``message`` (the server's ``detail``/``message``/
    ``error`` text when the body is JSON, else the HTTP reason); ``body`` (the
    response text, at most 64 KiB); ``headers``; ``request_id`` (the
    ``X-Request-Id`` response header); ``attempts``.
    """

    def __init__(
        self,
        message: str,
        *,
        status_code: int,
        body: str = "",
        headers: Optional[Mapping[str, str]] = None,
        request_id: Optional[str] = None,
        server_message: Optional[str] = None,
        attempts: int = 1,
    ) -> None:
        super().__init__(message, attempts=attempts)
        self.status_code = status_code
        self.body = body
        self.headers: Mapping[str, str] = headers if headers is not None else {}
        self.request_id = request_id
        self.message = server_message if server_message is not None else message


SDKError = APIStatusError
"""The official SDK's name for :class:`APIStatusError`."""


class BadRequestError(APIStatusError):
    """400 Bad Request."""


class AuthenticationError(APIStatusError):
    """401 Unauthorized: the token is missing, wrong or expired."""


class PermissionDeniedError(APIStatusError):
    """403 Forbidden: the token may not use this endpoint or team."""


class NotFoundError(APIStatusError):
    """404 Not Found: usually a wrong endpoint id or adapter route."""


class UnprocessableEntityError(APIStatusError):
    """422 Unprocessable Entity; ``errors`` is the server's parsed ``detail`` list."""

    @property
    def errors(self) -> List[Any]:
        """The ``detail`` list of the 422 body (``[]`` when there is none)."""
        try:
            detail = json.loads(self.body).get("detail")
        except (ValueError, AttributeError, RecursionError):
            return []
        return detail if isinstance(detail, list) else []


class RateLimitError(APIStatusError):
    """429 Too Many Requests."""


class InternalServerError(APIStatusError):
    """Any 5xx status."""


class APIConnectionError(FriendliError):
    """No complete answer arrived: DNS, refused, reset, TLS, or a body cut short.

    ``retryable`` is False for failures a retry cannot cure (e.g. an untrusted
    TLS certificate).
    """

    def __init__(self, message: str, *, retryable: bool = True, attempts: int = 1) -> None:
        super().__init__(message, attempts=attempts)
        self.retryable = retryable


class APITimeoutError(APIConnectionError):
    """An attempt ran out of time before the response was complete."""


class InvalidResponseError(FriendliError):
    """A 2xx response whose body is not what the API documents (or is too large)."""

    def __init__(
        self,
        message: str,
        *,
        status_code: Optional[int] = None,
        request_id: Optional[str] = None,
        attempts: int = 1,
    ) -> None:
        super().__init__(message, attempts=attempts)
        self.status_code = status_code
        self.request_id = request_id


_STATUS_ERRORS: Dict[int, type] = {
    400: BadRequestError,
    401: AuthenticationError,
    403: PermissionDeniedError,
    404: NotFoundError,
    422: UnprocessableEntityError,
    429: RateLimitError,
}


def _status_error_class(status: int) -> type:
    """The one place that maps an HTTP status to an error class."""
    if status in _STATUS_ERRORS:
        return _STATUS_ERRORS[status]
    if 500 <= status <= 599:
        return InternalServerError
    return APIStatusError


# ===========================================================================
# Data types
# ===========================================================================

if TYPE_CHECKING:
    # An input image: URL, ``data:`` URI, base64 text, bytes, a path, or ``{"image": ...}``.
    ImageInput = Union[str, bytes, bytearray, "os.PathLike[str]", Mapping[str, Any]]

_IMAGE_SIGNATURES = (
    (b"\x89PNG\r\n\x1a\n", "png"),
    (b"\xff\xd8\xff", "jpeg"),
    (b"GIF87a", "gif"),
    (b"GIF89a", "gif"),
    (b"II*\x00", "tiff"),
    (b"MM\x00*", "tiff"),
    (b"BM", "bmp"),
)
_SUFFIXES = {"png": ".png", "jpeg": ".jpg", "gif": ".gif", "webp": ".webp", "tiff": ".tiff", "bmp": ".bmp"}


def _sniff_image_type(head: bytes) -> Optional[str]:
    """The image type named by the first bytes of a file, or None."""
    for signature, kind in _IMAGE_SIGNATURES:
        if head.startswith(signature):
            return kind
    if head[:4] == b"RIFF" and head[8:12] == b"WEBP":
        return "webp"
    return None


def _image_suffix(data: bytes) -> str:
    """The file suffix for image bytes (``.png``, ``.jpg``, ...; ``.bin`` when unknown)."""
    return _SUFFIXES.get(_sniff_image_type(data[:16]) or "", ".bin")


def _short(value: Any, limit: int = 60) -> str:
    """``repr(value)`` cut to ``limit`` characters, for error messages."""
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 1] + "\u2026"


_SPACE_OR_CONTROL = re.compile(r"[\s\x00-\x1f\x7f]")
_HEADER_UNSAFE = re.compile(r"[\x00-\x08\x0a-\x1f\x7f]")  # controls other than tab


def _has_space_or_control(text: str) -> bool:
    return _SPACE_OR_CONTROL.search(text) is not None


def _check_identifier(value: Any, param: str) -> str:
    """A non-empty string without whitespace or control characters."""
    if not isinstance(value, str) or not value:
        raise FriendliValidationError(f"{param} must be a non-empty string, got {_short(value)}")
    if _has_space_or_control(value):
        raise FriendliValidationError(
            f"{param} must not contain whitespace or control characters, got {_short(value)}"
        )
    return value


def _check_header_value(value: Any, what: str) -> str:
    """A string HTTP can carry as a header value (latin-1, no line breaks or other controls)."""
    if not isinstance(value, str) or _HEADER_UNSAFE.search(value) or not _is_latin1(value):
        raise FriendliValidationError(f"{what} is not a valid HTTP header value (latin-1 text, no line breaks)")
    return value


def _is_latin1(text: str) -> bool:
    try:
        text.encode("latin-1")
    except UnicodeEncodeError:
        return False
    return True


@dataclasses.dataclass(frozen=True)
class ModelRef:
    """A Dedicated Endpoint model string, ``ENDPOINT_ID`` or ``ENDPOINT_ID:ADAPTER_ROUTE``."""

    endpoint_id: str
    adapter_route: Optional[str] = None

    def __post_init__(self) -> None:
        _check_identifier(self.endpoint_id, "model endpoint id")
        if ":" in self.endpoint_id:
            raise FriendliValidationError(f"model endpoint id must not contain ':', got {_short(self.endpoint_id)}")
        if self.adapter_route is not None:
            _check_identifier(self.adapter_route, "model adapter route")
            if ":" in self.adapter_route:
                raise FriendliValidationError(
                    f"model adapter route must not contain ':', got {_short(self.adapter_route)}"
                )

    @classmethod
    def parse(cls, value: Union[str, "ModelRef"]) -> "ModelRef":
        """Parse ``"endpoint"`` or ``"endpoint:adapter"``; a ModelRef is returned as is."""
        if isinstance(value, ModelRef):
            return value
        if not isinstance(value, str):
            raise FriendliValidationError(f"model must be a string like 'endpoint-id[:adapter]', got {_short(value)}")
        if value.count(":") > 1:
            raise FriendliValidationError(
                f"model must be 'endpoint-id' or 'endpoint-id:adapter-route' (one ':' at most), got {_short(value)}"
            )
        endpoint, sep, adapter = value.partition(":")
        if not endpoint:
            raise FriendliValidationError(f"model has an empty endpoint id: {_short(value)}")
        if sep and not adapter:
            raise FriendliValidationError(f"model has an empty adapter route after ':': {_short(value)}")
        return cls(endpoint, adapter if sep else None)

    def __str__(self) -> str:
        if self.adapter_route is None:
            return self.endpoint_id
        return f"{self.endpoint_id}:{self.adapter_route}"


def _base64_size(compact: str) -> int:
    """How many bytes base64 text without whitespace decodes to."""
    return len(compact) // 4 * 3 - compact[-2:].count("=")


def _decode_base64(text: str) -> bytes:
    """Strictly decode standard base64 (whitespace between groups allowed); ValueError when it is not."""
    # Everything here runs at C speed: images are tens of megabytes of base64.
    compact = "".join(text.split()) if text.isascii() else ""
    if not compact or len(compact) % 4:
        raise ValueError("not valid base64")
    data = binascii.a2b_base64(compact)  # binascii.Error is a ValueError
    # a2b_base64 silently skips characters outside the alphabet, so a decoded
    # length short of what the input length promises means the input was bad.
    if len(data) != _base64_size(compact):
        raise ValueError("not valid base64")
    return data


def _too_large(size: int, param: str, what: str = "image") -> FriendliValidationError:
    return FriendliValidationError(
        f"{param}: {what} is {size} bytes, over the API's limit of {MAX_INPUT_IMAGE_BYTES} bytes (50 MiB)"
    )


def _data_uri(data: Union[bytes, bytearray, memoryview], param: str) -> str:
    size = memoryview(data).nbytes
    if size > MAX_INPUT_IMAGE_BYTES:  # checked before any copy
        raise _too_large(size, param)
    data = bytes(data)
    kind = _sniff_image_type(data[:16])
    if kind is None:
        raise FriendliValidationError(
            f"{param}: cannot tell the image type of these bytes (PNG, JPEG, GIF, WebP, TIFF or BMP expected); "
            "pass a 'data:image/...;base64,' URI to choose it yourself"
        )
    return f"data:image/{kind};base64," + base64.b64encode(data).decode("ascii")


def _read_image_file(path: "os.PathLike[str]", param: str) -> str:
    try:
        size = os.stat(path).st_size
        if size > MAX_INPUT_IMAGE_BYTES:
            raise _too_large(size, param, repr(os.fspath(path)))
        with open(path, "rb") as fh:
            data = fh.read()
    except OSError as exc:
        raise FriendliValidationError(f"{param}: cannot read {os.fspath(path)!r}: {exc.strerror or exc}") from exc
    return _data_uri(data, param)


def _encode_image_input(value: Any, param: str) -> str:
    """Turn one input image into the string the API takes (URL, data URI or base64)."""
    if isinstance(value, Mapping) and "image" in value:
        return _encode_image_input(value["image"], param)
    if isinstance(value, os.PathLike):
        return _read_image_file(value, param)
    if isinstance(value, (bytes, bytearray, memoryview)):
        return _data_uri(value, param)
    if not isinstance(value, str) or not value.strip():
        raise FriendliValidationError(
            f"{param} must be a URL, data: URI, base64 string, bytes or a file path, got {_short(value)}"
        )
    lowered = value[:8].lower()
    if lowered.startswith(("http://", "https://")):
        if _has_space_or_control(value):
            raise FriendliValidationError(f"{param}: URL contains whitespace: {_short(value)}")
        return value
    is_data_uri = lowered.startswith("data:")
    if is_data_uri:
        header, comma, encoded = value.partition(",")
        if not comma or not header.endswith(";base64"):
            raise FriendliValidationError(f"{param}: not a valid 'data:<type>;base64,<data>' URI: {_short(value)}")
    elif len(value) < 4096 and "\n" not in value and os.path.isfile(value):
        return _read_image_file(pathlib.Path(value), param)
    else:
        encoded = value
    size = _base64_size("".join(encoded.split()))
    if size > MAX_INPUT_IMAGE_BYTES:  # checked before decoding
        raise _too_large(size, param)
    try:
        decoded = _decode_base64(encoded)
    except ValueError:
        if is_data_uri:
            raise FriendliValidationError(
                f"{param}: not a valid 'data:<type>;base64,<data>' URI: {_short(value)}"
            ) from None
        raise FriendliValidationError(
            f"{param} is not a URL, a data: URI, base64 text, or an existing file: {_short(value)}"
        ) from None
    if not is_data_uri and _sniff_image_type(decoded[:16]) is None:
        # Short words and mistyped paths ("photos/cat1") are valid base64 too.
        raise FriendliValidationError(
            f"{param} is base64 text but not of a PNG, JPEG, GIF, WebP, TIFF or BMP image (nor a URL or an "
            f"existing file): {_short(value)}; pass a 'data:image/...;base64,' URI to choose the type yourself"
        )
    return value


def _check_prompt(prompt: Any) -> None:
    if not isinstance(prompt, str) or not prompt.strip():
        raise FriendliValidationError(f"prompt must be a non-empty string, got {_short(prompt)}")


def _check_int(value: Any, param: str) -> None:
    if not isinstance(value, int) or isinstance(value, bool):
        raise FriendliValidationError(f"{param} must be an int, got {_short(value)}")


def _check_finite(value: Any, param: str) -> None:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise FriendliValidationError(f"{param} must be a finite number, got {_short(value)}")


_JSON_ENCODER = json.JSONEncoder(allow_nan=False, ensure_ascii=False)


@dataclasses.dataclass
class ImageGenerationRequest:
    """The JSON body of an image generation; validated when constructed.

    ``target`` is ``"dedicated"`` (``model`` required, ``ENDPOINT[:ADAPTER]``) or
    ``"container"`` (``model`` is an optional adapter route, ``response_format`` is
    ``raw`` or ``jpeg``).  Input images are normalised to the strings the API takes.
    """

    model: Optional[Union[str, ModelRef]]
    prompt: str
    num_inference_steps: int = 20
    guidance_scale: Optional[float] = None
    seed: Optional[int] = None
    response_format: Optional[str] = None
    control_images: Optional[Sequence[ImageInput]] = None
    controlnet_weights: Optional[Sequence[float]] = None
    target: str = "dedicated"

    def __post_init__(self) -> None:
        self._validate_common()
        if self.control_images is not None:
            if isinstance(self.control_images, (str, bytes)) or not isinstance(self.control_images, Sequence):
                raise FriendliValidationError(
                    f"control_images must be a list of images, got {_short(self.control_images)}"
                )
            if not self.control_images:
                raise FriendliValidationError("control_images must not be empty (omit it instead)")
            self.control_images = [
                _encode_image_input(img, f"control_images[{i}]") for i, img in enumerate(self.control_images)
            ]
        if self.controlnet_weights is not None:
            weights = self.controlnet_weights
            if isinstance(weights, (str, bytes)) or not isinstance(weights, Sequence):
                raise FriendliValidationError(f"controlnet_weights must be a list of numbers, got {_short(weights)}")
            for i, weight in enumerate(weights):
                _check_finite(weight, f"controlnet_weights[{i}]")
                if not 0 <= weight <= 1:
                    raise FriendliValidationError(f"controlnet_weights[{i}] must be within [0, 1], got {weight!r}")
            if self.control_images is not None and len(weights) != len(self.control_images):
                raise FriendliValidationError(
                    f"controlnet_weights has {len(weights)} values but control_images has "
                    f"{len(self.control_images)}; they must be the same length"
                )
            self.controlnet_weights = list(weights)

    def _validate_common(self) -> None:
        if self.target not in TARGETS:
            raise FriendliValidationError(f"target must be one of {TARGETS}, got {_short(self.target)}")
        if self.target == "dedicated":
            if self.model is None:
                raise FriendliValidationError("model is required: pass model='endpoint-id' or 'endpoint-id:adapter'")
            self.model = ModelRef.parse(self.model)
        elif self.model is not None:
            self.model = _check_identifier(str(self.model), "model (adapter route)")
        _check_prompt(self.prompt)
        _check_int(self.num_inference_steps, "num_inference_steps")
        if not 1 <= self.num_inference_steps <= 50:
            raise FriendliValidationError(
                f"num_inference_steps must be within [1, 50], got {self.num_inference_steps!r}"
            )
        if self.guidance_scale is not None:
            _check_finite(self.guidance_scale, "guidance_scale")
        if self.seed is not None:
            _check_int(self.seed, "seed")
        allowed = RESPONSE_FORMATS if self.target == "dedicated" else CONTAINER_RESPONSE_FORMATS
        if self.response_format is not None and self.response_format not in allowed:
            raise FriendliValidationError(
                f"response_format must be one of {', '.join(allowed)} for a {self.target} target, "
                f"got {_short(self.response_format)}"
            )

    def to_dict(self) -> Dict[str, Any]:
        """The JSON body as a dict; ``None`` fields are left out."""
        body = {name: value for name, value in vars(self).items() if value is not None and name != "target"}
        if "model" in body:
            body["model"] = str(body["model"])
        if "control_images" in body:
            body["control_images"] = [{"image": img} for img in body["control_images"]]
        return body

    def to_json(self) -> bytes:
        """The JSON body, UTF-8 encoded (NaN and infinities are refused)."""
        return _JSON_ENCODER.encode(self.to_dict()).encode("utf-8")


@dataclasses.dataclass
class ImageEditRequest(ImageGenerationRequest):
    """The JSON body of an image edit: a generation request plus ``image``.

    ``image`` is one input or a list of inputs (see :data:`ImageInput`).
    """

    image: Optional[Union[ImageInput, Sequence[ImageInput]]] = None

    def __post_init__(self) -> None:
        self._validate_common()
        if self.control_images is not None or self.controlnet_weights is not None:
            raise FriendliValidationError("control_images and controlnet_weights are not part of an image edit")
        image = self.image
        if image is None:
            raise FriendliValidationError("image is required for an edit")
        if isinstance(image, (list, tuple)):
            if not image:
                raise FriendliValidationError("image must not be an empty list")
            self.image = [_encode_image_input(img, f"image[{i}]") for i, img in enumerate(image)]
        else:
            self.image = _encode_image_input(image, "image")

    def to_dict(self) -> Dict[str, Any]:
        """The JSON body as a dict; ``None`` fields are left out."""
        body = super().to_dict()
        if isinstance(self.image, list):
            body["image"] = [{"image": img} for img in self.image]
        else:
            body["image"] = {"image": self.image}
        return body


@dataclasses.dataclass(repr=False)
class GeneratedImage:
    """One image of a result: ``b64_json`` holds it, or ``url`` says where to fetch it."""

    seed: Optional[int]
    response_format: Optional[str]
    url: Optional[str] = None
    b64_json: Optional[str] = None

    # An image made from a response also carries, outside its fields (so asdict() and
    # comparisons ignore them), the client's transport for downloading ``url`` and the
    # bytes decoded when the response was validated; see _attach().

    def __repr__(self) -> str:
        parts = [f"seed={self.seed!r}", f"response_format={self.response_format!r}"]
        if self.url is not None:
            parts.append(f"url={self.url!r}")
        if self.b64_json is not None:
            b64 = self.b64_json
            shown = repr(b64) if len(b64) <= 48 else f"'{b64[:32]}\u2026' ({len(b64)} chars)"
            parts.append(f"b64_json={shown}")
        return f"GeneratedImage({', '.join(parts)})"

    def __getstate__(self) -> Dict[str, Any]:
        # A pickle carries the data, not the client's transport (it holds an SSL context).
        return {name: value for name, value in self.__dict__.items() if name not in ("_transport", "_decoded")}

    def __copy__(self) -> "GeneratedImage":
        clone = dataclasses.replace(self)  # the fields are immutable, so this is also a deep copy
        if "_transport" in self.__dict__:
            clone.__dict__["_transport"] = self.__dict__["_transport"]
        return clone

    def __deepcopy__(self, memo: Dict[int, Any]) -> "GeneratedImage":
        return self.__copy__()

    def content(self) -> bytes:
        """The image bytes: ``b64_json`` decoded, or ``url`` downloaded.

        A download sends no ``Authorization`` header, follows redirects, and uses the
        client's timeout, retry policy and response size cap.
        """
        decoded = self.__dict__.pop("_decoded", None)  # decoded once, when the response was checked
        if decoded is not None and decoded[0] is self.b64_json:
            return decoded[1]  # type: ignore[no-any-return]
        if self.b64_json is not None:
            try:
                return _decode_base64(self.b64_json)
            except ValueError as exc:
                raise InvalidResponseError("b64_json of this image is not valid base64") from exc
        if self.url is None:
            raise FriendliError("this image has neither b64_json nor url")
        transport = self.__dict__.get("_transport") or _Transport()
        return transport.download(self.url)

    def save(self, path: Union[str, "os.PathLike[str]"]) -> pathlib.Path:
        """Write the image to ``path`` and return the path written.

        A path without a suffix gets ``.png``/``.jpg``/... from the image's bytes.
        The file appears whole or not at all (written beside, then renamed).
        """
        data = self.content()
        target = pathlib.Path(path)
        if not target.suffix:
            target = target.with_name(target.name + _image_suffix(data))
        _write_atomically(target, data)
        return target

    def data_uri(self) -> str:
        """The image as a ``data:image/<type>;base64,...`` URI, for HTML or JSON responses.

        The type comes from the image's bytes; bytes of no known image type give
        ``data:application/octet-stream;base64,...`` rather than a wrong label.
        """
        data = self.content()  # decodes (so validates) b64_json, or downloads url
        kind = _sniff_image_type(data[:16])
        media_type = f"image/{kind}" if kind else "application/octet-stream"
        if self.b64_json is not None:
            encoded = "".join(self.b64_json.split())
        else:
            encoded = base64.b64encode(data).decode("ascii")
        return f"data:{media_type};base64,{encoded}"


def _attach(image: GeneratedImage, transport: "_Transport", decoded: Optional[bytes] = None) -> GeneratedImage:
    """Give an image from a response its client's transport and, if known, its decoded bytes.

    ``content()`` uses the decoded bytes once instead of decoding ``b64_json`` again.
    """
    image.__dict__["_transport"] = transport
    if decoded is not None:
        image.__dict__["_decoded"] = (image.b64_json, decoded)
    return image


def _write_atomically(target: pathlib.Path, data: bytes) -> None:
    tmp = target.with_name(f".{target.name}.{os.getpid()}-{threading.get_ident()}.part")
    try:
        with open(tmp, "xb") as fh:
            fh.write(data)
        os.replace(tmp, target)
    except BaseException:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise


@dataclasses.dataclass
class ImageGenerationResult:
    """What a generate or edit call returns: the images and the server's request id."""

    data: List[GeneratedImage]
    request_id: Optional[str] = None

    def save_all(self, directory: Union[str, "os.PathLike[str]"], prefix: str = "image") -> List[pathlib.Path]:
        """Save every image as ``directory/<prefix>-<index>.<ext>``; return the paths.

        The directory is created when missing; ``<ext>`` comes from each image's bytes.
        """
        if not isinstance(prefix, str) or not prefix or any(sep in prefix for sep in ("/", "\\", os.sep)):
            raise FriendliValidationError(f"prefix must be a file name without a directory part, got {_short(prefix)}")
        folder = pathlib.Path(directory)
        folder.mkdir(parents=True, exist_ok=True)
        return [image.save(folder / f"{prefix}-{index}") for index, image in enumerate(self.data)]


# ===========================================================================
# Retry policy
# ===========================================================================


@dataclasses.dataclass
class BackoffStrategy:
    """Exponential backoff, in milliseconds, as in the official SDK.

    The n-th retry sleeps ``initial_interval * exponent**n`` plus a random jitter
    (0-1000 ms unless ``jitter_ms`` says otherwise), capped at ``max_interval``.
    ``max_elapsed_time`` bounds the whole call (it is the default ``total_timeout``).
    """

    initial_interval: int
    max_interval: int
    exponent: float
    max_elapsed_time: int
    jitter_ms: Optional[int] = None

    def __post_init__(self) -> None:
        for name in ("initial_interval", "max_interval", "exponent", "max_elapsed_time", "jitter_ms"):
            value = getattr(self, name)
            if value is None and name == "jitter_ms":
                continue
            _check_finite(value, f"BackoffStrategy.{name}")
            if value < 0 or (name == "max_elapsed_time" and value == 0):
                raise FriendliValidationError(f"BackoffStrategy.{name} must be positive, got {value!r}")

    def delay(self, retry_index: int) -> float:
        """Seconds to sleep before retry number ``retry_index`` (0 for the first retry)."""
        jitter = 1000.0 if self.jitter_ms is None else float(self.jitter_ms)
        try:
            millis = self.initial_interval * float(self.exponent) ** retry_index
        except OverflowError:  # thousands of retries in: the cap applies anyway
            millis = math.inf
        return min(millis + random.uniform(0, jitter), self.max_interval) / 1000.0


_DEFAULT_BACKOFF = BackoffStrategy(500, 60000, 1.5, 3600000)
_STATUS_PATTERN = re.compile(r"[1-5][0-9X]{2}$", re.IGNORECASE)


@dataclasses.dataclass
class RetryConfig:
    """When to retry: ``strategy`` is ``"backoff"`` or ``"none"`` (the SDK's names and order).

    ``status_codes_override`` replaces the retried statuses (ints, or patterns such
    as ``"5XX"``); ``max_retries`` optionally caps the number of retries.
    """

    strategy: str
    backoff: Optional[BackoffStrategy] = None
    retry_connection_errors: bool = True
    status_codes_override: Optional[Sequence[Union[int, str]]] = None
    max_retries: Optional[int] = None

    def __post_init__(self) -> None:
        if self.strategy not in ("backoff", "none"):
            raise FriendliValidationError(f"RetryConfig.strategy must be 'backoff' or 'none', got {_short(self.strategy)}")
        if self.strategy == "backoff" and self.backoff is None:
            self.backoff = _DEFAULT_BACKOFF
        if self.backoff is not None and not isinstance(self.backoff, BackoffStrategy):
            raise FriendliValidationError(f"RetryConfig.backoff must be a BackoffStrategy, got {_short(self.backoff)}")
        if not isinstance(self.retry_connection_errors, bool):
            raise FriendliValidationError(
                f"RetryConfig.retry_connection_errors must be a bool, got {_short(self.retry_connection_errors)}"
            )
        codes = self.status_codes_override
        if codes is not None:
            if isinstance(codes, (str, bytes)) or not isinstance(codes, Sequence) or not all(
                (isinstance(c, int) and not isinstance(c, bool)) or (isinstance(c, str) and _STATUS_PATTERN.match(c))
                for c in codes
            ):
                raise FriendliValidationError(
                    f"RetryConfig.status_codes_override must be a list of statuses or patterns like '5XX', "
                    f"got {_short(codes)}"
                )
        if self.max_retries is not None:
            _check_int(self.max_retries, "RetryConfig.max_retries")

    def retries_status(self, status: int) -> bool:
        """Whether an answer with this status is retried."""
        codes = RETRYABLE_STATUS_CODES if self.status_codes_override is None else self.status_codes_override
        text = str(status)
        return any(
            all(want in ("X", "x", got) for want, got in zip(str(code), text)) and len(str(code)) == len(text)
            for code in codes
        )


DEFAULT_RETRY_CONFIG = RetryConfig("backoff", _DEFAULT_BACKOFF, True)
"""The official SDK's policy: 500 ms x1.5 backoff with jitter, 60 s cap, 1 h budget."""

_NO_RETRIES = RetryConfig("none")


def _retry_after_seconds(headers: Mapping[str, str]) -> Optional[float]:
    """Seconds the server asked us to wait (``retry-after-ms``, then ``Retry-After``), or None."""
    value = headers.get("retry-after-ms")
    if value is not None:
        try:
            millis = float(value)
        except ValueError:
            millis = math.nan
        if math.isfinite(millis) and millis > 0:
            return millis / 1000.0
    value = headers.get("retry-after")
    if value is None:
        return None
    try:
        seconds = float(value)
    except ValueError:
        try:
            when = email.utils.parsedate_to_datetime(value)
        except (TypeError, ValueError, IndexError, OverflowError):
            return None
        if when is None:
            return None
        seconds = when.timestamp() - time.time()
    return seconds if math.isfinite(seconds) and seconds > 0 else None


# ===========================================================================
# Transport: the one request path
# ===========================================================================


_NO_TOKEN_MESSAGE = "no API token: set FRIENDLI_TOKEN or pass token= (a string or a callable returning one)"


class _Secret:
    """Holds a token so that no repr, log or traceback local shows it."""

    __slots__ = ("_value",)

    def __init__(self, value: Union[str, Callable[[], str]]) -> None:
        self._value = value

    def get(self) -> str:
        value = self._value
        if callable(value):
            try:
                value = value()
            except Exception as exc:
                raise FriendliError(f"the token callable raised {type(exc).__name__}") from exc
        if not isinstance(value, str) or not value.strip():
            raise FriendliValidationError(_NO_TOKEN_MESSAGE)
        if _has_space_or_control(value) or not value.isascii() or not value.isprintable():
            raise FriendliValidationError("the API token must be printable ASCII without whitespace")
        return value

    __call__ = get  # a _Secret is a token callable too (SyncFriendli hands its own to Client)

    def __repr__(self) -> str:
        return "<token>"


class _DeadlineSocket:
    """A socket wrapper that bounds every read and write by one absolute deadline.

    A socket timeout alone bounds each ``recv``; a server that trickles a byte a
    second would then hold an attempt forever.  ``http.client`` only needs
    ``makefile``, ``sendall`` and ``close`` from a socket; the rest is delegated.
    """

    def __init__(self, sock: socket.socket, deadline: float) -> None:
        self._sock = sock
        self._deadline = deadline
        self._io_refs = 0
        self._closed = False
        # When the socket's timeout was last made to end exactly at the deadline.
        timeout = sock.gettimeout()
        self._armed_at = deadline - timeout if timeout is not None else -math.inf

    def _arm(self) -> None:
        # settimeout() is a system call, so it is repeated only once the last one is
        # _REARM_AFTER old: a read may then overrun the deadline by that much at most.
        now = time.monotonic()
        if now >= self._deadline:
            raise socket.timeout("timed out")
        if now - self._armed_at > _REARM_AFTER:
            self._sock.settimeout(self._deadline - now)
            self._armed_at = now

    def recv_into(self, *args: Any) -> int:
        self._arm()
        return self._sock.recv_into(*args)

    def sendall(self, *args: Any) -> None:
        self._arm()
        self._sock.sendall(*args)

    def makefile(self, mode: str = "rb", *args: Any, **kwargs: Any) -> io.BufferedReader:
        if mode != "rb":
            raise ValueError("only binary reading is supported")
        self._io_refs += 1
        return io.BufferedReader(socket.SocketIO(self, "rb"))  # type: ignore[arg-type]

    def _decref_socketios(self) -> None:
        self._io_refs -= 1
        if self._closed and self._io_refs <= 0:
            self._sock.close()

    def close(self) -> None:
        self._closed = True
        if self._io_refs <= 0:
            self._sock.close()

    def __getattr__(self, name: str) -> Any:
        return getattr(self._sock, name)


_REARM_AFTER = 0.01  # seconds


def _time_left(sock: socket.socket, deadline: float) -> None:
    """Give ``sock`` the time left until ``deadline`` as its timeout (socket.timeout if none is)."""
    remaining = deadline - time.monotonic()
    if remaining <= 0:
        raise socket.timeout("timed out")
    sock.settimeout(remaining)


class _DeadlineHTTPConnection(http.client.HTTPConnection):
    """An HTTP(S) connection whose every step shares the attempt's deadline.

    Connecting, a proxy's answer to ``CONNECT`` (which a slow proxy could otherwise
    trickle forever), the TLS handshake (which gets what is left, not a fresh
    timeout) and every read and write of the exchange.
    """

    def __init__(self, *args: Any, deadline: float, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._deadline = deadline
        self._create_connection = self._open_socket

    def _open_socket(self, address: Tuple[str, int], timeout: float, *args: Any) -> socket.socket:
        sock = socket.create_connection(address, timeout, *args)
        if time.monotonic() + timeout - self._deadline > _REARM_AFTER:  # connecting took a while
            _time_left(sock, self._deadline)
        return sock

    def _tunnel(self) -> None:
        plain = self.sock
        self.sock = _DeadlineSocket(plain, self._deadline)
        try:
            super()._tunnel()  # type: ignore[misc]
        finally:
            if self.sock is not None:  # None: the tunnel failed and closed the connection
                self.sock = plain
        _time_left(plain, self._deadline)

    def connect(self) -> None:
        super().connect()
        self.sock = _DeadlineSocket(self.sock, self._deadline)


class _DeadlineHTTPSConnection(_DeadlineHTTPConnection, http.client.HTTPSConnection):
    pass


class _Request(urllib.request.Request):
    deadline: float = math.inf


class _DeadlineHandler(urllib.request.AbstractHTTPHandler):
    """Opens http and https URLs with deadline-bound connections."""

    def __init__(self, transport: "_Transport") -> None:
        super().__init__()
        self._transport = transport

    def http_open(self, req: urllib.request.Request) -> http.client.HTTPResponse:
        connection_class: Any = _DeadlineHTTPConnection
        return self.do_open(connection_class, req, deadline=getattr(req, "deadline", math.inf))

    def https_open(self, req: urllib.request.Request) -> http.client.HTTPResponse:
        connection_class: Any = _DeadlineHTTPSConnection
        return self.do_open(
            connection_class,
            req,
            context=self._transport.ssl_context(),
            deadline=getattr(req, "deadline", math.inf),
        )

    http_request = urllib.request.AbstractHTTPHandler.do_request_
    https_request = urllib.request.AbstractHTTPHandler.do_request_


class _RawResponse:
    """One HTTP answer as read off the wire (a plain class: made on every call)."""

    __slots__ = ("status", "reason", "headers", "body", "url", "credential")

    def __init__(
        self, status: int, reason: str, headers: Mapping[str, str], body: Union[bytes, bytearray], url: str
    ) -> None:
        self.status = status
        self.reason = reason
        self.headers = headers
        self.body = body
        self.url = url
        self.credential = ""  # what the request's Authorization carried: never quoted back

    @property
    def request_id(self) -> Optional[str]:
        return self.headers.get("x-request-id")


if TYPE_CHECKING:
    T = TypeVar("T")


class _Transport:
    """Sends one logical request with retries, deadlines, a size cap and error mapping.

    Every operation (generate, edit, image download) goes through :meth:`request`.
    """

    def __init__(
        self,
        *,
        timeout: float = DEFAULT_TIMEOUT,
        retries: Optional[RetryConfig] = None,
        ssl_context: Optional[ssl.SSLContext] = None,
        user_agent: Optional[str] = None,
        max_response_bytes: int = DEFAULT_MAX_RESPONSE_BYTES,
        sleep: Optional[Callable[[float], Any]] = None,
        clock: Optional[Callable[[], float]] = None,
    ) -> None:
        if ssl_context is not None:
            if not isinstance(ssl_context, ssl.SSLContext):
                raise FriendliValidationError(f"ssl_context must be an ssl.SSLContext, got {_short(ssl_context)}")
            if ssl_context.verify_mode != ssl.CERT_REQUIRED or not ssl_context.check_hostname:
                raise FriendliValidationError(
                    "ssl_context must verify certificates and host names (CERT_REQUIRED, check_hostname=True); "
                    "to trust a private CA use ssl.create_default_context(cafile=...)"
                )
        self.timeout = _check_timeout(timeout, "timeout")
        self.retries = retries if retries is not None else DEFAULT_RETRY_CONFIG
        _check_int(max_response_bytes, "max_response_bytes")
        if max_response_bytes <= 0:
            raise FriendliValidationError(f"max_response_bytes must be positive, got {max_response_bytes!r}")
        self.max_response_bytes = max_response_bytes
        self.user_agent = _check_header_value(
            user_agent or f"friendli-image/{__version__} python/{sys.version_info[0]}.{sys.version_info[1]}",
            "user_agent",
        )
        self.sleep = sleep if sleep is not None else time.sleep
        self.clock = clock if clock is not None else time.monotonic
        self._ssl_context = ssl_context
        # ProxyHandler reads HTTPS_PROXY/HTTP_PROXY/NO_PROXY now, as urllib does.  No
        # redirect or error handler: every status comes back to request() as is.
        self._opener = urllib.request.OpenerDirector()
        for handler in (urllib.request.ProxyHandler(), _DeadlineHandler(self), urllib.request.UnknownHandler()):
            self._opener.add_handler(handler)

    def ssl_context(self) -> ssl.SSLContext:
        """The context for https (made on first use: loading CA certificates costs)."""
        if self._ssl_context is None:
            self._ssl_context = ssl.create_default_context()
        return self._ssl_context

    # -- one attempt --------------------------------------------------------

    def _exchange(
        self, method: str, url: str, body: Optional[bytes], headers: Dict[str, str], timeout: float
    ) -> _RawResponse:
        """One HTTP exchange, bounded by ``timeout`` seconds from start to last byte."""
        request = _Request(url, data=body, headers=headers, method=method)
        request.deadline = time.monotonic() + timeout
        try:
            response = self._opener.open(request, timeout=timeout)
            with response:
                status = response.status
                limit = self.max_response_bytes if 200 <= status < 300 else _ERROR_BODY_LIMIT
                data = _read_body(response, limit, truncate=not 200 <= status < 300)
                return _RawResponse(status, response.reason or "", response.headers, data, url)
        except FriendliError:
            raise
        except (OSError, http.client.HTTPException, ValueError) as exc:  # urllib, http.client, socket, ssl
            raise _connection_error(exc, url, _credential(headers)) from exc

    # -- the retry loop -----------------------------------------------------

    def request(
        self,
        method: str,
        url: str,
        *,
        headers: Callable[[], Dict[str, str]],
        parse: Callable[[_RawResponse], T],
        body: Optional[bytes] = None,
        retries: Optional[RetryConfig] = None,
        timeout: Optional[float] = None,
        total_timeout: Optional[float] = None,
        follow_redirects: bool = False,
        cancel: Optional[threading.Event] = None,
    ) -> T:
        """Send until success, a final error, or the end of the time budget.

        ``headers`` is called once per attempt (so a token callable is too).
        """
        policy = retries if retries is not None else self.retries
        per_attempt = self.timeout if timeout is None else _check_timeout(timeout, "timeout")
        if total_timeout is None and policy.strategy == "backoff" and policy.backoff is not None:
            total_timeout = policy.backoff.max_elapsed_time / 1000.0
        deadline = None if total_timeout is None else self.clock() + _check_timeout(total_timeout, "total_timeout")
        last_answer: Optional[APIStatusError] = None
        attempt = 0
        while True:
            attempt += 1
            started = self.clock()
            attempt_timeout = per_attempt if deadline is None else min(per_attempt, deadline - started)
            try:
                if attempt_timeout <= 0:
                    raise APITimeoutError("the call's total_timeout ran out before the request was sent")
                sent_headers = headers()
                raw = self._follow(method, url, body, sent_headers, attempt_timeout, follow_redirects)
                raw.credential = _credential(sent_headers)
                if not 200 <= raw.status < 300:
                    raise _status_error(raw)
                log = _logger(10)  # DEBUG
                if log is not None:
                    log.debug("%s %s -> %d in %.3f s", method, _loggable(url), raw.status, self.clock() - started)
                return parse(raw)
            except FriendliError as err:
                elapsed = self.clock() - started
                if isinstance(err, APIStatusError):
                    last_answer = err
                delay = self._retry_delay(err, policy, attempt, deadline, elapsed)
                if delay is None:
                    final: FriendliError = err
                    if isinstance(err, APITimeoutError) and attempt_timeout < per_attempt and last_answer is not None:
                        final = last_answer  # the budget, not the server, ended this attempt
                    final.attempts = attempt
                    if final is err:
                        raise
                    raise final from err
                log = _logger(20)  # INFO
                if log is not None:
                    log.info(
                        "retrying in %.1f s after %s (attempt %d/%s)",
                        delay,
                        _describe_failure(err),
                        attempt + 1,
                        policy.max_retries + 1 if policy.max_retries is not None else "\u2026",
                    )
            if cancel is not None and self.sleep is time.sleep:
                cancel.wait(delay)  # wakes at once when the caller gives up (asyncio cancellation, Ctrl-C)
            else:
                self.sleep(delay)
            if cancel is not None and cancel.is_set():
                raise FriendliError("the call was cancelled", attempts=attempt)

    def _retry_delay(
        self, err: FriendliError, policy: RetryConfig, attempt: int, deadline: Optional[float], elapsed: float
    ) -> Optional[float]:
        """Seconds to wait before the next attempt, or None to give up now."""
        if policy.strategy != "backoff" or policy.backoff is None:
            return None
        if policy.max_retries is not None and attempt > policy.max_retries:
            return None
        delay: Optional[float] = None
        if isinstance(err, APIStatusError):
            if not policy.retries_status(err.status_code):
                return None
            delay = _retry_after_seconds(err.headers)
        elif isinstance(err, APIConnectionError):
            if not (policy.retry_connection_errors and err.retryable):
                return None
        else:
            return None
        if delay is None:
            delay = policy.backoff.delay(attempt - 1)
        if deadline is not None:
            remaining = deadline - self.clock()
            # Never sleep past the budget, and don't start an attempt that has less
            # time than the last one took.
            if delay >= remaining or remaining - delay < elapsed:
                return None
        return delay

    def _follow(
        self, method: str, url: str, body: Optional[bytes], headers: Dict[str, str], timeout: float, follow: bool
    ) -> _RawResponse:
        """One attempt; when ``follow``, redirects are followed (GET only, no credentials across hosts)."""
        deadline = time.monotonic() + timeout
        raw = self._exchange(method, url, body, headers, timeout)
        hops = 0
        while follow and raw.status in _REDIRECT_STATUSES and raw.headers.get("location"):
            hops += 1
            if hops > _MAX_REDIRECTS:
                raise APIConnectionError(f"more than {_MAX_REDIRECTS} redirects from {_loggable(url)}", retryable=False)
            target = urllib.parse.urljoin(raw.url, raw.headers["location"])
            parts = urllib.parse.urlsplit(target)
            if parts.scheme not in ("http", "https"):
                raise APIConnectionError(f"redirect to an unsupported URL: {_loggable(target)}", retryable=False)
            if parts.netloc != urllib.parse.urlsplit(raw.url).netloc:
                headers = {k: v for k, v in headers.items() if k.lower() not in ("authorization", "cookie")}
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise APITimeoutError(f"timed out following redirects from {_loggable(url)}")
            raw = self._exchange("GET", target, None, headers, remaining)
        return raw

    def download(self, url: str) -> bytes:
        """GET an image URL: no credentials, redirects followed, the client's timeout, retries and size cap."""
        if urllib.parse.urlsplit(url).scheme not in ("http", "https"):
            raise FriendliValidationError(f"image url must be http(s), got {_short(url)}")
        return self.request(
            "GET",
            url,
            headers=lambda: {"User-Agent": self.user_agent, "Accept": "*/*"},
            parse=lambda raw: bytes(raw.body),
            follow_redirects=True,
        )


def _check_timeout(value: Any, param: str) -> float:
    _check_finite(value, param)
    if value <= 0:
        raise FriendliValidationError(f"{param} must be a positive number of seconds, got {value!r}")
    return float(value)


def _loggable(url: str) -> str:
    """A URL without its query string (pre-signed image URLs carry credentials there)."""
    parts = urllib.parse.urlsplit(url)
    return urllib.parse.urlunsplit((parts.scheme, parts.netloc, parts.path, "", ""))


def _describe_failure(err: FriendliError) -> str:
    if isinstance(err, APIStatusError):
        return str(err.status_code)
    if isinstance(err, APITimeoutError):
        return "a timeout"
    return "a connection error"


def _read_body(response: http.client.HTTPResponse, limit: int, *, truncate: bool) -> Union[bytes, bytearray]:
    """Read the whole body, refusing (or, when ``truncate``, cutting) more than ``limit`` bytes.

    The buffer grows as bytes arrive: a ``Content-Length`` is the server's promise,
    not a reason to allocate (a lying one would otherwise cost up to ``limit`` bytes
    of memory at once).  A body that ends short of its ``Content-Length`` raises
    ``IncompleteRead``.
    """
    length = response.length
    if length is not None and length > limit:
        if truncate:
            return response.read(limit)
        raise InvalidResponseError(
            f"response body is {length} bytes, over the limit of {limit} bytes (max_response_bytes)",
            status_code=response.status,
        )
    buf = bytearray()
    while len(buf) <= limit:
        # Ask for no more than is due: some Pythons allocate the whole request size per read.
        want = 1024 * 1024 if length is None else min(1024 * 1024, length - len(buf))
        chunk = response.read(want) if want > 0 else b""
        if not chunk:
            break
        buf += chunk
    if length is not None and len(buf) < length:
        raise http.client.IncompleteRead(bytes(buf), length - len(buf))
    if len(buf) > limit:
        if not truncate:
            raise InvalidResponseError(
                f"response body is over the limit of {limit} bytes (max_response_bytes)", status_code=response.status
            )
        del buf[limit:]
    return buf


def _connection_error(exc: BaseException, url: str, secret: str) -> APIConnectionError:
    """Dress a urllib/http.client/socket/ssl exception as an APIConnectionError (``secret`` redacted)."""
    reason: BaseException = exc
    while isinstance(reason, urllib.error.URLError) and isinstance(reason.reason, BaseException):
        reason = reason.reason
    where = _loggable(url)
    if isinstance(reason, (socket.timeout, TimeoutError)):
        return APITimeoutError(f"timed out talking to {where}")
    if isinstance(reason, ssl.SSLCertVerificationError):
        return APIConnectionError(
            f"TLS certificate of {where} could not be verified ({reason.verify_message}); "
            "to trust a private CA pass ssl_context=ssl.create_default_context(cafile=...)",
            retryable=False,
        )
    if isinstance(reason, http.client.IncompleteRead):
        return APIConnectionError(
            f"connection to {where} closed with the response body incomplete "
            f"({len(reason.partial)} bytes read, {reason.expected} more expected)"
        )
    if isinstance(reason, http.client.RemoteDisconnected):
        return APIConnectionError(f"{where} closed the connection without answering")
    if isinstance(reason, urllib.error.URLError):
        return APIConnectionError(_redact(f"cannot reach {where}: {reason.reason}", secret))
    detail = _redact(str(reason) or type(reason).__name__, secret)
    # A ValueError or InvalidURL comes from building the request (the response side raises
    # HTTPException or OSError): a retry would only repeat it.
    retryable = not isinstance(reason, (ValueError, http.client.InvalidURL))
    return APIConnectionError(f"connection to {where} failed: {type(reason).__name__}: {detail}", retryable=retryable)


def _credential(headers: Mapping[str, str]) -> str:
    """The secret part of a request's ``Authorization`` header ("" when there is none)."""
    for name, value in headers.items():
        if name.lower() == "authorization":
            return value.partition(" ")[2] or value
    return ""


def _redact(text: str, secret: str) -> str:
    """``text`` without ``secret`` (servers and proxies sometimes echo request headers back)."""
    return text.replace(secret, "[REDACTED]") if secret else text


def _status_error(raw: _RawResponse) -> APIStatusError:
    """Build the error for a non-2xx answer (the class comes from :func:`_status_error_class`).

    Nothing the error carries (message, body, reason, headers) quotes the request's credential.
    """
    secret = raw.credential
    text = _redact(bytes(raw.body).decode("utf-8", "replace"), secret)
    reason = _redact(raw.reason, secret)
    headers = raw.headers
    if secret and any(secret in str(field) for field in headers.values()):
        redacted: Any = http.client.HTTPMessage()  # still case-insensitive, like the original
        for name, field in raw.headers.items():
            redacted[name] = _redact(str(field), secret)
        headers = redacted
    request_id = headers.get("x-request-id")
    server_message: Optional[str] = None
    try:
        payload = json.loads(text)
    except (ValueError, RecursionError):
        payload = None
    if isinstance(payload, dict):
        for key in ("detail", "message", "error"):
            value = payload.get(key)
            if isinstance(value, dict):
                value = value.get("message", value)
            if value:
                server_message = _redact(value if isinstance(value, str) else json.dumps(value), secret)
                break
    summary = server_message or text.strip()[:200] or reason
    message = f"{raw.status} {reason}: {summary}".rstrip(": ")
    if raw.status in _REDIRECT_STATUSES:
        message = (
            f"{raw.status} {reason}: the API answered with a redirect to {headers.get('location')!r}, "
            "which is not followed (the token is never sent elsewhere); check base_url"
        )
    if request_id:
        message += f" [request id {request_id}]"
    cls = _status_error_class(raw.status)
    return cls(  # type: ignore[no-any-return]
        message,
        status_code=raw.status,
        body=text,
        headers=headers,
        request_id=request_id,
        server_message=server_message or reason,
    )


def _load_json(raw: _RawResponse) -> Any:
    """Parse a 2xx JSON body, releasing the raw bytes before parsing (keeps peak memory low)."""
    try:
        text = raw.body.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise InvalidResponseError(
            f"response is not UTF-8 JSON (Content-Type {raw.headers.get('content-type')!r})",
            status_code=raw.status,
            request_id=raw.request_id,
        ) from exc
    raw.body = b""
    try:
        return json.loads(text)
    except (ValueError, RecursionError) as exc:  # RecursionError: nesting too deep
        head = _redact(text[: 80 + len(raw.credential)], raw.credential)[:80]
        raise InvalidResponseError(
            f"response is not JSON (Content-Type {raw.headers.get('content-type')!r}): {_short(head)}",
            status_code=raw.status,
            request_id=raw.request_id,
        ) from exc


# ===========================================================================
# Client
# ===========================================================================


def _check_base_url(value: Any, target: str, allow_insecure_http: bool) -> str:
    if not isinstance(value, str) or not value:
        raise FriendliValidationError(f"base_url must be a URL string, got {_short(value)}")
    parts = urllib.parse.urlsplit(value)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise FriendliValidationError(f"base_url must look like https://host[:port][/path], got {_short(value)}")
    if parts.query or parts.fragment:
        raise FriendliValidationError(f"base_url must not have a query or fragment, got {_short(value)}")
    if _has_space_or_control(value) or not value.isascii():
        raise FriendliValidationError(
            f"base_url must be ASCII without spaces (percent-encode the path, punycode the host), got {_short(value)}"
        )
    if parts.scheme == "http" and not _is_loopback(parts.hostname):
        if target == "dedicated":  # a bearer token must never travel in clear text
            raise FriendliValidationError(
                f"refusing plain http:// to {parts.hostname!r}: use https:// (plain http is allowed only "
                "for loopback hosts, or for a Friendli Container with allow_insecure_http=True)"
            )
        if not allow_insecure_http:
            raise FriendliValidationError(
                f"refusing plain http:// to {parts.hostname!r}: use https://, or, if this Friendli Container "
                "is on a private network you trust, pass allow_insecure_http=True"
            )
    return value.rstrip("/")


def _is_loopback(host: str) -> bool:
    if host == "localhost" or host.endswith(".localhost"):
        return True
    import ipaddress  # only needed for plain-http base URLs

    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _check_headers(headers: Optional[Mapping[str, str]]) -> Dict[str, str]:
    out: Dict[str, str] = {}
    for name, value in (headers or {}).items():
        if not isinstance(name, str) or not name or _has_space_or_control(name) or ":" in name or not name.isascii():
            raise FriendliValidationError(f"http_headers: invalid header name {_short(name)}")
        out[name] = _check_header_value(value, f"http_headers: the value of {name!r}")
    return out


def _check_retries(retries: Any) -> None:
    if retries is not None and not isinstance(retries, RetryConfig):
        raise FriendliValidationError(f"retries must be a RetryConfig (or None), got {_short(retries)}")


_CALL_OPTIONS = ("x_friendli_team", "retries", "timeout", "total_timeout", "http_headers")


class Client:
    """A thread-safe client for Friendli image APIs.

    ``token`` is a string or a zero-argument callable returning one (called once
    per attempt, for rotating secrets); it defaults to ``FRIENDLI_TOKEN``.  ``team``
    defaults to ``FRIENDLI_TEAM`` and ``base_url`` to ``FRIENDLI_BASE_URL`` or
    ``https://api.friendli.ai``.  ``timeout`` bounds each attempt; ``retries`` is
    the default :class:`RetryConfig`.

    ``target="container"`` talks to a Friendli Container instead (default
    ``http://localhost:8000``; no token unless one is passed; no environment reads).
    Plain ``http://`` is refused unless the host is loopback or
    ``allow_insecure_http=True``.  ``sleep`` and ``clock`` may be replaced (tests).
    """

    def __init__(
        self,
        token: Optional[Union[str, Callable[[], str]]] = None,
        *,
        base_url: Optional[str] = None,
        team: Optional[str] = None,
        timeout: float = DEFAULT_TIMEOUT,
        retries: Optional[RetryConfig] = None,
        ssl_context: Optional[ssl.SSLContext] = None,
        user_agent: Optional[str] = None,
        target: str = "dedicated",
        allow_insecure_http: bool = False,
        max_response_bytes: int = DEFAULT_MAX_RESPONSE_BYTES,
        sleep: Optional[Callable[[float], Any]] = None,
        clock: Optional[Callable[[], float]] = None,
    ) -> None:
        if target not in TARGETS:
            raise FriendliValidationError(f"target must be one of {TARGETS}, got {_short(target)}")
        _check_retries(retries)
        self.target = target
        if target == "dedicated":
            token = token if token is not None else os.environ.get("FRIENDLI_TOKEN")
            team = team if team is not None else (os.environ.get("FRIENDLI_TEAM") or None)
            base_url = base_url or os.environ.get("FRIENDLI_BASE_URL") or DEFAULT_BASE_URL
        else:
            base_url = base_url or DEFAULT_CONTAINER_BASE_URL
        self.base_url = _check_base_url(base_url, target, allow_insecure_http)
        self.team = None if team is None else _check_header_value(_check_identifier(team, "team"), "team")
        self._token = token if isinstance(token, _Secret) else _Secret(token) if token else None
        self._transport = _Transport(
            timeout=timeout,
            retries=retries,
            ssl_context=ssl_context,
            user_agent=user_agent,
            max_response_bytes=max_response_bytes,
            sleep=sleep,
            clock=clock,
        )

    def __repr__(self) -> str:
        return (
            f"Client(base_url={self.base_url!r}, target={self.target!r}, team={self.team!r}, "
            f"token={'<set>' if self._token else None})"
        )

    def __enter__(self) -> "Client":
        return self

    def __exit__(self, *exc_info: Any) -> None:
        self.close()

    def close(self) -> None:
        """Nothing to release (no connection is kept open); present for symmetry."""

    def generate(
        self,
        *,
        model: Optional[Union[str, ModelRef]] = None,
        prompt: str,
        num_inference_steps: int = 20,
        guidance_scale: Optional[float] = None,
        seed: Optional[int] = None,
        response_format: Optional[str] = None,
        control_images: Optional[Sequence[ImageInput]] = None,
        controlnet_weights: Optional[Sequence[float]] = None,
        x_friendli_team: Optional[str] = None,
        retries: Optional[RetryConfig] = None,
        timeout: Optional[float] = None,
        total_timeout: Optional[float] = None,
        http_headers: Optional[Mapping[str, str]] = None,
    ) -> ImageGenerationResult:
        """Generate image(s) from a prompt.

        ``model`` is ``"endpoint-id"`` or ``"endpoint-id:adapter-route"`` (a container
        takes an optional adapter route).  ``retries``, ``timeout``, ``total_timeout``
        (seconds for the whole call, sleeps included) and ``x_friendli_team`` override
        the client's for this call; ``http_headers`` adds headers.
        """
        params = dict(locals())
        del params["self"]
        return self._call("generate", params)

    def edit(
        self,
        *,
        model: Optional[Union[str, ModelRef]] = None,
        prompt: str,
        image: Union[ImageInput, Sequence[ImageInput]],
        num_inference_steps: int = 20,
        guidance_scale: Optional[float] = None,
        seed: Optional[int] = None,
        response_format: Optional[str] = None,
        x_friendli_team: Optional[str] = None,
        retries: Optional[RetryConfig] = None,
        timeout: Optional[float] = None,
        total_timeout: Optional[float] = None,
        http_headers: Optional[Mapping[str, str]] = None,
    ) -> ImageGenerationResult:
        """Edit image(s) as a prompt says; ``image`` is one input or a list of them.

        Inputs may be URLs, ``data:`` URIs, base64 text, bytes or file paths (read and
        sent as ``data:image/<type>;base64,...``); over 50 MiB is refused locally.
        Other parameters are as for :meth:`generate`.
        """
        params = dict(locals())
        del params["self"]
        return self._call("edit", params)

    def _call(
        self, operation: str, params: Dict[str, Any], cancel: Optional[threading.Event] = None
    ) -> ImageGenerationResult:
        options = {name: params.pop(name, None) for name in _CALL_OPTIONS}
        request_type = ImageGenerationRequest if operation == "generate" else ImageEditRequest
        request = request_type(target=self.target, **params)
        return self._send(operation, request, cancel=cancel, **options)

    def _prepare(
        self,
        operation: str,
        request: ImageGenerationRequest,
        x_friendli_team: Optional[str] = None,
        http_headers: Optional[Mapping[str, str]] = None,
    ) -> Tuple[str, bytes, Dict[str, str]]:
        """URL, body and headers of a call, without the token (also used for ``--dry-run``)."""
        headers = {
            "Content-Type": "application/json",
            "Accept": "application/json",
            "User-Agent": self._transport.user_agent,
        }
        team = x_friendli_team if x_friendli_team is not None else self.team
        if team is not None and self.target == "dedicated":
            team = _check_identifier(team, "x_friendli_team")
            headers["X-Friendli-Team"] = _check_header_value(team, "x_friendli_team")
        headers.update(_check_headers(http_headers))
        return self.base_url + _API_PATHS[(self.target, operation)], request.to_json(), headers

    def _send(
        self,
        operation: str,
        request: ImageGenerationRequest,
        *,
        x_friendli_team: Optional[str] = None,
        retries: Optional[RetryConfig] = None,
        timeout: Optional[float] = None,
        total_timeout: Optional[float] = None,
        http_headers: Optional[Mapping[str, str]] = None,
        cancel: Optional[threading.Event] = None,
    ) -> ImageGenerationResult:
        url, body, static_headers = self._prepare(operation, request, x_friendli_team, http_headers)
        _check_retries(retries)
        token = self._token
        if token is None and self.target == "dedicated":
            raise FriendliValidationError(_NO_TOKEN_MESSAGE)
        own_authorization = any(name.lower() == "authorization" for name in static_headers)

        def headers() -> Dict[str, str]:
            if token is None or own_authorization:
                return dict(static_headers)
            return {**static_headers, "Authorization": "Bearer " + token.get()}

        transport = self._transport
        return transport.request(
            "POST",
            url,
            body=body,
            headers=headers,
            parse=lambda raw: _parse_result(raw, request, transport),
            retries=retries,
            timeout=timeout,
            total_timeout=total_timeout,
            cancel=cancel,
        )


def _parse_result(raw: _RawResponse, request: ImageGenerationRequest, transport: _Transport) -> ImageGenerationResult:
    """Turn a 2xx body into an ImageGenerationResult, or raise InvalidResponseError."""
    request_id = raw.request_id
    payload = _load_json(raw)

    def invalid(what: str) -> NoReturn:
        raise InvalidResponseError(f"unexpected response: {what}", status_code=raw.status, request_id=request_id)

    if not isinstance(payload, dict):
        invalid(f"expected a JSON object, got {type(payload).__name__}")
    if request.target == "container":
        image = payload.get("image")
        if not isinstance(image, str) or not image:
            invalid("no 'image' string in the container's answer")
        try:
            image_bytes = _decode_base64(image)
        except ValueError:
            invalid("'image' is not valid base64")
        image_format = request.response_format or "jpeg"  # the container's documented default
        only = GeneratedImage(request.seed, image_format, b64_json=image)
        return ImageGenerationResult([_attach(only, transport, image_bytes)], request_id)
    data = payload.get("data")
    if not isinstance(data, list) or not data:
        invalid("'data' is missing or not a non-empty list")
    images = []
    for index, item in enumerate(data):
        if not isinstance(item, dict):
            invalid(f"data[{index}] is not an object")
        url, b64, seed, fmt = item.get("url"), item.get("b64_json"), item.get("seed"), item.get("response_format")
        if url is None and b64 is None:
            invalid(f"data[{index}] has neither 'url' nor 'b64_json'")
        decoded: Optional[bytes] = None
        if b64 is not None:
            try:
                decoded = _decode_base64(b64) if isinstance(b64, str) else None
            except ValueError:
                pass
            if decoded is None:
                invalid(f"data[{index}].b64_json is not valid base64")
        if url is not None and (
            not isinstance(url, str) or urllib.parse.urlsplit(url).scheme not in ("http", "https")
        ):
            invalid(f"data[{index}].url is not an http(s) URL")
        if seed is not None and (not isinstance(seed, int) or isinstance(seed, bool)):
            invalid(f"data[{index}].seed is not an integer")
        if fmt is not None and not isinstance(fmt, str):
            invalid(f"data[{index}].response_format is not a string")
        images.append(_attach(GeneratedImage(seed, fmt or request.response_format, url, b64), transport, decoded))
    return ImageGenerationResult(images, request_id)


def generate(**kwargs: Any) -> ImageGenerationResult:
    """One-liner: ``Client().generate(**kwargs)`` (token from ``FRIENDLI_TOKEN``)."""
    return Client().generate(**kwargs)


class AsyncClient:
    """:class:`Client` for asyncio: the same methods as coroutines.

    Each call runs in a worker thread (``asyncio.to_thread``, or ``executor`` when
    given), so the event loop never blocks, retry sleeps included.  Cancelling the
    awaiting task abandons the call: its result is dropped and no further attempt
    starts.  Keyword arguments are those of :class:`Client`.
    """

    def __init__(self, token: Optional[Union[str, Callable[[], str]]] = None, *, executor: Any = None, **kwargs: Any) -> None:
        self._client = Client(token, **kwargs)
        self._executor = executor

    def __repr__(self) -> str:
        return "Async" + repr(self._client)

    async def __aenter__(self) -> "AsyncClient":
        return self

    async def __aexit__(self, *exc_info: Any) -> None:
        self._client.close()

    async def generate(self, **kwargs: Any) -> ImageGenerationResult:
        """Await :meth:`Client.generate` (same keyword arguments)."""
        return await _call_in_thread(self._client, "generate", kwargs, self._executor)

    async def edit(self, **kwargs: Any) -> ImageGenerationResult:
        """Await :meth:`Client.edit` (same keyword arguments)."""
        return await _call_in_thread(self._client, "edit", kwargs, self._executor)


async def _call_in_thread(
    client: Client, operation: str, params: Dict[str, Any], executor: Any = None
) -> ImageGenerationResult:
    """Run ``client._call`` in a worker thread; on cancellation, stop its retries.

    The arguments are first bound to the signature of :meth:`Client.generate` or
    :meth:`Client.edit`, so defaults and ``TypeError`` for missing or unknown
    arguments are exactly those of the synchronous method.
    """
    import asyncio  # imported here: synchronous users never pay for it
    import functools
    import inspect

    bound = inspect.signature(getattr(Client, operation)).bind(client, **params)
    bound.apply_defaults()
    arguments = dict(bound.arguments)
    del arguments["self"]
    cancel = threading.Event()
    call = functools.partial(client._call, operation, arguments, cancel)
    try:
        if executor is None and hasattr(asyncio, "to_thread"):
            return await asyncio.to_thread(call)
        return await asyncio.get_running_loop().run_in_executor(executor, call)
    except asyncio.CancelledError:
        cancel.set()
        raise


# ===========================================================================
# SDK-compatible facade
# ===========================================================================


class _Unset:
    def __repr__(self) -> str:
        return "UNSET"


UNSET: Any = _Unset()
"""Marks an argument as not given (``retries`` omitted vs ``retries=None``)."""


class _ImageOperations:
    """``friendli.dedicated.image`` / ``friendli.container.image``: generate and edit."""

    def __init__(self, owner: "SyncFriendli", target: str) -> None:
        self._owner = owner
        self._target = target

    def _translate(self, params: Dict[str, Any]) -> Tuple[Client, Dict[str, Any]]:
        retries = params.pop("retries", UNSET)
        timeout_ms = params.pop("timeout_ms", None)
        client = self._owner._client_for(self._target, params.pop("server_url", None))
        if retries is not UNSET:
            params["retries"] = retries if retries is not None else _NO_RETRIES
        if timeout_ms is not None:
            params["timeout"] = timeout_ms / 1000.0
        return client, params

    def generate(self, **params: Any) -> ImageGenerationResult:
        """Generate image(s): the SDK's keyword names (``model``, ``prompt``, ``num_inference_steps``,
        ``guidance_scale``, ``seed``, ``response_format``, ``control_images``, ``controlnet_weights``,
        ``x_friendli_team``, ``retries``, ``server_url``, ``timeout_ms``, ``http_headers``)."""
        client, params = self._translate(params)
        return client.generate(**params)

    def edit(self, **params: Any) -> ImageGenerationResult:
        """Edit image(s): as :meth:`generate` plus ``image``, without the control-net fields."""
        client, params = self._translate(params)
        return client.edit(**params)


class _Namespace:
    def __init__(self, image: Any) -> None:
        self.image = image


class SyncFriendli:
    """Drop-in for the official SDK's ``SyncFriendli`` image operations.

    ``with SyncFriendli(token=...) as friendli: friendli.dedicated.image.generate(...)``.
    In a call, ``retries`` omitted uses ``retry_config`` (or the default policy) and
    ``retries=None`` disables retries, as in the SDK.  ``friendli.container.image``
    talks to ``http://localhost:8000`` unless a call passes ``server_url``.
    """

    def __init__(
        self,
        token: Optional[Union[str, Callable[[], str]]] = None,
        server_url: Optional[str] = None,
        retry_config: Optional[RetryConfig] = None,
        timeout_ms: Optional[int] = None,
        *,
        x_friendli_team: Optional[str] = None,
        allow_insecure_http: bool = False,
        **client_options: Any,
    ) -> None:
        self._token = _Secret(token) if token else None  # never a bare string in __dict__
        self._team = x_friendli_team
        self._options: Dict[str, Any] = dict(
            retries=retry_config,
            timeout=timeout_ms / 1000.0 if timeout_ms is not None else DEFAULT_TIMEOUT,
            allow_insecure_http=allow_insecure_http,
            **client_options,
        )
        self._client = Client(self._token, base_url=server_url, team=x_friendli_team, **self._options)
        self._clients: Dict[Tuple[str, Optional[str]], Client] = {}
        self._lock = threading.Lock()
        self.dedicated = _Namespace(_ImageOperations(self, "dedicated"))
        self.container = _Namespace(_ImageOperations(self, "container"))

    def _client_for(self, target: str, server_url: Optional[str]) -> Client:
        """The client for a target and per-call ``server_url`` (made once, then reused)."""
        if target == "dedicated" and server_url is None:
            return self._client
        with self._lock:
            client = self._clients.get((target, server_url))
            if client is None:
                if target == "dedicated":
                    client = Client(self._token, base_url=server_url, team=self._team, **self._options)
                else:  # the SDK sends no token to a container (its operations declare no security)
                    client = Client(base_url=server_url, target="container", **self._options)
                self._clients[(target, server_url)] = client
            return client

    def __repr__(self) -> str:
        return f"SyncFriendli(server_url={self._client.base_url!r})"

    def __enter__(self) -> "SyncFriendli":
        return self

    def __exit__(self, *exc_info: Any) -> None:
        self.close()

    def close(self) -> None:
        """Nothing to release; present because the SDK has it."""


class _AsyncImageOperations:
    def __init__(self, sync_ops: _ImageOperations) -> None:
        self._ops = sync_ops

    async def generate(self, **params: Any) -> ImageGenerationResult:
        """Await ``SyncFriendli``'s generate (same keyword arguments)."""
        return await self._run("generate", params)

    async def edit(self, **params: Any) -> ImageGenerationResult:
        """Await ``SyncFriendli``'s edit (same keyword arguments)."""
        return await self._run("edit", params)

    async def _run(self, operation: str, params: Dict[str, Any]) -> ImageGenerationResult:
        client, params = self._ops._translate(dict(params))
        return await _call_in_thread(client, operation, params)


class AsyncFriendli(SyncFriendli):
    """The official SDK's async facade: ``async with AsyncFriendli(...) as f: await f.dedicated.image.generate(...)``."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.dedicated = _Namespace(_AsyncImageOperations(_ImageOperations(self, "dedicated")))
        self.container = _Namespace(_AsyncImageOperations(_ImageOperations(self, "container")))

    async def __aenter__(self) -> "AsyncFriendli":
        return self

    async def __aexit__(self, *exc_info: Any) -> None:
        self.close()


# ===========================================================================
# Command line
# ===========================================================================


if TYPE_CHECKING:
    # The parsed command line: an ``argparse.Namespace`` (argparse is imported only when the CLI runs).
    _Args = Any

_EXIT_OK = 0
_EXIT_API = 1  # API error, invalid response, or an image that could not be saved
_EXIT_USAGE = 2  # usage or validation error: nothing was sent
_EXIT_AUTH = 3  # 401 or 403
_EXIT_NETWORK = 4  # connection failure or timeout
_EXIT_PARTIAL = 5  # some requests of a batch failed
_EXIT_INTERRUPTED = 130  # Ctrl-C

_CLI_EPILOG = """\
environment:
  FRIENDLI_TOKEN     the API token (or --token-file; there is no --token
                     option, so the token stays out of shell history and ps)
  FRIENDLI_TEAM      default for --team
  FRIENDLI_BASE_URL  default for --base-url

output files:
  one image          -o FILE, or ./<words-of-the-prompt>-<seed>.png without -o
  several images     -o DIR: DIR/<index>-<seed>.png (e.g. out/001-1234.png);
                     without -o: ./<index>-<words-of-the-prompt>-<seed>.png
  The suffix comes from the image bytes when the name has none. An existing
  file is never overwritten unless --overwrite is given.

exit codes:
  0    success
  1    API error (the message names the error class and HTTP status), or an
       image could not be saved
  2    usage or validation error (nothing was sent)
  3    authentication or permission error (HTTP 401/403); a batch stops
  4    network error or timeout
  5    some requests of a batch failed (the summary lists them)
  130  interrupted (Ctrl-C): saved images are kept, no partial files are left

examples:
  friendli-image --model my-endpoint "an orange car at night" -o car.png
  friendli-image --model my-endpoint --prompts prompts.txt --n 2 -o out/
  friendli-image --model my-endpoint "a red fox" --dry-run
"""


def main(argv: Optional[Sequence[str]] = None) -> int:
    """Run the command line (``friendli-image`` / ``python friendli_image.py``); return the exit code.

    ``argv`` defaults to ``sys.argv[1:]``.  A usage error prints argparse's
    message and returns 2 (no SystemExit); ``--help`` lists every exit code.
    """
    try:
        args = _cli_parse_args(argv)
    except SystemExit as exc:  # --help (0) or a usage error (2); argparse has printed why
        return exc.code if isinstance(exc.code, int) else _EXIT_USAGE
    restore_logging = _cli_logging(args.verbose)
    try:
        return _cli_run(args)
    except KeyboardInterrupt:
        _cli_say("interrupted")
        return _EXIT_INTERRUPTED
    except Exception as exc:  # anything before the first request: one line (a traceback with -vv)
        return _cli_error(exc, args.verbose)
    finally:
        restore_logging()


def _cli_logging(verbose: int) -> Callable[[], None]:
    """Show the module's log on stderr: -v retries (INFO), -vv everything (DEBUG); return the undo."""
    if not verbose:
        return lambda: None
    import logging

    logger = logging.getLogger("friendli_image")
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("%(message)s"))
    level = logger.level
    logger.addHandler(handler)
    logger.setLevel(logging.DEBUG if verbose > 1 else logging.INFO)

    def restore() -> None:
        logger.removeHandler(handler)
        logger.setLevel(level)

    return restore


def _cli_parse_args(argv: Optional[Sequence[str]]) -> _Args:
    """Parse and cross-check the command line; argparse raises SystemExit(2) on a usage error."""
    import argparse

    parser = argparse.ArgumentParser(
        prog="friendli-image",
        usage="%(prog)s --model ENDPOINT[:ADAPTER] [options] PROMPT\n"
        "       %(prog)s --model ENDPOINT[:ADAPTER] [options] --prompts FILE",
        description="Generate images on a Friendli Dedicated Endpoint (or a Friendli Container)\n"
        "and save them to files.",
        epilog=_CLI_EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
        allow_abbrev=False,  # else "--token SECRET" would be taken for --token-file
    )
    count = _cli_number(int, 1, "a whole number >= 1")
    seconds = _cli_number(float, 0, "a positive number of seconds", above=True)
    parser.add_argument("prompt", nargs="?", metavar="PROMPT", help="what the image should show")

    image = parser.add_argument_group("image")
    image.add_argument("--model", metavar="ENDPOINT[:ADAPTER]", help="endpoint id, optionally with an adapter route")
    image.add_argument("--steps", type=int, default=20, metavar="N", help="num_inference_steps, 1-50 (default: 20)")
    image.add_argument("--guidance-scale", type=float, metavar="X", help="how closely to follow the prompt")
    image.add_argument("--seed", type=int, help="random seed (with --n K: SEED, SEED+1, ...)")
    image.add_argument(
        "--format", choices=RESPONSE_FORMATS, help="response_format to request (default: png; container: jpeg)"
    )
    image.add_argument(
        "--control-image", action="append", metavar="PATH_OR_URL", help="ControlNet input image (repeatable)"
    )
    image.add_argument(
        "--controlnet-weight", action="append", type=float, metavar="W",
        help="weight in [0, 1] for each --control-image (repeatable)",
    )
    image.add_argument(
        "--edit-image", action="append", metavar="PATH_OR_URL",
        help="edit this image instead of generating one (repeatable)",
    )

    batch = parser.add_argument_group("batch")
    batch.add_argument(
        "--prompts", metavar="FILE",
        help="one prompt per line ('-' reads stdin); blank lines and lines starting with # are skipped",
    )
    batch.add_argument("-n", "--n", type=count, default=1, metavar="K", help="images per prompt, one request each")
    batch.add_argument("--concurrency", type=count, default=4, metavar="N", help="requests at a time (default: 4)")

    output = parser.add_argument_group("output")
    output.add_argument(
        "-o", "--output", metavar="PATH",
        help="file for one image, directory for several (default: the current directory)",
    )
    output.add_argument("--overwrite", action="store_true", help="replace existing files")
    output.add_argument(
        "--json", action="store_true",
        help="print one JSON object per image on stdout (path, seed, format, url, request_id)",
    )
    output.add_argument(
        "--dry-run", action="store_true", help="check everything, print the request as a curl command, send nothing"
    )
    output.add_argument(
        "-v", "--verbose", action="count", default=0, help="-v shows retries; -vv the debug log and tracebacks"
    )

    connection = parser.add_argument_group("connection")
    connection.add_argument("--base-url", metavar="URL", help="API base URL (default: https://api.friendli.ai)")
    connection.add_argument("--team", help="team id sent as X-Friendli-Team")
    connection.add_argument("--token-file", metavar="PATH", help="read the API token from this file")
    connection.add_argument("--token", nargs="?", const="", help=argparse.SUPPRESS)  # refused below, never echoed
    connection.add_argument(
        "--target", choices=TARGETS, default="dedicated",
        help="a Dedicated Endpoint or a Friendli Container (default: dedicated)",
    )
    connection.add_argument(
        "--allow-insecure-http", action="store_true", help="allow plain http:// to a host that is not loopback"
    )
    connection.add_argument(
        "--timeout", type=seconds, default=DEFAULT_TIMEOUT, metavar="S", help="seconds per attempt (default: 60)"
    )
    connection.add_argument("--total-timeout", type=seconds, metavar="S", help="seconds per request, retries included")
    retries = connection.add_mutually_exclusive_group()
    retries.add_argument(
        "--max-retries", type=_cli_number(int, 0, "a whole number >= 0"), metavar="N",
        help="retry a failed request at most N times (default: back off for up to an hour)",
    )
    retries.add_argument("--no-retries", action="store_true", help="never retry")

    args, extra = parser.parse_known_args(argv)
    if extra:  # argparse would echo them, and one may be a token: show option names only
        shown = " ".join(map(_cli_mask, extra))
        parser.error(f"unrecognized arguments: {shown} (values not shown; quote a PROMPT that has spaces)")
    if args.token is not None:
        parser.error("there is no --token option (it would show in shell history and ps): "
                     "set FRIENDLI_TOKEN or use --token-file PATH")
    if args.prompt is None and args.prompts is None:
        parser.error("give a PROMPT or --prompts FILE")
    if args.prompt is not None and args.prompts is not None:
        parser.error("give a PROMPT or --prompts FILE, not both")
    if args.model is None and args.target == "dedicated":
        parser.error("--model ENDPOINT[:ADAPTER] is required")
    return args


def _cli_mask(word: str) -> str:
    """``--opt`` stays, ``--opt=value`` becomes ``--opt=***``, any other word ``***``."""
    if not word.startswith("-"):
        return "***"
    name, equals, _ = word.partition("=")
    return name + equals + ("***" if equals else "")


def _cli_number(convert: Callable[[str], Any], minimum: float, what: str, *, above: bool = False) -> Callable[[str], Any]:
    """An argparse ``type=``: ``convert`` the text, then check it is >= ``minimum`` (> when ``above``)."""

    def parse(text: str) -> Any:
        import argparse

        try:
            value = convert(text)
        except ValueError:
            value = math.nan
        if not math.isfinite(value) or value < minimum or (above and value == minimum):
            raise argparse.ArgumentTypeError(f"expected {what}, got {text!r}")
        return value

    return parse


def _cli_run(args: _Args) -> int:
    """Validate everything, then print curl commands (``--dry-run``) or run the jobs."""
    client = _cli_client(args)
    jobs = _cli_jobs(args, _cli_prompts(args))
    outputs = _CliOutputs.plan(args.output, len(jobs))
    if not args.overwrite:
        outputs.check_free(jobs)
    operation = "edit" if args.edit_image else "generate"
    if args.dry_run:
        _cli_print_curl(client, operation, jobs, args.token_file)
        return _EXIT_OK
    run = _CliRun(client, operation, outputs, args.overwrite, args.total_timeout)
    reporter = _CliReporter(len(jobs), as_json=args.json, verbose=args.verbose)
    try:
        _cli_run_jobs(run, jobs, reporter, args.concurrency)
    except KeyboardInterrupt:
        return reporter.finish(interrupted=True)
    return reporter.finish()


# -- building the client and the jobs ---------------------------------------


def _cli_client(args: _Args) -> Client:
    """The client the flags describe; the token is checked here, before any traffic."""
    token = None if args.token_file is None else _cli_read_token(args.token_file)
    retries = None
    if args.no_retries:
        retries = _NO_RETRIES
    elif args.max_retries is not None:
        retries = RetryConfig("backoff", max_retries=args.max_retries)
    client = Client(
        token,
        base_url=args.base_url,
        team=args.team,
        timeout=args.timeout,
        retries=retries,
        target=args.target,
        allow_insecure_http=args.allow_insecure_http,
    )
    if client.target == "dedicated" and client._token is None:
        raise FriendliValidationError(_NO_TOKEN_MESSAGE.replace("pass token= (a string or a callable returning one)",
                                                                "use --token-file PATH"))
    if client._token is not None:
        client._token.get()  # refuses an empty token or one with whitespace inside
    return client


def _cli_read_token(path: str) -> str:
    try:
        token = pathlib.Path(path).read_text(encoding="utf-8-sig").strip()  # -sig: editors' byte-order mark
    except (OSError, UnicodeError) as exc:
        raise FriendliValidationError(
            f"cannot read --token-file {path!r}: {getattr(exc, 'strerror', None) or exc}"
        ) from exc
    if not token:
        raise FriendliValidationError(f"--token-file {path!r} is empty")
    return token


def _cli_prompts(args: _Args) -> List[str]:
    """The positional prompt, or the lines of ``--prompts`` (blank lines and # comments skipped)."""
    if args.prompts is None:
        return [args.prompt]
    try:
        text = sys.stdin.read() if args.prompts == "-" else pathlib.Path(args.prompts).read_text(encoding="utf-8")
    except (OSError, UnicodeError) as exc:
        raise FriendliValidationError(
            f"cannot read --prompts {args.prompts!r}: {getattr(exc, 'strerror', None) or exc}"
        ) from exc
    prompts = [line.strip() for line in text.splitlines()]
    prompts = [prompt for prompt in prompts if prompt and not prompt.startswith("#")]
    if not prompts:
        raise FriendliValidationError(f"--prompts {args.prompts!r} holds no prompt")
    return prompts


# The command line's records are plain classes, not dataclasses: each dataclass costs
# import time on every cold start, and a plain generate() never runs this code.


class _CliJob:
    """One request of a run, the ``index``-th (from 1) of the batch."""

    __slots__ = ("index", "request")

    def __init__(self, index: int, request: ImageGenerationRequest) -> None:
        self.index = index
        self.request = request


def _cli_jobs(args: _Args, prompts: List[str]) -> List[_CliJob]:
    """One validated request per prompt and copy (``--n``); input images are read once."""
    fields: Dict[str, Any] = dict(
        model=args.model,
        num_inference_steps=args.steps,
        guidance_scale=args.guidance_scale,
        response_format=args.format or ("png" if args.target == "dedicated" else None),
        control_images=args.control_image,
        controlnet_weights=args.controlnet_weight,
        target=args.target,
    )
    request_type: "type[ImageGenerationRequest]" = ImageGenerationRequest
    if args.edit_image:
        request_type = ImageEditRequest
        fields["image"] = args.edit_image if len(args.edit_image) > 1 else args.edit_image[0]
    jobs: List[_CliJob] = []
    for prompt in prompts:
        for copy in range(args.n):
            seed = None if args.seed is None else args.seed + copy
            if jobs:  # the first request holds the encoded images; the others reuse them
                request = dataclasses.replace(jobs[0].request, prompt=prompt, seed=seed)
            else:
                request = request_type(prompt=prompt, seed=seed, **fields)
            jobs.append(_CliJob(len(jobs) + 1, request))
    return jobs


# -- where images go --------------------------------------------------------

_FORMAT_SUFFIXES = {"png": ".png", "jpeg": ".jpg", "jpg": ".jpg"}


def _cli_slug(prompt: str, limit: int = 40) -> str:
    """A safe file-name stem from a prompt: its ASCII words joined by '-' ("image" when none)."""
    words = "".join(ch if ch.isascii() and ch.isalnum() else " " for ch in prompt.lower()).split()
    slug = words[0][:limit] if words else "image"
    for word in words[1:]:
        if len(slug) + 1 + len(word) > limit:
            break
        slug += "-" + word
    return slug


class _CliOutputs:
    """The output naming rule: ``-o FILE``, ``-o DIR`` or, without ``-o``, names from the prompt."""

    def __init__(
        self, file: Optional[pathlib.Path], directory: pathlib.Path, numbered: bool, from_prompt: bool
    ) -> None:
        self.file = file  # one image goes here (-o FILE)
        self.directory = directory  # otherwise, images go here
        self.numbered = numbered  # names start with the job's index (batches)
        self.from_prompt = from_prompt  # names include the prompt's words (no -o)

    @classmethod
    def plan(cls, output: Optional[str], jobs: int) -> "_CliOutputs":
        if output is None:
            return cls(None, pathlib.Path("."), jobs > 1, True)
        path = pathlib.Path(output)
        if path.is_dir() or output.endswith(("/", os.sep)):
            return cls(None, path, True, False)
        if jobs > 1:
            if path.suffix:
                raise FriendliValidationError(
                    f"-o {output} names a file, but {jobs} requests will be made: give a directory (e.g. -o out/)"
                )
            return cls(None, path, True, False)
        return cls(path, path.parent, False, False)

    def path_for(self, job: _CliJob, number: int, seed: Optional[int], suffix: str) -> pathlib.Path:
        """Where the ``number``-th (from 0) image of a job goes; ``suffix`` is used when -o has none."""
        extra = [str(number + 1)] if number else []  # a call that returned several images
        if self.file is not None:
            stem, ext = self.file.stem, self.file.suffix or suffix
            return self.file.with_name("-".join([stem] + extra) + ext)
        parts = [f"{job.index:03d}"] if self.numbered else []
        if self.from_prompt:
            parts.append(_cli_slug(job.request.prompt))
        if seed is not None:
            parts.append(str(seed))
        return self.directory / ("-".join(parts + extra) + suffix)

    def predict(self, job: _CliJob) -> Optional[pathlib.Path]:
        """The job's first file when it is known before the call (else None)."""
        if self.file is not None and self.file.suffix:
            return self.file
        suffix = _FORMAT_SUFFIXES.get(job.request.response_format or "")
        if suffix is None or (self.file is None and job.request.seed is None):
            return None  # the name needs the image's bytes or the server's seed
        return self.path_for(job, 0, job.request.seed, suffix)

    def check_free(self, jobs: List[_CliJob]) -> None:
        """Refuse, before any traffic, to run when a predictable output file exists."""
        taken = [path for path in map(self.predict, jobs) if path is not None and os.path.lexists(path)]
        if taken:
            more = f" (and {len(taken) - 1} more)" if len(taken) > 1 else ""
            raise FriendliValidationError(f"{taken[0]} exists{more}; pass --overwrite to replace it")


def _cli_write(path: pathlib.Path, data: bytes, overwrite: bool) -> None:
    if not overwrite and os.path.lexists(path):
        raise FriendliError(f"{path} exists; pass --overwrite to replace it")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        _write_atomically(path, data)  # the file appears whole or not at all
    except OSError as exc:
        raise FriendliError(f"cannot write {path}: {exc.strerror or exc}") from exc


# -- running ----------------------------------------------------------------


class _CliRun:
    """What every job of a run shares; ``stop`` ends retry loops after Ctrl-C."""

    def __init__(
        self, client: Client, operation: str, outputs: _CliOutputs, overwrite: bool, total_timeout: Optional[float]
    ) -> None:
        self.client = client
        self.operation = operation
        self.outputs = outputs
        self.overwrite = overwrite
        self.total_timeout = total_timeout
        self.stop = threading.Event()


class _CliSaved:
    """An image written to ``path``."""

    __slots__ = ("path", "image", "request_id")

    def __init__(self, path: pathlib.Path, image: GeneratedImage, request_id: Optional[str]) -> None:
        self.path = path
        self.image = image
        self.request_id = request_id


def _cli_generate(run: _CliRun, job: _CliJob) -> List[_CliSaved]:
    """Send one job and save its images (the suffix comes from the bytes)."""
    result = run.client._send(run.operation, job.request, total_timeout=run.total_timeout, cancel=run.stop)
    saved = []
    for number, image in enumerate(result.data):
        data = image.content()
        suffix = _image_suffix(data)
        path = run.outputs.path_for(job, number, image.seed, suffix)
        _cli_write(path, data, run.overwrite)
        saved.append(_CliSaved(path, image, result.request_id))
    return saved


def _cli_attempt(run: _CliRun, job: _CliJob) -> Union[List[_CliSaved], Exception]:
    """Run one job; an error is returned, not raised, so that one failure does not stop a batch."""
    try:
        return _cli_generate(run, job)
    except Exception as exc:
        return exc


def _cli_run_jobs(run: _CliRun, jobs: List[_CliJob], reporter: "_CliReporter", concurrency: int) -> None:
    """Run the jobs, ``concurrency`` at a time, reporting each as it ends.

    After bad credentials or Ctrl-C no job starts and retries stop; the requests
    in flight are waited for and their images kept (a second Ctrl-C stops the
    wait).  Ctrl-C is then re-raised as KeyboardInterrupt.
    """
    if concurrency == 1 or len(jobs) == 1:  # in this thread, so Ctrl-C interrupts the request itself
        for job in jobs:
            if reporter.record(job, _cli_attempt(run, job)):
                break
        return
    from concurrent import futures

    pool = futures.ThreadPoolExecutor(min(concurrency, len(jobs)), thread_name_prefix="friendli-image")
    pending: Dict["futures.Future[Union[List[_CliSaved], Exception]]", _CliJob] = {}
    interrupted = False
    try:
        for job in jobs:
            pending[pool.submit(_cli_attempt, run, job)] = job
        for future in futures.as_completed(pending):
            if reporter.record(pending.pop(future), future.result()):
                break
    except KeyboardInterrupt:
        interrupted = True
    finally:  # whatever ended the loop: start nothing more
        run.stop.set()
        in_flight = [future for future in pending if not future.cancel()]
        pool.shutdown(wait=False)
    try:
        if interrupted:
            reporter.waiting(sum(not future.done() for future in in_flight))
        for future in futures.as_completed(in_flight):
            reporter.record(pending[future], future.result())
    except KeyboardInterrupt:
        interrupted = True
    if interrupted:
        raise KeyboardInterrupt


# -- reporting --------------------------------------------------------------


def _cli_say(message: str) -> None:
    print(f"friendli-image: {message}", file=sys.stderr, flush=True)


def _cli_describe(err: BaseException) -> str:
    """One line about an error; API and network errors are named by class (e.g. RateLimitError)."""
    if isinstance(err, FriendliValidationError) or type(err) is FriendliError:
        return str(err)
    return f"{type(err).__name__}: {err}"


def _cli_exit_code(err: BaseException) -> int:
    if isinstance(err, FriendliValidationError):
        return _EXIT_USAGE
    if isinstance(err, (AuthenticationError, PermissionDeniedError)):
        return _EXIT_AUTH
    if isinstance(err, APIConnectionError):
        return _EXIT_NETWORK
    return _EXIT_API


def _cli_error(err: BaseException, verbose: int, label: str = "") -> int:
    """Print an error as one line (after its traceback with -vv); return its exit code."""
    if verbose > 1:
        import traceback

        traceback.print_exception(type(err), err, err.__traceback__, file=sys.stderr)
    _cli_say(f"error: {label}{_cli_describe(err)}")
    return _cli_exit_code(err)


class _CliReporter:
    """Tells how a run goes: JSON records on stdout (``--json``); on stderr, a line per
    image (or one progress line on a terminal), errors, and a summary for batches.
    Called from the main thread only.
    """

    def __init__(self, total: int, *, as_json: bool, verbose: int) -> None:
        self.total = total
        self.as_json = as_json
        self.verbose = verbose
        self.progress = total > 1 and sys.stderr.isatty()
        self.finished = 0
        self.images = 0
        self.failures: List[Tuple[_CliJob, Exception]] = []
        self.started = time.monotonic()

    def record(self, job: _CliJob, outcome: Union[List[_CliSaved], Exception]) -> bool:
        """Report a finished job; True when the batch should stop (the credentials were refused)."""
        self.finished += 1
        self._clear_progress()
        if isinstance(outcome, Exception):
            self.failures.append((job, outcome))
            label = f"#{job.index:03d} {_short(job.request.prompt, 40)}: " if self.total > 1 else ""
            _cli_error(outcome, self.verbose, label)
        else:
            for saved in outcome:
                self.images += 1
                if self.as_json:
                    print(json.dumps(self._json(job, saved)), flush=True)
                if not self.progress:
                    seed = "" if saved.image.seed is None else f" (seed {saved.image.seed})"
                    print(f"saved {saved.path}{seed}", file=sys.stderr, flush=True)
        self._draw_progress()
        return isinstance(outcome, Exception) and _cli_exit_code(outcome) == _EXIT_AUTH

    @staticmethod
    def _json(job: _CliJob, saved: _CliSaved) -> Dict[str, Any]:
        return {
            "path": str(saved.path),
            "seed": saved.image.seed,
            "format": saved.image.response_format,
            "url": saved.image.url,
            "request_id": saved.request_id,
            "index": job.index,
            "prompt": job.request.prompt,
        }

    def waiting(self, in_flight: int) -> None:
        """Ctrl-C was pressed while ``in_flight`` requests were running."""
        if in_flight:
            self._clear_progress()
            _cli_say(f"interrupted: waiting for {in_flight} request(s) in flight (Ctrl-C again to stop waiting)")

    def finish(self, interrupted: bool = False) -> int:
        """Print the summary (batches, interruptions); return the exit code."""
        self._clear_progress()
        if self.total > 1:
            parts = [f"{self.images} image(s) saved"]
            if self.failures:
                parts.append(f"{len(self.failures)} of {self.total} request(s) failed")
            if self.finished < self.total:
                parts.append(f"{self.total - self.finished} not sent")
            print(f"{', '.join(parts)} in {time.monotonic() - self.started:.1f} s", file=sys.stderr)
            for job, err in sorted(self.failures, key=lambda failure: failure[0].index):
                print(f"  #{job.index:03d} {_short(job.request.prompt, 40)}: {_cli_describe(err)}", file=sys.stderr)
        if interrupted:
            _cli_say("interrupted")
            return _EXIT_INTERRUPTED
        if not self.failures:
            return _EXIT_OK
        if len(self.failures) == self.finished:  # nothing succeeded: say why, by the first failure
            return _cli_exit_code(min(self.failures, key=lambda failure: failure[0].index)[1])
        return _EXIT_PARTIAL

    def _draw_progress(self) -> None:
        if self.progress:
            line = f"{self.finished}/{self.total} done, {len(self.failures)} failed"
            if self.images:
                line += f", {(time.monotonic() - self.started) / self.images:.1f} s/img"
            sys.stderr.write("\r\x1b[K" + line)
            sys.stderr.flush()

    def _clear_progress(self) -> None:
        if self.progress and self.finished:
            sys.stderr.write("\r\x1b[K")


def _cli_print_curl(client: Client, operation: str, jobs: List[_CliJob], token_file: Optional[str]) -> None:
    """Print each request as a copy-pasteable curl command (the token stays a shell expression)."""
    import shlex

    token = None
    if client._token is not None:
        token = "$FRIENDLI_TOKEN" if token_file is None else f"$(cat {shlex.quote(token_file)})"
    for job in jobs:
        url, body, headers = client._prepare(operation, job.request)
        lines = [f"curl -sS -X POST {shlex.quote(url)}"]
        if token is not None:
            lines.append(f'-H "Authorization: Bearer {token}"')
        lines += ["-H " + shlex.quote(f"{name}: {value}") for name, value in headers.items()]
        lines.append("--data-binary " + shlex.quote(body.decode("utf-8")))
        if job.index > 1:
            print()
        print(" \\\n  ".join(lines), flush=True)


if __name__ == "__main__":
    sys.exit(main())
