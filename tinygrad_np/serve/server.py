"""A small stdlib HTTP server for the draw-a-digit page: ``GET /`` and ``POST /api/predict``.

One asyncio event loop holds the connections and a few worker threads run the model, so a slow or idle client
costs a coroutine and a socket, never a thread, and a crowd of them cannot starve the others. ``Limits``:

- the whole request, headers and body, must arrive within ``request_deadline_s`` (else 408), however it trickles;
- at most ``max_connections`` are open; past that, new ones wait in the kernel's listen backlog;
- a body is read only by a request that holds one of ``workers`` slots, so memory is bounded by the workers times
  the body cap; ``queue`` more requests may wait for a slot, and past that the answer is 503 with Retry-After;
- a body over ``max_body_bytes`` gets a 413 from its Content-Length alone.

Every response closes its connection. After answering, the server half-closes and reads what the client still
sends, so a client that is still uploading a refused body sees the answer, not a reset (Linux resets a
connection closed with unread data). Every request is validated and answered with JSON on failure
(``{"error": "..."}``); an unexpected exception becomes a logged 500, never a dead server. Bound to 127.0.0.1 by
default. Because ``/api/predict`` demands ``Content-Type: application/json`` and sends no CORS headers, other web
sites cannot post to it from a visitor's browser.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import http.client
import io
import json
import logging
import math
import re
import socket
import threading
from collections.abc import AsyncIterator, Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from email.utils import formatdate
from http import HTTPStatus
from importlib import resources
from typing import Any

import numpy as np

from tinygrad_np.errors import MissingDependencyError, UserError
from tinygrad_np.preprocess import BlankImageError, to_mnist

PredictProba = Callable[[np.ndarray], np.ndarray]  # float32 (N, 784) in [0, 1] -> (N, 10) probabilities

MAX_SIDE = 1024  # width and height of the posted image, in pixels
LISTEN_BACKLOG = 1024  # connections the kernel holds while we are at max_connections (capped by net.core.somaxconn)


@dataclass(frozen=True)
class Limits:
    """What one server lets its clients use.

    Memory above idle is at most ``workers`` requests' worth: a body and its parsed canvas, up to about 60 MiB
    for an 8 MiB body of fractional pixels (Python floats in a list, then float64 arrays).
    """

    max_body_bytes: int = 8 * 1024 * 1024  # a 1024x1024 canvas of integers "255," fits with room to spare
    max_header_bytes: int = 16 * 1024  # request line plus headers; browsers send under 2 KiB
    request_deadline_s: float = 10.0  # for the whole request, headers and body together
    workers: int = 4  # requests whose body is being read or answered at once (the model runs one at a time)
    queue: int = 64  # requests that may wait for a worker; they hold no body yet, only a socket
    max_connections: int = 512
    retry_after_s: int = 1


DEFAULT_LIMITS = Limits()
MAX_BODY_BYTES = DEFAULT_LIMITS.max_body_bytes

STATIC = {  # path -> (file in serve/static, Content-Type)
    "/": ("index.html", "text/html; charset=utf-8"),
    "/app.js": ("app.js", "text/javascript; charset=utf-8"),
    "/style.css": ("style.css", "text/css; charset=utf-8"),
}
API_GET = ("/api/info",)
API_POST = ("/api/predict",)
METHODS = ("GET", "HEAD", "POST", "PUT", "DELETE", "PATCH", "OPTIONS")
HEADERS = {
    "Server": "tinygrad-np",
    "Cache-Control": "no-store",
    "X-Content-Type-Options": "nosniff",
    # The page loads only its own script and style: nothing from the internet, no inline code.
    "Content-Security-Policy": "default-src 'self'; img-src 'self' data:",
    "Connection": "close",
}
READ_CHUNK = 1 << 16

log = logging.getLogger("tinygrad_np.serve")


class ListenError(UserError, OSError):
    """The demo can't listen where it was asked: a port in use, an unknown host, a port that needs root."""


def check_dependencies() -> None:
    """Raise MissingDependencyError (an ImportError) with the pip command when the demo could not answer a
    drawing (Pillow scales it)."""
    try:
        import PIL.Image  # noqa: F401
    except ImportError as exc:
        message = f'the digit demo needs Pillow to scale drawings: pip install "tinygrad-np[web]" ({exc})'
        raise MissingDependencyError(message) from exc


def listen(host: str = "127.0.0.1", port: int = 8000) -> socket.socket:
    """A socket bound to host:port (IPv4 or IPv6) and listening, so a port in use shows now, not after training."""
    if isinstance(port, bool) or not isinstance(port, int) or not 0 <= port <= 65535:
        raise ValueError(f"port must be a whole number 0..65535 (0: any free port), got {port!r}")
    try:
        family, _, _, _, address = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)[0]
    except socket.gaierror as exc:
        raise ListenError(f"cannot serve on {host!r}: not an address or a known host name ({exc.strerror})") from exc
    try:
        return socket.create_server(address, family=family, backlog=LISTEN_BACKLOG)
    except OSError as exc:
        why = {
            errno.EADDRINUSE: f"port {port} is already in use there (another server?); choose another port, "
            "or 0 for any free one",
            errno.EADDRNOTAVAIL: "no network interface of this machine has that address",
            errno.EACCES: f"port {port} needs administrator rights; choose one above 1023",
        }.get(exc.errno or 0, exc.strerror)
        raise ListenError(f"cannot serve on {host} port {port}: {why}") from exc


class RequestError(Exception):
    """A request we refuse, with the HTTP status and the message the client sees."""

    def __init__(self, status: HTTPStatus, message: str, headers: dict[str, str] | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.headers = headers or {}


@dataclass
class Request:
    method: str
    target: str
    headers: http.client.HTTPMessage

    @property
    def path(self) -> str:
        return self.target.split("?", 1)[0]


@dataclass
class Response:
    status: HTTPStatus
    body: bytes
    content_type: str = "application/json"
    headers: dict[str, str] = field(default_factory=dict)

    @classmethod
    def json(cls, status: HTTPStatus, payload: dict[str, Any], headers: dict[str, str] | None = None) -> Response:
        return cls(status, json.dumps(payload, allow_nan=False).encode(), headers=headers or {})

    def encode(self, head_only: bool = False) -> bytes:
        head = [f"HTTP/1.1 {self.status.value} {self.status.phrase}", f"Date: {formatdate(usegmt=True)}"]
        head += [f"Content-Type: {self.content_type}", f"Content-Length: {len(self.body)}"]
        head += [f"{name}: {value}" for name, value in {**HEADERS, **self.headers}.items()]
        return "\r\n".join(head).encode("latin-1") + b"\r\n\r\n" + (b"" if head_only else self.body)


class DigitServer:
    """The demo on a listening socket: ``serve_forever()`` in one thread, ``shutdown()`` from another."""

    def __init__(
        self, sock: socket.socket, predict_proba: PredictProba, banner: str = "", limits: Limits = DEFAULT_LIMITS
    ) -> None:
        self.socket = sock
        self.server_address = sock.getsockname()
        self.predict_proba = predict_proba
        self.banner = banner
        self.limits = limits
        self.static = {
            path: (resources.files("tinygrad_np.serve").joinpath("static", name).read_bytes(), content_type)
            for path, (name, content_type) in STATIC.items()
        }
        # The model may keep state between calls (autograd graphs, caches): one prediction at a time.
        self.predict_lock = threading.Lock()
        self.workers = ThreadPoolExecutor(limits.workers, thread_name_prefix="tinygrad-np-serve")
        self._state = threading.Lock()  # guards _loop, _stop and _shutdown_requested across threads
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stop: asyncio.Event | None = None
        self._shutdown_requested = False
        self._stopped = threading.Event()

    @property
    def url(self) -> str:
        host, port = self.server_address[:2]
        return f"http://[{host}]:{port}/" if ":" in host else f"http://{host}:{port}/"

    def serve_forever(self) -> None:
        """Answer requests until ``shutdown()`` (or Ctrl-C, as KeyboardInterrupt, in the main thread)."""
        self._stopped.clear()
        try:
            asyncio.run(self._serve())
        finally:
            self._stopped.set()

    def shutdown(self) -> None:
        """Stop ``serve_forever`` and wait for it to return; call from another thread."""
        with self._state:
            self._shutdown_requested = True
            loop, stop = self._loop, self._stop
        if loop is not None and stop is not None:
            with contextlib.suppress(RuntimeError):  # the loop has already closed
                loop.call_soon_threadsafe(stop.set)
            self._stopped.wait()

    def server_close(self) -> None:
        """Release the port and the worker threads."""
        self.socket.close()
        self.workers.shutdown(wait=False, cancel_futures=True)

    # ---- connections --------------------------------------------------------------------------------------

    async def _serve(self) -> None:
        with self._state:
            if self._shutdown_requested:
                return
            self._loop, self._stop = asyncio.get_running_loop(), asyncio.Event()
        self._slots = asyncio.Semaphore(self.limits.workers)  # see _worker_slot
        self._waiting = 0  # requests queued for a slot
        self.socket.setblocking(False)
        accepting = asyncio.create_task(self._accept())
        try:
            await self._stop.wait()
        finally:
            accepting.cancel()  # asyncio.run then cancels the open connections

    async def _accept(self) -> None:
        loop = asyncio.get_running_loop()
        room = asyncio.Semaphore(self.limits.max_connections)
        connections: set[asyncio.Task] = set()  # the loop keeps only weak references to tasks
        while True:
            await room.acquire()
            try:
                conn, address = await loop.sock_accept(self.socket)
            except OSError as exc:  # out of file descriptors, or a connection reset while queued
                room.release()
                log.warning("accept failed: %s", exc)
                await asyncio.sleep(0.1)
                continue
            task = asyncio.create_task(self._connection(conn, address[0]))
            connections.add(task)
            task.add_done_callback(connections.discard)
            task.add_done_callback(lambda _: room.release())

    async def _connection(self, conn: socket.socket, client: str) -> None:
        """Read one request within the deadline, answer it, then let the client finish sending and close."""
        try:
            reader, writer = await asyncio.open_connection(sock=conn, limit=self.limits.max_header_bytes)
        except OSError:  # reset between accept and now
            conn.close()
            return
        try:
            request, response, linger_s = await self._respond(reader, writer)
            if response is None:  # connected and left without a word (a browser's preconnect)
                return
            writer.write(response.encode(head_only=request is not None and request.method == "HEAD"))
            async with asyncio.timeout(self.limits.request_deadline_s):
                await writer.drain()
            log.info('%s "%s" %d %d', client, _request_line(request), response.status, len(response.body))
            await _linger(reader, writer, linger_s)
        except (ConnectionError, TimeoutError):  # reset, or it stopped reading our answer
            log.info("%s: the client went away before it had the whole answer", client)
        finally:
            writer.close()

    async def _respond(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
    ) -> tuple[Request | None, Response | None, float]:
        """(the request, our answer, how long to linger after it); every failure becomes an answer."""
        request = None
        deadline = asyncio.timeout(self.limits.request_deadline_s)
        linger_s = self.limits.request_deadline_s
        try:
            async with deadline:
                request = await _read_head(reader, self.limits.max_header_bytes)
                if request is None:
                    return None, None, 0
                return request, await self._route(request, reader, writer, deadline), linger_s
        except RequestError as exc:
            return request, Response.json(exc.status, {"error": exc.message}, exc.headers), linger_s
        except ConnectionError:
            raise
        except TimeoutError:
            if not deadline.expired():
                return request, _internal_error(request), linger_s
            message = (
                f"timed out: the whole request (headers and body) must arrive within "
                f"{self.limits.request_deadline_s:g} s"
            )
            return request, Response.json(HTTPStatus.REQUEST_TIMEOUT, {"error": message}), 0  # no more time
        except Exception:
            return request, _internal_error(request), linger_s

    async def _route(
        self, request: Request, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, deadline: asyncio.Timeout
    ) -> Response:
        path = request.path
        allowed = _allowed_methods(path)
        if not allowed:
            raise RequestError(HTTPStatus.NOT_FOUND, f"no such page: {path} (try / or /api/predict)")
        if request.method not in allowed:
            message = f"{request.method} is not allowed on {path}; use {' or '.join(allowed)}"
            raise RequestError(HTTPStatus.METHOD_NOT_ALLOWED, message, {"Allow": ", ".join(allowed)})
        if path in self.static:
            body, content_type = self.static[path]
            return Response(HTTPStatus.OK, body, content_type)
        if path == "/api/info":
            return Response.json(HTTPStatus.OK, {"banner": self.banner})
        length = _content_length(request, self.limits.max_body_bytes)
        async with self._worker_slot(deadline):
            if request.headers.get("Expect", "").lower() == "100-continue":  # curl waits a second for this
                writer.write(b"HTTP/1.1 100 Continue\r\n\r\n")
            body = await _read_body(reader, length)
            deadline.reschedule(None)  # the request is in: our own work is not the client's to time
            return await asyncio.get_running_loop().run_in_executor(self.workers, self._answer, body)

    @contextlib.asynccontextmanager
    async def _worker_slot(self, deadline: asyncio.Timeout) -> AsyncIterator[None]:
        """One of ``workers`` slots, held while the body is read and answered; 503 when the queue is full too."""
        limits = self.limits
        if self._slots.locked() and self._waiting >= limits.queue:
            raise self._busy()
        loop = asyncio.get_running_loop()
        remaining = (deadline.when() or loop.time()) - loop.time()
        deadline.reschedule(None)  # the wait for a worker is our delay, not the client's
        self._waiting += 1
        try:
            await self._slots.acquire()
        finally:
            self._waiting -= 1
        deadline.reschedule(loop.time() + remaining)
        try:
            yield
        finally:
            self._slots.release()

    def _busy(self) -> RequestError:
        limits = self.limits
        return RequestError(
            HTTPStatus.SERVICE_UNAVAILABLE,
            f"the server is busy ({limits.workers} drawings are being read or recognised and {self._waiting} "
            f"wait); try again in {limits.retry_after_s} s",
            {"Retry-After": str(limits.retry_after_s)},
        )

    # ---- the prediction, in a worker thread ---------------------------------------------------------------

    def _answer(self, body: bytearray) -> Response:
        """Validate {"width", "height", "pixels"}, preprocess like MNIST, and ask the model."""
        gray = parse_canvas(_parse_json(body))
        try:
            image = to_mnist(gray, ink="light")  # the canvas sends ink as high values
        except BlankImageError as exc:
            raise RequestError(HTTPStatus.UNPROCESSABLE_ENTITY, str(exc)) from exc
        with self.predict_lock:
            probabilities = np.asarray(self.predict_proba(image.reshape(1, -1)), dtype=np.float64)
        if probabilities.shape != (1, 10) or not np.isfinite(probabilities).all():
            raise RuntimeError(f"predict_proba gave {probabilities!r:.200}, expected finite (1, 10) probabilities")
        return Response.json(
            HTTPStatus.OK,
            {
                "digit": int(probabilities[0].argmax()),
                "probabilities": probabilities[0].tolist(),
                "image": image.astype(np.float64).tolist(),
            },
        )


# ---- reading a request ------------------------------------------------------------------------------------


async def _read_head(reader: asyncio.StreamReader, max_bytes: int) -> Request | None:
    """The request line and headers, or None if the client closed before sending anything."""
    try:
        head = await reader.readuntil(b"\r\n\r\n")
    except asyncio.IncompleteReadError as exc:
        if not exc.partial.strip():
            return None
        raise RequestError(HTTPStatus.BAD_REQUEST, "the request ended before its headers did") from exc
    except asyncio.LimitOverrunError as exc:
        message = f"the request line and headers are over the {max_bytes}-byte limit"
        raise RequestError(HTTPStatus.REQUEST_HEADER_FIELDS_TOO_LARGE, message) from exc
    line, _, rest = head.partition(b"\r\n")
    parts = line.decode("latin-1").split(" ")
    if len(parts) != 3 or not re.fullmatch(r"HTTP/1\.[01]", parts[2]):
        message = f"not an HTTP/1.x request line: {line[:100].decode('latin-1')!r}; expected e.g. 'GET / HTTP/1.1'"
        raise RequestError(HTTPStatus.BAD_REQUEST, message)
    method, target, _ = parts
    if method not in METHODS:
        raise RequestError(HTTPStatus.NOT_IMPLEMENTED, f"unsupported method {method[:20]!r}")
    try:
        headers = http.client.parse_headers(io.BytesIO(rest))
    except http.client.HTTPException as exc:
        raise RequestError(HTTPStatus.BAD_REQUEST, f"malformed headers: {exc}") from exc
    return Request(method, target, headers)


def _content_length(request: Request, limit: int) -> int:
    """The body's size, after checking Content-Type and Content-Length against the limit."""
    content_type = request.headers.get("Content-Type", "")
    if content_type.split(";", 1)[0].strip().lower() != "application/json":
        raise RequestError(
            HTTPStatus.UNSUPPORTED_MEDIA_TYPE, f"Content-Type must be application/json, got {content_type or 'nothing'}"
        )
    length_header = request.headers.get("Content-Length")
    if length_header is None:
        raise RequestError(HTTPStatus.LENGTH_REQUIRED, "Content-Length header is required")
    if not (length_header.strip().isascii() and length_header.strip().isdigit()):  # isdigit alone accepts "²"
        raise RequestError(HTTPStatus.BAD_REQUEST, f"Content-Length must be a whole number, got {length_header!r}")
    length = int(length_header)
    if length > limit:
        raise RequestError(
            HTTPStatus.REQUEST_ENTITY_TOO_LARGE,
            f"body of {length} bytes is over the {limit}-byte limit; send a smaller canvas (at most "
            f"{MAX_SIDE}x{MAX_SIDE} pixels) or shorter numbers (whole numbers 0..255 fit any canvas up to that size)",
        )
    return length


async def _read_body(reader: asyncio.StreamReader, length: int) -> bytearray:
    """Exactly ``length`` bytes, read in chunks into one buffer (the body is held once, not twice)."""
    body = bytearray(length)
    filled = 0
    while filled < length:
        chunk = await reader.read(min(length - filled, READ_CHUNK))
        if not chunk:
            raise RequestError(HTTPStatus.BAD_REQUEST, f"body ended after {filled} of {length} bytes")
        body[filled : filled + len(chunk)] = chunk
        filled += len(chunk)
    return body


async def _linger(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, seconds: float) -> None:
    """Half-close, then read and drop what the client still sends (a refused body) until it closes too."""
    if seconds <= 0:
        return
    with contextlib.suppress(OSError, TimeoutError):
        if writer.can_write_eof():
            writer.write_eof()
        async with asyncio.timeout(seconds):
            while await reader.read(READ_CHUNK):
                pass


def _internal_error(request: Request | None) -> Response:
    log.exception("unexpected error answering %s", _request_line(request))
    return Response.json(HTTPStatus.INTERNAL_SERVER_ERROR, {"error": "internal server error (see the server's log)"})


def _request_line(request: Request | None) -> str:
    return "-" if request is None else f"{request.method} {request.target[:200]}"


def _allowed_methods(path: str) -> tuple[str, ...]:
    if path in STATIC or path in API_GET:
        return ("GET", "HEAD")
    if path in API_POST:
        return ("POST",)
    return ()


# ---- the canvas -------------------------------------------------------------------------------------------


def _parse_json(body: bytes | bytearray) -> Any:
    try:
        # Decoded here, as UTF-8 only: json.loads would guess UTF-16 or -32 from the first bytes and name that codec.
        text = bytes(body).decode("utf-8")
    except UnicodeDecodeError as exc:
        raise RequestError(HTTPStatus.BAD_REQUEST, f"body is not UTF-8 text: byte {exc.start} is invalid") from exc
    try:
        return json.loads(text, parse_constant=_reject_constant)
    except json.JSONDecodeError as exc:
        raise RequestError(HTTPStatus.BAD_REQUEST, f"body is not valid JSON: {exc}") from exc
    except RecursionError as exc:
        raise RequestError(HTTPStatus.BAD_REQUEST, "body is nested too deeply to be a canvas") from exc
    except ValueError as exc:  # NaN / Infinity literals, or integers with thousands of digits (Python's own limit)
        if "int_max_str_digits" in str(exc) or "integer string conversion" in str(exc):
            raise RequestError(HTTPStatus.BAD_REQUEST, "body holds a number with thousands of digits; pixels must "
                                                       "be numbers 0..255") from exc
        raise RequestError(HTTPStatus.BAD_REQUEST, f"body is not valid JSON: {exc}") from exc


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
    # bool is an int subclass and json gives only int/float for numbers: test the exact type (in C, then
    # in Python only to name the culprit: a million-pixel canvas costs 18 ms, not 120).
    if not set(map(type, pixels)) <= {int, float}:
        bad = next(i for i, v in enumerate(pixels) if type(v) is not int and type(v) is not float)
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
