"""The draw-a-digit web demo: a page with a canvas, and a JSON API that runs the model on what you drew.

    server = make_server(predict_proba, port=0)   # port 0: the OS picks a free port
    serve_forever(server)                         # or run(predict_proba, host, port, banner) from a CLI

``predict_proba`` maps float32 (N, 784) images in [0, 1] (MNIST layout, white digit on black) to (N, 10)
probabilities. API: ``GET /api/info`` -> ``{"banner": str}``; ``POST /api/predict`` with
``{"width": W, "height": H, "pixels": [W*H numbers 0..255, ink high]}`` -> ``{"digit": int,
"probabilities": [10 floats], "image": [28 rows of 28 floats]}`` (the image the network saw). Errors are
``{"error": "..."}`` with a 4xx status (413 for a body over ``MAX_BODY_BYTES``, 422 for a blank canvas).
"""

from __future__ import annotations

import logging

from tinygrad_np.serve.server import MAX_BODY_BYTES, MAX_SIDE, DigitServer, PredictProba

__all__ = ["MAX_BODY_BYTES", "MAX_SIDE", "DigitServer", "make_server", "run", "serve_forever"]


def make_server(
    predict_proba: PredictProba,
    host: str = "127.0.0.1",
    port: int = 8000,
    banner: str = "",
    *,
    max_body_bytes: int = MAX_BODY_BYTES,
) -> DigitServer:
    """Bind (not yet serve) the demo on host:port; ``server.url`` and ``server.server_address`` tell where."""
    return DigitServer((host, port), predict_proba, banner, max_body_bytes)


def serve_forever(server: DigitServer) -> None:
    """Serve until Ctrl-C (or ``server.shutdown()`` from another thread), then release the port."""
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server.server_close()


def run(predict_proba: PredictProba, host: str = "127.0.0.1", port: int = 8000, banner: str = "") -> None:
    """For the CLI: bind, print the URL, log requests to stderr, serve until Ctrl-C."""
    if not logging.getLogger().handlers:
        logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
    server = make_server(predict_proba, host, port, banner)
    print(f"Serving the digit demo at {server.url}  ({banner or 'no banner'}); press Ctrl-C to stop.", flush=True)
    if host not in ("127.0.0.1", "localhost", "::1"):
        print(f"warning: bound to {host}, so other machines on the network can reach it", flush=True)
    serve_forever(server)
