"""A tiny stdlib HTTP server for the draw-a-digit page: ``GET /`` and ``POST /api/predict``.

No framework: ``http.server.ThreadingHTTPServer`` with one handler class. Every request is validated and
answered with JSON on failure (``{"error": "..."}``); an unexpected exception becomes a logged 500, never a
dead server. Bound to 127.0.0.1 by default. Because ``/api/predict`` demands ``Content-Type:
application/json`` and sends no CORS headers, other web sites cannot post to it from a visitor's browser.
"""

from __future__ import annotations

import contextlib
import json
import logging
import math
import threading
from collections.abc import Callable
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from importlib import resources
from typing import Any

import numpy as np

from tinygrad_np.preprocess import BlankImageError, to_mnist

PredictProba = Callable[[np.ndarray], np.ndarray]  # float32 (N, 784) in [0, 1] -> (N, 10) probabilities

MAX_BODY_BYTES = 8 * 1024 * 1024  # a 1024x1024 canvas of integers "255," fits with room to spare
MAX_SIDE = 1024  # width and height of the posted image, in pixels
REQUEST_TIMEOUT_S = 10  # a client that stalls mid-request loses its connection instead of a thread

STATIC = {  # path -> (file in serve/static, Content-Type)
    "/": ("index.html", "text/html; charset=utf-8"),
    "/app.js": ("app.js", "text/javascript; charset=utf-8"),
    "/style.css": ("style.css", "text/css; charset=utf-8"),
}
API_GET = ("/api/info",)
API_POST = ("/api/predict",)

log = logging.getLogger("tinygrad_np.serve")


class RequestError(Exception):
    """A request we refuse, with the HTTP status and the message the client sees."""

    def __init__(self, status: HTTPStatus, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


class DigitServer(ThreadingHTTPServer):
    """The HTTP server plus what its handlers share: the model, the banner and the limits."""

    daemon_threads = True  # Ctrl-C must not wait for a browser's idle keep-alive thread

    def __init__(
        self, address: tuple[str, int], predict_proba: PredictProba, banner: str, max_body_bytes: int
    ) -> None:
        super().__init__(address, DigitHandler)
        self.predict_proba = predict_proba
        self.banner = banner
        self.max_body_bytes = max_body_bytes
        # The model may keep state between calls (autograd graphs, caches): one prediction at a time.
        self.predict_lock = threading.Lock()

    @property
    def url(self) -> str:
        host, port = self.server_address[:2]
        return f"http://{host}:{port}/"


class DigitHandler(BaseHTTPRequestHandler):
    server: DigitServer
    timeout = REQUEST_TIMEOUT_S
    server_version = "tinygrad-np"
    sys_version = ""

    def do_GET(self) -> None:
        self._dispatch("GET")

    def do_HEAD(self) -> None:
        self._dispatch("HEAD")

    def do_POST(self) -> None:
        self._dispatch("POST")

    def do_PUT(self) -> None:
        self._dispatch("PUT")

    def do_DELETE(self) -> None:
        self._dispatch("DELETE")

    def do_PATCH(self) -> None:
        self._dispatch("PATCH")

    def do_OPTIONS(self) -> None:
        self._dispatch("OPTIONS")

    def _dispatch(self, method: str) -> None:
        """Route one request; every failure becomes a JSON error response, and the server lives on."""
        path = self.path.split("?", 1)[0]
        self._body_consumed = False
        head_only = method == "HEAD"
        try:
            allowed = _allowed_methods(path)
            if not allowed:
                raise RequestError(HTTPStatus.NOT_FOUND, f"no such page: {path} (try / or /api/predict)")
            if method not in allowed:
                message = f"{method} is not allowed on {path}; use {' or '.join(allowed)}"
                raise RequestError(HTTPStatus.METHOD_NOT_ALLOWED, message)
            if path in STATIC:
                name, content_type = STATIC[path]
                body = resources.files("tinygrad_np.serve").joinpath("static", name).read_bytes()
                self._send(HTTPStatus.OK, body, content_type, head_only=head_only)
            elif path == "/api/info":
                self._send_json(HTTPStatus.OK, {"banner": self.server.banner}, head_only=head_only)
            else:
                self._send_json(HTTPStatus.OK, self._predict(self._read_json()))
        except RequestError as exc:
            if not self._body_consumed:
                self._discard_body()
            self._send_json(exc.status, {"error": exc.message}, head_only=head_only)
        except TimeoutError:
            self.close_connection = True
            message = f"timed out after {self.timeout}s waiting for the request body"
            log.info("%s: %s", self.address_string(), message)
            self._try_send_json(HTTPStatus.REQUEST_TIMEOUT, {"error": message})
        except (BrokenPipeError, ConnectionResetError):
            self.close_connection = True
            log.info("%s: client went away during %s %s", self.address_string(), method, self.path)
        except Exception:
            log.exception("unexpected error answering %s %s", method, self.path)
            self.close_connection = True
            message = "internal server error (see the server's log)"
            self._try_send_json(HTTPStatus.INTERNAL_SERVER_ERROR, {"error": message})

    def _read_json(self) -> Any:
        """The request body as JSON, after checking Content-Type and Content-Length."""
        content_type = self.headers.get("Content-Type", "")
        if content_type.split(";", 1)[0].strip().lower() != "application/json":
            raise RequestError(
                HTTPStatus.UNSUPPORTED_MEDIA_TYPE,
                f"Content-Type must be application/json, got {content_type or 'nothing'}",
            )
        length_header = self.headers.get("Content-Length")
        if length_header is None:
            self._body_consumed = self.close_connection = True  # nothing says where a body would end
            raise RequestError(HTTPStatus.LENGTH_REQUIRED, "Content-Length header is required")
        if not _is_whole_number(length_header):
            self._body_consumed = self.close_connection = True
            message = f"Content-Length must be a whole number, got {length_header!r}"
            raise RequestError(HTTPStatus.BAD_REQUEST, message)
        length = int(length_header)
        limit = self.server.max_body_bytes
        if length > limit:
            raise RequestError(
                HTTPStatus.REQUEST_ENTITY_TOO_LARGE,
                f"body of {length} bytes is over the {limit}-byte limit; send a smaller canvas "
                f"(at most {MAX_SIDE}x{MAX_SIDE} pixels)",
            )
        body = self.rfile.read(length)
        self._body_consumed = True
        if len(body) < length:
            self.close_connection = True
            raise RequestError(HTTPStatus.BAD_REQUEST, f"body ended after {len(body)} of {length} bytes")
        try:
            return json.loads(body, parse_constant=_reject_constant)
        except (UnicodeDecodeError, json.JSONDecodeError) as exc:
            raise RequestError(HTTPStatus.BAD_REQUEST, f"body is not valid JSON: {exc}") from exc
        except RecursionError as exc:
            raise RequestError(HTTPStatus.BAD_REQUEST, "body is nested too deeply to be a canvas") from exc
        except ValueError as exc:  # NaN / Infinity literals, or integers with thousands of digits
            raise RequestError(HTTPStatus.BAD_REQUEST, f"body is not valid JSON: {exc}") from exc

    def _predict(self, request: Any) -> dict[str, Any]:
        """Validate {"width", "height", "pixels"}, preprocess like MNIST, and ask the model."""
        gray = parse_canvas(request)
        try:
            image = to_mnist(gray, ink="light")  # the canvas sends ink as high values
        except BlankImageError as exc:
            raise RequestError(HTTPStatus.UNPROCESSABLE_ENTITY, str(exc)) from exc
        with self.server.predict_lock:
            probabilities = np.asarray(self.server.predict_proba(image.reshape(1, -1)), dtype=np.float64)
        if probabilities.shape != (1, 10) or not np.isfinite(probabilities).all():
            raise RuntimeError(f"predict_proba gave {probabilities!r:.200}, expected finite (1, 10) probabilities")
        return {
            "digit": int(probabilities[0].argmax()),
            "probabilities": probabilities[0].tolist(),
            "image": image.astype(np.float64).tolist(),
        }

    def _discard_body(self) -> None:
        """Read and drop a body we refuse, so closing the socket does not reset the client's read of our
        answer (Linux sends RST when unread data is left); bodies past twice the limit are not worth it."""
        self.close_connection = True
        length = self.headers.get("Content-Length", "").strip()
        if _is_whole_number(length) and int(length) <= 2 * self.server.max_body_bytes:
            remaining = int(length)
            with contextlib.suppress(OSError):  # a client that stalls or leaves: we answer and close anyway
                while remaining > 0 and (chunk := self.rfile.read(min(remaining, 1 << 16))):
                    remaining -= len(chunk)

    def _try_send_json(self, status: HTTPStatus, payload: dict[str, Any]) -> None:
        with contextlib.suppress(OSError):  # the client went away while we failed: nothing left to tell
            self._send_json(status, payload)

    def _send_json(self, status: HTTPStatus, payload: dict[str, Any], head_only: bool = False) -> None:
        body = json.dumps(payload, allow_nan=False).encode()
        self._send(status, body, "application/json", head_only=head_only)

    def _send(self, status: HTTPStatus, body: bytes, content_type: str, head_only: bool = False) -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        self.send_header("Cache-Control", "no-store")
        self.send_header("X-Content-Type-Options", "nosniff")
        # The page loads only its own script and style: nothing from the internet, no inline code.
        self.send_header("Content-Security-Policy", "default-src 'self'; img-src 'self' data:")
        if status == HTTPStatus.METHOD_NOT_ALLOWED:
            self.send_header("Allow", ", ".join(_allowed_methods(self.path.split("?", 1)[0])))
        if self.close_connection:
            self.send_header("Connection", "close")
        self.end_headers()
        if not head_only:
            self.wfile.write(body)

    def send_error(self, code: int, message: str | None = None, explain: str | None = None) -> None:
        """Malformed HTTP (bad request line, huge headers) also gets a JSON error, not stdlib's HTML."""
        self.close_connection = True
        if self.request_version == "HTTP/0.9":  # unparsable request line: still answer with a status line
            self.request_version = "HTTP/1.0"
        self._try_send_json(HTTPStatus(code), {"error": message or HTTPStatus(code).phrase})

    def log_message(self, format: str, *args: Any) -> None:
        log.info("%s %s", self.address_string(), format % args)


def _allowed_methods(path: str) -> tuple[str, ...]:
    if path in STATIC or path in API_GET:
        return ("GET", "HEAD")
    if path in API_POST:
        return ("POST",)
    return ()


def _is_whole_number(text: str) -> bool:
    return text.strip().isascii() and text.strip().isdigit()  # isdigit alone accepts "²"


def _reject_constant(name: str) -> float:
    raise ValueError(f"{name} is not a number JSON allows; pixels must be finite numbers 0..255")


def parse_canvas(request: Any) -> np.ndarray:
    """Check a predict request {"width": W, "height": H, "pixels": [W*H numbers 0..255]}; (H, W) float64."""
    if not isinstance(request, dict):
        expected = 'a JSON object {"width": W, "height": H, "pixels": [...]}'
        raise RequestError(HTTPStatus.BAD_REQUEST, f"expected {expected}, got {_kind(request)}")
    missing = [key for key in ("width", "height", "pixels") if key not in request]
    if missing:
        raise RequestError(HTTPStatus.BAD_REQUEST, f"missing field(s): {', '.join(missing)}")
    unknown = sorted(set(request) - {"width", "height", "pixels"})
    if unknown:
        raise RequestError(HTTPStatus.BAD_REQUEST, f"unknown field(s): {', '.join(unknown)}")
    for key in ("width", "height"):
        value = request[key]
        if type(value) is not int:
            raise RequestError(HTTPStatus.BAD_REQUEST, f"{key} must be a whole number, got {_kind(value)}")
        if not 1 <= value <= MAX_SIDE:
            raise RequestError(HTTPStatus.BAD_REQUEST, f"{key} must be between 1 and {MAX_SIDE}, got {value}")
    width, height, pixels = request["width"], request["height"], request["pixels"]
    if not isinstance(pixels, list):
        raise RequestError(HTTPStatus.BAD_REQUEST, f"pixels must be a list of numbers, got {_kind(pixels)}")
    if len(pixels) != width * height:
        raise RequestError(
            HTTPStatus.BAD_REQUEST,
            f"pixels has {len(pixels)} values but width*height = {width}*{height} = {width * height}",
        )
    # bool is an int subclass and json gives only int/float for numbers: test the exact type.
    bad = next((i for i, v in enumerate(pixels) if type(v) is not int and type(v) is not float), None)
    if bad is not None:
        message = f"pixels[{bad}] must be a number 0..255, got {_kind(pixels[bad])}"
        raise RequestError(HTTPStatus.BAD_REQUEST, message)
    try:
        gray = np.array(pixels, dtype=np.float64)
    except OverflowError:  # an integer past float range: out of 0..255 anyway
        gray = np.array([v if abs(v) < 1e300 else math.inf for v in pixels], dtype=np.float64)
    bad = _first(~np.isfinite(gray))
    if bad is not None:
        raise RequestError(HTTPStatus.BAD_REQUEST, f"pixels[{bad}] is not a finite number 0..255")
    bad = _first((gray < 0) | (gray > 255))
    if bad is not None:
        raise RequestError(HTTPStatus.BAD_REQUEST, f"pixels[{bad}] = {pixels[bad]!r:.40} is outside 0..255")
    return gray.reshape(height, width)


def _first(mask: np.ndarray) -> int | None:
    hits = np.flatnonzero(mask)
    return int(hits[0]) if len(hits) else None


def _kind(value: Any) -> str:
    names = {dict: "an object", list: "a list", str: "a string", bool: "true/false", type(None): "null"}
    if type(value) in names:
        return names[type(value)]
    if isinstance(value, float) and not math.isfinite(value):
        return repr(value)
    return f"the number {value!r:.40}"
