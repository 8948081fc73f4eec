"""Conv2d, MaxPool2d, AvgPool2d and BatchNorm: values and gradients equal PyTorch's to 1e-10 in float64 over random
shapes, strides, paddings, dilations and modes (Hypothesis), max-pool ties and NaNs included; BatchNorm's running
statistics after N steps, its state dict, train and eval; the default init; any memory layout; clear errors."""

import importlib.util

import numpy as np
import pytest
from conftest import require
from engine_ops import window_wholly_in_padding
from engine_programs import QUANTISED, assert_close
from hypothesis import assume, given
from hypothesis import strategies as st

from tinygrad_np import Tensor, nn
from tinygrad_np.nn import functional as F
from tinygrad_np.ops_conv import channels_last


@pytest.fixture(scope="module")
def torch():
    require(importlib.util.find_spec("torch") is not None, "torch is not installed (extra `torch`)")
    import torch

    return torch


def agree(torch, ours, theirs, arrays, params, upstream_seed=0, tolerance=1e-10):
    """ours(*Tensors, **params) and theirs(*torch tensors, **params): both raise, or the same value and the same
    gradient of every input for a random upstream gradient."""
    try:
        leaves = [torch.from_numpy(a.copy()).requires_grad_() for a in arrays]
        expected = theirs(*leaves, **params)
    except (RuntimeError, ValueError, IndexError) as err:
        with pytest.raises(ValueError):
            ours(*[Tensor(a) for a in arrays], **params)
        return f"rejected: {err}"
    tensors = [Tensor(a.copy(), requires_grad=True) for a in arrays]
    out = ours(*tensors, **params)
    assert_close(out.data, expected.detach().numpy(), "forward", tolerance)
    upstream = np.random.default_rng(upstream_seed).choice([-1.0, -0.5, 0.5, 1.0, 2.0], expected.shape)
    expected.backward(torch.from_numpy(upstream.astype(arrays[0].dtype)))
    out.backward(upstream)
    for i, (mine, theirs_leaf) in enumerate(zip(tensors, leaves, strict=True)):
        assert_close(mine.grad, theirs_leaf.grad.numpy(), f"gradient of input {i}", tolerance)
    return "agree"


pairs = st.integers(1, 3) | st.tuples(st.integers(1, 3), st.integers(1, 3))
seeds = st.integers(0, 2**32 - 1)


def images(seed, shape, kind="generic"):
    rng = np.random.default_rng(seed)
    if kind == "quantised":  # ties everywhere, and exact zeros
        return rng.choice(QUANTISED, shape)
    if kind == "with nan":
        return np.where(rng.random(shape) < 0.2, np.nan, rng.choice(QUANTISED, shape))
    return rng.uniform(-2, 2, shape)


# ---- conv2d ---------------------------------------------------------------------------------------------------


# PyTorch warns that it copies the input for padding="same" with an even kernel; a note about its speed.
@pytest.mark.filterwarnings("ignore:Using padding='same'")
@given(batch=st.integers(0, 3), in_channels=st.integers(1, 3), out_channels=st.integers(1, 3),
       size=st.tuples(st.integers(1, 9), st.integers(1, 9)), kernel=st.tuples(st.integers(1, 4), st.integers(1, 4)),
       stride=pairs, padding=st.integers(0, 2) | st.tuples(st.integers(0, 2), st.integers(0, 2))
       | st.sampled_from(["valid", "same"]), dilation=pairs, bias=st.booleans(), unbatched=st.booleans(),
       seed=seeds)
def test_conv2d_agrees_with_pytorch(torch, batch, in_channels, out_channels, size, kernel, stride, padding,
                                    dilation, bias, unbatched, seed):
    shape = (in_channels, *size) if unbatched else (batch, in_channels, *size)
    arrays = [images(seed, shape), images(seed + 1, (out_channels, in_channels, *kernel))]
    if bias:
        arrays.append(images(seed + 2, (out_channels,)))
    params = dict(stride=stride, padding=padding, dilation=dilation)
    if padding == "same" and stride not in (1, (1, 1)):  # PyTorch raises; so must we
        with pytest.raises(ValueError, match="same"):
            F.conv2d(Tensor(arrays[0]), *[Tensor(a) for a in arrays[1:]], **params)
        return
    agree(torch, F.conv2d, torch.nn.functional.conv2d, arrays, params, seed)


@given(layout=st.sampled_from(["NHWC", "NCHW", "sliced"]), seed=seeds)
def test_conv2d_reads_any_memory_layout(torch, layout, seed):
    """The same numbers from an NCHW array, an NHWC array seen as NCHW, and a strided slice."""
    x = images(seed, (2, 3, 7, 6))
    if layout == "NHWC":
        x = np.ascontiguousarray(x.transpose(0, 2, 3, 1)).transpose(0, 3, 1, 2)
    elif layout == "sliced":
        x = images(seed, (4, 5, 14, 6))[::2, 1:4, ::2]
    w = images(seed + 1, (4, 3, 3, 2))
    agree(torch, F.conv2d, torch.nn.functional.conv2d, [x, w], dict(padding=1, stride=(2, 1)), seed)


def test_convolution_output_is_nhwc_in_memory_and_the_next_layers_keep_it():
    """The matrix product leaves the channels innermost; ReLU and pooling keep that layout, so the next im2col copy
    reads runs of channels (shapes and values are NCHW regardless)."""
    x = Tensor(np.random.default_rng(0).random((2, 1, 10, 10)))
    y = F.conv2d(x, Tensor(np.ones((4, 1, 3, 3))))
    assert y.shape == (2, 4, 8, 8) and channels_last(y.data)
    assert channels_last(F.max_pool2d(y.relu(), 2).data) and channels_last(F.avg_pool2d(y, 2).data)


# ---- pooling --------------------------------------------------------------------------------------------------


@st.composite
def pool_cases(draw, max_pool):
    kernel = draw(st.tuples(st.integers(1, 4), st.integers(1, 4)))
    dilation = draw(st.tuples(st.integers(1, 2), st.integers(1, 2))) if max_pool else (1, 1)
    extent = [d * (k - 1) + 1 for k, d in zip(kernel, dilation, strict=True)]
    padding = tuple(draw(st.integers(0, e // 2)) for e in (extent if max_pool else kernel))
    stride = draw(st.none() | pairs)
    shape = (draw(st.integers(0, 2)), draw(st.integers(1, 3)), draw(st.integers(1, 9)), draw(st.integers(1, 9)))
    if draw(st.booleans()):
        shape = shape[1:]
    params = dict(kernel_size=kernel, stride=stride, padding=padding, ceil_mode=draw(st.booleans()))
    if max_pool:
        params["dilation"] = dilation
    else:
        params["count_include_pad"] = draw(st.booleans())
        params["divisor_override"] = draw(st.sampled_from([None, None, 1, 3]))
    return shape, params


@given(case=pool_cases(max_pool=True), kind=st.sampled_from(["generic", "quantised", "quantised", "with nan"]),
       seed=seeds)
def test_max_pool2d_agrees_with_pytorch_ties_and_nans_included(torch, case, kind, seed):
    """Quantised data ties inside windows: the gradient goes to the first maximum, as in PyTorch, not shared."""
    shape, params = case
    assume(not window_wholly_in_padding(shape, params))  # PyTorch 2.13 corrupts its heap there
    agree(torch, F.max_pool2d, torch.nn.functional.max_pool2d, [images(seed, shape, kind)], params, seed)


def test_a_window_wholly_in_the_padding_gives_minus_infinity_and_passes_no_gradient():
    """PyTorch writes out of bounds here (a heap corruption); tinygrad_np returns -inf and routes the gradient
    nowhere. A (3, 1, 7) input, windows of 2 rows dilated by 2 with 1 row of padding: each reads rows -1 and 1."""
    params = dict(kernel_size=(2, 3), padding=(1, 0), dilation=(2, 1))
    assert window_wholly_in_padding((3, 1, 7), {**params, "stride": None, "ceil_mode": False})
    x = Tensor(np.arange(21.0).reshape(3, 1, 7), requires_grad=True)
    out = F.max_pool2d(x, **params)
    assert out.shape == (3, 1, 2) and np.all(out.data == -np.inf)
    out.backward(np.ones(out.shape))
    np.testing.assert_array_equal(x.grad, np.zeros((3, 1, 7)))


@given(case=pool_cases(max_pool=False), kind=st.sampled_from(["generic", "quantised"]), seed=seeds)
def test_avg_pool2d_agrees_with_pytorch(torch, case, kind, seed):
    shape, params = case
    agree(torch, F.avg_pool2d, torch.nn.functional.avg_pool2d, [images(seed, shape, kind)], params, seed)


def test_max_pool_tie_goes_to_the_first_maximum_and_nan_to_the_last():
    x = Tensor(np.array([[[[1.0, 2.0], [2.0, 0.0]]]]), requires_grad=True)
    F.max_pool2d(x, 2).backward(np.ones((1, 1, 1, 1)))
    np.testing.assert_array_equal(x.grad[0, 0], [[0, 1], [0, 0]])
    x = Tensor(np.array([[[[np.nan, 2.0], [np.nan, 0.0]]]]), requires_grad=True)
    out = F.max_pool2d(x, 2)
    out.backward(np.ones((1, 1, 1, 1)))
    assert np.isnan(out.data).all()
    np.testing.assert_array_equal(x.grad[0, 0], [[0, 0], [1, 0]])


def test_a_window_of_minus_infinities_routes_its_gradient_inside_the_input_never_to_the_padding():
    x = Tensor(np.full((1, 1, 2, 2), -np.inf), requires_grad=True)
    F.max_pool2d(x, 2, stride=1, padding=1).sum().backward()
    np.testing.assert_array_equal(x.grad[0, 0], [[4, 2], [2, 1]])  # each window's first element inside the input


def test_overlapping_windows_add_their_gradients_and_nonfinite_upstream_stays_in_its_window():
    x = Tensor(np.array([[[[0.0, 5.0, 0.0, 1.0]]]]), requires_grad=True)
    F.max_pool2d(x, (1, 2), stride=1).backward(np.array([[[[1.0, np.inf, 2.0]]]]))
    np.testing.assert_array_equal(x.grad[0, 0, 0], [0, np.inf, 0, 2])  # inf * 0 never makes NaN elsewhere


# ---- batch norm -----------------------------------------------------------------------------------------------


@given(shape=st.sampled_from([(4, 3), (2, 3, 5), (3, 2, 4, 4), (2, 1, 1, 3), (5, 2)]), training=st.booleans(),
       affine=st.sampled_from(["both", "weight", "bias", "none"]), seed=seeds)
def test_batch_norm_agrees_with_pytorch_in_both_modes(torch, shape, training, affine, seed):
    rng = np.random.default_rng(seed)
    channels = shape[1]
    arrays = [rng.normal(1.0, 2.0, shape)]
    names = {"both": ["weight", "bias"], "weight": ["weight"], "bias": ["bias"], "none": []}[affine]
    arrays += [rng.normal(1.0, 0.5, channels) for _ in names]
    running = (rng.normal(0, 1, channels), rng.uniform(0.5, 2, channels))

    def call(functional, wrap):
        def run(x, *affine_params):
            kwargs = dict(zip(names, affine_params, strict=True))
            return functional(x, *[wrap(s.copy()) for s in running], training=training, momentum=0.3, eps=1e-3,
                              **kwargs)
        return run

    agree(torch, call(F.batch_norm, np.asarray), call(torch.nn.functional.batch_norm, torch.from_numpy), arrays, {},
          seed)


@given(dims=st.sampled_from([1, 2]), momentum=st.sampled_from([0.1, 0.5, None]), affine=st.booleans(),
       track=st.booleans(), steps=st.integers(1, 5), seed=seeds)
def test_batch_norm_layers_track_running_statistics_as_pytorch(torch, dims, momentum, affine, track, steps, seed):
    """N training steps (each with an SGD update of weight and bias), then eval: every output, gradient, running
    statistic and state dict entry equals PyTorch's."""
    rng = np.random.default_rng(seed)
    ours = (nn.BatchNorm1d if dims == 1 else nn.BatchNorm2d)(3, momentum=momentum, affine=affine,
                                                             track_running_stats=track, dtype=np.float64)
    theirs = (torch.nn.BatchNorm1d if dims == 1 else torch.nn.BatchNorm2d)(
        3, momentum=momentum, affine=affine, track_running_stats=track, dtype=torch.float64)
    shape = (4, 3, 5) if dims == 1 else (2, 3, 3, 4)
    for step in range(steps + 1):
        if step == steps:
            ours.eval()
            theirs.eval()
        x = rng.normal(step, 1 + step, shape)
        upstream = rng.normal(0, 1, shape)
        x_ours, x_theirs = Tensor(x, requires_grad=True), torch.from_numpy(x).requires_grad_()
        y_ours, y_theirs = ours(x_ours), theirs(x_theirs)
        assert_close(y_ours.data, y_theirs.detach().numpy(), f"step {step}: output", 1e-10)
        y_ours.backward(upstream)
        y_theirs.backward(torch.from_numpy(upstream))
        assert_close(x_ours.grad, x_theirs.grad.numpy(), f"step {step}: dx", 1e-10)
        for (name, p), q in zip(ours.named_parameters(), theirs.parameters(), strict=True):
            assert_close(p.grad, q.grad.numpy(), f"step {step}: {name}.grad", 1e-10)
            p.data -= 0.1 * p.grad
            p.grad = None
        with torch.no_grad():
            for q in theirs.parameters():
                q -= 0.1 * q.grad
                q.grad = None
        state, expected = ours.state_dict(), theirs.state_dict()
        assert list(state) == list(expected)
        for name, value in expected.items():
            assert state[name].dtype == value.numpy().dtype, name
            assert_close(state[name], value.numpy(), f"step {step}: {name}", 1e-10)


def test_batch_norm_state_dict_round_trips_and_eval_uses_the_running_statistics():
    bn = nn.BatchNorm2d(2, dtype=np.float64)
    x = np.random.default_rng(0).normal(3, 2, (4, 2, 3, 3))
    bn(Tensor(x))
    copy = nn.BatchNorm2d(2, dtype=np.float64)
    copy.load_state_dict(bn.state_dict())
    assert int(copy.num_batches_tracked.data) == 1 and copy.num_batches_tracked.dtype == np.int64
    bn.eval()
    copy.eval()
    np.testing.assert_array_equal(bn(Tensor(x)).data, copy(Tensor(x)).data)
    mean, var = copy.running_mean.data[None, :, None, None], copy.running_var.data[None, :, None, None]
    np.testing.assert_allclose(copy(Tensor(x)).data, (x - mean) / np.sqrt(var + 1e-5), rtol=1e-12)
    assert [name for name, _ in copy.named_buffers()] == ["running_mean", "running_var", "num_batches_tracked"]


def test_batch_norm_refuses_one_value_per_channel_in_training_and_wrong_ranks():
    with pytest.raises(ValueError, match="more than 1 value per channel"):
        nn.BatchNorm1d(3)(Tensor(np.ones((1, 3))))
    nn.BatchNorm1d(3).eval()(Tensor(np.ones((1, 3))))  # fine in eval, as in PyTorch
    with pytest.raises(ValueError, match=r"BatchNorm2d: expected input of shape \(N, C, H, W\), got \(2, 3\)"):
        nn.BatchNorm2d(3)(Tensor(np.ones((2, 3))))
    with pytest.raises(ValueError, match=r"running_mean must have shape \(4,\)"):
        nn.BatchNorm1d(3)(Tensor(np.ones((2, 4))))


def test_model_astype_casts_float_buffers_and_keeps_the_batch_count_an_integer():
    bn = nn.BatchNorm2d(2).double()
    assert bn.running_mean.dtype == np.float64 and bn.num_batches_tracked.dtype == np.int64


# ---- layers: PyTorch's arguments and default init -------------------------------------------------------------


def test_conv2d_default_init_is_pytorchs_uniform_bound():
    conv = nn.Conv2d(6, 500, 3, generator=0)
    bound = 1 / np.sqrt(6 * 9)
    for p in (conv.weight.data, conv.bias.data):
        assert p.dtype == np.float32 and np.abs(p).max() <= bound
    assert np.abs(conv.weight.data).max() > 0.99 * bound  # the whole interval, not a narrower one
    assert np.all(nn.Conv2d(2, 3, 2, init="he", generator=0).bias.data == 0)


def test_layers_take_pytorchs_arguments(torch):
    x = np.random.default_rng(0).normal(size=(2, 3, 11, 9))
    conv = nn.Conv2d(3, 4, (3, 2), stride=(2, 1), padding="same" if False else 1, dilation=(1, 2), dtype=np.float64)
    reference = torch.nn.Conv2d(3, 4, (3, 2), stride=(2, 1), padding=1, dilation=(1, 2), dtype=torch.float64)
    with torch.no_grad():
        reference.weight.copy_(torch.from_numpy(conv.weight.data))
        reference.bias.copy_(torch.from_numpy(conv.bias.data))
    assert_close(conv(Tensor(x)).data, reference(torch.from_numpy(x)).detach().numpy(), "Conv2d", 1e-10)
    for ours, theirs in [(nn.MaxPool2d(3, 2, 1, ceil_mode=True), torch.nn.MaxPool2d(3, 2, 1, ceil_mode=True)),
                         (nn.AvgPool2d((2, 3), padding=1, count_include_pad=False),
                          torch.nn.AvgPool2d((2, 3), padding=1, count_include_pad=False))]:
        assert_close(ours(Tensor(x)).data, theirs(torch.from_numpy(x)).numpy(), repr(ours), 1e-10)
    assert repr(nn.Conv2d(1, 8, 5)) == "Conv2d(1, 8, kernel_size=(5, 5), stride=(1, 1))"
    assert nn.Flatten()(Tensor(x)).shape == (2, 3 * 11 * 9)


@pytest.mark.parametrize(("call", "message"), [
    (lambda x: F.conv2d(x, Tensor(np.ones((2, 3, 3, 3)))), r"conv2d: input of shape \(1, 1, 5, 5\) has 1 channels"),
    (lambda x: F.conv2d(x, Tensor(np.ones((2, 1, 6, 3)))), r"conv2d: the padded input is 5x5 .* smaller than the 6x3"),
    (lambda x: F.conv2d(x, Tensor(np.ones((2, 1, 3)))), r"conv2d: weight must be \(out_channels, in_channels, KH, KW"),
    (lambda x: F.conv2d(x, Tensor(np.ones((2, 1, 3, 3))), stride=0), "conv2d: stride must be an int or a pair"),
    (lambda x: F.conv2d(x, Tensor(np.ones((2, 1, 3, 3))), padding="full"), "conv2d: padding must be 'valid', 'same'"),
    (lambda x: F.conv2d(x[0, 0], Tensor(np.ones((2, 1, 3, 3)))), r"expected input of shape \(N, C, H, W\) or"),
    (lambda x: F.max_pool2d(x, 2, padding=2), r"max_pool2d: padding \(2, 2\) is more than half the kernel"),
    (lambda x: F.max_pool2d(x, 6), r"max_pool2d: the input of shape \(1, 1, 5, 5\) with padding \(0, 0\) is smaller"),
    (lambda x: F.avg_pool2d(x, 2, divisor_override=0), "avg_pool2d: divisor_override must be a nonzero integer"),
    (lambda x: F.max_pool2d(x, (2, 2, 2)), "max_pool2d: kernel_size must be an int or a pair"),
])
def test_bad_arguments_get_one_clear_error(call, message):
    with pytest.raises(ValueError, match=message):
        call(Tensor(np.ones((1, 1, 5, 5))))
