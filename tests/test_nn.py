"""nn: parameters found by walking attributes, state dicts, train/eval, layers, initialisation (losses: test_losses)."""

import importlib.util

import numpy as np
import pytest
from conftest import require

import tinygrad_np as tg
from tinygrad_np import Tensor, nn
from tinygrad_np.nn import functional as F


@pytest.fixture(scope="module")
def torch():
    require(importlib.util.find_spec("torch") is not None, "torch is not installed (extra `torch`)")
    import torch

    return torch


class Block(nn.Module):
    """A Module holding a Sequential of Linears, a list of modules and a bare Parameter."""

    def __init__(self, generator: int = 0) -> None:
        rng = tg.as_generator(generator)
        self.body = nn.Sequential(nn.Linear(4, 5, generator=rng), nn.ReLU(), nn.Linear(5, 3, generator=rng))
        self.heads = [nn.Linear(3, 2, generator=rng), nn.Linear(3, 1, bias=False, generator=rng)]
        self.scale = nn.Parameter(np.ones(1))

    def forward(self, x):
        h = self.body(x)
        return [head(h) * self.scale for head in self.heads]


BLOCK_NAMES = [
    "scale",  # a module's own parameters come first, then its children's, as in PyTorch
    "body.0.weight",
    "body.0.bias",
    "body.2.weight",
    "body.2.bias",
    "heads.0.weight",
    "heads.0.bias",
    "heads.1.weight",
]


# ---- Module: finding parameters ----------------------------------------------------------------------


def test_parameters_are_found_in_nested_modules_and_lists_with_dotted_names_in_order():
    block = Block()
    names = [name for name, _ in block.named_parameters()]
    assert names == BLOCK_NAMES
    assert [p for p in block.parameters()] == [p for _, p in block.named_parameters()]
    assert block.num_parameters() == 1 + (4 * 5 + 5) + (5 * 3 + 3) + (3 * 2 + 2) + 3
    assert block.heads[1].bias is None  # bias=False leaves no Parameter behind


def test_named_modules_walks_the_tree_depth_first():
    names = [name for name, _ in Block().named_modules()]
    assert names == ["", "body", "body.0", "body.1", "body.2", "heads.0", "heads.1"]


def test_a_shared_parameter_is_listed_once():
    shared = nn.Linear(3, 3, generator=0)

    class Tied(nn.Module):
        def __init__(self) -> None:
            self.encoder = shared
            self.decoder = shared  # the same layer twice: weight tying
            self.extra = shared.weight

    names = [name for name, _ in Tied().named_parameters()]
    assert names == ["extra", "encoder.bias"]  # the weight is found first as `extra`, then never again
    assert len(list(Tied().parameters())) == 2


def test_plain_tensors_and_other_attributes_are_not_parameters():
    class Holder(nn.Module):
        def __init__(self) -> None:
            self.weight = nn.Parameter(np.zeros(2))
            self.buffer = Tensor(np.zeros(2))  # a constant, not learnable
            self.sizes = [3, 4]
            self.name = "holder"

    assert [name for name, _ in Holder().named_parameters()] == ["weight"]


def test_zero_grad_clears_every_parameter():
    block = Block()
    outputs = block(Tensor(np.ones((2, 4))))
    (outputs[0].sum() + outputs[1].sum()).backward()
    assert all(p.grad is not None for p in block.parameters())
    block.zero_grad()
    assert all(p.grad is None for p in block.parameters())


def test_train_and_eval_reach_every_submodule_and_return_the_module():
    block = Block()
    assert all(m.training for m in block.modules())
    assert block.eval() is block
    assert not any(m.training for m in block.modules())
    assert block.train() is block
    assert all(m.training for m in block.modules())


# ---- Module: state dicts ------------------------------------------------------------------------------


def test_state_dict_holds_copies_by_dotted_name():
    block = Block()
    state = block.state_dict()
    assert list(state) == BLOCK_NAMES
    state["body.0.weight"][...] = 123.0
    assert not np.any(block.body[0].weight.data == 123.0), "state_dict must copy, not alias"


def test_load_state_dict_round_trip_reproduces_the_outputs():
    source, target = Block(generator=1), Block(generator=2)
    x = Tensor(np.random.default_rng(0).standard_normal((3, 4)).astype(np.float32))
    assert not np.array_equal(source(x)[0].data, target(x)[0].data)
    state = source.state_dict()
    target.load_state_dict(state)
    for got, want in zip(target(x), source(x), strict=True):
        np.testing.assert_array_equal(got.data, want.data)
    state["scale"][...] = 7.0  # the loaded model keeps its own copy
    assert target.scale.data[0] == 1.0


def test_load_state_dict_keeps_the_parameters_dtype_and_identity():
    model = nn.Linear(3, 2, generator=0)
    weight = model.weight
    model.load_state_dict({"weight": np.ones((2, 3)), "bias": np.zeros(2)})  # float64 arrays
    assert model.weight is weight and weight.dtype == np.float32
    np.testing.assert_array_equal(weight.data, np.ones((2, 3), dtype=np.float32))


def test_load_state_dict_names_missing_and_unexpected_keys():
    model = nn.Linear(3, 2, generator=0)
    state = model.state_dict()
    del state["bias"]
    state["bais"] = np.zeros(2)
    with pytest.raises(KeyError, match=r"missing bias; unexpected bais"):
        model.load_state_dict(state)
    model.load_state_dict(state, strict=False)  # non-strict loads what matches


def test_load_state_dict_rejects_a_wrong_shape_naming_both_shapes():
    model = nn.Sequential(nn.Linear(3, 2, generator=0))
    with pytest.raises(ValueError, match=r"'0.weight' has shape \(3, 2\).*parameter has shape \(2, 3\)"):
        model.load_state_dict({"0.weight": np.zeros((3, 2)), "0.bias": np.zeros(2)})


def test_load_state_dict_rejects_non_float_values():
    model = nn.Linear(3, 2, generator=0)
    with pytest.raises(TypeError, match=r"'bias' has dtype int64"):
        model.load_state_dict({"weight": np.zeros((2, 3)), "bias": np.zeros(2, dtype=np.int64)})


def test_a_failed_load_leaves_the_model_untouched():
    model = nn.Sequential(nn.Linear(3, 2, generator=0), nn.Linear(2, 2, generator=1))
    before = model.state_dict()
    bad = {name: np.full_like(value, 9.0) for name, value in before.items()}
    bad["1.bias"] = np.zeros(5)  # the last entry is wrong; the earlier ones must not have been copied
    with pytest.raises(ValueError, match=r"'1\.bias' has shape \(5,\)"):
        model.load_state_dict(bad)
    for name, value in model.state_dict().items():
        np.testing.assert_array_equal(value, before[name], err_msg=name)


def test_astype_casts_every_parameter():
    block = Block().double()
    assert {p.dtype for p in block.parameters()} == {np.dtype(np.float64)}
    out = block(Tensor(np.ones((2, 4))))
    assert out[0].dtype == np.float64


# ---- printing ------------------------------------------------------------------------------------------


def test_repr_matches_pytorchs_layout(torch):
    class Net(nn.Module):
        def __init__(self) -> None:
            self.body = nn.Sequential(nn.Linear(4, 3, generator=0), nn.ReLU(), nn.Tanh(), nn.Sigmoid())
            self.head = nn.Linear(3, 2, bias=False, generator=0)

    class TorchNet(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.body = torch.nn.Sequential(
                torch.nn.Linear(4, 3), torch.nn.ReLU(), torch.nn.Tanh(), torch.nn.Sigmoid()
            )
            self.head = torch.nn.Linear(3, 2, bias=False)

    TorchNet.__name__ = "Net"
    assert repr(Net()) == repr(TorchNet())
    assert repr(nn.Dropout(0.25)) == "Dropout(p=0.25)"
    assert repr(nn.Softmax(axis=1)) == "Softmax(axis=1)"


# ---- Sequential ------------------------------------------------------------------------------------------


def test_sequential_indexing_slicing_len_and_iteration():
    layers = [nn.Linear(4, 5, generator=0), nn.ReLU(), nn.Linear(5, 2, generator=1)]
    model = nn.Sequential(*layers)
    assert len(model) == 3
    assert list(model) == layers
    assert model[0] is layers[0] and model[-1] is layers[2]
    tail = model[1:]
    assert isinstance(tail, nn.Sequential) and list(tail) == layers[1:]
    assert tail[1].weight is layers[2].weight  # a slice shares the layers, as in PyTorch
    x = Tensor(np.ones((3, 4), dtype=np.float32))
    np.testing.assert_array_equal(model(x).data, tail(layers[0](x)).data)
    with pytest.raises(IndexError, match="Sequential has 3 layers, no index 3"):
        model[3]


def test_sequential_rejects_non_modules():
    with pytest.raises(TypeError, match="argument 1 is a function"):
        nn.Sequential(nn.ReLU(), F.relu)  # a function where a layer belongs


# ---- Linear ----------------------------------------------------------------------------------------------


def test_linear_computes_x_wt_plus_b():
    layer = nn.Linear(4, 3, generator=0, dtype=np.float64)
    x = np.random.default_rng(1).standard_normal((5, 4))
    np.testing.assert_allclose(layer(Tensor(x)).data, x @ layer.weight.data.T + layer.bias.data, rtol=1e-14)
    assert layer.weight.shape == (3, 4) and layer.bias.shape == (3,)


def test_he_init_has_std_sqrt_2_over_fan_in_and_zero_bias():
    layer = nn.Linear(784, 512, generator=0)
    weight = layer.weight.data.astype(np.float64)
    # 401,408 samples: the sample std is within ~0.1% of the truth, so 1% is a wide margin.
    assert weight.std() == pytest.approx(np.sqrt(2 / 784), rel=0.01)
    assert abs(weight.mean()) < 3 * np.sqrt(2 / 784) / np.sqrt(weight.size)
    np.testing.assert_array_equal(layer.bias.data, 0)
    assert layer.weight.dtype == np.float32


def test_xavier_init_stays_within_its_bound_and_fills_it():
    layer = nn.Linear(300, 100, init="xavier", generator=0)
    bound = np.sqrt(6 / (300 + 100))
    weight = layer.weight.data.astype(np.float64)
    assert np.abs(weight).max() <= bound
    assert np.abs(weight).max() > 0.999 * bound
    assert weight.var() == pytest.approx(bound**2 / 3, rel=0.02)  # the variance of U(-a, a)
    np.testing.assert_array_equal(layer.bias.data, 0)


def test_tutorial_init_is_uniform_minus_half_to_half_for_weights_and_biases():
    layer = nn.Linear(784, 10, init="tutorial", generator=0)
    for values in (layer.weight.data, layer.bias.data):
        assert values.min() >= -0.5 and values.max() < 0.5
    weight = layer.weight.data.astype(np.float64)
    assert weight.var() == pytest.approx(1 / 12, rel=0.03)
    assert np.any(layer.bias.data != 0)


def test_same_seed_gives_bit_identical_weights_and_another_seed_does_not():
    def weights(generator):
        model = nn.Sequential(nn.Linear(8, 6, generator=generator), nn.Linear(6, 2, init="xavier", generator=generator))
        return [p.data for p in model.parameters()]

    for a, b in zip(weights(3), weights(3), strict=True):
        np.testing.assert_array_equal(a, b)
    assert not np.array_equal(weights(3)[0], weights(4)[0])
    # One Generator shared by two layers gives them different draws.
    rng = np.random.default_rng(3)
    first, second = nn.Linear(4, 4, generator=rng), nn.Linear(4, 4, generator=rng)
    assert not np.array_equal(first.weight.data, second.weight.data)


def test_linear_rejects_bad_sizes_and_unknown_init():
    with pytest.raises(ValueError, match="positive sizes"):
        nn.Linear(0, 3)
    with pytest.raises(ValueError, match=r"init must be one of \['he', 'pytorch', 'tutorial', 'xavier'\]"):
        nn.Linear(3, 3, init="kaiming")  # type: ignore[arg-type]


def test_wrong_input_width_names_both_widths():
    layer = nn.Linear(784, 10, generator=0)
    with pytest.raises(ValueError, match=r"Linear: input has 28 features.*\(shape \(5, 28\)\).*expects 784"):
        layer(Tensor(np.zeros((5, 28), dtype=np.float32)))


# ---- Dropout and the other layers ------------------------------------------------------------------------


def test_dropout_is_the_identity_in_eval():
    dropout = nn.Dropout(0.5, generator=0).eval()
    x = Tensor(np.arange(6.0), requires_grad=True)
    y = dropout(x)
    np.testing.assert_array_equal(y.data, x.data)
    y.sum().backward()
    np.testing.assert_array_equal(x.grad, np.ones(6))


def test_dropout_in_training_zeroes_and_scales_by_one_over_keep_and_preserves_the_mean():
    p, n = 0.3, 200_000
    dropout = nn.Dropout(p, generator=0)
    x = Tensor(np.ones(n), requires_grad=True)
    y = dropout(x)
    kept = y.data != 0
    np.testing.assert_allclose(y.data[kept], 1 / (1 - p), rtol=1e-15)
    # Each output is 1/(1-p) with probability 1-p: mean 1, std sqrt(p/(1-p)); allow 5 standard errors.
    assert abs(y.data.mean() - 1) < 5 * np.sqrt(p / (1 - p) / n)
    assert abs(kept.mean() - (1 - p)) < 5 * np.sqrt(p * (1 - p) / n)
    y.backward(np.full(n, 2.0))
    np.testing.assert_array_equal(x.grad, np.where(kept, 2 / (1 - p), 0.0))  # the gradient uses the same mask


def test_dropout_masks_are_reproducible_from_a_seed_and_fresh_on_each_call():
    x = Tensor(np.ones((4, 50), dtype=np.float32))
    first, again = nn.Dropout(0.5, generator=7), nn.Dropout(0.5, generator=7)
    masks = [first(x).data != 0 for _ in range(3)]
    np.testing.assert_array_equal(masks, [again(x).data != 0 for _ in range(3)])
    assert not np.array_equal(masks[0], masks[1])
    other = nn.Dropout(0.5, generator=8)(x).data != 0
    assert not np.array_equal(masks[0], other)


def test_dropout_edge_probabilities_and_bad_ones():
    x = Tensor(np.arange(1.0, 5.0))
    np.testing.assert_array_equal(nn.Dropout(0.0, generator=0)(x).data, x.data)
    np.testing.assert_array_equal(nn.Dropout(1.0, generator=0)(x).data, np.zeros(4))
    for p in (-0.1, 1.5):
        with pytest.raises(ValueError, match=r"dropout probability must be in \[0, 1\]"):
            nn.Dropout(p)


def test_activations_and_flatten_match_numpy():
    x = np.random.default_rng(0).standard_normal((2, 3, 4))
    t = Tensor(x)
    np.testing.assert_array_equal(nn.ReLU()(t).data, np.maximum(x, 0))
    np.testing.assert_allclose(nn.Tanh()(t).data, np.tanh(x), rtol=1e-15)
    np.testing.assert_allclose(nn.Sigmoid()(t).data, 1 / (1 + np.exp(-x)), rtol=1e-15)
    softmax = np.exp(x) / np.exp(x).sum(axis=1, keepdims=True)
    np.testing.assert_allclose(nn.Softmax(axis=1)(t).data, softmax, rtol=1e-14)
    np.testing.assert_allclose(nn.LogSoftmax(axis=1)(t).data, np.log(softmax), rtol=1e-13)
    assert nn.Flatten()(t).shape == (2, 12)
    assert nn.Flatten(start_dim=0)(t).shape == (24,)


@pytest.mark.parametrize("negative_slope", [0.01, 0.2, 0.0, -0.5])
def test_leaky_relu_matches_torch_forward_and_backward_including_at_zero(torch, rng, negative_slope):
    x = np.concatenate([rng.standard_normal(11), [0.0, -0.0]])
    upstream = rng.standard_normal(x.shape)
    t = Tensor(x, requires_grad=True)
    layer = nn.LeakyReLU(negative_slope)
    layer(t).backward(upstream)
    reference = torch.tensor(x, requires_grad=True)
    torch.nn.functional.leaky_relu(reference, negative_slope).backward(torch.tensor(upstream))
    np.testing.assert_array_equal(layer(t).data, torch.nn.functional.leaky_relu(torch.tensor(x), negative_slope))
    np.testing.assert_array_equal(t.grad, reference.grad.numpy())  # the slope at exactly 0, as PyTorch
    assert repr(layer) == f"LeakyReLU(negative_slope={negative_slope})"
    assert F.leaky_relu(Tensor(np.float32(-2.0))).dtype == np.float32
