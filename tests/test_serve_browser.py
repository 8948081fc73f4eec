"""The demo page in a real Chromium: draw a "1" and a "0" with the mouse, and a really trained network reads them.

Needs Playwright for Python and Debian's Chromium at /usr/bin/chromium (skipped locally without them,
failed on CI). Screenshots go to pytest's tmp_path and, if set, to $TINYGRAD_NP_SCREENSHOT_DIR.
"""

import importlib.util
import math
import os
import re
import shutil
import threading
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from conftest import require

from tinygrad_np import Tensor, nn, no_grad, optim
from tinygrad_np.data import load_mnist
from tinygrad_np.nn import functional as F
from tinygrad_np.preprocess import center_of_mass
from tinygrad_np.serve import make_server

# Training (~4 s alone) plus Chromium pass 10 s on a busy 2-core machine.
pytestmark = [pytest.mark.browser, pytest.mark.slow]

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-dev-shm-usage",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
MOUSE_STEPS = 4  # pointer moves per segment of a drawn stroke
TRAIN_STEPS, BATCH_SIZE = 2000, 128  # ~4 epochs of Adam: ~97% test accuracy in a few seconds on 2 cores


@pytest.fixture(scope="session")
def trained_model(mnist_dir) -> tuple[nn.Module, float]:
    """A 784-128-10 MLP trained on full MNIST with minibatch Adam (seeded), and its test accuracy."""
    mnist = load_mnist(mnist_dir, verbose=False)
    images, labels = mnist.arrays("train")
    rng = np.random.default_rng(0)
    model = nn.Sequential(nn.Linear(784, 128, generator=rng), nn.ReLU(), nn.Linear(128, 10, generator=rng))
    optimizer = optim.Adam(model.parameters(), lr=1e-3)
    for _ in range(TRAIN_STEPS):
        batch = rng.integers(0, len(images), BATCH_SIZE)
        loss = F.cross_entropy(model(Tensor(images[batch])), labels[batch])
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    test_images, test_labels = mnist.arrays("test")
    with no_grad():
        accuracy = float((model(Tensor(test_images)).numpy().argmax(axis=1) == test_labels).mean())
    assert accuracy > 0.95, f"the demo's model should be a real one; test accuracy {accuracy:.3f}"
    return model, accuracy


@pytest.fixture(scope="module")
def live_server(trained_model) -> Iterator[str]:
    model, accuracy = trained_model

    def predict_proba(x: np.ndarray) -> np.ndarray:
        with no_grad():
            return model(Tensor(x)).softmax(axis=-1).numpy()

    banner = f"model: 784-128-10 MLP trained just now on full MNIST ({accuracy:.1%} test accuracy)"
    server = make_server(predict_proba, port=0, banner=banner)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield server.url
    server.shutdown()
    server.server_close()


@pytest.fixture(scope="module")
def browser():
    require(importlib.util.find_spec("playwright") is not None, "Playwright for Python is not installed")
    require(Path(CHROMIUM).is_file(), f"Chromium not found at {CHROMIUM} (apt-get install chromium)")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        yield browser
        browser.close()


@pytest.fixture
def page(browser, live_server):
    """The demo page, loaded, with every console error, page error and foreign request recorded."""
    # Reduced motion: the bars jump to their length instead of animating, so they can be measured at once.
    page = browser.new_page(viewport={"width": 900, "height": 640}, reduced_motion="reduce")
    problems: list[str] = []
    page.on("console", lambda m: problems.append(f"console {m.type}: {m.text}") if m.type == "error" else None)
    page.on("pageerror", lambda e: problems.append(f"page error: {e}"))
    page.on("request", lambda r: None if r.url.startswith(live_server) else problems.append(f"request {r.url}"))
    page.goto(live_server)
    from playwright.sync_api import expect  # imported here: the module must load without Playwright

    expect(page.locator("#banner")).to_have_text(re.compile(r"^model: 784-128-10 MLP"))
    yield page
    page.close()
    assert problems == []  # no JS errors, no CSP violations, nothing fetched from anywhere else


def draw(page, points: list[tuple[float, float]]) -> None:
    """One mouse stroke through points given in the 280x280 pad's own coordinates."""
    box = page.locator("#pad").bounding_box()
    scale = box["width"] / 280
    x, y = points[0]
    page.mouse.move(box["x"] + x * scale, box["y"] + y * scale)
    page.mouse.down()
    for x, y in points[1:]:
        page.mouse.move(box["x"] + x * scale, box["y"] + y * scale, steps=MOUSE_STEPS)
    page.mouse.up()


def prediction(page) -> str:
    """The digit the page shows once the last stroke's prediction has come back."""
    from playwright.sync_api import expect

    # (wait_for_function would evaluate a string, which the page's CSP rightly forbids; expect does not.)
    expect(page.locator("body")).to_have_attribute("data-busy", "0")
    return page.locator("#digit").inner_text()


def seen_image(page) -> np.ndarray:
    """The 28x28 image the page shows as what the network sees, read back from its canvas, in [0, 1]."""
    rgba = page.evaluate(
        "Array.from(document.getElementById('seen').getContext('2d').getImageData(0, 0, 28, 28).data)"
    )
    return np.array(rgba, dtype=np.float64).reshape(28, 28, 4)[..., 0] / 255


def screenshot(page, tmp_path: Path, name: str) -> None:
    path = tmp_path / name
    page.screenshot(path=path, full_page=True)
    if directory := os.environ.get("TINYGRAD_NP_SCREENSHOT_DIR"):
        Path(directory).mkdir(parents=True, exist_ok=True)
        shutil.copyfile(path, Path(directory) / name)


NO_DIGIT = "\N{EN DASH}"  # what the page shows before any prediction
ONE = [(150, 45), (143, 140), (136, 235)]  # a slightly slanted upright stroke
ZERO = [(140 + 62 * math.sin(2 * math.pi * k / 32), 140 - 92 * math.cos(2 * math.pi * k / 32)) for k in range(33)]


def test_a_drawn_one_is_read_as_1(page, tmp_path):
    assert page.locator("#digit").inner_text() == NO_DIGIT
    draw(page, ONE)
    assert prediction(page) == "1"
    top = page.locator("#bars li.top")
    assert top.get_attribute("data-digit") == "1"
    # Its bar is drawn as long as its probability says (a bar that does not render is a bug we had).
    probability = float(top.locator(".pct").inner_text().rstrip("%")) / 100
    fill, track = top.locator(".fill").bounding_box(), top.locator(".track").bounding_box()
    assert fill["width"] == pytest.approx(probability * track["width"], abs=2)
    # The page shows the MNIST-style image, upright: a tall thin bar, 20 px high, centred.
    seen = seen_image(page)
    rows, cols = np.flatnonzero(seen.any(axis=1)), np.flatnonzero(seen.any(axis=0))
    assert rows[-1] - rows[0] + 1 == 20 and cols[-1] - cols[0] + 1 < 10
    com = center_of_mass(seen)
    assert abs(com[0] - 14) <= 0.6 and abs(com[1] - 14) <= 0.6  # 0.5 px, plus the page's 8-bit rounding
    screenshot(page, tmp_path, "serve-draw-1.png")


def test_clear_then_a_drawn_zero_is_read_as_0(page, tmp_path):
    draw(page, ONE)
    assert prediction(page) == "1"
    predictions = int(page.locator("body").get_attribute("data-predictions"))
    page.click("#clear")
    assert page.locator("#digit").inner_text() == NO_DIGIT
    pad_ink = page.evaluate(
        "Array.from(document.getElementById('pad').getContext('2d').getImageData(0, 0, 280, 280).data)"
        ".reduce((a, b, i) => a + (i % 4 === 0 ? b : 0), 0)"
    )
    assert pad_ink == 0
    draw(page, ZERO)
    assert prediction(page) == "0"
    # Updated while drawing, but throttled: several predictions, far fewer than the pointer moves.
    made = int(page.locator("body").get_attribute("data-predictions")) - predictions
    moves = (len(ZERO) - 1) * MOUSE_STEPS
    assert 2 <= made < moves / 2, (made, moves)
    screenshot(page, tmp_path, "serve-draw-0.png")
