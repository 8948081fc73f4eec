"""Training configurations: recipes and settings make one spec, settings the run would ignore are refused."""

import inspect

import numpy as np
import pytest

from tinygrad_np import optim
from tinygrad_np.models import cnn as cnn_reference
from tinygrad_np.models import mlp as mlp_reference
from tinygrad_np.models import two_layer
from tinygrad_np.spec import mlp_spec, normalize_spec
from tinygrad_np.train import (
    OPTIMIZER_SETTINGS,
    RECIPES,
    ConfigError,
    TrainConfig,
    build_model,
    build_optimizer,
    network_spec,
    recipe_config,
)


def layer_sizes(config: TrainConfig) -> list[int]:
    return [layer["out_features"] for layer in config.model["layers"] if layer["type"] == "Linear"]


@pytest.mark.parametrize("recipe", sorted(RECIPES))
def test_every_recipe_builds_from_its_spec(recipe):
    config = recipe_config(recipe)
    assert config.model == normalize_spec(config.model) and config.model["seed"] == config.seed == 0
    assert build_model(config).num_parameters() > 0


def test_the_recipes_networks_are_the_reference_networks_weight_for_weight():
    """One way to build a network: the recipes' and models/'s builders both go through model_from_spec."""
    pairs = [
        (recipe_config("tutorial"), two_layer.two_layer(0, init="tutorial")),
        (recipe_config("two_layer", seed=4), two_layer.two_layer(4)),
        (recipe_config("mlp"), mlp_reference.mlp(784, (256, 128), 10, dropout=0.1)),
        (recipe_config("cnn"), cnn_reference.cnn()),
    ]
    for config, reference in pairs:
        for ours, theirs in zip(build_model(config).parameters(), reference.parameters(), strict=True):
            np.testing.assert_array_equal(ours.data, theirs.data)


def test_settings_given_win_over_the_recipe_across_a_choice_of_schedule():
    assert recipe_config("tutorial", cosine=True).step_size is None
    stepped = recipe_config("two_layer", step_size=5)
    assert (stepped.cosine, stepped.step_size, stepped.gamma) == (False, 5, 0.1)
    assert recipe_config("tutorial", gamma=0.3).gamma == 0.3  # the recipe's own step decay
    assert layer_sizes(recipe_config("mlp", hidden_sizes=(32,))) == [32, 10]
    assert layer_sizes(recipe_config("tutorial", model="mlp")) == [128, 10]


@pytest.mark.parametrize(
    ("recipe", "settings", "field"),
    [
        ("two_layer", {"hidden_sizes": (64, 32)}, "hidden_sizes"),
        ("two_layer", {"dropout": 0.2}, "dropout"),
        ("two_layer", {"momentum": 0.9}, "momentum"),
        ("mlp", {"nesterov": True}, "nesterov"),
        ("two_layer", {"optimizer": "rmsprop", "nesterov": True}, "nesterov"),
        ("two_layer", {"centered": True}, "centered"),
        ("two_layer", {"optimizer": "sgd", "betas": (0.8, 0.9)}, "betas"),
        ("two_layer", {"optimizer": "rmsprop", "amsgrad": True}, "amsgrad"),
        ("two_layer", {"optimizer": "sgd", "eps": 1e-6}, "eps"),
        ("two_layer", {"no_weight_decay": ("bias",)}, "no_weight_decay"),  # weight_decay 0: nothing to spare
        ("two_layer", {"gamma": 0.5}, "gamma"),
        ("two_layer", {"cosine": True, "step_size": 5}, "cosine"),
        ("two_layer", {"optimizer": "adagrad"}, "optimizer"),
        ("two_layer", {"model": "lenet"}, "model"),
        ("cnn", {"hidden_sizes": (64,)}, "hidden_sizes"),
        ("cnn", {"dropout": 0.1}, "dropout"),
        ("mlp", {"model": mlp_spec(784, [5], 10), "hidden_sizes": (3,)}, "hidden_sizes"),
        ("fancy", {}, "recipe"),
    ],
)
def test_settings_the_run_would_ignore_or_that_contradict_are_refused(recipe, settings, field):
    with pytest.raises(ConfigError) as raised:
        recipe_config(recipe, **settings)
    assert raised.value.field == field


def test_a_spec_declares_the_whole_network_and_keeps_its_seed_unless_one_is_given():
    spec = mlp_spec(784, [5], 10, seed=9)
    config = recipe_config("mlp", model=spec)
    assert layer_sizes(config) == [5, 10] and config.seed == config.model["seed"] == 9
    assert config.optimizer == "adamw"  # the recipe's training settings stay
    assert recipe_config("mlp", model=spec, seed=2).model["seed"] == 2


def test_the_config_seed_is_the_specs_seed():
    config = TrainConfig(mlp_spec(10, [4], 3, seed=7), seed=1)
    assert config.model["seed"] == 1
    assert network_spec("mlp", (8,)) == mlp_spec(784, [8], 10)


# ---- the optimizer a config builds ---------------------------------------------------------------------------

GIVEN = {"momentum": 0.5, "nesterov": True, "centered": True, "betas": (0.8, 0.95), "amsgrad": True, "eps": 1e-6}


@pytest.mark.parametrize("optimizer", ["sgd", "rmsprop", "adam", "adamw"])
def test_each_optimizer_gets_the_settings_it_takes_and_refuses_the_others(optimizer):
    takes = {name: GIVEN[name] for name, takers in OPTIMIZER_SETTINGS.items() if optimizer in takers}
    config = recipe_config("mlp", optimizer=optimizer, hidden_sizes=(4,), **takes)
    (group,) = build_optimizer(config, build_model(config)).param_groups
    assert {name: group[name] for name in takes} == takes
    for name in set(GIVEN) - set(takes):
        with pytest.raises(ConfigError, match=f"{name} is for the .*; {optimizer} would ignore it") as raised:
            recipe_config("mlp", optimizer=optimizer, **{name: GIVEN[name]})
        assert raised.value.field == name


def test_an_optimizer_setting_left_unset_is_the_optimizers_default():
    config = recipe_config("two_layer")
    assert (config.betas, config.eps) == (None, None)
    (group,) = build_optimizer(config, build_model(config)).param_groups
    defaults = inspect.signature(optim.Adam).parameters
    assert (group["betas"], group["eps"]) == (defaults["betas"].default, defaults["eps"].default)


@pytest.mark.parametrize(("optimizer", "cls"), [("sgd", optim.SGD), ("rmsprop", optim.RMSprop), ("adam", optim.Adam),
                                               ("adamw", optim.AdamW)])
def test_weight_decay_left_unset_is_the_optimizers_default(optimizer, cls):
    # `train --optimizer adamw` used to run plain Adam: the config's weight decay was 0 for every optimizer
    config = recipe_config("two_layer", optimizer=optimizer)
    default = inspect.signature(cls).parameters["weight_decay"].default
    assert config.weight_decay == default == (0.01 if optimizer == "adamw" else 0.0)
    (group,) = build_optimizer(config, build_model(config)).param_groups
    assert group["weight_decay"] == default
    if optimizer == "adamw":  # and its default decay has parameters to spare
        spared = recipe_config("two_layer", optimizer=optimizer, no_weight_decay=["bias"])
        assert [g["weight_decay"] for g in build_optimizer(spared, build_model(spared)).param_groups] == [0.01, 0.0]
    assert recipe_config("two_layer", optimizer=optimizer, weight_decay=0.0).weight_decay == 0.0


def test_no_weight_decay_puts_the_spared_parameters_in_a_group_without_decay():
    """Issue 12: the trainer uses parameter groups when asked, through optim.param_groups."""
    config = recipe_config("mlp", hidden_sizes=(4,), no_weight_decay=["bias"])
    assert config.no_weight_decay == ("bias",)
    model = build_model(config)
    decayed, spared = build_optimizer(config, model).param_groups
    names = {id(p): name for name, p in model.named_parameters()}
    assert [names[id(p)] for p in decayed["params"]] == ["0.weight", "3.weight"]
    assert [names[id(p)] for p in spared["params"]] == ["0.bias", "3.bias"]
    assert (decayed["weight_decay"], spared["weight_decay"]) == (0.01, 0.0)


def test_a_no_weight_decay_pattern_that_matches_nothing_is_refused_naming_the_setting():
    config = recipe_config("mlp", hidden_sizes=(4,), no_weight_decay=("bais",))
    with pytest.raises(ConfigError, match="no parameter of the model matches 'bais'") as raised:
        build_optimizer(config, build_model(config))
    assert raised.value.field == "no_weight_decay"
