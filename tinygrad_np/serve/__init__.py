"""The draw-a-digit web demo: a page with a canvas, and a JSON API that runs the model on what you drew.

    server = make_server(predict_proba, port=0)   # port 0: the OS picks a free port
    serve_forever(server)                         # or run(predict_proba, host, port, banner) from a CLI

    sock = listen(host, port)                     # bind first (a port in use fails now), build the model,
    run(predict_proba, banner=banner, sock=sock)  # then serve on that socket

``predict_proba`` maps float32 (N, 784) images in [0, 1] (MNIST layout, white digit on black) to (N, 10)
probabilities. API: ``GET /api/info`` -> ``{"banner": str}``; ``POST /api/predict`` with
``{"width": W, "height": H, "pixels": [W*H numbers 0..255, ink high]}`` -> ``{"digit": int,
"probabilities": [10 floats], "image": [28 rows of 28 floats]}`` (the image the network saw). Errors are
``{"error": "..."}`` with a 4xx status (408 for a request slower than the deadline, 413 for a body over
``MAX_BODY_BYTES``, 422 for a blank canvas), or 503 with ``Retry-After`` when every worker is busy and the queue
is full. ``Limits`` holds the numbers.
"""

from __future__ import annotations

import ipaddress
import logging
import socket

from tinygrad_np.serve.server import (
    DEFAULT_LIMITS,
    MAX_BODY_BYTES,
    MAX_SIDE,
    DigitServer,
    Limits,
    PredictProba,
    check_dependencies,
    listen,
)

__all__ = [
    "MAX_BODY_BYTES",
    "MAX_SIDE",
    "DigitServer",
    "Limits",
    "check_dependencies",
    "listen",
    "make_server",
    "run",
    "serve_forever",
]


def make_server(
    predict_proba: PredictProba,
    host: str = "127.0.0.1",
    port: int = 8000,
    banner: str = "",
    *,
    sock: socket.socket | None = None,
    limits: Limits = DEFAULT_LIMITS,
) -> DigitServer:
    """Bind (not yet serve) the demo on host:port, or take ``sock`` from ``listen``; ``server.url`` tells where."""
    check_dependencies()
    return DigitServer(listen(host, port) if sock is None else sock, predict_proba, banner, limits)


def serve_forever(server: DigitServer) -> None:
    """Serve until Ctrl-C (or ``server.shutdown()`` from another thread), then release the port."""
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server.server_close()


def run(
    predict_proba: PredictProba,
    host: str = "127.0.0.1",
    port: int = 8000,
    banner: str = "",
    *,
    sock: socket.socket | None = None,
) -> None:
    """For the CLI: bind (or take ``sock``), print the URL, log requests to stderr, serve until Ctrl-C."""
    if not logging.getLogger().handlers:
        logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
    server = make_server(predict_proba, host, port, banner, sock=sock)
    print(f"Serving the digit demo at {server.url}  ({banner or 'no banner'}); press Ctrl-C to stop.", flush=True)
    bound = server.server_address[0]
    if not ipaddress.ip_address(bound.split("%", 1)[0]).is_loopback:
        print(f"warning: bound to {bound}, so other machines on the network can reach it", flush=True)
    serve_forever(server)
