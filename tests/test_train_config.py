"""Training configurations: recipes and settings make one spec, settings the run would ignore are refused."""

import numpy as np
import pytest

from tinygrad_np.models import mlp as mlp_reference
from tinygrad_np.models import two_layer
from tinygrad_np.spec import mlp_spec, normalize_spec
from tinygrad_np.train import RECIPES, ConfigError, TrainConfig, build_model, network_spec, recipe_config


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
        ("two_layer", {"gamma": 0.5}, "gamma"),
        ("two_layer", {"cosine": True, "step_size": 5}, "cosine"),
        ("two_layer", {"optimizer": "adagrad"}, "optimizer"),
        ("two_layer", {"model": "cnn"}, "model"),
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
