"""The benchmarks run end to end and write valid files; their contenders compute the same thing.

No timing assertions: machines are noisy. What is checked is that every number is there and well formed, and
that the hand-written NumPy and PyTorch contenders train the very network tinygrad_np trains.
"""

from __future__ import annotations

import json
import math
import os
import sys
import threading
from pathlib import Path

import numpy as np
import pytest
from conftest import require

from tinygrad_np import Function, Tensor, nn, ops, optim, threads
from tinygrad_np.benchmarks import busy, cli, cnn, contenders, convergence, handwritten, harness, memory, report
from tinygrad_np.data import load_offline_sample
from tinygrad_np.models import mlp as mlp_reference
from tinygrad_np.models import two_layer
from tinygrad_np.nn import functional as F

torch, _ = harness.import_torch()
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def _timing_cells(results: dict) -> list[dict]:
    return [
        cell
        for section in results["sections"].values()
        for entry in section["rows"]
        for cell in entry["cells"].values()
        if isinstance(cell, dict)
    ]


@pytest.fixture(scope="module")
def quick_run(tmp_path_factory: pytest.TempPathFactory) -> tuple[int, Path]:
    out = tmp_path_factory.mktemp("bench")
    return cli.run(["--quick", "--out", str(out)]), out


def test_quick_mode_writes_json_markdown_and_png(quick_run: tuple[int, Path]) -> None:
    code, out = quick_run
    assert code == 0
    results = json.loads((out / "results.json").read_text(encoding="utf-8"))
    ran = {"full_batch", "minibatch", "overhead", "scaling", "serve", "conv", "cnn_epoch", "cnn_memory", "busy"}
    assert set(results["sections"]) == ran if threads.unavailable() is None else ran - {"busy"}
    assert "convergence" in results["skipped"]  # full mode only
    env = results["environment"]
    assert env["mode"] == "quick" and env["machine"]["usable_cores"] >= 1 and env["numpy"] == np.__version__
    assert env["blas"]["source"] and env["date"]
    cells = _timing_cells(results)
    assert cells and all(math.isfinite(c["median"]) and 0 < c["q1"] <= c["median"] <= c["q3"] for c in cells)
    for entry in results["sections"]["full_batch"]["rows"] + results["sections"]["minibatch"]["rows"]:
        assert {"tinygrad_np", "numpy"} <= set(entry["cells"])
        assert ("pytorch" in entry["cells"]) == (torch is not None)
    assert results["targets"] == []  # judged in full mode only

    text = (out / "results.md").read_text(encoding="utf-8")
    for section in results["sections"].values():
        assert f"## {section['title']}" in text
    assert "Targets are judged in full mode only" in text

    png = (out / "scaling.png").read_bytes()
    assert png.startswith(PNG_SIGNATURE)
    width, height = int.from_bytes(png[16:20], "big"), int.from_bytes(png[20:24], "big")
    assert (width, height) == (1100, 450)


def test_unknown_benchmark_name_is_refused(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.run(["--quick", "--only", "full_batch,speed", "--out", str(tmp_path)]) == 2
    assert capsys.readouterr().err.startswith("tinygrad-np bench: error: --only takes names from")
    assert not (tmp_path / "results.json").exists()


@pytest.mark.parametrize("where", ["a file", "a file inside", "results.md a folder", "read-only"])
def test_an_out_folder_that_cant_take_the_results_is_refused_before_any_benchmark_runs(
        tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch, where: str) -> None:
    out = tmp_path / "out"
    if where == "a file":
        out.write_text("not a folder")
    elif where == "a file inside":
        tmp_path.joinpath("file").write_text("")
        out = tmp_path / "file" / "out"
    elif where == "results.md a folder":
        (out / "results.md").mkdir(parents=True)
    else:
        monkeypatch.setattr(os, "access", lambda path, mode, **kwargs: False)  # as for a read-only folder, even as root
    monkeypatch.setitem(cli.BENCHMARKS, "full_batch", lambda data, mode: pytest.fail("a benchmark ran"))
    assert cli.run(["--quick", "--only", "full_batch", "--out", str(out)]) == 2
    err = capsys.readouterr().err
    assert err.startswith("tinygrad-np bench: error: --out") and len(err.strip().splitlines()) == 1, err


def test_interleaved_rotates_the_order_and_drops_warmup_rounds() -> None:
    calls: list[str] = []
    timings = harness.interleaved({name: (lambda n=name: calls.append(n)) for name in "abc"}, repeats=3, warmup=1)
    assert calls == list("abc" "bca" "cab" "abc")
    assert {name: len(t.samples) for name, t in timings.items()} == {"a": 3, "b": 3, "c": 3}
    with pytest.raises(ValueError, match="repeats >= 1"):
        harness.interleaved({"a": lambda: None}, repeats=0)


def test_targets_report_met_missed_and_unmeasured() -> None:
    sections = {
        "full_batch": {"rows": [{"label": "all", "cells": {"tinygrad_np / numpy": 1.05}}]},
        "minibatch": {"rows": [{"label": "b32", "cells": {"tinygrad_np / pytorch": 1.2}},
                               {"label": "b128", "cells": {}}]},
    }
    targets = report.check_targets(sections)
    checked = {t["target"]: (t["measured"], t["met"]) for t in targets}
    assert checked == {
        "full-batch step vs hand-written NumPy backprop (all)": (1.05, True),
        "mini-batch epoch vs PyTorch (b32)": (1.2, False),
        "mini-batch epoch vs PyTorch (b128)": (None, None),
    }
    env = harness.environment(None, "not installed") | {"mode": "full", "data": "synthetic"}
    text = report.markdown({"environment": env, "targets": targets, "sections": {}, "skipped": {}})
    assert "| mini-batch epoch vs PyTorch (b32) | 1.20x | ≤ 1.00x | **no** |" in text
    assert "| mini-batch epoch vs PyTorch (b128) | n/a | ≤ 1.00x | not measured |" in text


# ---- the contenders compute the same thing ----------------------------------------------------------------


def _tutorial_batch(rng: np.random.Generator, dtype: type, m: int = 37):
    W1, b1, W2, b2 = (a.astype(dtype) for a in two_layer.init_params(rng))
    X = rng.random((784, m)).astype(dtype)
    Y = rng.integers(0, 10, m)
    return W1, b1, W2, b2, X, Y


def test_the_tutorials_backward_stays_float32(rng: np.random.Generator) -> None:
    W1, b1, W2, b2, X, Y = _tutorial_batch(rng, np.float32)
    Z1, A1, Z2, A2 = two_layer.forward_prop(W1, b1, W2, b2, X)
    assert all(g.dtype == np.float32 for g in two_layer.backward_prop(Z1, A1, Z2, A2, W1, W2, X, Y))
    params = {k: v.astype(np.float32) for k, v in mlp_reference.init_params([784, 32, 10], rng).items()}
    cache = mlp_reference.forward(params, X)
    assert all(g.dtype == np.float32 for g in mlp_reference.backward(params, cache, X, Y).values())


def test_numpy_adam_matches_tinygrad_adam(rng: np.random.Generator) -> None:
    start = {"W": rng.standard_normal((3, 4)), "b": rng.standard_normal((3, 1))}
    params = {name: value.copy() for name, value in start.items()}
    tensors = {name: Tensor(value.copy(), requires_grad=True) for name, value in start.items()}
    ours, theirs = handwritten.NumpyAdam(params, lr=0.01), optim.Adam(list(tensors.values()), lr=0.01)
    for _ in range(5):
        grads = {name: rng.standard_normal(value.shape) for name, value in start.items()}
        ours.step(params, {f"d{name}": grad for name, grad in grads.items()})
        for name, tensor in tensors.items():
            tensor.grad = grads[name].copy()
        theirs.step()
    for name, tensor in tensors.items():
        np.testing.assert_allclose(params[name], tensor.data, rtol=1e-12, atol=1e-15)


@pytest.mark.parametrize(("hidden_sizes", "optimizer", "lr"), [((10,), "sgd", 0.1), ((32,), "adam", 1e-3)])
def test_contenders_start_equal_and_take_the_same_steps(hidden_sizes, optimizer, lr, rng) -> None:
    x = rng.random((64, 784), dtype=np.float32)
    y = rng.integers(0, 10, 64)
    chosen = contenders.contenders(torch, hidden_sizes, optimizer, lr, seed=3)
    for contender in chosen.values():
        contender.load(x, y)
        contenders.epoch(contender, len(x), 16)
    model = chosen["tinygrad_np"].model
    expected = mlp_reference.params_from_model(model)
    numpy_params = chosen["numpy"].params
    if optimizer == "sgd":  # the tutorial's tuple (W1, b1, W2, b2)
        numpy_params = dict(zip(("W1", "b1", "W2", "b2"), numpy_params, strict=True))
    for name, value in expected.items():
        assert numpy_params[name].dtype == np.float32
        np.testing.assert_allclose(numpy_params[name], value, rtol=1e-4, atol=1e-5)
    if torch is not None:
        torch_params = [p.detach().numpy() for p in chosen["pytorch"].model.parameters()]
        for ours, theirs in zip([p.data for p in model.parameters()], torch_params, strict=True):
            np.testing.assert_allclose(theirs, ours, rtol=1e-4, atol=1e-5)


def test_the_cnns_pytorch_twin_starts_equal_and_takes_the_same_adam_steps(rng) -> None:
    require(torch is not None, "PyTorch is not installed")
    x = rng.random((48, 1, 28, 28))  # float64: Adam's first steps are lr * sign(g), which float32's rounding flips
    y = rng.integers(0, 10, 48)
    model = contenders.cnn_model(seed=3).double()
    twin = contenders.TorchContender(torch, model, "adam", contenders.ADAM_LR)
    ours = contenders.TinygradContender(model, "adam", contenders.ADAM_LR)
    np.testing.assert_array_equal(twin.predict(x), ours.predict(x))
    for contender in (twin, ours):
        contender.load(x, y)
        contenders.epoch(contender, len(x), 16)
    theirs = {name: value.detach().numpy() for name, value in twin.model.state_dict().items()}
    assert list(theirs) == list(model.state_dict())
    for name, value in model.state_dict().items():
        np.testing.assert_allclose(theirs[name], value, rtol=1e-10, atol=1e-12, err_msg=name)


def test_the_twin_copies_batchnorm_buffers_and_pooling_arguments(rng) -> None:
    require(torch is not None, "PyTorch is not installed")
    model = nn.Sequential(nn.Conv2d(1, 4, 3, padding=1, generator=rng), nn.BatchNorm2d(4), nn.ReLU(),
                          nn.AvgPool2d(2), nn.MaxPool2d(3, stride=2, padding=1), nn.Flatten(),
                          nn.BatchNorm1d(16), nn.Linear(16, 10, generator=rng))
    x = rng.random((8, 1, 8, 8), dtype=np.float32)
    model(Tensor(x))  # training mode: the running statistics move away from 0 and 1
    twin = contenders.torch_twin(torch, model.eval()).eval()
    for name, value in model.state_dict().items():
        np.testing.assert_array_equal(twin.state_dict()[name].numpy(), value, err_msg=name)
    with torch.no_grad():
        expected = twin(torch.from_numpy(x)).numpy()
    np.testing.assert_allclose(model(Tensor(x)).data, expected, rtol=1e-5, atol=1e-6)


def test_the_conv_cases_compute_the_same_gradients_in_both_frameworks() -> None:
    require(torch is not None, "PyTorch is not installed")
    for case in cnn.CONV_CASES:
        cases = cnn._conv_cases(torch, case, batch_size=2, seed=1)
        for run in cases.values():
            run()
            run()  # twice: gradients are zeroed between calls, not accumulated
        ours, theirs = (cases[name].__closure__ for name in ("tinygrad_np", "pytorch"))
        layer = next(c.cell_contents for c in ours if isinstance(c.cell_contents, nn.Conv2d))
        twin = next(c.cell_contents for c in theirs if isinstance(c.cell_contents, torch.nn.Conv2d))
        np.testing.assert_allclose(layer.weight.grad, twin.weight.grad.numpy(), rtol=1e-4, atol=1e-4)
        np.testing.assert_allclose(layer.bias.grad, twin.bias.grad.numpy(), rtol=1e-4, atol=1e-4)


# ---- full mode's pieces, on small data -------------------------------------------------------------------


def test_time_to_accuracy_stops_each_framework_once_it_reaches_the_target() -> None:
    mnist = load_offline_sample()
    (x, y), (x_test, y_test) = mnist.arrays("train"), mnist.arrays("test")
    status = convergence.time_to_accuracy(
        x[:1024], y[:1024], x_test, y_test, torch, max_epochs=3, target=0.5, check_every=1
    )
    for result in status.values():  # 8 steps per epoch, checked after each: reached within the first epoch
        assert result["reached"] and result["accuracy"] >= 0.5 and result["seconds"] > 0
        assert 1 <= result["steps"] < 8 and result["epochs"] == result["steps"] / 8
    assert set(status) == {"tinygrad_np"} | ({"pytorch"} if torch is not None else set())


@pytest.mark.parametrize("scenario", ["full_batch_mlp", "cnn_epoch"])
def test_memory_worker_reports_the_training_peak(scenario: str, tmp_path: Path, rng: np.random.Generator) -> None:
    require(memory.supported() is None, f"peak memory can't be measured here: {memory.supported()}")
    np.save(tmp_path / "x.npy", rng.random((256, 784), dtype=np.float32))
    np.save(tmp_path / "y.npy", rng.integers(0, 10, 256))
    for framework in ["tinygrad_np"] + (["pytorch"] if torch is not None else []):
        result = memory.measure(tmp_path, framework, scenario, timeout=120)
        assert "error" not in result, result
        assert result["framework"] == framework and result["peak_mib"] >= result["start_mib"] > 0
        assert result["training_peak_mib"] == pytest.approx(result["peak_mib"] - result["start_mib"])


# ---- the engine's fast paths that profiling these benchmarks led to ------------------------------------------


@pytest.mark.parametrize(("rows", "columns"), [(2000, 10), (1024, 16), (1024, 17), (3000, 2), (100, 10)])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_fast_row_and_column_reductions_equal_numpys(rows, columns, dtype, rng) -> None:
    a = rng.standard_normal((rows, columns)).astype(dtype)
    a[3, 0], a[5, :], a[7, 1] = np.nan, -np.inf, np.inf  # max must propagate NaN and handle infinities as max does
    np.testing.assert_array_equal(ops._row_max(a), a.max(axis=1, keepdims=True))
    b = rng.standard_normal((rows, columns)).astype(dtype)
    tolerance = 1e-5 if dtype == np.float32 else 1e-12
    np.testing.assert_allclose(ops._row_sum(b), b.sum(axis=1, keepdims=True), rtol=tolerance, atol=tolerance)
    np.testing.assert_allclose(ops.accurate_sum(b, 0), b.sum(axis=0), rtol=tolerance, atol=tolerance)


def test_cross_entropy_on_a_full_size_batch_equals_the_textbook_formula(rng) -> None:
    rows = 3000  # long enough to take the column-by-column max
    logits, labels = 5 * rng.standard_normal((rows, 10)), rng.integers(0, 10, rows)
    z = Tensor(logits, requires_grad=True)
    loss = F.cross_entropy(z, labels)
    loss.backward()
    shifted = logits - logits.max(axis=1, keepdims=True)
    log_probs = shifted - np.log(np.exp(shifted).sum(axis=1, keepdims=True))
    np.testing.assert_allclose(loss.item(), -log_probs[np.arange(rows), labels].mean(), rtol=1e-13)
    expected = np.exp(log_probs)
    expected[np.arange(rows), labels] -= 1
    np.testing.assert_allclose(z.grad, expected / rows, rtol=1e-12, atol=1e-18)


def test_full_modes_convergence_and_memory_tables_on_small_data(tmp_path: Path) -> None:
    mnist = load_offline_sample()
    (x, y), (x_test, y_test) = mnist.arrays("train"), mnist.arrays("test")
    sections = convergence.run(x[:512], y[:512], x_test, y_test, torch, max_epochs=1,
                               memory_scenarios=("full_batch_tutorial",))
    speed, peaks = sections["time_to_accuracy"], sections["peak_memory"]
    assert [entry["label"] for entry in speed["rows"]][1:] == [
        "epochs trained", "seconds per epoch", "test accuracy at the stop"]
    assert speed["rows"][1]["cells"]["tinygrad_np"] == 1.0  # 97% is out of reach in one epoch on 512 images
    (memory_row,) = peaks["rows"]
    assert memory_row["scenario"] == "full_batch_tutorial" and memory_row["cells"]["tinygrad_np"] >= 0
    assert ("tinygrad_np / pytorch" in memory_row["cells"]) == (torch is not None)
    text = report.section_markdown(speed) + report.section_markdown(peaks)
    assert "| seconds per epoch |" in text and "| 784-10-10, gradient descent, 3 full-batch steps |" in text


class _SameArrayTwice(Function):
    """y = a + b, whose backward hands one new array to both inputs (legal: the engine must not alias them)."""

    def forward(self, a: np.ndarray, b: np.ndarray) -> np.ndarray:
        return a + b

    def backward(self, g: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        shared = g * 1.0
        return shared, shared


def test_leaf_gradients_taken_over_without_a_copy_never_alias(rng) -> None:
    a, b = Tensor(rng.standard_normal(3), requires_grad=True), Tensor(rng.standard_normal(3), requires_grad=True)
    upstream = rng.standard_normal(3)
    _SameArrayTwice.apply(a, b).backward(upstream)
    (a + b).backward(upstream)  # Add passes the upstream gradient itself to both inputs
    assert a.grad is not b.grad and not np.shares_memory(a.grad, b.grad)
    assert not np.shares_memory(a.grad, upstream) and not np.shares_memory(b.grad, upstream)
    np.testing.assert_array_equal(a.grad, 2 * upstream)
    np.testing.assert_array_equal(b.grad, 2 * upstream)
    layer = nn.Linear(4, 2, dtype=np.float64)
    x = rng.standard_normal((5, 4))
    g = rng.standard_normal((5, 2))
    layer(Tensor(x)).backward(g)
    first = layer.weight.grad.copy()
    layer(Tensor(x)).backward(g)  # accumulates in place into the array the first backward took over
    np.testing.assert_allclose(layer.weight.grad, 2 * first, rtol=1e-15)
    np.testing.assert_allclose(first, g.T @ x, rtol=1e-14)


class _OneGradientForTwoInputs(Function):
    def forward(self, a: np.ndarray, b: np.ndarray) -> np.ndarray:
        return a * b

    def backward(self, g: np.ndarray) -> np.ndarray:
        return g


def test_a_backward_returning_too_few_gradients_is_named() -> None:
    # The engine's per-node loop checks the count once, with a message, instead of zip(strict=True)'s bare error.
    a, b = Tensor(np.ones(2), requires_grad=True), Tensor(np.ones(2), requires_grad=True)
    with pytest.raises(RuntimeError, match=r"_OneGradientForTwoInputs.backward returned 1 gradients for 2 inputs"):
        _OneGradientForTwoInputs.apply(a, b).sum().backward()


def test_blas_info_falls_back_to_numpys_build_info_without_threadpoolctl(monkeypatch) -> None:
    monkeypatch.setitem(sys.modules, "threadpoolctl", None)  # as if it were not installed
    info = harness.blas_info()
    assert info["source"].startswith("numpy.show_config") and info["name"]
    env = harness.environment(None, "not installed") | {"mode": "full", "data": "synthetic"}
    text = report.markdown({"environment": env | {"blas": info}, "targets": [], "sections": {}, "skipped": {}})
    assert f"- BLAS: {info['name']} {info['version']}" in text


# ---- the report names what was measured, and nothing else -------------------------------------------------


def _scaling_section(contenders: tuple[str, ...]) -> dict:
    cell = {"median": 1.0, "q1": 1.0, "q3": 1.0, "min": 1.0, "rounds": 1}
    return {"rows": [{"label": "batch 32, hidden 128", "sweep": "batch", "batch_size": 32, "hidden_size": 128,
                      "cells": {name: cell for name in contenders}}]}


def test_the_chart_title_names_only_the_contenders_measured() -> None:
    without = report.chart_title(_scaling_section(("numpy", "tinygrad_np")), "AMD EPYC")
    assert without == "tinygrad_np vs NumPy, AMD EPYC"
    assert (report.chart_title(_scaling_section(("numpy", "pytorch", "tinygrad_np")), "AMD EPYC")
            == "tinygrad_np vs NumPy vs PyTorch, AMD EPYC")


def test_the_report_without_pytorch_gives_no_thread_count_for_it() -> None:
    env = harness.environment(None, "not installed (No module named 'torch')") | {"mode": "quick", "data": "synthetic"}
    text = report.markdown({"environment": env, "targets": [], "sections": {}, "skipped": {}})
    assert "PyTorch not installed (No module named 'torch')\n" in text
    assert "None" not in text


def test_the_busy_warning_discounts_the_benchmarks_own_busy_processes() -> None:
    # At 23:31 on 2026-11-30 the report called a quiet machine busy: the end reading counted the busy section's
    # own spinning processes.
    env = harness.environment(None, "not installed") | {"mode": "full", "data": "synthetic"}
    cores = env["machine"]["usable_cores"]
    env["machine"]["load_average"] = [0.5, 0.7, 0.9]

    def text(end: float, own: int) -> str:
        results = {"environment": env | {"load_average_end": [end, 1.0, 1.0], "own_busy_processes": own},
                   "targets": [], "sections": {}, "skipped": {}}
        return report.markdown(results)

    ours = text(cores + 1.2, own=cores)
    assert "the machine was busy" not in ours
    assert f"(counting the busy section's own {cores} busy processes)" in ours
    others = text(cores + 1.2, own=0)
    assert f"**the machine was busy** (1-minute load up to {cores + 1.2:.1f} on {cores} cores)" in others
    both = text(2 * cores + 1.2, own=cores)
    assert f"up to {cores + 1.2:.1f} on {cores} cores, not counting the benchmark's own {cores} busy" in both


def test_thread_counts_are_written_in_words() -> None:
    pool = {"internal_api": "openblas", "version": "0.3", "prefix": "libopenblas", "architecture": None}
    assert report._pool_text(pool | {"num_threads": 1}) == "openblas 0.3 (libopenblas, 1 thread)"
    assert report._pool_text(pool | {"num_threads": 2}) == "openblas 0.3 (libopenblas, 2 threads)"
    env = harness.environment(None, "2.13.0") | {"torch_threads": 1, "mode": "quick", "data": "synthetic"}
    assert "PyTorch 2.13.0 (1 thread)" in report.markdown({"environment": env, "targets": [], "sections": {},
                                                            "skipped": {}})


# ---- the busy machine ------------------------------------------------------------------------------------


def test_busy_processes_run_inside_the_block_and_are_stopped_after_it_even_on_error() -> None:
    with pytest.raises(KeyError), busy.busy_processes(2) as started:
        assert len(started) == 2 and all(process.poll() is None for process in started)
        raise KeyError("stop")
    assert all(process.returncode is not None for process in started)


def test_quick_modes_busy_table_has_every_cell_and_the_ratios(quick_run: tuple[int, Path]) -> None:
    require(threads.unavailable() is None, f"the busy benchmark needs thread control: {threads.unavailable()}")
    results = json.loads((quick_run[1] / "results.json").read_text(encoding="utf-8"))
    rows = results["sections"]["busy"]["rows"]
    assert [entry["label"].split(" (")[0] for entry in rows] == [
        "train --recipe two_layer", "train --recipe mlp", "train --recipe tutorial",
        "compare --hidden-sizes 128 64 --numerical", "784-128-10 Adam, batch 256",
        "10 products"]
    for entry in rows:
        cells = entry["cells"]
        median = {f"{load}, {setting}": cells[f"{load}, {setting}"]["median"]
                  for load in ("idle", "loaded") for setting in busy.SETTINGS}
        assert all(value > 0 for value in median.values())
        assert cells["split / BLAS's own, idle"] == pytest.approx(median["idle, split"] / median["idle, BLAS's own"])
        assert cells["split / 1 thread, idle"] == pytest.approx(median["idle, split"] / median["idle, 1 thread"])
        assert cells["split / 1 thread, loaded"] == pytest.approx(median["loaded, split"] / median["loaded, 1 thread"])
        for setting in busy.SETTINGS:
            assert cells[f"loaded / idle, {setting}"] == pytest.approx(
                median[f"loaded, {setting}"] / median[f"idle, {setting}"])
    targets = report.check_targets({"busy": results["sections"]["busy"]})
    assert len(targets) == 2 * len(rows) and {t["limit"] for t in targets} == {1.05, 2.0}
    wake = results["sections"]["busy"]["wake_latency"]
    assert 0 < wake["waking"] < 0.01 and 0 < wake["woken"] < 0.1
    assert f"the thread ran {wake['woken'] * 1e6:.1f} us after" in "".join(results["sections"]["busy"]["notes"])
    assert results["environment"]["own_busy_processes"] == results["sections"]["busy"]["busy_processes"] >= 1


def test_wake_latency_times_a_real_hand_over_and_gives_the_cores_back() -> None:
    before = os.sched_getaffinity(0) if hasattr(os, "sched_getaffinity") else None
    waking, woken = busy.wake_latency(count=20)
    assert 0 < waking < 0.01 and 0 < woken < 0.1
    assert (os.sched_getaffinity(0) if before is not None else None) == before
    assert not [thread for thread in threading.enumerate() if thread.name == "wake-latency"]


def test_bench_threads_default_to_one_in_quick_mode_and_can_be_set(quick_run, tmp_path, capsys) -> None:
    require(threads.unavailable() is None, f"needs thread control: {threads.unavailable()}")
    results = json.loads((quick_run[1] / "results.json").read_text(encoding="utf-8"))
    assert {pool["num_threads"] for pool in results["environment"]["blas"]["pools"]} == {1}
    assert results["environment"]["threads"] == 1
    assert cli.run(["--quick", "--only", "overhead", "--threads", "2", "--out", str(tmp_path)]) == 0
    results = json.loads((tmp_path / "results.json").read_text(encoding="utf-8"))
    blas_pools = [pool for pool in results["environment"]["blas"]["pools"] if pool["internal_api"] != "openmp"]
    assert {pool["num_threads"] for pool in blas_pools} == {1}  # BLAS stays on one; the products are split
    assert results["environment"]["threads"] == 2
    assert threads.blas_current() == threads.blas_default()  # given back afterwards
    with pytest.raises(SystemExit) as exit_:
        cli.run(["--quick", "--threads", "0", "--out", str(tmp_path / "bad")])
    assert exit_.value.code == 2
    assert "argument --threads: must be a positive whole number or 'auto', got '0'" in capsys.readouterr().err


# ---- whole commands --------------------------------------------------------------------------------------


def test_whole_commands_run_in_both_settings_idle_and_loaded(tmp_path, capsys) -> None:
    require(threads.unavailable() is None, f"the default setting needs thread control: {threads.unavailable()}")
    from tinygrad_np.benchmarks import commands

    assert commands.main(["--quick", "--out", str(tmp_path)]) == 0
    results = json.loads((tmp_path / "commands.json").read_text(encoding="utf-8"))
    assert set(results["samples"]) == set(commands.QUICK_COMMANDS)
    for settings in results["samples"].values():
        for setting in commands.SETTINGS:
            assert all(len(settings[setting][load]) == 1 and settings[setting][load][0] > 0 for load in commands.LOADS)
    # The hidden threadpoolctl really leaves BLAS alone in "BLAS's own", and only there.
    train = results["outputs"]["train --epochs 1 --offline"]
    assert commands.NOT_CONTROLLED in train["BLAS's own"]
    assert commands.NOT_CONTROLLED not in train["default"] and "threads: " in train["default"]
    table = capsys.readouterr().out
    assert table.count("\n") == 2 + len(commands.QUICK_COMMANDS) and "`compare --offline`" in table
