"""What a training run is: the network as a spec and how it is trained (TrainConfig), the named recipes, and
the objects a config builds."""

from __future__ import annotations

import inspect
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, fields
from typing import Any

from tinygrad_np import nn, optim
from tinygrad_np.errors import UserError
from tinygrad_np.spec import Spec, cnn_spec, mlp_spec, model_from_spec, normalize_spec

OPTIMIZERS = ("sgd", "rmsprop", "adam", "adamw")
# The settings only some optimizers take; given to another, they would be ignored, so they are refused.
OPTIMIZER_SETTINGS = {
    "momentum": ("sgd", "rmsprop"),
    "nesterov": ("sgd",),
    "centered": ("rmsprop",),
    "betas": ("adam", "adamw"),
    "amsgrad": ("adam", "adamw"),
    "eps": ("rmsprop", "adam", "adamw"),
}
_OPTIMIZER_CLASSES = {"sgd": optim.SGD, "rmsprop": optim.RMSprop, "adam": optim.Adam, "adamw": optim.AdamW}
# The networks a recipe or --model names: the tutorial's 784-10-10, an MLP of any depth, and a LeNet-style CNN.
NETWORKS = ("two_layer", "mlp", "cnn")
NETWORK_SETTINGS = ("model", "hidden_sizes", "init", "dropout")
MNIST_INPUT_SIZE, MNIST_CLASSES, TUTORIAL_HIDDEN_SIZE, MLP_HIDDEN_SIZES = 784, 10, 10, (128,)


class ConfigError(UserError, ValueError):
    """Settings that contradict each other, or that the run would ignore; `field` names the setting at fault."""

    def __init__(self, message: str, field: str) -> None:
        super().__init__(message)
        self.field = field


@dataclass(frozen=True)
class TrainConfig:
    """One training run: the network (a spec), the optimizer, the schedule, batches, epochs and the seed.

    `seed` seeds everything random: the weights (it replaces the spec's own seed), the data order and dropout.
    `betas` and `eps` are None for the optimizer's own default; `weight_decay` None becomes the optimizer's own
    default (AdamW's 0.01, PyTorch's; the others' 0). `no_weight_decay` names the parameters weight decay spares
    (patterns of `optim.param_groups`, e.g. ("bias",)), which then form a group of their own.
    Values are checked where they are used (the spec, the optimizer, the scheduler); here only settings that
    contradict each other, or that the optimizer would ignore (`OPTIMIZER_SETTINGS`), are refused.
    """

    model: Spec
    optimizer: str = "adam"
    lr: float = 0.005
    momentum: float = 0.0
    nesterov: bool = False
    centered: bool = False
    betas: tuple[float, float] | None = None
    eps: float | None = None
    amsgrad: bool = False
    weight_decay: float | None = None
    no_weight_decay: tuple[str, ...] = ()
    epochs: int = 10
    batch_size: int | None = 64
    step_size: int | None = None
    gamma: float = 0.1
    cosine: bool = False
    seed: int = 0

    def __post_init__(self) -> None:
        if self.optimizer not in OPTIMIZERS:
            raise ConfigError(f"optimizer must be one of {', '.join(OPTIMIZERS)}, got {self.optimizer!r}", "optimizer")
        defaults = {f.name: f.default for f in fields(self)}
        for name, takers in OPTIMIZER_SETTINGS.items():
            if self.optimizer not in takers and getattr(self, name) != defaults[name]:
                raise ConfigError(f"{name} is for {_the_optimizers(takers)}; {self.optimizer} would ignore it", name)
        if self.weight_decay is None:
            default = inspect.signature(_OPTIMIZER_CLASSES[self.optimizer]).parameters["weight_decay"].default
            object.__setattr__(self, "weight_decay", default)
        spared = self.no_weight_decay
        object.__setattr__(self, "no_weight_decay", (spared,) if isinstance(spared, str) else tuple(spared))
        if self.betas is not None:
            object.__setattr__(self, "betas", tuple(self.betas))
        if self.no_weight_decay and not self.weight_decay:
            raise ConfigError("no_weight_decay spares parameters from weight decay, but weight_decay is 0: there is "
                              "none to spare them from", "no_weight_decay")
        if self.cosine and self.step_size is not None:
            raise ConfigError("cosine annealing and step decay (step_size) are two schedules; choose one", "cosine")
        object.__setattr__(self, "model", normalize_spec({**self.model, "seed": self.seed}))


def _the_optimizers(names: tuple[str, ...]) -> str:
    """'the sgd optimizer', 'the rmsprop, adam and adamw optimizers'"""
    if len(names) == 1:
        return f"the {names[0]} optimizer"
    return f"the {', '.join(names[:-1])} and {names[-1]} optimizers"


# The recipes: the tutorial's setup as it was, and ours for each network.
RECIPES: dict[str, dict[str, Any]] = {
    # 784-10-10, W and b ~ U(-0.5, 0.5), full-batch gradient descent with alpha = 0.10, 500 iterations,
    # with step decay; the tutorial leaves its schedule open, so we halve alpha every 200 iterations.
    "tutorial": dict(
        model="two_layer", init="tutorial", optimizer="sgd", lr=0.10, epochs=500, batch_size=None, step_size=200,
        gamma=0.5,
    ),
    # The same 784-10-10 network, trained well: He init, Adam, mini-batches, cosine decay.
    "two_layer": dict(model="two_layer", init="he", optimizer="adam", lr=0.01, epochs=15, batch_size=128, cosine=True),
    # A wider, deeper MLP with dropout and decoupled weight decay.
    "mlp": dict(
        model="mlp", hidden_sizes=(256, 128), init="he", optimizer="adamw", lr=0.002, weight_decay=0.01,
        dropout=0.1, epochs=15, batch_size=128, cosine=True,
    ),
    # conv 5x5 (16) -> pool -> conv 5x5 (32) -> pool -> 128 -> 10, PyTorch's init, Adam with cosine decay: over
    # 99.2% on the test set in a few epochs (README, "A convolutional network").
    "cnn": dict(model="cnn", init="pytorch", optimizer="adam", lr=0.002, epochs=8, batch_size=128, cosine=True),
}


def network_spec(
    model: str = "two_layer", hidden_sizes: Iterable[int] | None = None, init: str = "he", dropout: float = 0.0
) -> Spec:
    """The spec of a named network for MNIST: "two_layer" (the tutorial's 784-10-10), "mlp" (any depth) or "cnn"
    (LeNet-style, on (1, 28, 28) images)."""
    if model == "cnn":
        for name, value in (("hidden_sizes", hidden_sizes), ("dropout", dropout)):
            if value:
                raise ConfigError(f"{name} doesn't apply to the cnn network (its layers are fixed: see cnn_spec); "
                                  "an MLP takes it, or declare your own CNN in a spec file", name)
        return cnn_spec(init=init)
    if model == "two_layer":
        if hidden_sizes is not None:
            raise ConfigError("hidden_sizes don't apply to the two_layer network (the tutorial's 784-10-10); "
                              "an MLP takes them", "hidden_sizes")
        if dropout:
            raise ConfigError("dropout doesn't apply to the two_layer network (the tutorial's 784-10-10); "
                              "an MLP takes it", "dropout")
        hidden_sizes = (TUTORIAL_HIDDEN_SIZE,)
    elif model != "mlp":
        raise ConfigError(f"model must be one of {', '.join(NETWORKS)}, got {model!r}", "model")
    sizes = list(MLP_HIDDEN_SIZES if hidden_sizes is None else hidden_sizes)
    return mlp_spec(MNIST_INPUT_SIZE, sizes, MNIST_CLASSES, dropout=dropout, init=init)


def recipe_config(recipe: str = "two_layer", **settings: Any) -> TrainConfig:
    """The recipe with `settings` changed: TrainConfig fields, or the network's (model, hidden_sizes, init,
    dropout), where `model` may also be a spec, which then declares the whole network (and its seed, unless
    `seed` is given).

    A setting given here wins over the recipe's, also across a choice: cosine=True drops the recipe's step
    decay, step_size drops its cosine annealing. A setting the run would ignore is refused (ConfigError).
    """
    if recipe not in RECIPES:
        raise ConfigError(f"recipe must be one of {', '.join(RECIPES)}, got {recipe!r}", "recipe")
    base = dict(RECIPES[recipe])
    network = {key: settings.pop(key) for key in NETWORK_SETTINGS if key in settings}
    base_network = {key: base.pop(key) for key in NETWORK_SETTINGS if key in base}
    if isinstance(network.get("model"), Mapping):
        spec = network.pop("model")
        if network:
            key = next(iter(network))
            raise ConfigError(f"{key} can't change a network given as a spec (the spec declares it)", key)
        if "seed" not in settings and spec.get("seed") is not None:
            settings["seed"] = spec["seed"]
    else:
        spec = network_spec(**{**base_network, **network})
    if settings.get("cosine"):
        base.pop("step_size", None)
        base.pop("gamma", None)
    if settings.get("step_size") is not None:
        base.pop("cosine", None)
    merged = {**base, **settings}
    if "gamma" in settings and merged.get("step_size") is None:
        raise ConfigError("gamma is the step decay's factor and needs step_size", "gamma")
    return TrainConfig(model=spec, **merged)


def build_model(config: TrainConfig) -> nn.Module:
    """The network a config describes."""
    return model_from_spec(config.model)


def build_optimizer(config: TrainConfig, model: nn.Module) -> optim.Optimizer:
    """The config's optimizer over the model's parameters: one group, or with `no_weight_decay` two (the spared
    parameters with weight_decay 0, by `optim.param_groups`)."""
    params: Any = model.parameters()
    if config.no_weight_decay:
        try:
            params = optim.param_groups(model, config.no_weight_decay)
        except ValueError as err:  # a pattern that matches no parameter
            raise ConfigError(str(err), "no_weight_decay") from None
    settings = {
        name: getattr(config, name)
        for name, takers in OPTIMIZER_SETTINGS.items()
        if config.optimizer in takers and getattr(config, name) is not None  # None: the optimizer's default
    }
    return _OPTIMIZER_CLASSES[config.optimizer](params, lr=config.lr, weight_decay=config.weight_decay, **settings)


def build_scheduler(config: TrainConfig, optimizer: optim.Optimizer) -> optim.LRScheduler | None:
    if config.cosine:
        return optim.CosineAnnealingLR(optimizer, T_max=config.epochs)
    if config.step_size is not None:
        return optim.StepLR(optimizer, step_size=config.step_size, gamma=config.gamma)
    return None
