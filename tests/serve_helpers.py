"""What the demo server's tests share: a fake model, a live server in a thread or a child process, and clients
that speak HTTP."""

import contextlib
import json
import os
import re
import signal
import socket
import subprocess
import sys
import threading
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import numpy as np

from tinygrad_np.serve import DigitServer, Limits, make_server


class FakeModel:
    """Probabilities that depend on the input (so nothing is hard-coded), and a record of the inputs."""

    def __init__(self) -> None:
        self.inputs: list[np.ndarray] = []
        self.weights = np.random.default_rng(0).normal(size=(784, 10))

    def __call__(self, x: np.ndarray) -> np.ndarray:
        self.inputs.append(x.copy())
        logits = x.astype(np.float64) @ self.weights
        exp = np.exp(logits - logits.max(axis=1, keepdims=True))
        return exp / exp.sum(axis=1, keepdims=True)


@contextlib.contextmanager
def serving(model, sock: socket.socket | None = None, **limits) -> Iterator[DigitServer]:
    """A live server in a thread, on ``sock`` or a free localhost port, with these ``Limits``."""
    server = make_server(model, port=0, banner="fake model for the HTTP tests", sock=sock, limits=Limits(**limits))
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield server
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)


@contextlib.contextmanager
def serving_process(argv: list[str], stop_within: float = 60) -> Iterator[str]:
    """`python argv...` (a server that prints its URL), with the checkout importable; yields the URL. Ctrl-C must
    then stop it with status 0. Its stderr is drained as it comes (a full pipe would block the server), and a server
    that does not stop is made to print every thread's stack (faulthandler, on SIGABRT) into the failure."""
    root = Path(__file__).resolve().parents[1]
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(root), os.environ.get("PYTHONPATH")]))}
    # A shell's background job starts with SIGINT ignored, and a child inherits that, so this server's Ctrl-C would
    # do nothing (a CI run in the background hung here). Start it as from a terminal: SIGINT at its default.
    ignored = signal.getsignal(signal.SIGINT) == signal.SIG_IGN
    if ignored:
        signal.signal(signal.SIGINT, signal.SIG_DFL)
    try:
        process = subprocess.Popen([sys.executable, "-X", "faulthandler", *argv], stdout=subprocess.PIPE,
                                   stderr=subprocess.PIPE, text=True, env=env)
    finally:
        if ignored:
            signal.signal(signal.SIGINT, signal.SIG_IGN)
    errors: list[str] = []
    drain = threading.Thread(target=lambda: errors.extend(process.stderr), daemon=True)
    drain.start()
    try:
        line = process.stdout.readline()
        match = re.search(r"at (http://127\.0\.0\.1:\d+/)", line)
        if not match:
            process.wait(timeout=60)
            drain.join(timeout=10)
            raise AssertionError(line + "".join(errors))
        yield match.group(1)
        process.send_signal(signal.SIGINT)
        try:
            status = process.wait(timeout=stop_within)  # a minute: a machine may be shared by eight test runs
        except subprocess.TimeoutExpired:
            process.send_signal(signal.SIGABRT)  # faulthandler writes every thread's stack to stderr
            process.wait(timeout=30)
            drain.join(timeout=10)
            raise AssertionError(
                f"the server did not stop within {stop_within} s of Ctrl-C; its stderr:\n" + "".join(errors)
            ) from None
        drain.join(timeout=10)
        assert status == 0, "".join(errors)
    finally:
        if process.poll() is None:
            process.kill()
        process.communicate()


def request(server, path, body=None, content_type="application/json", method=None, timeout=10):
    """(status, headers, decoded JSON or raw bytes) for one request; HTTP errors are answers, not raises."""
    headers = {"Content-Type": content_type} if content_type else {}
    req = urllib.request.Request(server.url.rstrip("/") + path, data=body, headers=headers, method=method)
    try:
        with urllib.request.urlopen(req, timeout=timeout) as response:
            status, response_headers, raw = response.status, response.headers, response.read()
    except urllib.error.HTTPError as error:
        status, response_headers, raw = error.code, error.headers, error.read()
    if response_headers.get("Content-Type") == "application/json":
        return status, response_headers, json.loads(raw)
    return status, response_headers, raw


def raw_exchange(server, data: bytes, then_close_write: bool = True) -> tuple[int, dict]:
    """Send raw bytes on a socket (for what urllib will not send), return the status and JSON answer."""
    with socket.create_connection(server.server_address[:2], timeout=10) as sock:
        sock.sendall(data)
        if then_close_write:
            sock.shutdown(socket.SHUT_WR)
        response = b""
        while chunk := sock.recv(65536):
            response += chunk
    head, _, body = response.partition(b"\r\n\r\n")
    status = int(head.split(b" ", 2)[1])
    return status, json.loads(body)


def canvas_body(pixels: np.ndarray) -> bytes:
    height, width = pixels.shape
    return json.dumps({"width": width, "height": height, "pixels": pixels.ravel().tolist()}).encode()


def one_stroke(height: int = 280, width: int = 280) -> np.ndarray:
    """A canvas like the page sends: black, with a white diagonal stroke, integers 0..255."""
    canvas = np.zeros((height, width), dtype=np.int64)
    pen = max(1, height // 30)
    for t in np.linspace(0, 1, 200):
        row, col = int(height * (0.15 + 0.7 * t)), int(width * (0.55 - 0.15 * t))
        canvas[row - pen : row + pen, col - pen : col + pen] = 255
    return canvas


def assert_alive(server) -> None:
    """The server still answers a valid prediction after whatever came before."""
    status, _, answer = request(server, "/api/predict", canvas_body(one_stroke(60, 60)))
    assert status == 200, answer
    assert 0 <= answer["digit"] <= 9
