"""The draw-a-digit server under load, measured from outside its process.

The server runs in a child process (its own GIL, its own resident memory) with a 784-128-10 MLP; this process
is the crowd. Three phases:

    load          requests of a 280x280 canvas (what the page sends), some at a time: failures, p50/p95/max ms
    slow clients  connections that trickle one header byte every 2 s while a normal client sends requests one
                  by one: its failures and latency, and how many slow connections the server still holds
    memory        concurrent 4 MiB canvases (1024x1024): the server's resident memory before, and its peak

`python -m tinygrad_np.benchmarks.serve [--quick] [--server-root DIR]`: DIR serves another checkout's tinygrad_np, for a
before/after comparison (the child uses only `make_server` and `serve_forever`).
"""

from __future__ import annotations

import argparse
import contextlib
import http.client
import json
import os
import socket
import subprocess
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from tinygrad_np.benchmarks.harness import progress, section

MIB = 2**20
CANVAS_BYTES = 4 * MIB


@dataclass(frozen=True)
class Load:
    requests: int
    concurrency: int
    slow_clients: int
    slow_seconds: float  # how long the slow crowd trickles
    canvases: int  # concurrent 4 MiB canvases


FULL = Load(requests=200, concurrency=20, slow_clients=100, slow_seconds=30.0, canvases=40)
QUICK = Load(requests=40, concurrency=10, slow_clients=20, slow_seconds=1.0, canvases=2)

SERVER_CODE = """
import sys
import numpy as np
import tinygrad_np
from tinygrad_np import Tensor, nn, no_grad
from tinygrad_np.serve import make_server, serve_forever

rng = np.random.default_rng(0)
model = nn.Sequential(nn.Linear(784, 128, generator=rng), nn.ReLU(), nn.Linear(128, 10, generator=rng))

def predict_proba(x):
    with no_grad():
        return model(Tensor(x)).softmax(axis=-1).numpy()

server = make_server(predict_proba, port=0, banner="benchmark")
print(server.server_address[1], flush=True)
print("bench: serve: the server runs", tinygrad_np.__file__, file=sys.stderr, flush=True)
serve_forever(server)
"""


def page_canvas() -> bytes:
    """A 280x280 drawing as the page posts it: black, one white stroke, integers 0..255."""
    canvas = np.zeros((280, 280), dtype=np.int64)
    for t in np.linspace(0, 1, 200):
        row, col = int(280 * (0.15 + 0.7 * t)), int(280 * (0.55 - 0.15 * t))
        canvas[row - 9 : row + 9, col - 9 : col + 9] = 255
    return json.dumps({"width": 280, "height": 280, "pixels": canvas.ravel().tolist()}).encode()


def big_canvas() -> bytes:
    """A 1024x1024 canvas of seeded random pixels, padded with JSON whitespace to exactly 4 MiB."""
    pixels = np.random.default_rng(0).integers(0, 256, 1024 * 1024).tolist()
    body = json.dumps({"width": 1024, "height": 1024, "pixels": pixels}, separators=(",", ":")).encode()
    return body + b" " * (CANVAS_BYTES - len(body))


def post(port: int, body: bytes, timeout: float = 60) -> tuple[int | str, float]:
    """(status or the exception's name, seconds) for one POST /api/predict on a fresh connection."""
    began = time.perf_counter()
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    try:
        connection.request("POST", "/api/predict", body, {"Content-Type": "application/json"})
        response = connection.getresponse()
        response.read()
        status: int | str = response.status
    except (OSError, http.client.HTTPException) as err:
        status = type(err).__name__
    finally:
        connection.close()
    return status, time.perf_counter() - began


def _latency_cells(results: list[tuple[int | str, float]]) -> dict[str, Any]:
    seconds = np.array([elapsed for _, elapsed in results])
    failed = [status for status, _ in results if status != 200]
    return {
        "requests": len(results),
        "failed": len(failed),
        "failures": ", ".join(sorted({str(status) for status in failed})) or "none",
        "p50 ms": float(np.percentile(seconds, 50)) * 1e3,
        "p95 ms": float(np.percentile(seconds, 95)) * 1e3,
        "max ms": float(seconds.max()) * 1e3,
    }


def _concurrent(port: int, body: bytes, count: int, concurrency: int) -> list[tuple[int | str, float]]:
    with ThreadPoolExecutor(concurrency) as pool:
        return list(pool.map(lambda _: post(port, body), range(count)))


def _load(port: int, body: bytes, count: int, concurrency: int) -> dict[str, Any]:
    began = time.perf_counter()
    results = _concurrent(port, body, count, concurrency)
    return {**_latency_cells(results), "requests/s": count / (time.perf_counter() - began)}


def _slow_crowd(port: int, clients: int, seconds: float, port_body: bytes) -> dict[str, Any]:
    """Trickle header bytes on `clients` connections for `seconds` while a normal client makes requests."""
    crowd = [socket.create_connection(("127.0.0.1", port), timeout=5) for _ in range(clients)]
    stop = threading.Event()
    results: list[tuple[int | str, float]] = []

    def normal_client() -> None:
        while not stop.is_set():
            results.append(post(port, port_body))
            stop.wait(0.1)

    normal = threading.Thread(target=normal_client)
    normal.start()
    header = b"GET / HTTP/1.1\r\nHost: x\r\nX-Slow: " + b"a" * 10_000
    ended = time.monotonic() + seconds
    position = 0
    while time.monotonic() < ended:
        for sock in crowd:
            with contextlib.suppress(OSError):  # the server hung up on this one: it shows as dropped below
                sock.send(header[position : position + 1])
        position += 1
        stop.wait(min(2.0, max(0.0, ended - time.monotonic())))
    stop.set()
    normal.join()
    still_open = sum(_still_open(sock) for sock in crowd)
    for sock in crowd:
        sock.close()
    return {**_latency_cells(results), "slow clients": clients, f"still connected after {seconds:g} s": still_open}


def _still_open(sock: socket.socket) -> bool:
    """True if the server has neither answered nor closed this connection."""
    sock.setblocking(False)
    try:
        sock.recv(1)  # an answer or the end of the stream: the server let go
    except BlockingIOError:
        return True
    except OSError:
        return False
    return False


def _status_kib(pid: int, field: str) -> int:
    for line in Path(f"/proc/{pid}/status").read_text(encoding="ascii").splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    raise OSError(f"/proc/{pid}/status has no {field}")


def _memory(pid: int, port: int, count: int) -> dict[str, Any]:
    body = big_canvas()
    Path(f"/proc/{pid}/clear_refs").write_text("5", encoding="ascii")  # reset the peak (VmHWM) to now
    before = _status_kib(pid, "VmRSS") / 1024
    results = _concurrent(port, body, count, count)
    peak = _status_kib(pid, "VmHWM") / 1024
    statuses = [status for status, _ in results]
    return {
        "requests": count,
        "failed": sum(status != 200 for status in statuses),
        "failures": ", ".join(sorted({str(s) for s in statuses if s != 200})) or "none",
        "max ms": max(elapsed for _, elapsed in results) * 1e3,
        "RSS before MiB": before,
        "peak RSS MiB": peak,
    }


def start_server(server_root: Path | None = None) -> tuple[subprocess.Popen, int]:
    """The demo server in a child process, serving `server_root`'s tinygrad_np (default: the one installed here)."""
    env = {**os.environ, "OPENBLAS_NUM_THREADS": "1"}
    if server_root is not None:
        env["PYTHONPATH"] = str(server_root)
    # cwd too: `python -c` puts the working directory first on sys.path, ahead of PYTHONPATH.
    child = subprocess.Popen([sys.executable, "-c", SERVER_CODE], stdout=subprocess.PIPE, env=env, text=True,
                             cwd=server_root)
    line = child.stdout.readline() if child.stdout else ""
    if not line.strip().isdigit():
        child.kill()
        raise RuntimeError(f"the server child did not start (exit {child.wait()})")
    return child, int(line)


def run(quick: bool = False, server_root: Path | None = None) -> dict[str, Any]:
    load = QUICK if quick else FULL
    progress(f"serve: {load.requests} requests {load.concurrency} at a time, {load.slow_clients} slow clients for "
             f"{load.slow_seconds:g} s, {load.canvases} concurrent 4 MiB canvases")
    child, port = start_server(server_root)
    try:
        body = page_canvas()
        post(port, body)  # warm-up: imports, first BLAS call
        rows = [
            {"label": f"{load.requests} requests, {load.concurrency} at a time",
             "cells": _load(port, body, load.requests, load.concurrency)},
            {"label": f"one client while {load.slow_clients} others trickle headers",
             "cells": _slow_crowd(port, load.slow_clients, load.slow_seconds, body)},
        ]
        if Path(f"/proc/{child.pid}/clear_refs").exists():
            rows.append({"label": f"{load.canvases} concurrent 4 MiB canvases",
                         "cells": _memory(child.pid, port, load.canvases)})
    finally:
        child.kill()
        child.wait()
        if child.stdout is not None:
            child.stdout.close()
    return section(
        "Demo server under load (tinygrad-np serve, 784-128-10 MLP, loopback)",
        "ms per request from connect to the last byte of the answer; MiB of the server's resident memory",
        rows,
        [
            "each request on its own connection; the page's canvas is 280x280 (about 240 KB of JSON)",
            "slow clients send one header byte every 2 s; the server's deadline for a whole request is what ends them",
            "peak RSS: the server process's high-water mark (VmHWM), reset just before the canvases are sent",
        ],
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tinygrad_np.benchmarks.serve", description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="a small load, seconds instead of a minute")
    parser.add_argument("--server-root", type=Path, help="serve this checkout's tinygrad_np instead")
    args = parser.parse_args(argv)
    from tinygrad_np.benchmarks.report import section_markdown

    result = run(args.quick, args.server_root)
    print(json.dumps(result, indent=2))
    print(section_markdown(result))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
