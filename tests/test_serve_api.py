"""The demo's HTTP layer, without a browser: every kind of request, good and bad, and the server lives on.

A fake predictor stands in for the network here (this tests HTTP, not learning); it records what it was
given, so we can check the server hands it the MNIST-preprocessed canvas.
"""

import json
import logging
import re
import threading
import urllib.request
from collections.abc import Iterator

import numpy as np
import pytest
from serve_helpers import (
    FakeModel,
    assert_alive,
    canvas_body,
    one_stroke,
    raw_exchange,
    request,
    serving,
    serving_process,
)

from tinygrad_np.preprocess import to_mnist
from tinygrad_np.serve import MAX_BODY_BYTES, MAX_SIDE, DigitServer, make_server


@pytest.fixture
def model() -> FakeModel:
    return FakeModel()


@pytest.fixture
def server(model) -> Iterator[DigitServer]:
    with serving(model) as server:
        yield server


def test_page_and_its_assets_are_served_from_this_machine(server):
    status, headers, page = request(server, "/", method="GET")
    assert status == 200 and headers["Content-Type"].startswith("text/html")
    html = page.decode()
    assert '<canvas id="pad"' in html and 'id="clear"' in html and 'id="seen"' in html
    assert 'src="/app.js"' in html and 'href="/style.css"' in html
    for path, kind in (("/app.js", "text/javascript"), ("/style.css", "text/css")):
        status, headers, asset = request(server, path, method="GET")
        assert status == 200 and headers["Content-Type"].startswith(kind)
        html += asset.decode()
    assert "http://" not in html and "https://" not in html  # no CDN, nothing from the internet
    assert "default-src 'self'" in headers["Content-Security-Policy"]


def test_info_gives_the_banner(server):
    status, _, info = request(server, "/api/info", method="GET")
    assert status == 200 and info == {"banner": "fake model for the HTTP tests"}


def test_predict_runs_the_model_on_the_mnist_preprocessed_canvas(server, model):
    canvas = one_stroke()
    status, _, answer = request(server, "/api/predict", canvas_body(canvas))
    assert status == 200, answer
    expected_image = to_mnist(canvas.astype(np.float64), ink="light")
    (received,) = model.inputs
    assert received.shape == (1, 784) and received.dtype == np.float32
    np.testing.assert_array_equal(received.reshape(28, 28), expected_image)
    np.testing.assert_allclose(answer["image"], expected_image, rtol=1e-6)
    expected_probabilities = model(expected_image.reshape(1, -1))[0]
    np.testing.assert_allclose(answer["probabilities"], expected_probabilities, rtol=1e-6)
    assert answer["digit"] == int(expected_probabilities.argmax())
    assert set(answer) == {"digit", "probabilities", "image"}


def test_content_type_with_charset_and_float_pixels_are_fine(server, model):
    body = canvas_body(one_stroke(50, 40).astype(np.float64) * 0.5)
    status, _, answer = request(server, "/api/predict", body, content_type="application/json; charset=utf-8")
    assert status == 200, answer


def _canvas(**changes):
    base = {"width": 2, "height": 2, "pixels": [0, 255, 255, 0]}
    base.update(changes)
    return json.dumps({k: v for k, v in base.items() if v is not ...}).encode()


MALFORMED = [
    # (id, body, content type, status, words the error must contain)
    ("wrong-content-type", _canvas(), "text/plain", 415, "Content-Type must be application/json"),
    ("not-json", b"{width: 2", "application/json", 400, "not valid JSON"),
    ("not-utf8", b'{"width": "\xff"}', "application/json", 400, "not UTF-8 text: byte 11 is invalid"),
    ("not-utf8-start", b"\xff\xfe{}", "application/json", 400, "not UTF-8 text: byte 0"),  # no 'utf-16' guessing
    ("nan-literal", b'{"width": 1, "height": 1, "pixels": [NaN]}', "application/json", 400, "NaN"),
    ("infinity-literal", b'{"width": 1, "height": 1, "pixels": [-Infinity]}', "application/json", 400,
     "-Infinity"),
    ("huge-float", b'{"width": 1, "height": 1, "pixels": [1e999]}', "application/json", 400,
     r"pixels\[0\] is not a finite"),
    ("huge-int", b'{"width": 1, "height": 1, "pixels": [1' + b"0" * 400 + b"]}", "application/json", 400,
     r"pixels\[0\] is not a finite"),
    ("thousands-of-digits", b'{"width": 1, "height": 1, "pixels": [' + b"9" * 5000 + b"]}",
     "application/json", 400, "a number with thousands of digits; pixels must be numbers 0..255"),
    ("deep-nesting", b"[" * 100_000 + b"]" * 100_000, "application/json", 400, "nested too deeply"),
    ("top-level-list", b"[1, 2]", "application/json", 400, "expected a JSON object"),
    ("missing-pixels", _canvas(pixels=...), "application/json", 400, "missing field.*pixels"),
    ("unknown-field", _canvas(colour="red"), "application/json", 400, "unknown field.*colour"),
    ("width-string", _canvas(width="2"), "application/json", 400, "width must be a whole number, got a string"),
    ("width-float", _canvas(width=2.0), "application/json", 400, "width must be a whole number"),
    ("height-bool", _canvas(height=True), "application/json", 400, "height must be a whole number"),
    ("width-zero", _canvas(width=0), "application/json", 400, f"width must be between 1 and {MAX_SIDE}"),
    ("height-too-big", _canvas(height=MAX_SIDE + 1), "application/json", 400, "height must be between"),
    ("pixels-object", _canvas(pixels={"0": 1}), "application/json", 400, "pixels must be a list"),
    ("count-mismatch", _canvas(pixels=[0, 255, 0]), "application/json", 400,
     r"pixels has 3 values but width\*height = 2\*2 = 4"),
    ("pixel-string", _canvas(pixels=[0, "255", 0, 0]), "application/json", 400,
     r"pixels\[1\] must be a number.*string"),
    ("pixel-null", _canvas(pixels=[0, 0, None, 0]), "application/json", 400, r"pixels\[2\].*null"),
    ("pixel-nested", _canvas(pixels=[0, 0, 0, [255]]), "application/json", 400, r"pixels\[3\].*a list"),
    ("pixel-bool", _canvas(pixels=[True, 0, 0, 0]), "application/json", 400, r"pixels\[0\].*true/false"),
    ("pixel-negative", _canvas(pixels=[0, -1, 0, 0]), "application/json", 400, r"pixels\[1\] = -1 is outside"),
    ("pixel-too-bright", _canvas(pixels=[0, 0, 0, 256]), "application/json", 400, r"pixels\[3\] = 256"),
    ("blank-canvas", _canvas(pixels=[0, 0, 0, 0]), "application/json", 422, "no ink"),
]


@pytest.mark.parametrize(("body", "content_type", "status", "words"), [m[1:] for m in MALFORMED],
                         ids=[m[0] for m in MALFORMED])
def test_malformed_requests_get_a_4xx_naming_the_problem(server, model, body, content_type, status, words):
    got, headers, answer = request(server, "/api/predict", body, content_type=content_type, method="POST")
    assert got == status, answer
    assert headers["Content-Type"] == "application/json"
    assert set(answer) == {"error"}
    assert re.search(words, answer["error"]), answer["error"]
    assert model.inputs == []  # nothing bad reached the model
    assert_alive(server)


def test_oversized_body_is_refused_with_413(server, model):
    body = b" " * (MAX_BODY_BYTES + 1)  # whitespace is valid JSON padding: only the size is wrong
    status, _, answer = request(server, "/api/predict", body)
    assert status == 413 and f"over the {MAX_BODY_BYTES}-byte limit" in answer["error"]
    # A client that only claims a huge body is refused before anything is read.
    status, answer = raw_exchange(
        server,
        b"POST /api/predict HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
        b"Content-Length: 1000000000000\r\n\r\n",
    )
    assert status == 413 and "1000000000000 bytes" in answer["error"]
    assert model.inputs == []
    assert_alive(server)


def test_smaller_body_limit_is_configurable(model):
    with serving(model, max_body_bytes=1000) as server:
        status, _, answer = request(server, "/api/predict", canvas_body(one_stroke(60, 60)))
        assert status == 413 and "1000-byte limit" in answer["error"]


def test_content_length_is_required_and_must_be_a_number(server):
    head = b"POST /api/predict HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
    status, answer = raw_exchange(server, head + b"\r\n" + _canvas())
    assert status == 411 and "Content-Length header is required" in answer["error"]
    for bad_length in (b"lots", b"-5", b"\xb2"):  # "²" passes str.isdigit
        status, answer = raw_exchange(server, head + b"Content-Length: " + bad_length + b"\r\n\r\n" + _canvas())
        assert status == 400 and "Content-Length must be a whole number" in answer["error"]
    status, answer = raw_exchange(server, head + b"Content-Length: 100\r\n\r\n" + b'{"width": 1}')
    assert status == 400 and "body ended after 12 of 100 bytes" in answer["error"]
    untyped = b"POST /api/predict HTTP/1.1\r\nHost: x\r\nContent-Length: %d\r\n\r\n%s" % (len(_canvas()), _canvas())
    status, answer = raw_exchange(server, untyped)
    assert status == 415 and "Content-Type must be application/json, got nothing" in answer["error"]
    assert_alive(server)


def test_a_stalled_client_times_out_without_holding_the_server(model):
    with serving(model, request_deadline_s=0.5) as server:
        head = b"POST /api/predict HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 100\r\n\r\n"
        status, answer = raw_exchange(server, head + b'{"wid', then_close_write=False)
        assert status == 408 and "must arrive within 0.5 s" in answer["error"]
        assert_alive(server)


@pytest.mark.parametrize(
    ("method", "path", "status", "allow"),
    [
        ("GET", "/nope", 404, None),
        ("POST", "/nope", 404, None),
        ("GET", "/api/predict", 405, "POST"),
        ("PUT", "/api/predict", 405, "POST"),
        ("DELETE", "/api/predict", 405, "POST"),
        ("POST", "/", 405, "GET, HEAD"),
        ("POST", "/api/info", 405, "GET, HEAD"),
        ("PATCH", "/app.js", 405, "GET, HEAD"),
    ],
)
def test_unknown_paths_404_and_wrong_methods_405(server, method, path, status, allow):
    body = _canvas() if method in ("POST", "PUT", "PATCH") else None
    got, headers, answer = request(server, path, body, method=method)
    assert got == status and "error" in answer
    assert headers.get("Allow") == allow
    assert_alive(server)


def test_head_gives_headers_without_a_body(server):
    status, headers, body = request(server, "/", method="HEAD")
    assert status == 200 and body == b"" and int(headers["Content-Length"]) > 0


def test_broken_http_gets_a_json_error(server):
    status, answer = raw_exchange(server, b"BREW /pot HTTP/1.1\r\nHost: x\r\n\r\n")
    assert status == 501 and "error" in answer
    status, answer = raw_exchange(server, b"this is not http at all\r\n\r\n")
    assert status == 400 and "error" in answer
    assert_alive(server)


@pytest.mark.parametrize(
    "broken_model",
    [lambda x: 1 / 0, lambda x: np.ones((1, 9)), lambda x: np.full((1, 10), np.nan)],
    ids=["raises", "wrong-shape", "nan"],
)
def test_a_failing_model_gives_500_and_is_logged(broken_model, caplog):
    with serving(broken_model) as server:
        with caplog.at_level(logging.ERROR, logger="tinygrad_np.serve"):
            status, _, answer = request(server, "/api/predict", canvas_body(one_stroke(60, 60)))
        assert status == 500 and answer == {"error": "internal server error (see the server's log)"}
        assert any("unexpected error" in record.message for record in caplog.records)
        status, _, _ = request(server, "/api/info", method="GET")  # still up
        assert status == 200


def test_concurrent_requests_all_get_answers(server, model):
    results = []

    def worker(seed):
        canvas = np.zeros((40, 40), dtype=np.int64)
        canvas[5:35, 10 + seed : 14 + seed] = 255
        results.append(request(server, "/api/predict", canvas_body(canvas))[0])

    threads = [threading.Thread(target=worker, args=(seed,)) for seed in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=30)
    assert results == [200] * 8 and len(model.inputs) == 8


def test_binds_to_localhost_by_default(model):
    server = make_server(model, port=0)
    try:
        assert server.server_address[0] == "127.0.0.1"
        assert server.url == f"http://127.0.0.1:{server.server_address[1]}/"
    finally:
        server.server_close()


def test_run_prints_the_url_and_stops_cleanly_on_ctrl_c():
    """What the CLI calls: `run` binds, prints where, serves, and exits 0 on SIGINT."""
    code = (
        "import numpy as np\n"
        "from tinygrad_np.serve import run\n"
        "run(lambda x: np.full((len(x), 10), 0.1), '127.0.0.1', 0, 'banner from run')\n"
    )
    with serving_process(["-c", code]) as url, urllib.request.urlopen(url + "api/info", timeout=10) as response:
        assert json.loads(response.read()) == {"banner": "banner from run"}


def test_a_server_that_ignores_ctrl_c_fails_with_every_threads_stack():
    # CI saw `serve` once not stop within 60 s of Ctrl-C and could not say where it hung: the helper now shows it.
    code = (
        "import signal, time\n"
        "signal.signal(signal.SIGINT, signal.SIG_IGN)\n"
        "print('serving at http://127.0.0.1:9/', flush=True)\n"
        "def stuck_here():\n"
        "    time.sleep(600)\n"
        "stuck_here()\n"
    )
    with pytest.raises(AssertionError, match=r"did not stop within 1 s") as caught, serving_process(
        ["-c", code], stop_within=1
    ):
        pass
    assert "stuck_here" in str(caught.value)  # faulthandler's stack of the hung thread
