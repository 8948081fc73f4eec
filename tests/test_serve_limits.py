"""The demo server under load and abuse: bounded workers, memory and time; loopback only, and every test ends.

No timing assertions: how fast the server answers is in the benchmark report (`python -m tinygrad_np.benchmarks.serve`).
What is asserted is what must never happen: a request that fails under load, a slow crowd that locks out a
normal client, a slow client kept forever, a refused body that reaches the client as a reset, memory that
grows with the number of clients instead of the number of workers.
"""

import contextlib
import json
import select
import socket
import threading
import time
import tracemalloc
import urllib.request
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest
from conftest import require
from serve_helpers import FakeModel, assert_alive, canvas_body, one_stroke, raw_exchange, request, serving

from tinygrad_np.serve import MAX_BODY_BYTES, make_server
from tinygrad_np.serve.server import listen


@pytest.fixture
def model() -> FakeModel:
    return FakeModel()


def test_200_requests_20_at_a_time_are_all_answered(model):
    """The bounded load test: a fixed number of page-sized canvases, each with a time limit; none may fail."""
    strokes = [one_stroke() for _ in range(3)]
    strokes[1][:, :140] = 0  # three different drawings, so the answers cannot all be one cached reply
    strokes[2] = strokes[2].T.copy()
    bodies = [canvas_body(stroke) for stroke in strokes]
    with serving(model) as server, ThreadPoolExecutor(20) as pool:
        answers = list(pool.map(lambda i: request(server, "/api/predict", bodies[i % 3]), range(200), timeout=300))
    assert [status for status, _, _ in answers] == [200] * 200, {status for status, _, _ in answers}
    for _, _, answer in answers:  # each client got the answer to its own drawing
        image = np.array(answer["image"], dtype=np.float32).reshape(1, 784)
        assert answer["digit"] == int(FakeModel()(image).argmax())
    assert len(model.inputs) == 200


def test_a_crowd_of_slow_clients_does_not_lock_out_a_normal_one(model):
    """100 clients trickle header bytes; a normal client is answered meanwhile, and each slow one is cut off."""
    deadline_s = 3.0
    with serving(model, request_deadline_s=deadline_s) as server:
        crowd = [socket.create_connection(server.server_address[:2], timeout=10) for _ in range(100)]
        stop = threading.Event()

        def trickle() -> None:
            for byte in b"GET / HTTP/1.1\r\nHost: x\r\nX-Slow: " + b"a" * 1000:
                answered = set(select.select(crowd, [], [], 0)[0])
                for sock in crowd:
                    if sock not in answered:  # (writing to a closed connection would reset our copy of the 408)
                        sock.send(bytes([byte]))
                if stop.wait(0.1):
                    return

        trickler = threading.Thread(target=trickle)
        trickler.start()
        try:
            statuses = [request(server, "/api/predict", canvas_body(one_stroke(60, 60)))[0] for _ in range(10)]
            assert statuses == [200] * 10
            answers = [_read_all(sock) for sock in crowd]  # each ends with the server's 408 and close
        finally:
            stop.set()
            trickler.join()
            for sock in crowd:
                sock.close()
    assert all(answer.startswith(b"HTTP/1.1 408 ") for answer in answers), {a[:30] for a in answers}
    assert f"must arrive within {deadline_s:g} s".encode() in answers[0]


def _read_all(sock: socket.socket) -> bytes:
    """Everything the server sends until it closes; a byte we sent after its close makes the end a reset."""
    data = b""
    with contextlib.suppress(ConnectionResetError):
        while chunk := sock.recv(65536):
            data += chunk
    return data


def test_the_deadline_is_for_the_whole_request_not_each_read(model):
    """A byte every 0.1 s never trips a per-read timeout; a 0.6 s deadline for the whole request ends it."""
    header = b"POST /api/predict HTTP/1.1\r\nHost: x\r\nX-Slow: " + b"a" * 200 + b"\r\n\r\n"
    with serving(model, request_deadline_s=0.6) as server:
        with socket.create_connection(server.server_address[:2], timeout=10) as sock:
            sent = 0
            while sent < len(header) and not select.select([sock], [], [], 0)[0]:
                sock.send(header[sent : sent + 1])
                sent += 1
                select.select([sock], [], [], 0.1)
            answer = _read_all(sock)
        assert answer.startswith(b"HTTP/1.1 408 ")
        assert sent < len(header)  # cut off mid-headers, long before it would have finished
        assert_alive(server)


def test_a_full_worker_pool_answers_503_with_retry_after():
    """One worker busy with a drawing and no room in the queue: the next drawing gets 503 and Retry-After."""
    entered, release = threading.Event(), threading.Event()
    fake = FakeModel()

    def slow_model(x: np.ndarray) -> np.ndarray:
        entered.set()
        release.wait(timeout=30)
        return fake(x)

    with serving(slow_model, workers=1, queue=0) as server, ThreadPoolExecutor(1) as pool:
        first = pool.submit(request, server, "/api/predict", canvas_body(one_stroke(60, 60)))
        assert entered.wait(timeout=30)
        status, headers, answer = request(server, "/api/predict", canvas_body(one_stroke(60, 60)))
        assert status == 503 and headers["Retry-After"] == "1"
        assert "busy" in answer["error"] and "try again in 1 s" in answer["error"]
        status, _, _ = request(server, "/api/info", method="GET")  # pages and info need no worker
        assert status == 200
        release.set()
        assert first.result(timeout=30)[0] == 200
        assert_alive(server)


def test_queued_requests_wait_for_a_worker_instead_of_failing():
    """Two workers, 12 drawings at once: the 10 that find no worker wait in the queue, and all are answered."""
    fake = FakeModel()
    release = threading.Event()

    def gated_model(x: np.ndarray) -> np.ndarray:
        release.wait(timeout=30)
        return fake(x)

    with serving(gated_model, workers=2, queue=10) as server, ThreadPoolExecutor(12) as pool:
        body = canvas_body(one_stroke(60, 60))
        futures = [pool.submit(request, server, "/api/predict", body) for _ in range(12)]
        time.sleep(0.5)  # let them all arrive while the model holds the workers (not a timing assertion)
        release.set()
        assert [future.result(timeout=60)[0] for future in futures] == [200] * 12
    assert len(fake.inputs) == 12


def test_a_50_mb_body_gets_413_not_a_broken_pipe(model):
    """The client is still uploading when we refuse it: it must read the 413, not a connection reset."""
    body = b" " * (50 * 2**20)
    with serving(model) as server:
        status, _, answer = request(server, "/api/predict", body)
        assert status == 413 and f"{len(body)} bytes is over the {MAX_BODY_BYTES}-byte limit" in answer["error"]
        assert_alive(server)
    assert len(model.inputs) == 1  # only assert_alive's drawing reached the model


def test_expect_100_continue_is_honoured(model):
    """curl asks first for big bodies: a refused one is never sent, an accepted one is invited."""
    body = canvas_body(one_stroke(60, 60))
    head = b"POST /api/predict HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nExpect: 100-continue\r\n"
    with serving(model) as server:
        with socket.create_connection(server.server_address[:2], timeout=10) as sock:
            sock.sendall(head + b"Content-Length: %d\r\n\r\n" % (50 * 2**20))
            assert _read_all(sock).startswith(b"HTTP/1.1 413 ")  # answered without a byte of the body
        with socket.create_connection(server.server_address[:2], timeout=10) as sock:
            sock.sendall(head + b"Content-Length: %d\r\n\r\n" % len(body))
            assert sock.recv(100) == b"HTTP/1.1 100 Continue\r\n\r\n"
            sock.sendall(body)
            answer = _read_all(sock)
    assert answer.startswith(b"HTTP/1.1 200 ") and b'"digit"' in answer


def test_memory_grows_with_the_workers_not_with_the_clients():
    """6 concurrent 512x512 canvases through 1 worker peak at about one canvas' worth (tracemalloc).

    A body is read only by a request holding a worker, so the others wait with theirs still in the kernel's
    socket buffers. (With a worker per client, as before, the same load peaked at 2.8 canvases' worth.)
    """
    body = canvas_body(np.random.default_rng(0).integers(0, 256, (512, 512)))

    def peak_bytes(concurrent: int) -> int:
        with serving(FakeModel(), workers=1, queue=16) as server, ThreadPoolExecutor(concurrent) as pool:
            tracemalloc.start()
            try:
                answers = pool.map(lambda _: request(server, "/api/predict", body, timeout=120), range(concurrent))
                statuses = [status for status, _, _ in answers]
                peak = tracemalloc.get_traced_memory()[1]
            finally:
                tracemalloc.stop()
        assert statuses == [200] * concurrent
        return peak

    one = peak_bytes(1)
    assert one > 3 * len(body)  # the measurement sees the parsed canvas, not only the raw bytes
    assert peak_bytes(6) < 1.5 * one


def test_ipv6_loopback_works(model):
    try:
        sock = listen("::1", 0)
    except OSError as exc:
        require(False, f"this machine has no IPv6 loopback ({exc})")
    with serving(model, sock=sock) as server:
        assert server.url == f"http://[::1]:{server.server_address[1]}/"
        with urllib.request.urlopen(server.url + "api/info", timeout=10) as response:
            assert json.loads(response.read()) == {"banner": "fake model for the HTTP tests"}
        assert_alive(server)


@pytest.mark.parametrize("port", [70000, -1, 65536, True, 80.0])
def test_a_port_out_of_range_is_a_clear_error(port):
    with pytest.raises(ValueError, match=r"port must be a whole number 0\.\.65535"):
        listen("127.0.0.1", port)


def test_a_port_in_use_or_a_bad_host_is_a_clear_error():
    with socket.create_server(("127.0.0.1", 0)) as taken:
        port = taken.getsockname()[1]
        with pytest.raises(OSError, match=f"cannot serve on 127.0.0.1 port {port}: port {port} is already in use"):
            make_server(FakeModel(), "127.0.0.1", port)
    with pytest.raises(OSError, match="not an address or a known host name"):
        listen("no-such-host.invalid", 0)


def test_the_listen_backlog_holds_a_burst(model):
    """A burst of 200 connects while the server is not accepting yet: none is refused or reset."""
    sock = listen("127.0.0.1", 0)
    burst = [socket.create_connection(sock.getsockname()[:2], timeout=10) for _ in range(200)]
    try:
        with serving(model, sock=sock):
            for client in burst:
                client.sendall(b"GET /api/info HTTP/1.1\r\nHost: x\r\n\r\n")
            answers = [_read_all(client) for client in burst]
    finally:
        for client in burst:
            client.close()
    assert all(answer.startswith(b"HTTP/1.1 200 ") for answer in answers)


def test_oversized_or_unfinished_headers_get_a_json_error(model):
    """Headers past the limit get 431, headers cut short 400: JSON answers, and the server lives on."""
    with serving(model) as server:
        status, answer = raw_exchange(server, b"GET / HTTP/1.1\r\n" + b"X-Big: " + b"a" * 20_000 + b"\r\n\r\n")
        assert status == 431 and "over the 16384-byte limit" in answer["error"]
        status, answer = raw_exchange(server, b"GET / HTTP/1.1\r\nHost: x\r\n")
        assert status == 400 and "ended before its headers did" in answer["error"]
        assert_alive(server)
